"""Errors raised by the trainers. Kept apart from the orchestrator's so trainers stay standalone."""

from __future__ import annotations


class TrainerError(Exception):
    """Base of the trainers' deliberate errors."""


class DataError(TrainerError, ValueError):
    """Input data that cannot be used: wrong shape, non-finite values, missing files."""


class NonFiniteLossError(TrainerError):
    """The loss became NaN or infinite; training cannot meaningfully go on."""

    def __init__(self, step: int) -> None:
        self.step = step
        super().__init__(f"non-finite loss at step {step}")
