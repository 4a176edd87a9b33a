"""The read side of HQ: plain query functions over a psycopg 3 connection.

Every function returns JSON-serialisable values: days as "YYYY-MM-DD", instants as ISO 8601
with offset. Days are store days (each store's own time zone); ranges are inclusive.
Used by `footfall hq counts` and by the dashboard.

Counts come from the view `hourly_counts`: the roll-up of the events head office holds, raised
to a box's own figures where reconciliation adopted them (`footfall hq reconcile --adopt`);
`adopted_hours` says how many hours of a row are such.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from footfall.hq.ingest import zone_of

if TYPE_CHECKING:  # imported for its types only: `footfall --help` loads this module without footfall[hq]
    import psycopg

BY = ("store", "day", "hour")
_TOTALS = ("visits", "reentries", "member_visits", "unidentified")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _rows(conn: psycopg.Connection, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[dict[str, Any]]:
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params)
        return list(cur.fetchall())


def chain_by_day(conn: psycopg.Connection, day_from: date, day_to: date) -> list[dict]:
    """`[{day, visits, reentries, member_visits, unidentified, adopted_hours}]`, one row per day of
    the range, zeros filled."""
    rows = _rows(conn, """
        SELECT d::date AS day, coalesce(sum(h.visits), 0)::int AS visits,
               coalesce(sum(h.reentries), 0)::int AS reentries,
               coalesce(sum(h.member_visits), 0)::int AS member_visits,
               coalesce(sum(h.unidentified), 0)::int AS unidentified,
               count(*) FILTER (WHERE h.adopted)::int AS adopted_hours
        FROM generate_series(%s::date, %s::date, interval '1 day') AS d
        LEFT JOIN hourly_counts h ON h.store_day = d::date
        GROUP BY d ORDER BY d""", (day_from, day_to))
    return [{**r, "day": r["day"].isoformat()} for r in rows]


def store_table(conn: psycopg.Connection, day: date, silent_after: timedelta, now: datetime) -> list[dict]:
    """One row per known store: the day's totals (and `exits`, from the box's own counts: people
    crossing an entry line outwards) and the box's health.

    `state` is the last status ("online"/"offline"/"stopped", "unknown" before any);
    `silent` is true when nothing at all came from the box for longer than `silent_after`;
    `outbox_backlog` and `dead_letters` are what that status reported (None when it did not).
    """
    rows = _rows(conn, """
        SELECT s.store_id, coalesce(t.visits, 0)::int AS visits, coalesce(t.reentries, 0)::int AS reentries,
               coalesce(t.member_visits, 0)::int AS member_visits, coalesce(t.unidentified, 0)::int AS unidentified,
               coalesce(t.adopted_hours, 0)::int AS adopted_hours, coalesce(sc.exits, 0)::int AS exits,
               coalesce(st.state, 'unknown') AS state, s.last_seen, st.outbox_backlog, st.dead_letters,
               st.cameras, st.storage
        FROM stores s
        LEFT JOIN (SELECT store_id, sum(visits) AS visits, sum(reentries) AS reentries,
                          sum(member_visits) AS member_visits, sum(unidentified) AS unidentified,
                          count(*) FILTER (WHERE adopted) AS adopted_hours
                   FROM hourly_counts WHERE store_day = %s GROUP BY store_id) t ON t.store_id = s.store_id
        LEFT JOIN store_counts sc ON sc.store_id = s.store_id AND sc.store_day = %s
        LEFT JOIN store_status st ON st.store_id = s.store_id
        ORDER BY s.store_id""", (day, day))
    for r in rows:
        r["silent"] = (now - r["last_seen"]) > silent_after
        r["last_seen"] = _iso(r["last_seen"])
        r["cameras"] = r["cameras"] or {}
    return rows


def store_hourly(conn: psycopg.Connection, store_id: str, day: date) -> list[int]:
    """24 visit counts, by store-local hour (a repeated DST hour adds up in one slot)."""
    hours = [0] * 24
    for hour, visits in conn.execute("SELECT store_hour, visits FROM hourly_counts "
                                     "WHERE store_id = %s AND store_day = %s", (store_id, day)):
        hours[hour] = visits
    return hours


def adopted_hours(conn: psycopg.Connection, store_id: str, day: date) -> list[int]:
    """The store-local hours of the day whose figures were adopted from the box's own counts."""
    return [hour for (hour,) in conn.execute("SELECT store_hour FROM hourly_counts WHERE store_id = %s "
                                             "AND store_day = %s AND adopted ORDER BY store_hour", (store_id, day))]


def store_days(conn: psycopg.Connection, now: datetime, configured: dict[str, str] | None = None) -> dict[str, date]:
    """Each known store's own date at `now`, in its zone (`timezones` of hq.toml first, then the one
    recorded in `stores`: reported by the box, or the offset of its events)."""
    zones = dict(conn.execute("SELECT store_id, timezone FROM stores").fetchall())
    zones.update(configured or {})
    return {store: now.astimezone(zone_of(name)).date() for store, name in sorted(zones.items())}


