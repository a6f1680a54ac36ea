"""The `gaussian` data set: paired random vectors, for the cone-effect experiments."""

from __future__ import annotations

import numpy as np
import torch

from trainers.config import GaussianDataConfig
from trainers.data.paired import InputSpec, PairedData, PairedSplit


def make_gaussian(config: GaussianDataConfig, seed: int) -> PairedData:
    rng = np.random.default_rng([seed, 4])
    centres = rng.normal(0.0, 1.0, (max(config.classes, 1), config.dim)) * 2.0
    rho = config.correlation

    def split(n: int, stream: int) -> PairedSplit:
        r = np.random.default_rng([seed, stream])
        labels = r.integers(max(config.classes, 1), size=n)
        a = r.normal(0.0, 1.0, (n, config.dim))
        if config.classes:
            a += centres[labels]
        b = rho * a + np.sqrt(1.0 - rho**2) * r.normal(0.0, 1.0, (n, config.dim))
        return PairedSplit(
            a=torch.from_numpy(a.astype(np.float32)),
            b=torch.from_numpy(b.astype(np.float32)),
            match_ids=torch.arange(n),
            labels=torch.from_numpy(labels) if config.classes else None,
        )

    spec = InputSpec("vector", (config.dim,))
    return PairedData(
        train=split(config.n_train, 0),
        eval=split(config.n_eval, 1),
        a_input=spec,
        b_input=spec,
        class_names=tuple(f"cluster {k}" for k in range(config.classes)),
        class_inputs=torch.from_numpy(centres.astype(np.float32)) if config.classes else None,
    )
