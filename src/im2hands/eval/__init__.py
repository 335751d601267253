"""Evaluation: metrics of reconstructed hands (``metrics``) and result tables (``report``).

See ``docs/EVALUATION.md`` for each metric's protocol, units and frame.
"""

from im2hands.eval.metrics import (
    EvalConfig, HandGeometry, HandMetrics, Mesh, PairMetrics, SampleMetrics, TwoHands, as_mesh, chamfer,
    evaluate_hand, evaluate_sample, gt_from_sample, iou, iou_at_points, keypoint_errors, mesh_contains, mpjpe,
    penetration, sample_surface,
)
from im2hands.eval.report import Failure, Report, aggregate, write_report

__all__ = [
    "EvalConfig", "HandGeometry", "HandMetrics", "Mesh", "PairMetrics", "SampleMetrics", "TwoHands", "as_mesh",
    "chamfer", "evaluate_hand", "evaluate_sample", "gt_from_sample", "iou", "iou_at_points", "mesh_contains",
    "mpjpe", "keypoint_errors", "penetration", "sample_surface", "Failure", "Report", "aggregate", "write_report",
]