_BOOKED = """
    WITH keys AS (
        SELECT store_id, appointment_id, channel, store_day FROM appointments
        UNION ALL SELECT store_id, appointment_id, channel, store_day FROM alerts
                  WHERE kind = 'appointment' AND appointment_id IS NOT NULL
        UNION ALL SELECT store_id, appointment_id, channel, store_day FROM no_shows
    ), booked AS (
        SELECT store_id, appointment_id, max(channel) AS channel, min(store_day) AS store_day
        FROM keys GROUP BY store_id, appointment_id
    ), marked AS (
        SELECT b.*, EXISTS (SELECT 1 FROM alerts a WHERE a.kind = 'appointment' AND a.store_id = b.store_id
                                                    AND a.appointment_id = b.appointment_id) AS arrived,
                    EXISTS (SELECT 1 FROM no_shows n WHERE n.store_id = b.store_id
                                                      AND n.appointment_id = b.appointment_id) AS flagged,
                    EXISTS (SELECT 1 FROM cancellations c
                            LEFT JOIN appointments ap ON ap.store_id = c.store_id
                                                     AND ap.appointment_id = c.appointment_id
                            WHERE c.store_id = b.store_id AND c.appointment_id = b.appointment_id
                              AND c.cancelled_at >= coalesce(ap.crm_booked_at, '-infinity')) AS cancelled
        FROM booked b WHERE b.store_day BETWEEN %s AND %s
    ), counted AS (  -- a cancellation counts only before the store raised anything for the booking
        SELECT m.*, cancelled AND NOT arrived AND NOT flagged AS withdrawn FROM marked m
    )"""


def conversion_by_channel(conn: psycopg.Connection, day_from: date, day_to: date) -> list[dict]:
    """`[{channel, booked, arrived, no_show, cancelled, conversion}]`: appointments of the range by
    booking channel.

    Booked is every appointment HQ heard of (the CRM's appointments/upsert, the box's
    appointments/booked, an arrival, a no-show) but those the CRM cancelled (appointments/delete,
    not followed by a new upsert) before the member arrived or a no-show was raised: those are
    `cancelled`. A member who came after being flagged counts as arrived, not as a no-show.
    `conversion` = arrived / booked (None when nothing was booked). Channel "unknown" when
    no message named one.
    """
    rows = _rows(conn, _BOOKED + """
        SELECT coalesce(channel, 'unknown') AS channel, count(*) FILTER (WHERE NOT withdrawn)::int AS booked,
               count(*) FILTER (WHERE arrived)::int AS arrived,
               count(*) FILTER (WHERE flagged AND NOT arrived)::int AS no_show,
               count(*) FILTER (WHERE withdrawn)::int AS cancelled
        FROM counted GROUP BY 1 ORDER BY booked DESC, channel""", (day_from, day_to))
    for r in rows:
        r["conversion"] = r["arrived"] / r["booked"] if r["booked"] else None
    return rows


def no_show_list(conn: psycopg.Connection, day_from: date, day_to: date, limit: int = 500) -> list[dict]:
    """`[{store_id, appointment_id, member_id, scheduled_at, channel, grace_minutes}]` newest first,
    `scheduled_at` in the store's time zone, without members who came after all (nor erased ones)."""
    rows = _rows(conn, """
        SELECT DISTINCT ON (n.scheduled_at, n.store_id, n.appointment_id)
               n.store_id, n.appointment_id, n.member_id, n.scheduled_at,
               coalesce(n.channel, ap.channel) AS channel, n.grace_minutes, s.timezone
        FROM no_shows n
        JOIN stores s ON s.store_id = n.store_id
        LEFT JOIN appointments ap ON ap.store_id = n.store_id AND ap.appointment_id = n.appointment_id
        WHERE n.store_day BETWEEN %s AND %s
          AND n.member_id IS NOT NULL  -- an erased member is not followed up
          AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.kind = 'appointment' AND a.store_id = n.store_id
                                                   AND a.appointment_id = n.appointment_id)
        ORDER BY n.scheduled_at DESC, n.store_id, n.appointment_id
        LIMIT %s""", (day_from, day_to, max(0, int(limit))))
    for r in rows:  # in the store's own time: the follow-up speaks of the hour that was booked
        r["scheduled_at"] = _iso(r["scheduled_at"].astimezone(zone_of(r.pop("timezone"))))
    return rows


