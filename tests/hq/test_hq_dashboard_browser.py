"""The HQ dashboard in headless Chromium over a real PostgreSQL, fed through the collector's own
checks and writer and reconciliation's own record: every view shows the seeded figures, an hour
adopted from a box's own counts is marked, every bar has its day or hour under it, and number
columns line up under their headers; a screenshot of each view is written to the test's
temporary directory."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support.browser import (
    MISSING,
    cells,
    chromium_paths,
    login,
    open_logged_in,
    screenshot,
    start_chromium,
    wait,
)
from support.dashboard import PASSWORD, dashboard_config

from footfall.hq import dashboard as dash
from footfall.hq.collector import Zones
from footfall.hq.ingest import Row, parse
from footfall.hq.reconcile import Result, record
from footfall.hq.writer import write_batch
from footfall.tooling.local_postgres import LocalPostgres

DAY, PREV = "2026-11-23", "2026-11-22"
RANGE = f"/?from=2026-11-17&to={DAY}"
MARKUP = '<img src="x" onerror="window.pwned = 1">'

pytestmark = pytest.mark.skipif(chromium_paths() is None, reason=MISSING)


# -- a chain of three stores ------------------------------------------------------------------

def _message(store: str, topic_name: str, /, **body) -> tuple[str, bytes]:
    body.setdefault("event_id", str(uuid.uuid4()))
    body.setdefault("store_id", store)
    return f"footfall/{store}/{topic_name}", json.dumps(body).encode()


def _visit(store: str, hhmm: str, *, day: str = DAY, kind: str = "visit", member: str | None = None,
           identified: bool = True) -> tuple[str, bytes]:
    ts = f"{day}T{hhmm}:00.000+08:00"
    return _message(store, "visits", ts=ts, kind=kind, visitor_id="v-" + uuid.uuid4().hex[:8], member_id=member,
                    role="member" if member else "visitor", camera_id="door-1", first_seen_ts=ts,
                    identified=identified)


def _at(hhmm: str, day: str = DAY) -> str:
    return f"{day}T{hhmm}.000+08:00"


def chain_messages() -> list[tuple[str, bytes]]:
    """sh-001: 10 visits (2 members, 1 unidentified) and 1 re-entry today, 6 visits yesterday;
    sh-002: 4 visits (1 member), 12 events in its outbox and 2 dead letters; bj-003: 1 visit, then
    offline. Appointments by channel, two no-shows, arrival alerts answered after 10 s, 30 s, never
    (sh-001) and 125 s (sh-002)."""
    m = [_visit("sh-001", "10:05") for _ in range(3)]
    m += [_visit("sh-001", "11:10") for _ in range(3)]
    m += [_visit("sh-001", "11:20", member="m-1"), _visit("sh-001", "11:40", member="m-2")]
    m += [_visit("sh-001", "14:00"), _visit("sh-001", "14:30", identified=False),
          _visit("sh-001", "14:50", kind="reentry")]
    m += [_visit("sh-001", "18:00", day=PREV) for _ in range(6)]
    m += [_visit("sh-002", "15:00") for _ in range(3)] + [_visit("sh-002", "15:45", member="m-9")]
    m += [_visit("bj-003", "09:30")]
    m += [_message("sh-001", "status", ts=_at("09:00:00"), state="online", version="0.1.0",
                   cameras={"door-1": "streaming"}, storage="ok", outbox_backlog=0, dead_letters=0),
          _message("sh-002", "status", ts=_at("09:00:00"), state="online", version="0.1.0",
                   cameras={"door-1": "streaming", "door-2": "reconnecting"}, storage="ok", outbox_backlog=12,
                   dead_letters=2),
          _message("bj-003", "status", ts=_at("09:40:00"), state="offline", version="0.1.0",
                   cameras={}, storage="ok")]
    for store, appointment, channel, hhmm in (("sh-001", "a1", "wechat", "11:00"), ("sh-001", "a2", "wechat", "14:00"),
                                              ("sh-001", "a4", "wechat", "16:00"), ("sh-002", "a3", "phone", "10:00"),
                                              ("sh-002", "a5", "mini_program", "17:00"),
                                              ("sh-002", "a6", "mini_program", "18:00")):
        m.append((f"footfall/{store}/appointments/upsert", json.dumps(
            {"appointment_id": appointment, "member_id": "m-" + appointment, "scheduled_at": _at(hhmm + ":00"),
             "channel": channel, "advisor": "Li"}).encode()))
    m.append(("footfall/sh-002/appointments/delete", b'{"appointment_id": "a6"}'))  # the CRM cancels it
    for store, appointment, channel, hhmm in (("sh-001", "a1", "wechat", "10:58"), ("sh-001", "a4", "wechat", "15:50")):
        m.append(_message(store, "alerts/appointment", ts=_at(hhmm + ":00"), appointment_id=appointment,
                          member_id="m-" + appointment, scheduled_at=_at(hhmm + ":00"), channel=channel,
                          advisor="Li", minutes_early=2))
    m += [_message("sh-001", "alerts/no_show", ts=_at("14:30:00"), appointment_id="a2", member_id="m-a2",
                   scheduled_at=_at("14:00:00"), grace_minutes=30),
          _message("sh-002", "alerts/no_show", ts=_at("10:30:00"), appointment_id="a3", member_id="m-a3",
                   scheduled_at=_at("10:00:00"), grace_minutes=30),
          # no booking channel known, and an id that is markup: it must show as text
          _message("bj-003", "alerts/no_show", ts=_at("09:20:00"), appointment_id="a7", member_id=MARKUP,
                   scheduled_at=_at("09:00:00"), grace_minutes=15)]
    for store, visit, hhmm, answered in (("sh-001", "v1", "11:00:00", "11:00:10"), ("sh-001", "v2", "12:00:00", "12:00:30"),
                                         ("sh-001", "v3", "13:00:00", None), ("sh-002", "v4", "15:00:00", "15:02:05")):
        m.append(_message(store, "alerts/arrival", ts=_at(hhmm), member_id="m-1", name="x", tier="gold",
                          visit_event_id=visit, appointment=None))
        if answered:
            m.append(_message(store, "alerts/ack", ts=_at(answered), visit_event_id=visit, guide="g1"))
    return m


def seed(url: str) -> None:
    zones = Zones({s: "Asia/Shanghai" for s in ("sh-001", "sh-002", "bj-003")}, {})
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    parsed = [parse(t, p, prefix="footfall", now=now, tz_for=zones, max_bytes=64 * 1024,
                    max_future=timedelta(hours=2)) for t, p in chain_messages()]
    rows = [p for p in parsed if isinstance(p, Row)]
    assert len(rows) == len(parsed), [p for p in parsed if not isinstance(p, Row)]
    with psycopg.connect(url) as conn:
        write_batch(conn, rows, [], {r.store_id: zones.names[r.store_id] for r in rows})
        # bj-003 went quiet an hour ago; reconciliation found sh-001's 11h off by one and bj-003 mute.
        conn.execute("UPDATE stores SET last_seen = now() - interval '1 hour' WHERE store_id = 'bj-003'")
        check = conn.execute("INSERT INTO reconcile_checks (store_id, store_day, checked_at, answered, differences) "
                             "VALUES ('sh-001', %s, %s, true, 1) RETURNING id",
                             (DAY, datetime(2026, 11, 23, 5, 0, tzinfo=UTC))).fetchone()
        assert check is not None
        conn.execute("INSERT INTO reconcile_differences VALUES (%s, 11, 5, 6, 0, 0)", (check[0],))
        conn.execute("INSERT INTO reconcile_checks (store_id, store_day, checked_at, answered, differences) "
                     "VALUES ('sh-002', %s, %s, true, 0), ('bj-003', %s, %s, false, 0)",
                     (DAY, datetime(2026, 11, 23, 5, 0, tzinfo=UTC), DAY, datetime(2026, 11, 23, 5, 0, tzinfo=UTC)))
        # A later check found sh-002's box counting 6 visits (1 member) at 15h where HQ holds 4, and
        # adopted the box's figures (footfall hq reconcile --adopt).
        record(conn, [Result("sh-002", date(2026, 11, 23), True, None, [
            {"hour": 15, "hq_visits": 4, "store_visits": 6, "hq_reentries": 0, "store_reentries": 0, "adopted": True}],
            {15: (6, 0, 1, 0)})])


@pytest.fixture(scope="module")
def chain_db(postgres: LocalPostgres) -> Iterator[str]:
    with postgres.database() as url:
        seed(url)
        yield url


def _dashboard(url: str, language: str) -> tuple[dash.Dashboard, Any]:
    config = dashboard_config(language=language)
    pool = dash.open_pool(url, None, config)
    return dash.Dashboard(config, dash.PostgresReadSide(pool), silent_after=timedelta(minutes=10)).start(), pool


@pytest.fixture(scope="module")
def english(chain_db):
    d, pool = _dashboard(chain_db, "en")
    yield d
    d.stop()
    pool.close()


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    """Headless Chromium wide enough for the dashboard's tables, asking for English."""
    d = start_chromium(tmp_path_factory.mktemp("chrome-profile"), "--window-size=1200,900", "--lang=en-US")
    yield d
    d.quit()


