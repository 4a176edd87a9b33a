"""Specification of the visit counts (CONTRACT, topics `counts` and `counts/get`).

Counts are kept per local hour and per local day of the store's time zone
(Asia/Shanghai here, UTC+8 without DST; America/New_York for DST days).
Every bucket of a range is listed, empty ones too; a day starts at local
midnight; `by_hour` holds 24 visit counts indexed by local wall-clock hour.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from footfall.sync.counts import (
    Counted,
    CountStore,
    bucket_floor,
    bucket_starts,
    bucketize,
    by_local_hour,
    day_bounds,
    tally,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")


def at(hour: int, minute: int = 0, day: int = 23, tz: ZoneInfo = SHANGHAI) -> datetime:
    """A moment of the store's local time, 23 November 2026 unless told."""
    return datetime(2026, 11, day, hour, minute, tzinfo=tz)


@pytest.fixture
def store() -> Iterator[CountStore]:
    with CountStore(None, "Asia/Shanghai") as s:
        yield s


# -- pure bucketing ----------------------------------------------------------------

def test_hour_buckets_start_at_local_hours_and_include_empty_ones():
    starts = bucket_starts(at(9, 30), at(12, 0), "hour", SHANGHAI)
    assert [s.astimezone(SHANGHAI).hour for s in starts] == [9, 10, 11]
    assert starts[0] == at(9, 0)


def test_day_buckets_start_at_local_midnight_not_utc_midnight():
    starts = bucket_starts(at(0, 0, day=22), at(0, 0, day=25), "day", SHANGHAI)
    assert starts == [at(0, 0, day=22), at(0, 0, day=23), at(0, 0, day=24)]
    # 23:30 UTC on the 22nd is 07:30 on the 23rd in Shanghai.
    assert bucket_floor(datetime(2026, 11, 22, 23, 30, tzinfo=UTC), "day", SHANGHAI) == at(0, 0, day=23)


def test_an_empty_or_reversed_range_has_no_buckets():
    assert bucket_starts(at(10), at(10), "hour", SHANGHAI) == []
    assert bucket_starts(at(11), at(10), "hour", SHANGHAI) == []


def test_a_store_day_with_dst_has_23_or_25_hourly_buckets():
    spring = date(2026, 3, 8)   # New York: 02:00 -> 03:00
    autumn = date(2026, 11, 1)  # New York: 02:00 -> 01:00
    assert len(bucket_starts(*day_bounds(spring, NEW_YORK), "hour", NEW_YORK)) == 23
    assert len(bucket_starts(*day_bounds(autumn, NEW_YORK), "hour", NEW_YORK)) == 25
    assert len(bucket_starts(*day_bounds(date(2026, 11, 23), SHANGHAI), "hour", SHANGHAI)) == 24


def test_by_hour_maps_by_local_wall_hour_on_dst_days():
    first_one_am = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)   # 01:30 EDT
    second_one_am = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)  # 01:30 EST
    hours = by_local_hour([Counted(first_one_am, "visit", False), Counted(second_one_am, "visit", True)], NEW_YORK)
    assert len(hours) == 24 and hours[1] == 2 and sum(hours) == 2


def test_by_hour_counts_visits_not_reentries():
    hours = by_local_hour([Counted(at(10), "visit", False), Counted(at(10, 5), "reentry", False)], SHANGHAI)
    assert hours[10] == 1 and sum(hours) == 1


def test_tally_counts_member_visits_among_visits_only():
    entries = [Counted(at(10), "visit", True), Counted(at(11), "reentry", True), Counted(at(12), "visit", False)]
    assert tally(entries) == {"visits": 2, "reentries": 1, "member_visits": 1, "unidentified": 0, "exits": 0}


def test_each_entry_lands_in_the_last_bucket_starting_at_or_before_it():
    starts = bucket_starts(at(10), at(12), "hour", SHANGHAI)
    rows = bucketize([Counted(at(10, 59), "visit", False), Counted(at(11), "visit", False)], starts, SHANGHAI)
    assert [r["visits"] for r in rows] == [1, 1]


@settings(max_examples=200, deadline=None)
@given(start=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)),
       hours=st.integers(min_value=0, max_value=24 * 10),
       zone_name=st.sampled_from(["Asia/Shanghai", "America/New_York", "Europe/London", "Asia/Kolkata",
                                  "Australia/Lord_Howe", "Pacific/Apia"]),
       by=st.sampled_from(["hour", "day"]))
def test_buckets_are_increasing_local_boundaries_covering_the_range(start, hours, zone_name, by):
    tz = ZoneInfo(zone_name)
    end = start + timedelta(hours=hours)
    starts = bucket_starts(start, end, by, tz)
    assert starts == sorted(set(starts))
    if end > start:
        assert starts[0] <= start < (starts[1] if len(starts) > 1 else end + timedelta(days=2))
        assert starts[-1] < end
        for s in starts:
            assert bucket_floor(s, by, tz) == s  # every start is a local boundary
            if by == "day":
                assert s.astimezone(tz).hour in (0, 1)  # 01:00 where midnight is skipped by DST


# -- the store ---------------------------------------------------------------------