def response_times(conn: psycopg.Connection, day_from: date, day_to: date) -> list[dict]:
    """`[{store_id, alerts, acked, p50_s, p95_s}]`: seconds from an arrival alert to its first ack."""
    rows = _rows(conn, """
        WITH answered AS (
            SELECT a.store_id, a.event_id,
                   extract(epoch FROM (SELECT min(k.ts) FROM acks k WHERE k.store_id = a.store_id
                                       AND k.visit_event_id = a.visit_event_id) - a.ts) AS seconds
            FROM alerts a WHERE a.kind = 'arrival' AND a.store_day BETWEEN %s AND %s
        )
        SELECT store_id, count(*)::int AS alerts, count(seconds)::int AS acked,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS p50_s,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds) AS p95_s
        FROM answered GROUP BY store_id ORDER BY store_id""", (day_from, day_to))
    for r in rows:
        for key in ("p50_s", "p95_s"):
            r[key] = float(r[key]) if r[key] is not None else None
    return rows


def disagreements(conn: psycopg.Connection, day_from: date, day_to: date) -> list[dict]:
    """The latest reconciliation of each store day in the range, where it found a problem.

    `[{store_id, day, hour, hq_visits, store_visits, checked_at, reason, adopted}]`: one row per hour
    whose visits (or re-entries) differ (`reason` "differs"; `adopted` when that check took the box's
    figures for it), and one row per store day whose box did not answer (`reason` "no answer", hour
    and counts None).
    """
    rows = _rows(conn, """
        WITH latest AS (
            SELECT DISTINCT ON (store_id, store_day) id, store_id, store_day, checked_at, answered, reason
            FROM reconcile_checks WHERE store_day BETWEEN %s AND %s
            ORDER BY store_id, store_day, checked_at DESC, id DESC
        )
        SELECT l.store_id, l.store_day AS day, d.store_hour AS hour, d.hq_visits, d.store_visits,
               d.hq_reentries, d.store_reentries, coalesce(d.adopted, false) AS adopted, l.checked_at,
               CASE WHEN l.answered THEN 'differs' ELSE coalesce(l.reason, 'no answer') END AS reason
        FROM latest l LEFT JOIN reconcile_differences d ON d.check_id = l.id
        WHERE NOT l.answered OR d.check_id IS NOT NULL
        ORDER BY l.store_id, l.store_day, d.store_hour""", (day_from, day_to))
    for r in rows:
        r["day"] = r["day"].isoformat()
        r["checked_at"] = _iso(r["checked_at"])
    return rows


def counts(conn: psycopg.Connection, day_from: date, day_to: date, by: str, store_id: str | None = None,
           *, days: dict[str, date] | None = None) -> list[dict]:
    """Totals of the range grouped by store, by store day or by (store day, hour), with the hours
    among them adopted from a box's own counts (`adopted_hours`); optionally one store. With `days`
    (store id -> one store day, e.g. each store's today: `store_days`) those replace the range."""
    if by not in BY:
        raise ValueError(f"by must be one of {', '.join(BY)}, got {by!r}")
    keys = {"store": ["store_id"], "day": ["store_day"], "hour": ["store_day", "store_hour"]}[by]
    group = ", ".join(keys)
    sums = ", ".join(f"sum({t})::int AS {t}" for t in _TOTALS) + ", count(*) FILTER (WHERE adopted)::int AS adopted_hours"
    params: list[Any] = []
    if days is None:
        where = "store_day BETWEEN %s AND %s"
        params += [day_from, day_to]
    else:
        stores = sorted(days)
        where = "(store_id, store_day) IN (SELECT * FROM unnest(%s::text[], %s::date[]))"
        params += [stores, [days[s] for s in stores]]
    if store_id:
        where += " AND store_id = %s"
        params.append(store_id)
    rows = _rows(conn, f"SELECT {group}, {sums} FROM hourly_counts WHERE {where} GROUP BY {group} ORDER BY {group}",
                 tuple(params))
    for r in rows:
        if "store_day" in r:
            r["day"] = r.pop("store_day").isoformat()
        if "store_hour" in r:
            r["hour"] = r.pop("store_hour")
    return rows


def fleet(conn: psycopg.Connection, silent_after: timedelta, now: datetime) -> list[dict]:
    """Every box's last status and whether it is silent: `[{store_id, state, last_seen, silent, version,
    cameras, storage, outbox_backlog, dead_letters, timezone, status_ts}]`; times in the store's zone."""
    rows = _rows(conn, """
        SELECT s.store_id, coalesce(st.state, 'unknown') AS state, s.last_seen, st.version, st.cameras,
               st.storage, st.outbox_backlog, st.dead_letters, s.timezone, st.ts AS status_ts
        FROM stores s LEFT JOIN store_status st ON st.store_id = s.store_id ORDER BY s.store_id""")
    for r in rows:
        zone = zone_of(r["timezone"])
        r["silent"] = (now - r["last_seen"]) > silent_after
        r["last_seen"] = _iso(r["last_seen"].astimezone(zone))
        r["status_ts"] = _iso(r["status_ts"].astimezone(zone) if r["status_ts"] is not None else None)
        r["cameras"] = r["cameras"] or {}
    return rows