def open_view(driver, base: str, view: str, lang: str = "") -> None:
    """Go to a view of the seeded week and wait until its data is in."""
    query = RANGE + (f"&lang={lang}" if lang else "")
    # Only the hash may change (no new page): forget the marks of the earlier loads first.
    driver.execute_script("for (const s of document.querySelectorAll('section')) delete s.dataset.loaded")
    driver.get(f"{base}{query}#{view}")
    wait(driver, lambda d: d.execute_script(
        f"const s = document.querySelector('section[data-view=\"{view}\"]');"
        f"return s && !s.hidden && s.dataset.loaded === '2026-11-17/{DAY}'"), 10, f"the {view} view")


def labels_under_bars(driver, chart: str) -> list[str]:
    """The labels under a chart's axis, in order, each checked to sit under its own bar's middle."""
    found = driver.execute_script(f"""
        const box = document.querySelector('{chart} svg');
        const axis = Number(box.querySelector('line.axis').getAttribute('y1'));
        return [...box.querySelectorAll('text.tick')].map((t) => {{
          const bar = box.querySelector(`rect.bar[data-key="${{t.dataset.key}}"]`);
          const middle = Number(bar.getAttribute('x')) + Number(bar.getAttribute('width')) / 2;
          return [t.textContent, Number(t.getAttribute('x')) - middle, Number(t.getAttribute('y')) - axis];
        }});""")
    assert all(abs(dx) < 0.05 and 0 < dy < 20 for _, dx, dy in found), found
    return [text for text, _, _ in found]


