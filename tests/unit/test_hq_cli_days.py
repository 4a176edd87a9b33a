"""`footfall hq counts --from/--to`: the store days asked for, or each store's today."""

from __future__ import annotations

import argparse
from datetime import date

import pytest

from footfall.hq.cli import _day_range


def days(from_: str | None = None, to: str | None = None) -> tuple[date, date] | None:
    return _day_range(argparse.Namespace(from_=from_, to=to))


def test_without_from_it_is_each_stores_today():
    assert days() is None


def test_from_alone_is_that_one_day_and_to_closes_the_range():
    assert days("2026-03-02") == (date(2026, 3, 2), date(2026, 3, 2))
    assert days("2026-03-02", "2026-03-05") == (date(2026, 3, 2), date(2026, 3, 5))


@pytest.mark.parametrize("from_, to, message", [
    (None, "2026-03-05", "--to needs --from"),
    ("2026-03-05", "2026-03-02", r"--to \(2026-03-02\) is before --from \(2026-03-05\)"),
    ("March 2nd", None, "--from: expected a day YYYY-MM-DD, got 'March 2nd'"),
    ("2026-03-02", "2026-02-30", "--to: expected a day YYYY-MM-DD"),
])
def test_a_wrong_range_is_refused_naming_the_option(from_, to, message):
    with pytest.raises(ValueError, match=message):
        days(from_, to)
