"""Evaluation: metrics of reconstructed hands (``metrics``).

See ``docs/EVALUATION.md`` for each metric's protocol, units and frame.
"""

from im2hands.eval.metrics import (
    EvalConfig, HandGeometry, HandMetrics, Mesh, PairMetrics, SampleMetrics, TwoHands, as_mesh, chamfer,
    evaluate_hand, evaluate_sample, gt_from_sample, iou, iou_at_points, mesh_contains, mpjpe, penetration,
    sample_surface,
)

__all__ = [
    "EvalConfig", "HandGeometry", "HandMetrics", "Mesh", "PairMetrics", "SampleMetrics", "TwoHands", "as_mesh",
    "chamfer", "evaluate_hand", "evaluate_sample", "gt_from_sample", "iou", "iou_at_points", "mesh_contains",
    "mpjpe", "penetration", "sample_surface",
]
