"""The guide console fed by a real store daemon: `footfall run` replays an entrance clip in which a
booked member walks in, while another booked member never comes. On the page in headless Chromium:
one card for the arrival with its appointment line (in whatever order the box sends the two
alerts), the no-show card with the absent member's name and the phone the CRM gave, the camera
whose clip ended flagged, the arrival card gone as soon as the CRM erases the member, and the
stopped box."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from support.broker import Broker, wait_until
from support.browser import MISSING, chromium_paths, open_logged_in, screenshot, wait
from support.console import PASSWORD, PASSWORD_HASH, cards_of, lines
from support.daemon import camera_table, enrol, store_config

from footfall.config.schema import load_config
from footfall.console import server as con
from footfall.dedup.gallery import Person
from footfall.sync.appointments import Appointment, AppointmentStore
from footfall.tooling.scenario import Appearance, Clip, SpriteBank, render_clip

pytestmark = pytest.mark.skipif(chromium_paths() is None, reason=MISSING)

SH = timezone(timedelta(hours=8))
START = datetime(2026, 11, 23, 10, 0, tzinfo=SH)
COMES, STAYS_AWAY = "deepface_p05", "bbt_raj"


def enrol_and_book(config_path: Path, analyzer, faces_dir: Path) -> None:
    enrol(config_path, analyzer, faces_dir, [
        (Person(COMES, "Ms Five", "member", tier="gold", consent=True, profile={"last_purchase": "watch"}), ["2.jpg"]),
        (Person(STAYS_AWAY, "Mr Raj", "member", tier="silver", consent=True,
                profile={"phone": "+86 138 0000 0001"}), ["2.jpg"])])
    config = load_config(config_path)
    appointments = AppointmentStore(Path(config.storage.dir) / "appointments.db", config.timezone)
    appointments.upsert(Appointment("a-comes", COMES, START + timedelta(minutes=5), "wechat", "Li"))
    appointments.upsert(Appointment("a-away", STAYS_AWAY, START - timedelta(minutes=40), "phone", "Wang"))
    appointments.close()


def crm_erases(port: int, member_id: str) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="test-crm", protocol=MQTTProtocolVersion.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish("footfall/sh-001/members/delete", json.dumps({"member_id": member_id}), qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_replayed_day_on_the_console_one_card_per_arrival_a_named_no_show_the_ended_camera_and_an_erasure(
        tmp_path, faces_dir, default_analyzer, driver):
    from selenium.webdriver.common.by import By

    bank = SpriteBank(faces_dir, default_analyzer)
    clip = render_clip(Clip("door-1", START, 8.0, (Appearance(COMES, "1.jpg", 1.0),), fps=10),
                       tmp_path / "door.avi", bank, seed=3)
    broker = Broker(tmp_path / "broker").start()
    config = store_config(tmp_path, broker, f'[console]\nlanguage = "en"\npassword_hash = "{PASSWORD_HASH}"\n',
                          camera_table("door-1", clip, start_time=START))
    enrol_and_book(config, default_analyzer, faces_dir)
    console = con.Console(load_config(config), listen="127.0.0.1:0").start()
    daemon: subprocess.Popen[bytes] | None = None
    log = open(tmp_path / "daemon.log", "wb")
    try:
        wait_until(lambda: console.broker_connected, 5, "the console's broker connection")
        open_logged_in(driver, console.url, "Wang Fang", PASSWORD)
        daemon = subprocess.Popen([sys.executable, "-m", "footfall", "run", "--config", str(config)],
                                  stdout=log, stderr=subprocess.STDOUT)

        def arrival(d):
            found = cards_of(d, COMES)
            return found if found and "a-comes" in lines(found[0]) else None

        (card,) = wait(driver, arrival, 120, "the member's arrival card with its appointment line")
        assert "arrival" in card.get_attribute("class").split()
        assert card.find_element(By.CLASS_NAME, "name").text == "Ms Five"
        assert card.find_element(By.CLASS_NAME, "tier").text == "Gold"
        assert lines(card)["a-comes"] == "10:05 · WeChat · Li — 5 min early"
        assert not driver.find_elements(By.CSS_SELECTOR, ".card.appointment-card"), "one card per arrival"

        (no_show,) = wait(driver, lambda d: cards_of(d, STAYS_AWAY), 30, "the no-show card")
        assert no_show.find_element(By.CLASS_NAME, "name").text == "Mr Raj"
        assert no_show.find_element(By.CLASS_NAME, "tier").text == "Silver"
        assert no_show.find_element(By.CSS_SELECTOR, ".scheduled .value").text == "09:20 · Phone · Wang"
        assert no_show.find_element(By.CSS_SELECTOR, ".call a").get_attribute("href") == "tel:+8613800000001"

        # The clip is over: the box is online and its only camera streams no more.
        wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, '#health [data-problem="no_camera"]'), 30,
             "the no-camera banner")
        camera = driver.find_element(By.CSS_SELECTOR, '#health [data-camera="door-1"]').text
        assert camera == "Camera door-1: stream ended; people passing it are not counted."
        screenshot(driver, tmp_path, "replayed-day")

        crm_erases(broker.port, COMES)
        wait(driver, lambda d: not cards_of(d, COMES), 30, "the erased member's card to go")
        assert "Ms Five" not in driver.page_source and cards_of(driver, STAYS_AWAY)

        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0
        wait(driver, lambda d: d.find_element(By.ID, "banner").get_attribute("data-reason") == "box_stopped", 10,
             "the stopped banner")
        assert not driver.find_element(By.ID, "health").is_displayed()
    except BaseException:
        log.flush()
        print((tmp_path / "daemon.log").read_text(errors="replace")[-4000:])
        print(driver.find_element(By.ID, "cards").get_attribute("outerHTML")[:4000])
        raise
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
            daemon.wait(10)
        log.close()
        console.stop()
        broker.stop()
