"""Reconciliation through the real path: a store daemon replays its day through Mosquitto (with a
broker outage in the middle), the collector ingests it into PostgreSQL, and HQ asks the store
for its own hourly counts over counts/get."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from support.broker import Broker, Subscriber, mosquitto_path, wait_until
from support.hq import query, scalar
from support.hq_collector import collecting, fixed_day_settings

from footfall.cli.main import main
from footfall.config.hq import parse_hq_config
from footfall.config.schema import load_config
from footfall.edge.daemon import Daemon
from footfall.hq import read
from footfall.hq.collector import connect_pool
from footfall.hq.reconcile import Reconciler, adoptable, compare, hour_ended, store_hours
from footfall.tooling.scenario import Appearance, Clip, SpriteBank, render_clip

pytestmark = pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed")

SH = timezone(timedelta(hours=8))
DAY = date(2026, 11, 23)


def test_compare_reports_the_hours_that_differ():
    assert compare({10: (3, 1), 11: (2, 0)}, {10: (3, 1), 11: (1, 0), 12: (0, 1)}) == [
        {"hour": 11, "hq_visits": 2, "store_visits": 1, "hq_reentries": 0, "store_reentries": 0},
        {"hour": 12, "hq_visits": 0, "store_visits": 0, "hq_reentries": 0, "store_reentries": 1}]
    assert compare({10: (1, 0)}, {10: (1, 0), 11: (0, 0)}) == []


def test_store_hours_sum_buckets_by_local_hour_of_the_day():
    buckets = [{"start": "2026-11-23T09:00:00.000+08:00", "visits": 2, "reentries": 0, "member_visits": 1,
                "unidentified": 1},
               {"start": "2026-11-23T02:00:00.000+00:00", "visits": 1, "reentries": 1, "member_visits": 0},
               {"start": "2026-11-24T00:00:00.000+08:00", "visits": 5, "reentries": 0, "member_visits": 0}]
    assert store_hours(buckets, DAY, SH) == {9: (2, 0, 1, 1), 10: (1, 1, 0, 0)}


def test_an_hour_is_adopted_only_where_the_box_counts_at_least_what_hq_holds():
    assert adoptable((5, 1), (6, 1, 2, 0)) and adoptable((0, 0), (3, 0, 0, 0))
    assert not adoptable((5, 1), (6, 0, 0, 0)), "HQ holds a re-entry the box does not: adopting would hide it"
    assert not adoptable((7, 0), (6, 0, 0, 0))


def test_only_an_hour_that_is_over_in_the_stores_zone_is_adopted():
    shanghai = ZoneInfo("Asia/Shanghai")
    now = datetime(2026, 12, 5, 7, 52, tzinfo=UTC)  # 15:52 in Shanghai
    assert hour_ended(date(2026, 12, 5), 14, shanghai, now)
    assert not hour_ended(date(2026, 12, 5), 15, shanghai, now), "the hour still running"
    assert hour_ended(date(2026, 12, 4), 23, shanghai, now)


@pytest.fixture(scope="module")
def store_day_clips(tmp_path_factory, faces_dir, default_analyzer) -> list[tuple[Path, datetime]]:
    """Two stretches of one store's day: the morning door and the afternoon door."""
    bank = SpriteBank(faces_dir, default_analyzer)
    out = tmp_path_factory.mktemp("hq-clips")
    morning = Clip("door-1", datetime(2026, 11, 23, 10, 0, tzinfo=SH), 30.0,
                   (Appearance("bbt_amy", "1.jpg", 1.0), Appearance("bbt_raj", "1.jpg", 8.0, lane=0.7),
                    Appearance("bbt_amy", "1.jpg", 20.0, lane=0.4)), fps=10)
    afternoon = Clip("door-2", datetime(2026, 11, 23, 15, 0, tzinfo=SH), 30.0,
                     (Appearance("deepface_p05", "1.jpg", 2.0), Appearance("bbt_raj", "1.jpg", 14.0, lane=0.3)),
                     fps=10)
    return [(render_clip(c, out / f"{c.camera_id}.avi", bank, seed=i), c.start_time)
            for i, c in enumerate((morning, afternoon))]