def overlapping_labels(driver, chart: str) -> list[str]:
    """Labels under a chart's axis whose drawn text runs into the next one."""
    return driver.execute_script(f"""
        const ticks = [...document.querySelectorAll('{chart} svg text.tick')].map((t) => [t.textContent, t.getBoundingClientRect()]);
        return ticks.slice(1).filter(([, r], i) => r.left < ticks[i][1].right).map(([text]) => text);""")


def misaligned_numbers(driver, table: str) -> dict[str, float]:
    """For every number column of a table: how far (px) the end of its header's text is from the end
    of the first row's text, and for no column the header left-aligned over right-aligned numbers."""
    return driver.execute_script(f"""
        const table = document.querySelector('{table}');
        const row = table.querySelector('tbody tr:not(.empty):not(.no-answer)');
        const end = (node) => {{ const r = document.createRange(); r.selectNodeContents(node);
                                 return r.getBoundingClientRect().right; }};
        const out = {{}};
        [...table.querySelectorAll('thead th')].forEach((th, i) => {{
          if (getComputedStyle(row.children[i]).textAlign === 'right') out[th.textContent] = end(th) - end(row.children[i]);
        }});
        return out;""")


# -- the tests --------------------------------------------------------------------------------

def test_the_dashboard_requires_a_login(driver, english, tmp_path):
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(english.url + RANGE)
    assert driver.current_url.endswith("/login")
    login(driver, english.url, "Wang Fang", "a guess")
    assert driver.find_element(By.ID, "login-error").text == "Wrong name or password."
    assert not driver.get_cookies()
    screenshot(driver, tmp_path, "hq-login-refused")
    open_logged_in(driver, english.url, "Wang Fang", PASSWORD, 10)
    (cookie,) = driver.get_cookies()
    assert cookie["name"] == dash.COOKIE and cookie["httpOnly"] and cookie["sameSite"] == "Strict"


