"""A store box that counts nothing is seen on the guide console: the rules (console/health.py) on
their own, then in headless Chromium against a real Mosquitto with the shipped broker ACL, the
console logged in as its own broker user."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from pathlib import Path

import pytest
from support.broker import Broker, mosquitto_passwd_path
from support.browser import open_logged_in, screenshot, wait
from support.console import PASSWORD, SH, STORE, Publisher, browser, start_console

from footfall.console import server as con
from footfall.console.health import NO_STATUS_AFTER, box_problems, open_since
from footfall.sync.events import Counts, Status

ACL = Path(__file__).resolve().parents[2] / "config" / "mosquitto-acl.example"
DAY = (time(10), time(22))
NOW = datetime(2026, 11, 23, 15, 0, tzinfo=SH)


def status(state: str = "online", cameras: dict[str, str] | None = None, at: datetime = NOW - timedelta(hours=5),
           **extra) -> dict:
    return {"state": state, "version": "1", "cameras": {"door-1": "streaming"} if cameras is None else cameras,
            "ts": at.isoformat(), **extra}


def counts(at: datetime) -> dict:
    return {"date": at.date().isoformat(), "visits": 3, "reentries": 0, "member_visits": 0, "by_hour": [0] * 24,
            "ts": at.isoformat()}


def problems(st: dict | None, co: dict | None = None, now: datetime = NOW, hours=DAY,
             quiet_after: timedelta = timedelta(hours=1), broker_since: datetime | None = NOW - timedelta(minutes=1)):
    return box_problems(st, co, now, hours=hours, quiet_after=quiet_after, broker_since=broker_since)


# -- the rules ---------------------------------------------------------------------------------

def test_the_opening_period_of_a_day_an_evening_past_midnight_and_all_day():
    at = lambda h, m=0: NOW.replace(hour=h, minute=m)  # noqa: E731
    assert open_since(at(15), DAY) == at(10)
    assert open_since(at(9, 59), DAY) is None and open_since(at(22), DAY) is None
    late = (time(18), time(2))
    assert open_since(at(23), late) == at(18)
    assert open_since(at(1, 30), late) == at(18) - timedelta(days=1)
    assert open_since(at(3), late) is None
    assert open_since(at(4), (time(0), time(0))) == at(0)


def test_an_online_box_with_every_camera_streaming_and_recent_counts_has_no_problem():
    assert problems(status(), counts(NOW - timedelta(minutes=10))) == []


def test_each_camera_that_is_not_streaming_is_named_with_its_state():
    st = status(cameras={"door-1": "streaming", "door-2": "reconnecting", "door-3": "ended"})
    assert problems(st, counts(NOW)) == [{"problem": "camera", "camera": "door-2", "state": "reconnecting"},
                                         {"problem": "camera", "camera": "door-3", "state": "ended"}]


def test_no_camera_streaming_means_the_box_counts_nothing():
    st = status(cameras={"door-1": "reconnecting"})
    assert problems(st, counts(NOW - timedelta(hours=3))) == [
        {"problem": "no_camera"}, {"problem": "camera", "camera": "door-1", "state": "reconnecting"}]
    assert problems(status(cameras={}), None) == [{"problem": "no_camera"}]


def test_a_storage_error_is_a_problem_and_ok_is_not():
    assert problems(status(storage="ok"), counts(NOW)) == []
    assert problems(status(storage="error: disk full"), counts(NOW)) == [
        {"problem": "storage", "detail": "error: disk full"}]


def test_nobody_counted_for_quiet_after_within_opening_hours_is_a_problem_naming_since_when():
    last = NOW - timedelta(minutes=61)
    assert problems(status(), counts(last)) == [{"problem": "quiet", "since": last.isoformat(timespec="milliseconds")}]
    assert problems(status(), counts(NOW - timedelta(minutes=59))) == []
    # Counts of yesterday: quiet since today's opening.
    opening = NOW.replace(hour=10)
    assert problems(status(), counts(NOW - timedelta(days=1)))[0]["since"] == opening.isoformat(timespec="milliseconds")
    # A box online for ten minutes has not been quiet for an hour, whatever its counts say.
    assert problems(status(at=NOW - timedelta(minutes=10)), counts(NOW - timedelta(hours=4))) == []


def test_quiet_is_not_flagged_outside_opening_hours_without_them_or_when_no_camera_streams():
    evening = NOW.replace(hour=23)
    assert problems(status(), counts(NOW - timedelta(hours=3)), now=evening) == []
    assert problems(status(), counts(NOW - timedelta(hours=3)), hours=None) == []
    down = problems(status(cameras={"door-1": "reconnecting"}), counts(NOW - timedelta(hours=3)))
    assert "quiet" not in {p["problem"] for p in down}


def test_an_offline_or_stopped_box_has_its_own_banner_and_no_problem_here():
    for state in ("offline", "stopped"):
        assert problems(status(state, cameras={}), counts(NOW - timedelta(hours=3))) == []


def test_no_word_from_the_box_is_a_problem_once_the_console_has_listened_a_moment():
    assert problems(None, broker_since=NOW) == []
    assert problems(None, broker_since=None) == []
    assert problems(None, broker_since=NOW - NO_STATUS_AFTER) == [{"problem": "no_status"}]


# -- in the browser ------------------------------------------------------------------------------

def _acl_broker(tmp_path: Path, acl_text: str) -> Broker:
    if mosquitto_passwd_path() is None:
        pytest.skip("mosquitto_passwd is not installed")
    acl = tmp_path / "acl"
    acl.write_text(acl_text)
    users = {"sh-001": "box-secret", "sh-001-console": "console-secret"}
    return Broker(tmp_path / "broker", users=users, extra_conf=f"acl_file {acl}\n").start()


def _console(broker: Broker, **console) -> con.Console:
    """A console logged in to `broker` as its own broker user."""
    return start_console(broker, {"username": "sh-001", "password": "box-secret"},
                         mqtt_username="sh-001-console", mqtt_password="console-secret", **console)


def _box(port: int) -> Publisher:
    """Publishes as the store's box user (the ACL lets it write its own uplink only)."""
    return Publisher(port, "sh-001", "box-secret")