class Gate:
    """A TCP relay between the store and the broker that can hold the store off after an outage.

    Mosquitto 2.0 forgets the shared subscriptions of offline sessions when it restarts, so
    what a store publishes after a broker restart and before the collector is back has no
    subscriber (docs/hq.md). The gate lets the store reach the restarted broker only once the
    collector has resubscribed, the order a clustered broker keeps for you.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.open = threading.Event()
        self.open.set()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.url = f"mqtt://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            if not self.open.is_set():
                conn.close()
                continue
            try:
                up = socket.create_connection(("127.0.0.1", self.upstream), timeout=2)
            except OSError:
                conn.close()
                continue
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.server.close()


def store_config(tmp_path: Path, broker: Broker | Gate, cameras: list[tuple[Path, datetime]]) -> Path:
    path = tmp_path / "store.toml"
    tables = "".join(f'[[cameras]]\nid = "door-{i + 1}"\nsource = "{clip}"\nfps = 5\nstart_time = "{start.isoformat()}"\n'
                     for i, (clip, start) in enumerate(cameras))
    path.write_text(f'store_id = "sh-001"\ntimezone = "Asia/Shanghai"\n[dedup]\nsame_entry = "5s"\n'
                    f'[mqtt]\nurl = "{broker.url}"\n[storage]\ndir = "{tmp_path / "state"}"\n{tables}')
    return path


def test_a_day_replayed_across_a_broker_outage_reconciles_to_zero_differences(
        tmp_path, hq_db, store_day_clips, default_analyzer):
    broker = Broker(tmp_path / "mosquitto", extra_conf="max_queued_messages 1000000\n").start()
    hq = parse_hq_config({"database": {"url": hq_db}, "mqtt": {"url": broker.url, "username": None},
                          "collector": {"batch_interval": "0.05s", "client_id": "hq-reconcile-test",
                                        "max_past": "87840h"},  # the clips' fixed day stays inside the window
                          "reconcile": {"timeout": "5s"}, "timezones": {"sh-001": "Asia/Shanghai"}})
    hq_file = tmp_path / "hq.toml"
    hq_file.write_text(f'[database]\nurl = "{hq_db}"\n[mqtt]\nurl = "{broker.url}"\n'
                       f'[reconcile]\ntimeout = "5s"\n[timezones]\n"sh-001" = "Asia/Shanghai"\n')
    pool = connect_pool(hq)
    status = None
    try:
        with collecting(hq, connect_timeout=10) as collector:
            status = Subscriber(broker.port, "footfall/sh-001/status", persistent=True, client_id="status-watch")
            # The replay, with the broker stopped as soon as the first visit reached HQ.
            gate = Gate(broker.port)
            daemon = Daemon(load_config(store_config(tmp_path, gate, store_day_clips)), once=True,
                            analyzer=default_analyzer)
            result: list[int] = []
            replay = threading.Thread(target=lambda: result.append(daemon.run()), daemon=True)
            replay.start()
            wait_until(lambda: scalar(hq_db, "SELECT count(*) FROM visits") > 0, 60, "the first visit at HQ")
            gate.open.clear()
            broker.stop()
            time.sleep(2.0)
            broker.start()
            assert collector.wait_connected(10)
            time.sleep(0.3)  # the SUBACK
            gate.open.set()
            replay.join(180)
            assert result == [0], "the replay ran to its end"
            status.wait_for(lambda ms: any(m.payload.get("state") == "stopped" for m in ms), 30, "the stopped status")
            wait_until(lambda: scalar(hq_db, "SELECT state FROM store_status WHERE store_id = 'sh-001'") == "stopped",
                       30, "the store's last status at HQ")
            hq_visits = scalar(hq_db, "SELECT count(*) FROM visits WHERE kind = 'visit'")
            assert hq_visits >= 4, "both stretches of the day arrived"
            assert {h for (h,) in query(hq_db, "SELECT DISTINCT store_hour FROM visits")} == {10, 15}

            # The store comes back live (no cameras) and answers counts/get from its own records.
            live = Daemon(load_config(store_config(tmp_path, broker, [])), analyzer=default_analyzer)
            serving = threading.Thread(target=live.run, daemon=True)
            serving.start()
            try:
                wait_until(lambda: scalar(hq_db, "SELECT state FROM store_status WHERE store_id = 'sh-001'") == "online",
                           30, "the store online again")
                (result_day,) = Reconciler(hq, pool).run(stores=["sh-001"], days=[DAY])
                assert result_day.answered and result_day.differences == []
                with psycopg.connect(hq_db) as conn:
                    assert read.disagreements(conn, DAY, DAY) == []
                    assert read.store_hourly(conn, "sh-001", DAY)[10] + read.store_hourly(conn, "sh-001", DAY)[15] == hq_visits

                # The check can fail: HQ short of one visit at 15h, and a store that never answers.
                with psycopg.connect(hq_db) as conn:
                    conn.execute("UPDATE hourly SET visits = visits - 1 WHERE store_id = 'sh-001' AND store_hour = 15")
                code = main(["hq", "reconcile", "--config", str(hq_file), "--day", DAY.isoformat(), "--json"])
                assert code == 1
                with psycopg.connect(hq_db) as conn:
                    conn.execute("INSERT INTO stores (store_id, timezone, tz_source) VALUES ('sh-404', '+08:00', 'offset')")
                results = Reconciler(hq, pool).run(days=[DAY])
                by_store = {r.store_id: r for r in results}
                assert [d["hour"] for d in by_store["sh-001"].differences] == [15]
                assert not by_store["sh-404"].answered and "no answer" in (by_store["sh-404"].reason or "")
                with psycopg.connect(hq_db) as conn:
                    flagged = read.disagreements(conn, DAY, DAY)
                assert [(r["store_id"], r["hour"], r["reason"]) for r in flagged] == [
                    ("sh-001", 15, "differs"), ("sh-404", None, "no answer within 5 s")]
            finally:
                live.stop()
                serving.join(30)
    finally:
        if status is not None:
            status.close()
        pool.close()
        broker.stop()


def test_the_collectors_hourly_round_records_stores_that_do_not_answer(tmp_path, hq_db):
    broker = Broker(tmp_path / "mosquitto").start()
    hq = parse_hq_config({"database": {"url": hq_db}, "mqtt": {"url": broker.url, "username": None},
                          "reconcile": {"timeout": "0.5s"}})
    pool = connect_pool(hq)
    stop = threading.Event()
    try:
        with psycopg.connect(hq_db) as conn:
            conn.execute("INSERT INTO stores (store_id, timezone, tz_source) VALUES ('sh-404', '+08:00', 'offset')")
        rounds = threading.Thread(target=Reconciler(hq, pool).every, args=(timedelta(seconds=0.2), stop))
        rounds.start()
        wait_until(lambda: (scalar(hq_db, "SELECT count(*) FROM reconcile_checks") or 0) >= 4, 20, "two rounds")
        stop.set()
        rounds.join(10)
        checks = query(hq_db, "SELECT store_id, store_day, answered, reason FROM reconcile_checks ORDER BY id")
        assert {(s, a) for s, _, a, _ in checks} == {("sh-404", False)}
        assert all("no answer" in reason for *_, reason in checks)
        days = [d for _, d, _, _ in checks[:2]]
        assert days[1] - days[0] == timedelta(days=1), "a round checks yesterday and today"
    finally:
        stop.set()
        pool.close()
        broker.stop()


def test_a_gap_of_lost_events_is_closed_by_adopting_the_boxs_own_hours(
        tmp_path, hq_db, store_day_clips, default_analyzer, capsys):
    """The afternoon's visits are lost on the way (the broker restarted while head office was away:
    Mosquitto 2.0 then forgets the collector's shared subscriptions, docs/hq.md). Reconciliation
    finds the gap; `--adopt` closes it with the box's own hourly counts, marked as adopted, and a
    visit that turns up afterwards does not count twice."""
    broker = Broker(tmp_path / "mosquitto", extra_conf="max_queued_messages 1000000\n").start()
    hq = parse_hq_config(fixed_day_settings(hq_db, broker.url, client_id="hq-adopt-test"))
    hq_file = tmp_path / "hq.toml"
    hq_file.write_text(f'[database]\nurl = "{hq_db}"\n[mqtt]\nurl = "{broker.url}"\n'
                       f'[reconcile]\ntimeout = "5s"\n[timezones]\n"sh-001" = "Asia/Shanghai"\n')
    morning, afternoon = store_day_clips

    def replay(clip: tuple[Path, datetime]) -> None:
        assert Daemon(load_config(store_config(tmp_path, broker, [clip])), once=True,
                      analyzer=default_analyzer).run() == 0

    def reconcile(*flags: str) -> tuple[int, dict]:
        code = main(["hq", "reconcile", "--config", str(hq_file), "--day", DAY.isoformat(), "--json", *flags])
        (result,) = json.loads(capsys.readouterr().out)
        return code, result

    live = None
    try:
        with collecting(hq, connect_timeout=10):
            replay(morning)
            wait_until(lambda: scalar(hq_db, "SELECT state FROM store_status") == "stopped", 30, "the morning at HQ")
        broker.stop()
        broker.start()
        replay(afternoon)  # delivered to the broker, which has no subscriber for it: lost
        with collecting(hq, connect_timeout=10):
            with psycopg.connect(hq_db) as conn:
                own = read.store_hourly(conn, "sh-001", DAY)
            assert own[10] >= 1 and own[15] == 0, "the afternoon never reached head office"

            serving = store_config(tmp_path, broker, [])
            # this test asks four times in a few seconds; a box answers three at once by default
            serving.write_text(serving.read_text() + "[downlink]\ncounts_requests_per_minute = 600\n")
            live = Daemon(load_config(serving), analyzer=default_analyzer)
            threading.Thread(target=live.run, daemon=True).start()
            wait_until(lambda: scalar(hq_db, "SELECT state FROM store_status") == "online", 30, "the store online")
            code, found = reconcile()
            assert code == 1 and [d["hour"] for d in found["differences"]] == [15] and found["adopted_hours"] == []
            box = found["differences"][0]["store_visits"]
            assert box >= 1 and not found["differences"][0]["adopted"]

            code, closed = reconcile("--adopt")
            assert code == 0 and closed["adopted_hours"] == [15] and closed["differences"][0]["adopted"]
            with psycopg.connect(hq_db) as conn:
                assert read.store_hourly(conn, "sh-001", DAY)[15] == box and read.adopted_hours(conn, "sh-001", DAY) == [15]
                assert read.chain_by_day(conn, DAY, DAY)[0]["adopted_hours"] == 1
                (check,) = [r for r in read.disagreements(conn, DAY, DAY) if r["hour"] == 15]
                assert check["adopted"] and check["store_visits"] == box
            assert main(["hq", "counts", "--config", str(hq_file), "--from", DAY.isoformat(), "--by", "hour", "--json"]) == 0
            hours = {r["hour"]: r for r in json.loads(capsys.readouterr().out)["counts"]}
            assert (hours[15]["visits"], hours[15]["adopted_hours"]) == (box, 1) and hours[10]["adopted_hours"] == 0
            assert main(["hq", "counts", "--config", str(hq_file), "--from", DAY.isoformat(), "--by", "day"]) == 0
            assert "adopted_hours: hours whose figures are the box's own counts" in capsys.readouterr().out
            code, again = reconcile()
            assert code == 0 and again["differences"] == [], "the gap stays closed"

            # One of the lost visits turns up after all (a box's outbox replay): counted once, not twice.
            late = Subscriber(broker.port, "footfall/sh-001/visits")
            late.client.publish("footfall/sh-001/visits", json.dumps({
                "event_id": "late-1", "store_id": "sh-001", "ts": "2026-11-23T15:00:20.000+08:00", "kind": "visit",
                "visitor_id": "v-late", "member_id": None, "role": "visitor", "camera_id": "door-1",
                "first_seen_ts": "2026-11-23T15:00:10.000+08:00", "identified": True}), qos=1).wait_for_publish(5)
            late.close()
            wait_until(lambda: scalar(hq_db, "SELECT count(*) FROM visits WHERE event_id = 'late-1'") == 1, 20, "the late visit")
            with psycopg.connect(hq_db) as conn:
                assert read.store_hourly(conn, "sh-001", DAY)[15] == box
    finally:
        if live is not None:
            live.stop()
        broker.stop()
