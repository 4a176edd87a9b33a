"""The guide console's cards in headless Chromium against a real Mosquitto: one card per arrival
whatever the order of a member's two alerts, a member's second visit on a card of its own, the
no-show card naming the member with what the CRM holds, and every value in the page's language."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from support.broker import Broker
from support.browser import open_logged_in, screenshot, wait
from support.console import PASSWORD, SH, STORE, Publisher, browser, cards_of, lines, start_console

from footfall.sync.events import AppointmentAlert, ArrivalAlert, NoShowAlert, Status


def _by(css: str):
    from selenium.webdriver.common.by import By

    return lambda d: d.find_elements(By.CSS_SELECTOR, css)


def visit_alerts(member: str, name: str, visit: str, at: datetime, appointment: str, minutes_early: int,
                 channel: str = "wechat") -> tuple[AppointmentAlert, ArrivalAlert]:
    """The two alerts one entry of a booked member raises: both carry the entry's time as `ts`."""
    scheduled = at + timedelta(minutes=minutes_early)
    booked = AppointmentAlert(appointment, member, scheduled, channel, "Chen", minutes_early, store_id=STORE, ts=at)
    arrival = ArrivalAlert(member, name, "gold", visit,
                           {"appointment_id": appointment, "scheduled_at": scheduled.isoformat(), "channel": channel,
                            "advisor": "Chen"}, {}, store_id=STORE, ts=at)
    return booked, arrival


def one_card_with(driver, member: str, appointment: str):
    """Wait for the member's single arrival card holding the appointment's line; fail on a second card."""
    def ready(d):
        found = cards_of(d, member)
        return found if len(found) == 1 and appointment in lines(found[0]) else None

    (card,) = wait(driver, ready, 3.0, f"one card of {member} with {appointment}")
    return card


@browser
@pytest.mark.parametrize("appointment_first", [True, False], ids=["appointment-first", "arrival-first"])
def test_a_booked_arrival_is_one_card_whichever_alert_comes_first(console_page, console_publisher, appointment_first, tmp_path):
    member = f"m-order-{appointment_first}"
    booked, arrival = visit_alerts(member, "Li Wei", f"visit-{member}", datetime.now(SH), f"a-{member}", 5)
    for alert in (booked, arrival) if appointment_first else (arrival, booked):
        console_publisher.send(alert)
    card = one_card_with(console_page, member, booked.appointment_id)
    assert "arrival" in card.get_attribute("class").split()
    assert card.get_attribute("data-visit-event-id") == arrival.visit_event_id
    assert card.find_element("css selector", ".name").text == "Li Wei"
    assert lines(card)[booked.appointment_id].endswith("— 5 min early")
    assert not _by(".card.appointment-card")(console_page), "no stand-in card is left"
    console_page.refresh()   # the replay sends the alerts in the order they came: the same single card
    card = one_card_with(console_page, member, booked.appointment_id)
    assert card.find_element("css selector", ".name").text == "Li Wei"
    screenshot(console_page, tmp_path, f"one-card-{'appointment' if appointment_first else 'arrival'}-first")


@browser
def test_a_members_second_visit_gets_a_card_of_its_own_and_never_joins_the_first(console_page, console_publisher, tmp_path):
    member = "m-twice"
    now = datetime.now(SH).replace(microsecond=0)
    first = visit_alerts(member, "Zhou Min", "visit-morning", now - timedelta(hours=4), "a-morning", 10)
    # Booked after the first visit, for the afternoon: the second entry raises its appointment alert,
    # sent first, while the first visit's card is on the page.
    second = visit_alerts(member, "Zhou Min", "visit-afternoon", now, "a-afternoon", -3, channel="phone")
    for alert in (*first, *second):
        console_publisher.send(alert)

    def two_cards(d):
        found = cards_of(d, member)
        return found if len(found) == 2 and all(lines(c) for c in found) else None

    def check(driver) -> None:
        newest, oldest = wait(driver, two_cards, 3.0, "the member's two visit cards")
        assert newest.get_attribute("data-visit-event-id") == "visit-afternoon"
        assert oldest.get_attribute("data-visit-event-id") == "visit-morning"
        assert list(lines(newest)) == ["a-afternoon"] and list(lines(oldest)) == ["a-morning"]
        assert "3 min late" in lines(newest)["a-afternoon"] and "Phone" in lines(newest)["a-afternoon"]
        assert not _by(".card.appointment-card")(driver)

    check(console_page)
    console_page.refresh()
    check(console_page)
    screenshot(console_page, tmp_path, "second-visit")


@browser
def test_an_appointment_alert_alone_stands_on_its_own_card_until_its_arrival_comes(console_page, console_publisher):
    member = "m-late-arrival-alert"
    booked, arrival = visit_alerts(member, "Sun Li", "visit-late", datetime.now(SH), "a-late", 0)
    console_publisher.send(booked)
    (stand_in,) = wait(console_page, _by(f'.card.appointment-card[data-member-id="{member}"]'), 3.0, "the stand-in card")
    assert "on time" in lines(stand_in)["a-late"]
    console_publisher.send(arrival)
    card = one_card_with(console_page, member, "a-late")
    assert "arrival" in card.get_attribute("class").split()


