"""`footfall hq ...`: the collector, counts and fleet health, reconciliation (see docs/hq.md)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from footfall.config.hq import HqConfig, load_hq_config, parse_hq_config

if TYPE_CHECKING:
    from footfall.hq.reconcile import Result

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
    """Run one collector until SIGTERM/SIGINT; JSON log lines on stdout, as the store daemon's."""
    from footfall.edge.logs import log_to_stdout
    from footfall.hq.collector import Collector, connect_pool
    from footfall.hq.reconcile import Reconciler

    config = _config(args)
    log_to_stdout(logging.DEBUG if getattr(args, "verbose", False) else logging.INFO)
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


def _day_range(args: argparse.Namespace) -> tuple[date, date] | None:
    """--from/--to as a range of store days; None without --from (each store's today)."""
    if args.to and not args.from_:
        raise ValueError("--to needs --from (without either: each store's today)")
    if not args.from_:
        return None
    day_from = _day(args.from_, "--from")
    day_to = _day(args.to, "--to") if args.to else day_from
    if day_to < day_from:
        raise ValueError(f"--to ({day_to}) is before --from ({day_from})")
    return day_from, day_to


def cmd_counts(args: argparse.Namespace) -> int:
    """Totals by store, day or hour, and the fleet's health. Without --from: each store's today, in
    its own time zone."""
    from footfall.hq import read
    from footfall.hq.db import Login

    config = _config(args)
    days = _day_range(args)
    today: dict[str, date] | None = None
    with Login.of(config.database).connect() as conn:
        now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        if days is None:
            today = {s: d for s, d in read.store_days(conn, now, config.timezones).items()
                     if not args.store or s == args.store}
            rows = read.counts(conn, now.date(), now.date(), args.by, args.store, days=today)  # days replace the range
            span: dict[str, Any] = {"today": {s: d.isoformat() for s, d in today.items()}}
        else:
            rows = read.counts(conn, days[0], days[1], args.by, args.store)
            span = {"from": days[0].isoformat(), "to": days[1].isoformat()}
        fleet = read.fleet(conn, config.silent_after, now)
    if args.store:
        fleet = [f for f in fleet if f["store_id"] == args.store]
    if args.json:
        print(json.dumps({**span, "by": args.by, "counts": rows, "fleet": fleet,
                          "silent_after_s": config.silent_after.total_seconds()}))
    else:
        _print_counts(args.by, rows, today)
        _print_fleet(fleet, config.silent_after)
    return EXIT_OK


def _print_counts(by: str, rows: list[dict[str, Any]], today: dict[str, date] | None) -> None:
    """The counts as a table, one line per store, day or hour."""
    if today is not None:
        days = sorted(set(today.values()))
        print("each store's today, in its own time zone: " + (", ".join(d.isoformat() for d in days) or "no store"))
    keys = {"store": ["store_id"], "day": ["day"], "hour": ["day", "hour"]}[by]
    header = keys + ["visits", "reentries", "member_visits", "unidentified", "adopted_hours"]
    print("  ".join(f"{h:>13}" for h in header))
    for r in rows:
        print("  ".join(f"{r[h]!s:>13}" for h in header))
    if any(r["adopted_hours"] for r in rows):
        print("adopted_hours: hours whose figures are the box's own counts (footfall hq reconcile --adopt)")


def _print_fleet(fleet: list[dict[str, Any]], silent_after: timedelta) -> None:
    """Every box's state, last word and backlog, the silent ones flagged."""
    print(f"\nfleet: {len(fleet)} box(es), {sum(f['silent'] for f in fleet)} silent for over {silent_after}")
    for f in fleet:
        flag = "SILENT" if f["silent"] else ""
        outbox = "" if f["outbox_backlog"] is None else f"  outbox {f['outbox_backlog']}"
        dead = f"  dead letters {f['dead_letters']}" if f["dead_letters"] else ""
        print(f"  {f['store_id']:<16} {f['state']:<8} last seen {f['last_seen']}{outbox}{dead}  {flag}")


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Ask the stores for their hourly counts and compare; with --adopt, take the box's figures for the
    hours HQ is short of. Exit 1 if an hour still differs or a store does not answer."""
    import psycopg

    from footfall.hq.collector import connect_pool
    from footfall.hq.reconcile import Reconciler

    config = _config(args)
    days = [_day(args.day, "--day")] if args.day else None
    pool = connect_pool(config)
    try:
        results = Reconciler(config, pool).run_alone(stores=[args.store] if args.store else None, days=days,
                                                     adopt=args.adopt)
    except psycopg.errors.LockNotAvailable:
        print("error: another reconciliation is still running (a collector's round or another "
              "`footfall hq reconcile`); try again later", file=sys.stderr)
        return EXIT_FAIL
    finally:
        pool.close()
    if args.json:
        print(json.dumps([r.to_json() for r in results]))
    else:
        _print_reconciled(results, args.adopt)
    return EXIT_FAIL if any(r.open for r in results) else EXIT_OK


def _print_reconciled(results: list[Result], adopt: bool) -> None:
    """One line per store day (ok, no answer, the hours that differ), then the totals."""
    for r in results:
        what = (r.reason or "no answer") if not r.answered else (
            "ok" if not r.differences else f"{len(r.differences)} hour(s) differ: " + ", ".join(
                f"{d['hour']:02d}h hq {d['hq_visits']} / store {d['store_visits']}"
                + (" adopted" if d.get("adopted") else "") for d in r.differences))
        print(f"{r.store_id:<16} {r.day}  {what}")
    bad = sum(1 for r in results if r.open)
    adopted = sum(len(r.adopted) for r in results)
    print(f"{len(results)} store day(s) checked, {bad} with a problem left"
          + (f"; {adopted} hour(s) adopted from the stores' own counts" if adopted else ""))
    if not adopt and any(r.differences for r in results):
        print("to take a box's own figures for the hours head office is short of: add --adopt")


def _database_errors(command: Any) -> Any:
    """Turn a database that cannot be reached or used into one line on stderr and exit 1. (A refused
    login is a LoginRefused, a ConfigError: `footfall` prints it naming the password's source, exit 2.)"""
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
    p.add_argument("--from", dest="from_", help="first store day YYYY-MM-DD (default: each store's today, "
                                                "in its own time zone)")
    p.add_argument("--to", help="last store day YYYY-MM-DD (default: --from)")
    p.add_argument("--by", choices=["store", "day", "hour"], default="store")
    p.add_argument("--store", help="one store only")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_database_errors(cmd_counts))
    p = group.add_parser("reconcile", help="compare HQ's hourly counts with each store's own (counts/get)")
    p.add_argument("--config", help="hq.toml (default: the defaults)")
    p.add_argument("--store", help="one store (default: every store HQ knows)")
    p.add_argument("--day", help="store day YYYY-MM-DD (default: today and yesterday)")
    p.add_argument("--adopt", action="store_true",
                   help="close the gaps: take the box's own figures for the hours HQ is short of (marked adopted)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=_database_errors(cmd_reconcile))
    p = group.add_parser("serve", help="the HQ dashboard in a browser (login required)")
    p.add_argument("--config", help="hq.toml")
    p.add_argument("--listen", metavar="HOST:PORT", help="overrides dashboard.listen")
    p.add_argument("--hash-password", action="store_true",
                   help="read a password (or a user's token) from stdin, print its hash for the config, exit")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """`footfall hq serve` (hq/dashboard.py), imported only when run: the parser is built without
    psycopg, which a store box's install leaves out (the extra footfall[hq])."""
    from footfall.hq.dashboard import cmd_serve as serve

    return serve(args)
