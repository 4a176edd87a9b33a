"""The guide console: its pieces (passwords, SSE framing, sessions) and, in headless Chromium
against a real Mosquitto, the page a guide sees."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, date, datetime, timedelta

import pytest
from support.broker import Broker, Subscriber
from support.browser import login, open_logged_in, screenshot, wait
from support.console import (
    GUIDE_TOKEN,
    PASSWORD,
    SH,
    STORE,
    Publisher,
    browser,
    console_config,
    start_console,
)

from footfall.config.schema import ConfigError, parse_config
from footfall.console import server as con
from footfall.sync import events
from footfall.sync.events import ArrivalAlert, Counts, NoShowAlert, Status
from footfall.web.passwords import hash_password
from footfall.web.sessions import SessionBook

# -- passwords, SSE framing, sessions -------------------------------------------------------

def test_a_password_verifies_against_its_salted_hash_and_nothing_else():
    h = hash_password("correct horse")
    assert h.startswith("scrypt$") and "correct horse" not in h
    assert con.verify_password("correct horse", h)
    assert not con.verify_password("correct hors", h)
    assert not con.verify_password("", h)
    assert hash_password("correct horse") != h  # a fresh salt each time
    for bad in ("", "scrypt$", "pbkdf2$1$2$3$4$5", "scrypt$16384$8$1$!!$!!", h.replace("$16384$", "$99999999$")):
        assert not con.verify_password("correct horse", bad)
    with pytest.raises(ValueError):
        hash_password("")


def test_an_sse_frame_names_the_event_and_carries_json_data():
    frame = con.sse_frame("alert", {"name": "李伟", "n": 1}, "e-1")
    assert frame == 'event: alert\nid: e-1\ndata: {"name":"李伟","n":1}\n\n'.encode()
    assert con.sse_frame("x", "a\nb\r\nc") == b"event: x\ndata: a\ndata: b\ndata: c\n\n"
    for bad_event in ("", "a\nb", "a:b"):
        with pytest.raises(ValueError):
            con.sse_frame(bad_event, {})
    with pytest.raises(ValueError):
        con.sse_frame("x", {}, "id\nevent: forged")


def test_a_session_cookie_is_checked_against_tokens_in_memory():
    sessions = SessionBook(con.COOKIE, 60, 10)
    token = sessions.create("Wang Fang")
    header = sessions.set_cookie(token)
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/" in header
    assert sessions.check(f"other=1; {con.COOKIE}={token}").user == "Wang Fang"
    assert sessions.check(None) is None
    assert sessions.check(f"{con.COOKIE}=forged") is None
    assert sessions.check(f"{con.COOKIE}=") is None
    assert sessions.check('bad"cookie') is None
    sessions.drop(token)
    assert sessions.check(f"{con.COOKIE}={token}") is None
    expired = SessionBook(con.COOKIE, -1, 10)
    assert expired.check(f"{con.COOKIE}={expired.create('x')}") is None


def test_the_session_book_keeps_at_most_its_limit_and_drops_the_oldest_login():
    sessions = SessionBook(con.COOKIE, 60, 3)
    tokens = [sessions.create(f"guide {n}") for n in range(4)]
    assert sessions.check(f"{con.COOKIE}={tokens[0]}") is None
    assert [sessions.check(f"{con.COOKIE}={t}").user for t in tokens[1:]] == ["guide 1", "guide 2", "guide 3"]


def test_login_accepts_the_shared_password_with_a_name_or_a_guides_own_token():
    console = con.Console(console_config("mqtt://127.0.0.1:1"), listen="127.0.0.1:0")
    assert console.login("  Wang   Fang ", PASSWORD) == "Wang Fang"
    assert console.login("Li Na", GUIDE_TOKEN) == "Li Na"
    assert console.login("Wang Fang", GUIDE_TOKEN) is None
    assert console.login("", PASSWORD) is None
    assert console.login("Wang Fang", "guess") is None


def test_the_console_refuses_to_start_without_a_login():
    with pytest.raises(ConfigError, match=r"console\.password_hash"):
        con.Console(parse_config({"store_id": STORE}))
    with pytest.raises(ConfigError, match=r"console\.password_hash"):
        parse_config({"console": {"password_hash": "plain-text"}})
    assert con.parse_listen("[::1]:8080") == ("::1", 8080)
    with pytest.raises(ValueError):
        con.parse_listen("8080")


def test_the_cli_hashes_a_password_from_stdin_and_refuses_a_console_without_login(tmp_path):
    run = [sys.executable, "-m", "footfall", "console"]
    hashed = subprocess.run(run + ["--hash-password"], input="s3cret\n", capture_output=True, text=True, timeout=60)
    assert hashed.returncode == 0 and con.verify_password("s3cret", hashed.stdout.strip())
    config = tmp_path / "footfall.toml"
    config.write_text(f'store_id = "{STORE}"\n')
    refused = subprocess.run(run + ["--config", str(config)], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "console.password_hash" in refused.stderr


# -- in the browser ---------------------------------------------------------------------------

def _status(url: str, method: str = "GET", data: bytes | None = None) -> int:
    request = urllib.request.Request(url, method=method, data=data)
    opener = urllib.request.build_opener(type("NoRedirect", (urllib.request.HTTPRedirectHandler,),
                                              {"redirect_request": lambda *a, **k: None}))
    try:
        return opener.open(request, timeout=5).status
    except urllib.error.HTTPError as exc:
        return exc.code


@browser
def test_the_console_requires_a_login(driver, console, tmp_path):
    from selenium.webdriver.common.by import By

    assert _status(console.url + "/events") == 401
    assert _status(console.url + "/ack", "POST", b'{"visit_event_id":"v"}') == 401
    assert _status(console.url + "/") == 303
    driver.delete_all_cookies()
    driver.get(console.url + "/")
    assert driver.current_url.endswith("/login")
    login(driver, console.url, "Wang Fang", "wrong password")
    assert driver.find_element(By.ID, "login-error").is_displayed()
    assert driver.current_url.endswith("/login") and not driver.get_cookies()
    screenshot(driver, tmp_path, "login-refused")
    open_logged_in(driver, console.url, "Li Na", GUIDE_TOKEN)
    (cookie,) = driver.get_cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    screenshot(driver, tmp_path, "logged-in")


@browser
def test_clock_times_on_the_page_are_the_stores_whatever_the_device_zone(console_page, console, console_publisher):
    from selenium.webdriver.common.by import By

    # A live box stamps events in UTC; the store is in Asia/Shanghai; the browser here runs in UTC.
    earlier = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)
    arrival = ArrivalAlert("m-43", "Zhou Min", None, "visit-456",
                           {"appointment_id": "a-2", "scheduled_at": earlier.isoformat(), "channel": "phone",
                            "advisor": "Chen"}, {}, store_id=STORE, ts=earlier)
    console_publisher.send(arrival)
    card = wait(console_page, lambda d: d.find_elements(By.CSS_SELECTOR, f'.card.arrival[data-event-id="{arrival.event_id}"]'),
                2.0, "the arrival card")[0]
    store_clock = earlier.astimezone(SH).strftime("%H:%M")
    assert card.find_element(By.CLASS_NAME, "ago").text == f"arrived at {store_clock}"
    assert card.find_element(By.CLASS_NAME, "appointment").text.split()[1] == store_clock
    assert store_clock != earlier.strftime("%H:%M")


@browser
def test_an_arrival_pops_up_and_a_guide_takes_it(console_page, console, console_broker, console_publisher, tmp_path):
    from selenium.webdriver.common.by import By

    now = datetime.now(SH)
    arrival = ArrivalAlert("m-42", "Li Wei", "gold", "visit-123",
                           {"appointment_id": "a-1", "scheduled_at": now.replace(hour=14, minute=30).isoformat(),
                            "channel": "wechat", "advisor": "Chen"},
                           {"last_purchase": "2026-10-02 watch", "open_repairs": 1, "tags": ["vip"]},
                           store_id=STORE, ts=now - timedelta(minutes=3))
    acks = Subscriber(console_broker.port, events.topic("footfall", STORE, events.ALERT_ACK))
    try:
        sent = time.time()
        console_publisher.send(arrival)
        selector = f'.card.arrival[data-event-id="{arrival.event_id}"]'
        card = wait(console_page, lambda d: d.find_elements(By.CSS_SELECTOR, selector), 2.0, "the arrival card")[0]
        latency = int(card.get_attribute("data-shown-at")) / 1000 - sent
        print(f"\narrival card shown {latency * 1000:.0f} ms after the alert was published")
        assert latency < 2.0
        assert card.find_element(By.CLASS_NAME, "name").text == "Li Wei"
        assert card.find_element(By.CLASS_NAME, "tier").text == "Gold"
        assert "14:30" in card.find_element(By.CLASS_NAME, "appointment").text
        assert "WeChat" in card.find_element(By.CLASS_NAME, "appointment").text
        assert "2026-10-02 watch" in card.find_element(By.CLASS_NAME, "last-purchase").text
        assert card.find_element(By.CSS_SELECTOR, ".open-repairs .value").text == "1"
        assert card.find_element(By.CLASS_NAME, "ago").text == "arrived 3 min ago"

        no_show = NoShowAlert("a-9", "m-77", now - timedelta(minutes=40), 30, store_id=STORE, ts=now)
        console_publisher.send(no_show)
        ns = wait(console_page, lambda d: d.find_elements(By.CSS_SELECTOR, f'.card.no-show[data-event-id="{no_show.event_id}"]'),
                  2.0, "the no-show card")[0]
        # Not enrolled on the box: no name, no phone to call; the member id and a follow-up.
        assert ns.find_element(By.CLASS_NAME, "name").text == "m-77"
        assert "follow up" in ns.find_element(By.CLASS_NAME, "call").text
        cards = console_page.find_elements(By.CSS_SELECTOR, "#cards .card")
        assert cards[0].get_attribute("data-event-id") == no_show.event_id  # newest first

        button = card.find_element(By.CLASS_NAME, "take")
        button.click()
        got = acks.wait_for(lambda ms: ms, 3, "the ack")[0].payload
        assert (got["visit_event_id"], got["guide"], got["store_id"]) == ("visit-123", "Wang Fang", STORE)
        assert got["event_id"] and got["ts"].endswith("+08:00")
        wait(console_page, lambda d: not button.is_enabled(), 2, "the disabled button")
        assert card.find_element(By.CLASS_NAME, "taken-by").text == "Taken by Wang Fang"
        screenshot(console_page, tmp_path, "arrival")
    finally:
        acks.close()



@browser
def test_an_erased_members_cards_leave_open_pages_at_once_and_reopened_pages_never_show_them(
        console_page, console, console_publisher, tmp_path):
    from selenium.webdriver.common.by import By

    now = datetime.now(SH)
    erased = ArrivalAlert("m-erased", "Zhao Min", "gold", "visit-erased", None, {"tags": ["vip"]},
                          store_id=STORE, ts=now)
    no_show = NoShowAlert("a-erased", "m-erased", now - timedelta(minutes=40), 30, store_id=STORE, ts=now)
    kept = ArrivalAlert("m-kept", "Sun Li", "silver", "visit-kept", None, {}, store_id=STORE, ts=now)
    for alert in (erased, no_show, kept):
        console_publisher.send(alert)
    cards = lambda d, member: d.find_elements(By.CSS_SELECTOR, f'.card[data-member-id="{member}"]')  # noqa: E731
    wait(console_page, lambda d: len(cards(d, "m-erased")) == 2 and cards(d, "m-kept"), 2.0, "the three cards")

    sent = time.monotonic()
    console_publisher.send(events.MemberDeleted(member_id="m-erased", store_id=STORE, ts=now))
    wait(console_page, lambda d: not cards(d, "m-erased"), 2.0, "the erased member's cards to leave the open page")
    print(f"\nerased member's cards gone {(time.monotonic() - sent) * 1000:.0f} ms after members/deleted")
    assert "Zhao Min" not in console_page.page_source and "m-erased" not in console_page.page_source
    assert cards(console_page, "m-kept")

    console_page.refresh()
    wait(console_page, lambda d: cards(d, "m-kept"), 5.0, "the reopened page with its replay")
    assert "Zhao Min" not in console_page.page_source and "m-erased" not in console_page.page_source
    screenshot(console_page, tmp_path, "erased")

@browser
def test_todays_counts_are_drawn_as_24_bars_with_totals(console_page, console_publisher, tmp_path):
    from selenium.webdriver.common.by import By

    by_hour = [0] * 24
    by_hour[10:14] = [3, 8, 5, 1]
    counts = Counts(date(2026, 11, 23), 17, 4, 2, by_hour, store_id=STORE, ts=datetime.now(SH))
    console_publisher.send(counts)

    def bars(d):
        found = d.find_elements(By.CSS_SELECTOR, "#chart rect.bar")
        return found if [int(b.get_attribute("data-visits")) for b in found] == by_hour else None

    found = wait(console_page, bars, 3, "24 bars with the published counts")
    assert len(found) == 24
    heights = [float(b.get_attribute("data-height")) for b in found]
    assert [int(b.get_attribute("data-hour")) for b in found] == list(range(24))
    assert max(heights) == heights[11] and heights[0] == 0
    for h, v in zip(heights, by_hour):
        assert h == pytest.approx(heights[11] * v / 8, abs=0.1)
    labels = {int(t.get_attribute("data-hour")): t.text
              for t in console_page.find_elements(By.CSS_SELECTOR, "#chart text.count")}
    assert labels == {10: "3", 11: "8", 12: "5", 13: "1"}
    assert [console_page.find_element(By.ID, i).text for i in ("total-visits", "total-reentries", "total-members")] == \
        ["17", "4", "2"]
    screenshot(console_page, tmp_path, "counts")


@browser
def test_a_phone_wide_screen_shows_the_card_without_horizontal_scrolling(console_page, console_publisher, tmp_path):
    from selenium.webdriver.common.by import By

    arrival = ArrivalAlert("m-5", "Ouyang Mingyue-Longname", "platinum", "visit-360", None,
                           {"last_purchase": "a very long description of a purchase without spaces" * 2},
                           store_id=STORE, ts=datetime.now(SH))
    console_page.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                         {"width": 360, "height": 780, "deviceScaleFactor": 1, "mobile": True})
    try:
        console_page.refresh()
        console_publisher.send(arrival)
        card = wait(console_page, lambda d: d.find_elements(By.CSS_SELECTOR, f'[data-event-id="{arrival.event_id}"]'),
                    3, "the card at 360 px")[0]
        assert console_page.execute_script("return window.innerWidth") == 360
        assert console_page.execute_script("return document.documentElement.scrollWidth") <= 360
        rect = console_page.execute_script("return arguments[0].getBoundingClientRect().toJSON()", card)
        assert rect["left"] >= 0 and rect["right"] <= 360
        assert card.find_element(By.CLASS_NAME, "take").is_displayed()
        screenshot(console_page, tmp_path, "phone")
    finally:
        console_page.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@browser
def test_the_banner_shows_when_the_box_or_the_broker_is_offline(driver, tmp_path):
    from selenium.webdriver.common.by import By

    b = Broker(tmp_path / "broker").start()
    c = start_console(b)
    p = Publisher(b.port)
    try:
        open_logged_in(driver, c.url, "Wang Fang", PASSWORD)
        banner = driver.find_element(By.ID, "banner")
        reason = lambda want: lambda d: banner.get_attribute("data-reason") == want  # noqa: E731
        assert not banner.is_displayed()
        p.send(Status("offline", "0.1.0", {}, store_id=STORE, ts=datetime.now(SH)))
        wait(driver, reason("box_offline"), 3, "the box-offline banner")
        assert banner.is_displayed() and "offline" in banner.text
        p.send(Status("online", "0.1.0", {"door-1": "streaming"}, store_id=STORE, ts=datetime.now(SH)))
        wait(driver, reason(""), 3, "the banner to go")
        p.close()
        b.stop()
        wait(driver, reason("broker_lost"), 5, "the broker-lost banner")
        assert banner.is_displayed() and "broker" in banner.text
        screenshot(driver, tmp_path, "offline")
    finally:
        c.stop()
        b.stop()
