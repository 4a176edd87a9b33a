"""The calibration benchmark: its statistics, the window rule it simulates, and a run on real photos."""

from __future__ import annotations

import numpy as np
import pytest

from footfall.benchmarks.calibration import calibrate, clopper_pearson, threshold_at_far, window_merges
from footfall.config.schema import parse_config


def test_clopper_pearson_brackets_the_observed_rate_and_bounds_zero_errors_by_the_rule_of_three():
    lo, hi = clopper_pearson(5, 1000)
    assert lo < 0.005 < hi
    lo0, hi0 = clopper_pearson(0, 1_000_000)
    assert lo0 == 0.0
    assert hi0 == pytest.approx(3.69e-6, rel=0.01)  # -ln(0.025) / n


def test_threshold_at_far_accepts_no_more_impostors_than_the_rate_allows():
    impostor = np.sort(np.linspace(0, 1, 1000, dtype=np.float32))[::-1]
    t = threshold_at_far(impostor, 1e-2)
    assert int(np.sum(impostor >= t)) == 10


def test_window_rule_refuses_a_match_below_threshold_within_margin_or_not_mutual():
    ww = np.array([[1.0, 0.1, 0.1], [0.1, 1.0, 0.1], [0.1, 0.1, 1.0]])
    assert window_merges(np.array([0.6, 0.2, 0.1]), ww, 0.5, 0.05, True) == 0
    assert window_merges(np.array([0.45, 0.2, 0.1]), ww, 0.5, 0.05, True) is None
    assert window_merges(np.array([0.6, 0.58, 0.1]), ww, 0.5, 0.05, True) is None
    lookalikes = np.array([[1.0, 0.1, 0.7], [0.1, 1.0, 0.1], [0.7, 0.1, 1.0]])
    assert window_merges(np.array([0.6, 0.2, 0.1]), lookalikes, 0.5, 0.05, True) is None
    assert window_merges(np.array([0.6, 0.2, 0.1]), lookalikes, 0.5, 0.05, False) == 0


def test_calibration_reports_the_configured_operating_point_on_a_labelled_set(faces_dir, shared_models):
    config = parse_config({"models": {"dir": str(shared_models)}})
    r = calibrate(config, faces_dir, renditions=2, shots=3, trials=50, progress=False)
    op = r["operating_point"]
    assert {"dedup_threshold", "member_threshold", "recall_other_photo", "recall_same_photo",
            "passage_far", "false_merges"} <= set(op)
    assert op["recall_same_photo"] >= op["recall_other_photo"] > 0.5
    assert op["passage_far"] < 1e-3
    lo, hi = op["passage_far_ci95"]
    assert lo <= op["passage_far"] <= hi
    assert r["identities"] == 26 and r["passages"] > 100
    # 26 people: the curve stops at 25 open windows of distinct people
    assert max(int(n) for n in next(iter(r["false_merge"].values()))) == 25
    assert set(r["identification"]) == {"mean", "best"}
