"""Aggregation and writing of evaluation results."""

import json
import math

import pytest

from im2hands.eval.metrics import HandMetrics, PairMetrics, SampleMetrics
from im2hands.eval.report import Failure, aggregate, report_to_json, report_to_markdown, write_report


def hand(x: float) -> HandMetrics:
    return HandMetrics(iou=x / 10, chamfer_l1_mm=x, accuracy_mm=x + 1, completeness_mm=x - 1, mpjpe_mm=2 * x,
                       mpjpe_wrist_mm=3 * x)


def sample(r: float, l: float, vol: float = 0.0) -> SampleMetrics:
    return SampleMetrics(right=hand(r), left=hand(l), pair=PairMetrics(vol, 0.1 * vol, vol / 100, vol / 100))


RESULTS = [
    ("b", sample(2.0, 4.0, vol=10.0)),
    ("a", sample(4.0, 6.0, vol=30.0)),
    ("c", ValueError("pred: empty mesh (0 vertices, 0 faces)")),
    ("0", "mesh extraction\nfound no surface"),
]


def test_aggregate_means_per_hand_and_both():
    rep = aggregate(RESULTS)
    assert (rep.count, rep.failed) == (2, 2)
    rows = {r.metric: r for r in rep.hands}
    assert list(rows) == ["iou", "chamfer_l1_mm", "accuracy_mm", "completeness_mm", "mpjpe_mm", "mpjpe_wrist_mm"]
    ch = rows["chamfer_l1_mm"]
    assert (ch.right, ch.left, ch.mean, ch.unit) == (3.0, 5.0, 4.0, "mm")
    assert rows["mpjpe_wrist_mm"].mean == pytest.approx(12.0)
    assert rows["iou"].unit == ""
    pair = {r.metric: r for r in rep.pair}
    assert pair["penetration_volume_mm3"].mean == 20.0 and pair["penetration_volume_mm3"].unit == "mm³"
    assert pair["penetration_depth_mm"].mean == pytest.approx(0.2)
    assert pair["contact_iou"].mean == pytest.approx(0.2) and pair["contact_iou"].unit == ""


def test_contact_iou_mean_leaves_out_samples_whose_hands_do_not_meet():
    def with_contact(c: float) -> SampleMetrics:
        return SampleMetrics(right=hand(1.0), left=hand(1.0), pair=PairMetrics(0.0, 0.0, 0.0, c))

    rep = aggregate([("a", with_contact(0.5)), ("b", with_contact(float("nan"))), ("c", with_contact(0.7))])
    pair = {r.metric: r for r in rep.pair}
    assert pair["contact_iou"].mean == pytest.approx(0.6)
    # a NaN elsewhere is still not hidden
    rep = aggregate([("a", SampleMetrics(right=hand(1.0), left=hand(1.0), pair=PairMetrics(float("nan"), 0.0, 0.0)))])
    assert math.isnan({r.metric: r for r in rep.pair}["penetration_volume_mm3"].mean)
    assert report_to_json(rep)["samples"][0]["pair"]["contact_iou"] is None


def test_aggregate_sorts_samples_and_failures_by_name():
    rep = aggregate(RESULTS)
    assert [n for n, _ in rep.samples] == ["a", "b"]
    assert rep.failures == (Failure("0", "mesh extraction\nfound no surface"),
                            Failure("c", "ValueError: pred: empty mesh (0 vertices, 0 faces)"))
    assert aggregate(reversed(RESULTS)) == rep


def test_aggregate_rejects_duplicates_and_bad_outcomes():
    with pytest.raises(ValueError, match="'a' appears twice"):
        aggregate([("a", sample(1, 1)), ("a", RuntimeError("x"))])
    with pytest.raises(ValueError, match="outcome of 'a' must be"):
        aggregate([("a", 3.0)])
    with pytest.raises(ValueError, match="results: expected"):
        aggregate([sample(1, 1)])


def test_empty_report_has_nan_means_and_null_json():
    rep = aggregate([("x", RuntimeError("boom"))])
    assert rep.count == 0 and rep.failed == 1
    assert all(math.isnan(r.mean) for r in rep.hands)
    js = report_to_json(rep)
    assert js["hands"][0]["mean"] is None
    assert "n/a" in report_to_markdown(rep)


def test_write_report_is_deterministic_and_leaves_no_temporary_files(tmp_path):
    j1, m1 = write_report(aggregate(RESULTS), tmp_path / "one")
    j2, m2 = write_report(aggregate(list(reversed(RESULTS))), tmp_path / "two")
    assert j1.read_bytes() == j2.read_bytes() and m1.read_bytes() == m2.read_bytes()
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["metrics.json", "metrics.md"]
    data = json.loads(j1.read_text())
    assert (data["count"], data["failed"]) == (2, 2)
    assert [s["name"] for s in data["samples"]] == ["a", "b"]
    assert data["samples"][0]["mean"]["chamfer_l1_mm"] == 5.0
    md = m1.read_text()
    assert "| chamfer_l1_mm | mm | 3.0000 | 5.0000 | 4.0000 |" in md
    assert "- `0`: mesh extraction found no surface" in md            # one line per failure
    # overwriting keeps a complete file
    write_report(aggregate(RESULTS[:1]), tmp_path / "one")
    assert json.loads(j1.read_text())["count"] == 1


def test_write_report_rejects_other_objects(tmp_path):
    with pytest.raises(TypeError, match="report: expected a Report"):
        write_report({"count": 1}, tmp_path)
