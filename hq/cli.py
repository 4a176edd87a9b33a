"""`footfall hq ...`: the collector, counts and fleet health, reconciliation (see docs/hq.md)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from datetime import UTC, date, datetime
from typing import Any

from footfall.config.hq import HqConfig, load_hq_config, parse_hq_config

EXIT_OK, EXIT_FAIL = 0, 1
log = logging.getLogger(__name__)


def _config(args: argparse.Namespace) -> HqConfig:
    return load_hq_config(args.config) if args.config else parse_hq_config({})


def _day(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{what}: expected a day YYYY-MM-DD, got {text!r}") from None


def cmd_collect(args: argparse.Namespace) -> int:
    """Run one collector until SIGTERM/SIGINT."""
    from footfall.hq.collector import Collector, connect_pool
    from footfall.hq.reconcile import Reconciler

    config = _config(args)
    pool = connect_pool(config)
    collector = Collector(config, pool)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()
        collector.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    reconciler = None
    if config.collector.reconcile:
        reconciler = Reconciler(config, pool)
        threading.Thread(target=reconciler.every, args=(config.collector.reconcile_every, stop),
                         name="hq-reconcile", daemon=True).start()
    log.info("collecting: group %s on %s", config.collector.group, config.mqtt.url)
    try:
        stats = collector.run()
    finally:
        stop.set()
        pool.close()
    log.info("stopped: %d batches, %d rows, %d duplicates, %d rejected", stats.batches, stats.inserted,
             stats.duplicates, stats.rejected)
    return EXIT_OK


def cmd_counts(args: argparse.Namespace) -> int:
    """Totals by store, day or hour, and the fleet's health."""
    import psycopg

    from footfall.config.hq import database_password
    from footfall.hq import read

    config = _config(args)
    today = datetime.now(UTC).date()
    day_from = _day(args.from_, "--from") if args.from_ else today
    day_to = _day(args.to, "--to") if args.to else day_from
    if day_to < day_from:
        raise ValueError(f"--to ({day_to}) is before --from ({day_from})")
    password = database_password(config.database)
    with psycopg.connect(config.database.url, password=password) as conn:
        rows = read.counts(conn, day_from, day_to, args.by, args.store)
        now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        fleet = read.fleet(conn, config.silent_after, now)
    if args.store:
        fleet = [f for f in fleet if f["store_id"] == args.store]
    if args.json:
        print(json.dumps({"from": day_from.isoformat(), "to": day_to.isoformat(), "by": args.by, "counts": rows,
                          "fleet": fleet, "silent_after_s": config.silent_after.total_seconds()}))
        return EXIT_OK
    keys = {"store": ["store_id"], "day": ["day"], "hour": ["day", "hour"]}[args.by]
    header = keys + ["visits", "reentries", "member_visits", "unidentified"]
    print("  ".join(f"{h:>13}" for h in header))
    for r in rows:
        print("  ".join(f"{r[h]!s:>13}" for h in header))
    print(f"\nfleet: {len(fleet)} box(es), {sum(f['silent'] for f in fleet)} silent for over {config.silent_after}")
    for f in fleet:
        flag = "SILENT" if f["silent"] else ""
        print(f"  {f['store_id']:<16} {f['state']:<8} last seen {f['last_seen']}  {flag}")
    return EXIT_OK


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Ask the stores for their hourly counts and compare; exit 1 if any differs or does not answer."""
    import psycopg

    from footfall.hq.collector import connect_pool
    from footfall.hq.reconcile import Reconciler

    config = _config(args)
    days = [_day(args.day, "--day")] if args.day else None
    pool = connect_pool(config)
    try:
        results = Reconciler(config, pool).run_alone(stores=[args.store] if args.store else None, days=days)
    except psycopg.errors.LockNotAvailable:
        print("error: another reconciliation is still running (a collector's round or another "
              "`footfall hq reconcile`); try again later", file=sys.stderr)
        return EXIT_FAIL
    finally:
        pool.close()
    if args.json:
        print(json.dumps([r.to_json() for r in results]))
    else:
        for r in results:
            what = (r.reason or "no answer") if not r.answered else (
                "ok" if not r.differences else f"{len(r.differences)} hour(s) differ: " + ", ".join(
                    f"{d['hour']:02d}h hq {d['hq_visits']} / store {d['store_visits']}" for d in r.differences))
            print(f"{r.store_id:<16} {r.day}  {what}")
        bad = sum(1 for r in results if not r.answered or r.differences)
        print(f"{len(results)} store day(s) checked, {bad} with a problem")
    return EXIT_FAIL if any(not r.answered or r.differences for r in results) else EXIT_OK


def _database_errors(command: Any) -> Any:
    """Turn a database that cannot be reached or used into one line on stderr and exit 1."""
    def run(args: argparse.Namespace) -> int:
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            return int(command(args))
        except (psycopg.OperationalError, PoolTimeout) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(f"error: the HQ database is not reachable (database.url): {first}", file=sys.stderr)
            return EXIT_FAIL
        except psycopg.errors.UndefinedTable:
            print("error: the HQ database has no schema yet: start `footfall hq collect` once", file=sys.stderr)
            return EXIT_FAIL
    run.__doc__ = command.__doc__
    return run


def add_hq_parser(sub: Any) -> None:
    """Register `footfall hq collect|counts|reconcile|serve` on the main parser's subcommands."""
    hq = sub.add_parser("hq", help="head office: collect every store's events into PostgreSQL, counts, reconcile")
    group = hq.add_subparsers(dest="action", required=True)
    p = group.add_parser("collect", help="the collector: MQTT 5 shared subscriptions into PostgreSQL")
    p.add_argument("--config", required=True, help="hq.toml")
    p.set_defaults(func=_database_errors(cmd_collect))
    p = group.add_parser("counts", help="visits by store, day or hour, and every box's health")
    p.add_argument("--config", help="hq.toml (default: the defaults)")
    p.add_argument("--from", dest="from_", help="first store day YYYY-MM-DD (default: today, UTC)")
    p.add_argument("--to", help="last store day YYYY-MM-DD (default: --from)")
    p.add_argument("--by", choices=["store", "day", "hour"], default="store")
    p.add_argument("--store", help="one store only")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_database_errors(cmd_counts))
    p = group.add_parser("reconcile", help="compare HQ's hourly counts with each store's own (counts/get)")
    p.add_argument("--config", help="hq.toml (default: the defaults)")
    p.add_argument("--store", help="one store (default: every store HQ knows)")
    p.add_argument("--day", help="store day YYYY-MM-DD (default: today and yesterday)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=_database_errors(cmd_reconcile))
    from footfall.hq.dashboard import add_serve_parser

    add_serve_parser(group)
