"""The guide console: its pieces (passwords, SSE framing, sessions) and, in headless Chromium
against a real Mosquitto, the page a guide sees."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from support.broker import Broker, Subscriber, mosquitto_path, wait_until

from footfall.config.schema import ConfigError, parse_config
from footfall.console import server as con
from footfall.sync import events
from footfall.sync.events import ArrivalAlert, Counts, NoShowAlert, Status
from footfall.web.passwords import hash_password
from footfall.web.sessions import SessionBook

SH = timezone(timedelta(hours=8))
STORE = "sh-001"
PASSWORD = "open sesame"
PASSWORD_HASH = hash_password(PASSWORD)
GUIDE_TOKEN = "li-na-token"
GUIDES = {"Li Na": hash_password(GUIDE_TOKEN)}


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
    console = con.Console(_config("mqtt://127.0.0.1:1"), listen="127.0.0.1:0")
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

def _browser() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


_needs_browser = pytest.mark.skipif(_browser() is None or mosquitto_path() is None,
                                    reason="needs chromium and chromedriver (apt-get install chromium "
                                           "chromium-driver) and mosquitto")


def browser(test):
    """A test in headless Chromium: skipped without chromium, chromedriver and mosquitto; slow."""
    return pytest.mark.slow(_needs_browser(test))


def _config(url: str):
    return parse_config({"store_id": STORE, "timezone": "Asia/Shanghai", "mqtt": {"url": url},
                         "console": {"language": "en", "password_hash": PASSWORD_HASH, "guides": GUIDES}})


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    found = _browser()
    if found is None:
        pytest.skip("chromium/chromedriver are not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1024,900",
                f"--user-data-dir={tmp_path_factory.mktemp('chrome-profile')}"):
        options.add_argument(arg)
    d = webdriver.Chrome(service=Service(found[1]), options=options)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    if mosquitto_path() is None:
        pytest.skip("mosquitto is not installed")
    b = Broker(tmp_path_factory.mktemp("broker")).start()
    yield b
    b.stop()


def _start_console(broker: Broker) -> con.Console:
    c = con.Console(_config(broker.url), listen="127.0.0.1:0").start()
    wait_until(lambda: c.broker_connected, 5, "the console's broker connection")
    return c


@pytest.fixture(scope="module")
def console(broker):
    c = _start_console(broker)
    yield c
    c.stop()


class Publisher:
    def __init__(self, port: int) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{time.monotonic_ns()}",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, event: events.Event) -> None:
        body = json.dumps(event.to_json(), ensure_ascii=False).encode()
        self.client.publish(events.topic("footfall", STORE, event.TOPIC), body, qos=1,
                            retain=event.RETAINED).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(broker):
    p = Publisher(broker.port)
    yield p
    p.close()


def login(driver, base: str, name: str, secret: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base + "/login")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(secret)
    driver.execute_script("window.beforeSubmit = true")
    driver.find_element(By.ID, "login-submit").click()

    def answered(d) -> bool:
        # The page that answers the form is a new document: it has no mark, and has loaded.
        return d.execute_script("return !window.beforeSubmit && document.readyState === 'complete'")

    wait(driver, answered, what="the answer to the login form", transient=True)


def wait(driver, condition, timeout: float = 5.0, what: str = "", transient: bool = False):
    """Poll `condition`; with `transient`, driver errors while a page is being replaced are retried."""
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
        WebDriverException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (WebDriverException,) if transient else (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, poll_frequency=0.02, ignored_exceptions=ignored).until(condition, what)


def screenshot(driver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    assert driver.save_screenshot(str(path))
    assert path.stat().st_size > 0
    return path


@pytest.fixture
def page(driver, console):
    """The console page, logged in as "Wang Fang" with the shared password."""
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    login(driver, console.url, "Wang Fang", PASSWORD)
    wait(driver, lambda d: d.find_element(By.ID, "who").text == "Wang Fang", what="the console page")
    return driver


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
    login(driver, console.url, "Li Na", GUIDE_TOKEN)
    wait(driver, lambda d: d.find_element(By.ID, "who").text == "Li Na", what="the page after login")
    (cookie,) = driver.get_cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    screenshot(driver, tmp_path, "logged-in")


@browser
def test_clock_times_on_the_page_are_the_stores_whatever_the_device_zone(page, console, publisher):
    from selenium.webdriver.common.by import By

    # A live box stamps events in UTC; the store is in Asia/Shanghai; the browser here runs in UTC.
    earlier = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)
    arrival = ArrivalAlert("m-43", "Zhou Min", None, "visit-456",
                           {"appointment_id": "a-2", "scheduled_at": earlier.isoformat(), "channel": "phone",
                            "advisor": "Chen"}, {}, store_id=STORE, ts=earlier)
    publisher.send(arrival)
    card = wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, f'.card.arrival[data-event-id="{arrival.event_id}"]'),
                2.0, "the arrival card")[0]
    store_clock = earlier.astimezone(SH).strftime("%H:%M")
    assert card.find_element(By.CLASS_NAME, "ago").text == f"arrived at {store_clock}"
    assert card.find_element(By.CLASS_NAME, "appointment").text.split()[1] == store_clock
    assert store_clock != earlier.strftime("%H:%M")


@browser
def test_an_arrival_pops_up_and_a_guide_takes_it(page, console, broker, publisher, tmp_path):
    from selenium.webdriver.common.by import By

    now = datetime.now(SH)
    arrival = ArrivalAlert("m-42", "Li Wei", "gold", "visit-123",
                           {"appointment_id": "a-1", "scheduled_at": now.replace(hour=14, minute=30).isoformat(),
                            "channel": "wechat", "advisor": "Chen"},
                           {"last_purchase": "2026-10-02 watch", "open_repairs": 1, "tags": ["vip"]},
                           store_id=STORE, ts=now - timedelta(minutes=3))
    acks = Subscriber(broker.port, events.topic("footfall", STORE, events.ALERT_ACK))
    try:
        sent = time.time()
        publisher.send(arrival)
        selector = f'.card.arrival[data-event-id="{arrival.event_id}"]'
        card = wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, selector), 2.0, "the arrival card")[0]
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
        publisher.send(no_show)
        ns = wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, f'.card.no-show[data-event-id="{no_show.event_id}"]'),
                  2.0, "the no-show card")[0]
        # Not enrolled on the box: no name, no phone to call; the member id and a follow-up.
        assert ns.find_element(By.CLASS_NAME, "name").text == "m-77"
        assert "follow up" in ns.find_element(By.CLASS_NAME, "call").text
        cards = page.find_elements(By.CSS_SELECTOR, "#cards .card")
        assert cards[0].get_attribute("data-event-id") == no_show.event_id  # newest first

        button = card.find_element(By.CLASS_NAME, "take")
        button.click()
        got = acks.wait_for(lambda ms: ms, 3, "the ack")[0].payload
        assert (got["visit_event_id"], got["guide"], got["store_id"]) == ("visit-123", "Wang Fang", STORE)
        assert got["event_id"] and got["ts"].endswith("+08:00")
        wait(page, lambda d: not button.is_enabled(), 2, "the disabled button")
        assert card.find_element(By.CLASS_NAME, "taken-by").text == "Taken by Wang Fang"
        screenshot(page, tmp_path, "arrival")
    finally:
        acks.close()



@browser
def test_an_erased_members_cards_leave_open_pages_at_once_and_reopened_pages_never_show_them(
        page, console, publisher, tmp_path):
    from selenium.webdriver.common.by import By

    now = datetime.now(SH)
    erased = ArrivalAlert("m-erased", "Zhao Min", "gold", "visit-erased", None, {"tags": ["vip"]},
                          store_id=STORE, ts=now)
    no_show = NoShowAlert("a-erased", "m-erased", now - timedelta(minutes=40), 30, store_id=STORE, ts=now)
    kept = ArrivalAlert("m-kept", "Sun Li", "silver", "visit-kept", None, {}, store_id=STORE, ts=now)
    for alert in (erased, no_show, kept):
        publisher.send(alert)
    cards = lambda d, member: d.find_elements(By.CSS_SELECTOR, f'.card[data-member-id="{member}"]')  # noqa: E731
    wait(page, lambda d: len(cards(d, "m-erased")) == 2 and cards(d, "m-kept"), 2.0, "the three cards")

    sent = time.monotonic()
    publisher.send(events.MemberDeleted(member_id="m-erased", store_id=STORE, ts=now))
    wait(page, lambda d: not cards(d, "m-erased"), 2.0, "the erased member's cards to leave the open page")
    print(f"\nerased member's cards gone {(time.monotonic() - sent) * 1000:.0f} ms after members/deleted")
    assert "Zhao Min" not in page.page_source and "m-erased" not in page.page_source
    assert cards(page, "m-kept")

    page.refresh()
    wait(page, lambda d: cards(d, "m-kept"), 5.0, "the reopened page with its replay")
    assert "Zhao Min" not in page.page_source and "m-erased" not in page.page_source
    screenshot(page, tmp_path, "erased")

@browser
def test_todays_counts_are_drawn_as_24_bars_with_totals(page, publisher, tmp_path):
    from selenium.webdriver.common.by import By

    by_hour = [0] * 24
    by_hour[10:14] = [3, 8, 5, 1]
    counts = Counts(date(2026, 11, 23), 17, 4, 2, by_hour, store_id=STORE, ts=datetime.now(SH))
    publisher.send(counts)

    def bars(d):
        found = d.find_elements(By.CSS_SELECTOR, "#chart rect.bar")
        return found if [int(b.get_attribute("data-visits")) for b in found] == by_hour else None

    found = wait(page, bars, 3, "24 bars with the published counts")
    assert len(found) == 24
    heights = [float(b.get_attribute("data-height")) for b in found]
    assert [int(b.get_attribute("data-hour")) for b in found] == list(range(24))
    assert max(heights) == heights[11] and heights[0] == 0
    for h, v in zip(heights, by_hour):
        assert h == pytest.approx(heights[11] * v / 8, abs=0.1)
    labels = {int(t.get_attribute("data-hour")): t.text
              for t in page.find_elements(By.CSS_SELECTOR, "#chart text.count")}
    assert labels == {10: "3", 11: "8", 12: "5", 13: "1"}
    assert [page.find_element(By.ID, i).text for i in ("total-visits", "total-reentries", "total-members")] == \
        ["17", "4", "2"]
    screenshot(page, tmp_path, "counts")


@browser
def test_a_phone_wide_screen_shows_the_card_without_horizontal_scrolling(page, publisher, tmp_path):
    from selenium.webdriver.common.by import By

    arrival = ArrivalAlert("m-5", "Ouyang Mingyue-Longname", "platinum", "visit-360", None,
                           {"last_purchase": "a very long description of a purchase without spaces" * 2},
                           store_id=STORE, ts=datetime.now(SH))
    page.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                         {"width": 360, "height": 780, "deviceScaleFactor": 1, "mobile": True})
    try:
        page.refresh()
        publisher.send(arrival)
        card = wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, f'[data-event-id="{arrival.event_id}"]'),
                    3, "the card at 360 px")[0]
        assert page.execute_script("return window.innerWidth") == 360
        assert page.execute_script("return document.documentElement.scrollWidth") <= 360
        rect = page.execute_script("return arguments[0].getBoundingClientRect().toJSON()", card)
        assert rect["left"] >= 0 and rect["right"] <= 360
        assert card.find_element(By.CLASS_NAME, "take").is_displayed()
        screenshot(page, tmp_path, "phone")
    finally:
        page.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@browser
def test_the_banner_shows_when_the_box_or_the_broker_is_offline(driver, tmp_path):
    from selenium.webdriver.common.by import By

    b = Broker(tmp_path / "broker").start()
    c = _start_console(b)
    p = Publisher(b.port)
    try:
        driver.delete_all_cookies()
        login(driver, c.url, "Wang Fang", PASSWORD)
        wait(driver, lambda d: d.find_element(By.ID, "who").text == "Wang Fang", what="the page")
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