def test_each_view_shows_the_figures_in_postgresql(driver, english, tmp_path):
    from selenium.webdriver.common.by import By

    open_logged_in(driver, english.url, "Wang Fang", PASSWORD, 10)
    shots: list[Path] = []

    open_view(driver, english.url, "chain")
    totals = {e.get_attribute("data-total"): e.find_element(By.TAG_NAME, "dd").text
              for e in driver.find_elements(By.CSS_SELECTOR, "#chain-totals .total")}
    assert totals == {"visits": "23", "reentries": "1", "member_visits": "3", "unidentified": "1"}
    bars = {b.get_attribute("data-key"): int(b.get_attribute("data-visits"))
            for b in driver.find_elements(By.CSS_SELECTOR, "#chain-chart rect.bar:not(.inner)")}
    assert len(bars) == 7 and bars[PREV] == 6 and bars[DAY] == 17 and sum(bars.values()) == 23
    heights = {b.get_attribute("data-key"): float(b.get_attribute("data-height"))
               for b in driver.find_elements(By.CSS_SELECTOR, "#chain-chart rect.bar:not(.inner)")}
    assert heights[PREV] == pytest.approx(heights[DAY] * 6 / 17, abs=0.05)
    assert [b.get_attribute("data-key") for b in driver.find_elements(By.CSS_SELECTOR, "#chain-chart rect.adopted")] == [DAY]
    assert cells(driver, "#chain-table tbody tr")[0] == [DAY, "17", "1", "3", "1"]
    marked = driver.find_element(By.CSS_SELECTOR, f'#chain-table tr[data-day="{DAY}"] td.visits')
    assert "adopted" in marked.get_attribute("class") and marked.get_attribute("data-adopted-hours") == "1"
    assert driver.find_element(By.ID, "chain-adopted").is_displayed()
    assert labels_under_bars(driver, "#chain-chart") == ["11-17", "11-18", "11-19", "11-20", "11-21", "11-22", "11-23"]
    shots.append(screenshot(driver, tmp_path, "hq-chain"))

    open_view(driver, english.url, "stores")
    rows = {r[0]: r for r in cells(driver, "#stores-table tbody tr")}
    # backlog and dead letters as the boxes' status reported them; bj-003's last word (its will) has neither
    assert rows["sh-001"][1:7] == ["10", "1", "2", "1", "0", "online"] and rows["sh-001"][8:] == ["0", "0", "1/1", "ok"]
    assert rows["sh-002"][1:7] == ["6", "0", "1", "0", "0", "online"] and rows["sh-002"][8:] == ["12", "2", "1/2", "ok"]
    assert rows["bj-003"][1] == "1" and rows["bj-003"][6] == "offline silent" and rows["bj-003"][8:] == ["—", "—", "—", "ok"]
    assert "warn" in driver.find_element(By.CSS_SELECTOR, 'tr[data-store="sh-002"] td.dead-letters').get_attribute("class")
    adopted = driver.find_element(By.CSS_SELECTOR, 'tr[data-store="sh-002"] td.visits')
    assert "adopted" in adopted.get_attribute("class") and "1 hour(s)" in adopted.get_attribute("title")
    assert driver.find_element(By.ID, "stores-adopted").is_displayed()
    assert driver.find_elements(By.CSS_SELECTOR, 'tr.is-silent[data-store="bj-003"]')
    shown = lambda: [r[0] for r in cells(driver, "#stores-table tbody tr")]  # noqa: E731
    driver.find_element(By.ID, "problems-only").click()           # silent and offline; a camera reconnecting
    assert shown() == ["bj-003", "sh-002"] and driver.find_element(By.ID, "stores-count").text == "2 / 3"
    driver.find_element(By.ID, "problems-only").click()
    driver.find_element(By.ID, "store-filter").send_keys("SH-")
    assert shown() == ["sh-001", "sh-002"]
    driver.find_element(By.ID, "store-filter").clear()
    driver.find_element(By.ID, "store-filter").send_keys(" ")     # clear() fires no input event; a blank does
    assert shown() == ["bj-003", "sh-001", "sh-002"]
    driver.find_element(By.CSS_SELECTOR, 'tr[data-store="sh-001"] .store-link').click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, '#hourly-svg[data-store="sh-001"]'), 5, "sh-001's hours")
    hours = [int(b.get_attribute("data-visits")) for b in driver.find_elements(By.CSS_SELECTOR, "#hourly-chart rect.bar")]
    assert hours == [0] * 10 + [3, 5, 0, 0, 2] + [0] * 9
    labels = {t.get_attribute("data-key"): t.text for t in driver.find_elements(By.CSS_SELECTOR, "#hourly-chart text.count")}
    assert labels == {"10": "3", "11": "5", "14": "2"}
    assert labels_under_bars(driver, "#hourly-chart") == [f"{h:02d}" for h in range(24)]
    assert not driver.find_element(By.ID, "hourly-legend").is_displayed()
    driver.find_element(By.CSS_SELECTOR, 'tr[data-store="sh-002"] .store-link').click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, '#hourly-svg[data-store="sh-002"]'), 5, "sh-002's hours")
    adopted_bars = driver.find_elements(By.CSS_SELECTOR, "#hourly-chart rect.bar.adopted")
    assert [(b.get_attribute("data-key"), b.get_attribute("data-visits")) for b in adopted_bars] == [("15", "6")]
    assert driver.find_element(By.ID, "hourly-legend").is_displayed()
    shots.append(screenshot(driver, tmp_path, "hq-stores-hourly"))

    open_view(driver, english.url, "conversion")
    assert cells(driver, "#conversion-table tbody tr") == [
        ["WeChat", "3", "2", "1", "0", "66.7%"], ["Mini-program", "1", "0", "0", "1", "0.0%"],
        ["Phone", "1", "0", "1", "0", "0.0%"], ["(not given)", "1", "0", "1", "0", "0.0%"]]
    assert cells(driver, "#conversion-table tfoot tr") == [["Total", "6", "2", "3", "1", "33.3%"]]
    shots.append(screenshot(driver, tmp_path, "hq-conversion"))

    open_view(driver, english.url, "no-shows")
    assert cells(driver, "#no-shows-table tbody tr") == [
        [f"{DAY} 14:00", "sh-001", "m-a2", "a2", "WeChat", "30 min"],
        [f"{DAY} 10:00", "sh-002", "m-a3", "a3", "Phone", "30 min"],
        [f"{DAY} 09:00", "bj-003", MARKUP, "a7", "(not given)", "15 min"]]
    assert not driver.find_elements(By.CSS_SELECTOR, "main img")
    assert driver.execute_script("return window.pwned") is None
    shots.append(screenshot(driver, tmp_path, "hq-no-shows"))

    open_view(driver, english.url, "response")
    assert cells(driver, "#response-table tbody tr") == [
        ["sh-001", "3", "2", "20 s", "29 s"], ["sh-002", "1", "1", "2:05 min", "2:05 min"]]
    shots.append(screenshot(driver, tmp_path, "hq-response"))

    open_view(driver, english.url, "checks")
    checks = cells(driver, "#checks-table tbody tr")
    assert checks[:2] == [["bj-003", DAY, "did not answer", f"{DAY} 13:00"],
                          ["sh-001", DAY, "11:00", "5", "6", "-1", f"{DAY} 13:00"]]
    assert checks[2][:6] == ["sh-002", DAY, "15:00", "4", "6", "-2 adopted"] and len(checks) == 3
    shots.append(screenshot(driver, tmp_path, "hq-checks"))
    assert all(p.stat().st_size > 10_000 for p in shots)
    print("\nscreenshots:", *shots, sep="\n  ")