@browser
def test_a_no_show_card_names_the_member_and_shows_what_the_crm_holds(console_page, console_publisher, tmp_path):
    from selenium.webdriver.common.by import By

    now = datetime.now(SH)
    known = NoShowAlert("a-missed", "m-missed", now - timedelta(minutes=40), 30, "wechat", "Chen", "Wu Fang", "gold",
                        {"phone": "+86 138-0013-8000", "last_purchase": "2026-10-02 watch",
                         "preferred_contact": "evenings", "vip": True}, store_id=STORE, ts=now)
    unknown = NoShowAlert("a-stranger", "m-not-enrolled", now - timedelta(minutes=35), 30, store_id=STORE, ts=now)
    console_publisher.send(known)
    console_publisher.send(unknown)
    card = wait(console_page, _by(f'.card.no-show[data-event-id="{known.event_id}"]'), 3.0, "the no-show card")[0]
    assert card.find_element(By.CLASS_NAME, "name").text == "Wu Fang"
    assert card.find_element(By.CLASS_NAME, "tier").text == "Gold"
    assert card.find_element(By.CSS_SELECTOR, ".member .value").text == "m-missed"
    scheduled = (now - timedelta(minutes=40)).strftime("%H:%M")
    assert card.find_element(By.CSS_SELECTOR, ".scheduled .value").text == f"{scheduled} · WeChat · Chen"
    assert card.find_element(By.CSS_SELECTOR, ".last-purchase .value").text == "2026-10-02 watch"
    extra = {p.get_attribute("data-key"): p.find_element(By.CLASS_NAME, "value").text
             for p in card.find_elements(By.CSS_SELECTOR, ".profile-extra")}
    assert extra == {"preferred_contact": "evenings", "vip": "yes"}
    call = card.find_element(By.CLASS_NAME, "call")
    assert call.text.startswith("Please call the member")
    assert call.find_element(By.TAG_NAME, "a").get_attribute("href") == "tel:+8613800138000"

    # No name, no phone from the CRM: the member id, and no "call" without a number to call.
    bare = wait(console_page, _by(f'.card.no-show[data-event-id="{unknown.event_id}"]'), 3.0, "the second no-show")[0]
    assert bare.find_element(By.CLASS_NAME, "name").text == "m-not-enrolled"
    assert not bare.find_elements(By.CSS_SELECTOR, ".phone, .tier, a")
    assert "call" not in bare.find_element(By.CLASS_NAME, "call").text.lower()
    screenshot(console_page, tmp_path, "no-show")


@browser
def test_every_value_on_a_chinese_page_is_in_chinese(driver, tmp_path):
    from selenium.webdriver.common.by import By

    b = Broker(tmp_path / "broker").start()
    c = start_console(b, language="zh")
    p = Publisher(b.port)
    try:
        open_logged_in(driver, c.url, "王芳", PASSWORD)
        now = datetime.now(SH)
        booked, arrival = visit_alerts("m-zh", "李伟", "visit-zh", now, "a-zh", 5, channel="mini_program")
        odd = ArrivalAlert("m-odd", "赵敏", "Founders Circle", "visit-odd", None, {}, store_id=STORE, ts=now)
        missed = NoShowAlert("a-zh-missed", "m-zh-missed", now - timedelta(minutes=40), 30, "phone", "陈", "吴芳",
                             "platinum", {"open_repairs": 2}, store_id=STORE, ts=now)
        for alert in (booked, arrival, odd, missed):
            p.send(alert)
        p.send(Status("online", "0.1.0", {"door-1": "streaming", "door-2": "reconnecting"}, store_id=STORE, ts=now))
        card = one_card_with(driver, "m-zh", "a-zh")
        assert card.find_element(By.CLASS_NAME, "tier").text == "金卡"
        assert "小程序" in card.find_element(By.CSS_SELECTOR, ".appointment .value").text
        assert lines(card)["a-zh"].endswith("提前 5 分钟") and "小程序" in lines(card)["a-zh"]
        assert card.find_element(By.CLASS_NAME, "take").text == "我来接待"
        ns = wait(driver, _by(f'.card.no-show[data-event-id="{missed.event_id}"]'), 3.0, "the no-show")[0]
        assert ns.find_element(By.CLASS_NAME, "tier").text == "铂金卡"
        assert "电话" in ns.find_element(By.CSS_SELECTOR, ".scheduled .value").text
        assert ns.find_element(By.CLASS_NAME, "kind").text == "预约未到"
        (health,) = wait(driver, _by('#health [data-problem="camera"]'), 3.0, "the camera line")
        assert "正在重连" in health.text and "door-2" in health.text
        # A tier the page does not know is shown as the CRM sent it, never dropped.
        odd_card = wait(driver, _by('.card[data-member-id="m-odd"]'), 3.0, "the other card")[0]
        assert odd_card.find_element(By.CLASS_NAME, "tier").text == "Founders Circle"
        text = driver.find_element(By.ID, "cards").text + driver.find_element(By.ID, "health").text
        for english in ("gold", "platinum", "mini_program", "wechat", "phone", "reconnecting", "min early",
                        "No-show", "Taking care"):
            assert english.lower() not in text.lower(), english
        screenshot(driver, tmp_path, "zh")
    finally:
        p.close()
        c.stop()
        b.stop()