def test_hourly_buckets_in_shanghai_include_empty_hours(store: CountStore):
    store.record(at(9, 15), "visit", False)
    store.record(at(9, 40), "reentry", False)
    store.record(at(11, 5), "visit", True)
    assert store.buckets(at(9), at(12), "hour") == [
        {"start": "2026-11-23T09:00:00.000+08:00", "visits": 1, "reentries": 1, "member_visits": 0, "unidentified": 0, "exits": 0},
        {"start": "2026-11-23T10:00:00.000+08:00", "visits": 0, "reentries": 0, "member_visits": 0, "unidentified": 0, "exits": 0},
        {"start": "2026-11-23T11:00:00.000+08:00", "visits": 1, "reentries": 0, "member_visits": 1, "unidentified": 0, "exits": 0},
    ]


def test_entries_given_in_utc_are_bucketed_by_the_store_hour(store: CountStore):
    store.record(datetime(2026, 11, 23, 2, 30, tzinfo=UTC), "visit", False)  # 10:30 in Shanghai
    assert [b["visits"] for b in store.buckets(at(10), at(11))] == [1]


def test_the_range_is_half_open(store: CountStore):
    store.record(at(12), "visit", False)
    assert store.buckets(at(11), at(12)) == [
        {"start": "2026-11-23T11:00:00.000+08:00", "visits": 0, "reentries": 0, "member_visits": 0, "unidentified": 0, "exits": 0}]


def test_local_midnight_separates_the_days(store: CountStore):
    store.record(at(23, 59, day=23), "visit", False)
    store.record(at(0, 0, day=24), "visit", True)
    assert store.today(at(12, day=23))["visits"] == 1
    tomorrow = store.today(at(8, day=24))
    assert tomorrow["date"] == "2026-11-24"
    assert tomorrow["visits"] == 1 and tomorrow["member_visits"] == 1 and tomorrow["by_hour"][0] == 1


def test_today_is_the_contract_payload_with_24_hourly_ints(store: CountStore):
    store.record(at(10, 1), "visit", True)
    store.record(at(10, 20), "reentry", True)
    store.record(at(15, 45), "visit", False)
    payload = store.today(at(16))
    assert set(payload) == {"date", "visits", "reentries", "member_visits", "unidentified", "exits", "by_hour"}
    assert payload["date"] == "2026-11-23"
    assert (payload["visits"], payload["reentries"], payload["member_visits"]) == (2, 1, 1)
    assert len(payload["by_hour"]) == 24 and all(type(n) is int for n in payload["by_hour"])
    assert payload["by_hour"][10] == 1 and payload["by_hour"][15] == 1 and sum(payload["by_hour"]) == 2


def test_an_empty_day_still_has_24_zeros(store: CountStore):
    assert store.today(at(9))["by_hour"] == [0] * 24


def test_today_follows_the_store_day_not_the_utc_day(store: CountStore):
    store.record(at(7), "visit", False)  # 23:00 UTC the day before
    assert store.today(datetime(2026, 11, 23, 1, 0, tzinfo=UTC))["visits"] == 1


def test_day_buckets_start_at_local_midnight(store: CountStore):
    store.record(at(0, 30, day=22), "visit", False)
    store.record(at(23, 59, day=22), "reentry", False)
    store.record(at(0, 0, day=24), "visit", True)
    assert store.buckets(at(0, day=22), at(0, day=25), "day") == [
        {"start": "2026-11-22T00:00:00.000+08:00", "visits": 1, "reentries": 1, "member_visits": 0, "unidentified": 0, "exits": 0},
        {"start": "2026-11-23T00:00:00.000+08:00", "visits": 0, "reentries": 0, "member_visits": 0, "unidentified": 0, "exits": 0},
        {"start": "2026-11-24T00:00:00.000+08:00", "visits": 1, "reentries": 0, "member_visits": 1, "unidentified": 0, "exits": 0},
    ]


def test_counts_survive_a_restart(tmp_path: Path):
    path = tmp_path / "state" / "counts.db"
    with CountStore(path, "Asia/Shanghai") as first:
        first.record(at(10), "visit", True)
    with CountStore(path, "Asia/Shanghai") as second:
        second.record(at(11), "visit", False)
        assert second.today(at(12))["visits"] == 2
        assert second.today(at(12))["member_visits"] == 1


def test_naive_datetimes_are_refused_with_a_clear_message(store: CountStore):
    naive = datetime(2026, 11, 23, 10, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        store.record(naive, "visit", False)
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        store.today(naive)
    with pytest.raises(ValueError, match="start must be timezone-aware"):
        store.buckets(naive, at(12))


def test_unknown_kinds_grouping_and_zones_are_refused(store: CountStore):
    with pytest.raises(ValueError, match="kind"):
        store.record(at(10), "staff", False)
    with pytest.raises(ValueError, match="by must be"):
        store.buckets(at(9), at(10), "week")
    with pytest.raises(ValueError, match="unknown IANA time zone"):
        CountStore(None, "Mars/Olympus_Mons")


def test_a_visit_counted_without_a_usable_face_is_a_visit_and_is_reported_apart():
    entries = [Counted(at(10), "visit", False, identified=False), Counted(at(11), "visit", False)]
    assert tally(entries) == {"visits": 2, "reentries": 0, "member_visits": 0, "unidentified": 1, "exits": 0}


def test_the_store_keeps_whether_a_visit_was_identified(tmp_path):
    store = CountStore(tmp_path / "counts.db", "Asia/Shanghai")
    store.record(at(10), "visit", False, identified=False)
    store.record(at(10, 30), "visit", False)
    today = store.today(at(12))
    assert (today["visits"], today["unidentified"]) == (2, 1)
    store.close()
