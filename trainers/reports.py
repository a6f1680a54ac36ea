"""The metric names each trainer reports: the one vocabulary of trainer reports, MLflow keys,
`results` JSON and a spec's `metric`.

A trainer reports exactly the names it declares here, and nothing else: the orchestrator
records every declared name, fails a trial that reports an undeclared one, and accepts only a
declared name as a spec's `metric` (docs/architecture.md, "Adding a metric"). Torch-free, so
that validating a spec does not import torch.
"""

from __future__ import annotations

from trainers.gap.stream import STREAMING_METRICS

# Only a trial on a GPU has these (trainers/device.py).
CUDA_METRICS: tuple[str, ...] = ("gpu_peak_memory_gb",)

# With eval.folder, at every evaluation, on the labelled folder's held-out images and its
# classes' prompts (trainers/evaluate_folder.py): names that say they count the folder.
FOLDER_METRICS: tuple[str, ...] = (
    "folder_zero_shot_acc",  # nearest class prompt ensemble
    "folder_gap_norm",  # each image against its class's prompt ensemble
    "folder_centroid_cosine",
    "folder_paired_cosine",
)

# At step 0 and every eval.every_steps steps, on the held-out split (trainers/evaluate.py).
DUAL_ENCODER_METRICS: tuple[str, ...] = (
    "loss",
    "train_loss",  # mean training loss since the last report; absent at step 0
    "temperature",
    *STREAMING_METRICS,
    # Names that say what they count (docs/metrics.md).
    "zero_shot_acc",  # nearest class prompt, where the data has prompts
    "centroid_acc",  # nearest class mean of tower b, where the data has classes
    "recall_at_1_a2b",  # instance-level: the query's own pair (or a copy of it)
    "recall_at_1_b2a",
    "class_recall_at_1_a2b",  # any item of the query's class, where the data has classes
    "class_recall_at_1_b2a",
    # groups of the data (shapes backgrounds): the fairness view of the paper's Table 2
    "worst_group_acc",
    "group_acc_spread",
    # the gap shift of Table 1, evaluated after training (eval.shift_lambdas); the centroid
    # names where the data has classes but no prompts
    "shift_best_lambda",
    "shift_best_zero_shot_acc",
    "shift_zero_shot_gain",
    "shift_best_centroid_acc",
    "shift_centroid_gain",
    "shift_heldout_lambda",
    "shift_heldout_zero_shot_acc",
    "shift_heldout_centroid_acc",
    "shift_heldout_gain",
    "shift_heldout_gain_low",
    "shift_heldout_gain_high",
    *FOLDER_METRICS,
    *CUDA_METRICS,
)

# The Figure 3 simulation (trainers/landscape.py): one report per shift, the last with the minimum.
LANDSCAPE_METRICS: tuple[str, ...] = (
    "shift",
    "gap_norm",
    "loss",
    "temperature",
    "min_loss",
    "min_loss_gap",
    "min_loss_shift",
    "min_at_edge",
)
