"""Modality-gap metrics on paired embeddings, in NumPy (definitions: docs/architecture.md links
the paper's; the names are the one metric vocabulary of trainers/reports.py).

- stream.py: the O(N·d) metrics in one streaming pass (`gap_metrics`, every eval step)
- pairwise.py: what needs all pairs within a modality, PCA or a classifier
- shift.py: shifting the gap (the paper's Table 1) and closing it by a rotation
- report.py: every metric and the shift curve of one pair of embedding sets (`analyze`)
"""

from trainers.gap.report import (
    DEFAULT_MAX_PAIRS,
    METRIC_NAMES,
    SAMPLED_METRICS,
    GapReport,
    gap_metrics,
    gap_report,
    procrustes_rotation,
)
from trainers.gap.shift import (
    DEFAULT_LAMBDAS,
    DEFAULT_TEMPERATURE,
    ShiftPoint,
    gap_direction,
    shift_curve,
    shift_pairs,
)
from trainers.gap.stream import STREAMING_METRICS, GapAccumulator, stream_gap_metrics

__all__ = [
    "DEFAULT_LAMBDAS",
    "DEFAULT_MAX_PAIRS",
    "DEFAULT_TEMPERATURE",
    "METRIC_NAMES",
    "SAMPLED_METRICS",
    "STREAMING_METRICS",
    "GapAccumulator",
    "GapReport",
    "ShiftPoint",
    "gap_direction",
    "gap_metrics",
    "gap_report",
    "procrustes_rotation",
    "shift_curve",
    "shift_pairs",
    "stream_gap_metrics",
]