def shown_problems(driver) -> list[tuple[str, str]]:
    from selenium.webdriver.common.by import By

    health = driver.find_element(By.ID, "health")
    if not health.is_displayed():
        return []
    return [(p.get_attribute("data-problem"), p.get_attribute("data-camera") or "")
            for p in health.find_elements(By.TAG_NAME, "p")]


@browser
def test_a_camera_that_stops_streaming_on_an_online_box_shows_a_banner_through_the_shipped_acl(driver, tmp_path):
    from selenium.webdriver.common.by import By

    b = _acl_broker(tmp_path, ACL.read_text())
    c = _console(b)
    box = _box(b.port)
    try:
        open_logged_in(driver, c.url, "Wang Fang", PASSWORD)
        now = datetime.now(SH)
        box.send(Counts(now.date(), 4, 1, 0, [0] * 24, store_id=STORE, ts=now))
        box.send(Status("online", "0.1.0", {"door-1": "streaming", "door-2": "reconnecting"}, store_id=STORE, ts=now))
        wait(driver, lambda d: shown_problems(d) == [("camera", "door-2")], 3.0, "the camera banner")
        line = driver.find_element(By.CSS_SELECTOR, '#health [data-camera="door-2"]').text
        assert line == "Camera door-2: reconnecting; people passing it are not counted."
        assert not driver.find_element(By.ID, "banner").is_displayed(), "the box itself is online"
        screenshot(driver, tmp_path, "camera-down")

        box.send(Status("online", "0.1.0", {"door-1": "ended", "door-2": "reconnecting"}, store_id=STORE, ts=now))
        wait(driver, lambda d: shown_problems(d) == [("no_camera", ""), ("camera", "door-1"), ("camera", "door-2")],
             3.0, "the no-camera banner")
        assert "counts nobody" in driver.find_element(By.CSS_SELECTOR, '#health [data-problem="no_camera"]').text

        box.send(Status("online", "0.1.0", {"door-1": "streaming", "door-2": "streaming"}, store_id=STORE, ts=now))
        wait(driver, lambda d: shown_problems(d) == [], 3.0, "the banner to go")

        box.send(Status("offline", "0.1.0", {}, store_id=STORE, ts=now))
        wait(driver, lambda d: d.find_element(By.ID, "banner").get_attribute("data-reason") == "box_offline", 3.0,
             "the offline banner")
        assert shown_problems(driver) == []
    finally:
        box.close()
        c.stop()
        b.stop()


@browser
def test_a_console_the_acl_does_not_let_read_status_says_it_hears_nothing_from_the_box(
        driver, tmp_path, monkeypatch):
    monkeypatch.setattr(con, "HEALTH_EVERY_S", 0.2)
    without = "".join(line for line in ACL.read_text().splitlines(keepends=True)
                      if line.strip() != f"topic read footfall/{STORE}/status")
    assert without != ACL.read_text()
    b = _acl_broker(tmp_path, without)
    c = _console(b)
    box = _box(b.port)
    try:
        box.send(Status("online", "0.1.0", {"door-1": "streaming"}, store_id=STORE, ts=datetime.now(SH)))
        open_logged_in(driver, c.url, "Wang Fang", PASSWORD)
        wait(driver, lambda d: shown_problems(d) == [("no_status", "")], NO_STATUS_AFTER.total_seconds() + 3,
             "the no-status banner")
        screenshot(driver, tmp_path, "no-status")
    finally:
        box.close()
        c.stop()
        b.stop()


@browser
def test_a_box_online_that_counts_nobody_in_opening_hours_is_flagged_until_it_counts_again(driver, tmp_path):
    from selenium.webdriver.common.by import By

    now = datetime.now(SH)
    hours = f"{now - timedelta(hours=3):%H:%M}-{now + timedelta(hours=3):%H:%M}"   # open now, whatever the hour
    b = _acl_broker(tmp_path, ACL.read_text())
    c = _console(b, opening_hours=hours, quiet_after="30m")
    box = _box(b.port)
    try:
        open_logged_in(driver, c.url, "Wang Fang", PASSWORD)
        last = (now - timedelta(minutes=45)).replace(second=0, microsecond=0)
        box.send(Status("online", "0.1.0", {"door-1": "streaming"}, store_id=STORE, ts=now - timedelta(hours=2)))
        box.send(Counts(last.date(), 4, 1, 0, [0] * 24, store_id=STORE, ts=last))
        wait(driver, lambda d: shown_problems(d) == [("quiet", "")], 3.0, "the quiet banner")
        text = driver.find_element(By.CSS_SELECTOR, '#health [data-problem="quiet"]').text
        assert text == f"Nobody counted since {last.strftime('%H:%M')} during opening hours: check the cameras."
        screenshot(driver, tmp_path, "quiet")
        now = datetime.now(SH)
        box.send(Counts(now.date(), 5, 1, 0, [0] * 24, store_id=STORE, ts=now))
        wait(driver, lambda d: shown_problems(d) == [], 3.0, "no banner once someone is counted")
    finally:
        box.close()
        c.stop()
        b.stop()