def test_number_columns_line_up_under_their_headers(driver, english):
    open_logged_in(driver, english.url, "Wang Fang", PASSWORD, 10)
    numbers = {"chain": ("#chain-table", {"Visits", "Re-entries", "Member visits", "Unidentified"}),
               "stores": ("#stores-table", {"Visits", "Re-entries", "Member visits", "Unidentified", "Exits",
                                            "Outbox backlog", "Dead letters", "Cameras streaming"}),
               "conversion": ("#conversion-table", {"Booked", "Arrived", "No-show", "Cancelled", "Conversion"}),
               "response": ("#response-table", {"Arrival alerts", "Answered", "p50", "p95"}),
               "checks": ("#checks-table", {"HQ", "Store", "Difference"})}
    for view, (table, columns) in numbers.items():
        open_view(driver, english.url, view)
        gaps = misaligned_numbers(driver, table)
        assert set(gaps) == columns, view
        assert all(abs(gap) < 1.5 for gap in gaps.values()), (view, gaps)


def test_chinese_labels_and_a_phone_wide_screen_without_horizontal_scrolling(driver, chain_db, tmp_path):
    from selenium.webdriver.common.by import By

    chinese, pool = _dashboard(chain_db, "zh")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 360, "height": 780, "deviceScaleFactor": 1, "mobile": True})
    try:
        driver.delete_all_cookies()
        driver.get(chinese.url + "/login")
        assert driver.find_element(By.ID, "login-submit").text == "登录"
        open_logged_in(driver, chinese.url, "Wang Fang", PASSWORD, 10)
        tabs = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "#tabs a")]
        assert tabs == ["全连锁", "门店", "预约转化", "未到店", "响应时间", "数据核对"]
        for view in ("chain", "stores", "conversion", "no-shows", "response", "checks"):
            open_view(driver, chinese.url, view)
            assert driver.execute_script("return window.innerWidth") == 360
            assert driver.execute_script("return document.documentElement.scrollWidth") <= 360, view
            if view == "stores":
                driver.find_element(By.CSS_SELECTOR, 'tr[data-store="sh-002"] .store-link').click()
                wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, '#hourly-svg[data-store="sh-002"]'), 5, "hours")
                assert driver.execute_script("return document.documentElement.scrollWidth") <= 360
                assert cells(driver, 'tr[data-store="bj-003"]')[0][6] == "离线 失联"
            screenshot(driver, tmp_path, f"hq-zh-360-{view}")
        assert [th.text for th in driver.find_elements(By.CSS_SELECTOR, "#checks-table th")][:3] == ["门店", "日期", "时段"]
        assert cells(driver, "#checks-table tr.no-answer")[0][2] == "门店未应答"
        open_view(driver, chinese.url, "conversion")
        assert cells(driver, "#conversion-table tbody tr")[0][0] == "微信"
        # Three weeks on a phone: not every day has room for its label, the last one (today) always does.
        driver.get(f"{chinese.url}/?from=2026-11-03&to={DAY}#chain")
        wait(driver, lambda d: d.execute_script("return document.querySelector('#view-chain').dataset.loaded")
             == f"2026-11-03/{DAY}", 10, "three weeks of the chain")
        labels = labels_under_bars(driver, "#chain-chart")
        assert labels[-1] == "11-23" and 5 <= len(labels) < 21, labels
        assert overlapping_labels(driver, "#chain-chart") == []
        screenshot(driver, tmp_path, "hq-zh-360-three-weeks")
        driver.find_element(By.ID, "lang-toggle").click()
        wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, '#tabs a[data-view="chain"]').text == "Chain", 5,
             "the English labels")
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        chinese.stop()
        pool.close()
