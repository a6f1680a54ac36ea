"""Where a trial runs and in what precision.

- The device follows the GPU share the runner gave the trial: `auto` is CUDA exactly when the
  trial was given a GPU (a share > 0), not whenever this process happens to see one.
- bf16 autocast covers the towers' forward passes on CUDA, nothing else: the contrastive loss
  (logits up to 1/τ = 100, which bf16 rounds to steps of 0.5) and every evaluation run in
  float32, so a CPU and a GPU trial of one config report comparable metrics.
- Trials sharing a GPU (`resources.gpu: 0.25`) each cap their process's caching allocator at
  their share of its memory, report their peak, and free what they cached when they end (a
  reused Ray actor runs the next trial in the same process).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def resolve_device(choice: str, gpus: float | None = None) -> torch.device:
    """The device of a trial whose config says `choice` and that was given `gpus` of a GPU
    (None: run outside a runner, where `auto` takes a GPU when one is visible)."""
    if choice == "cuda":
        return torch.device("cuda")
    if choice == "cpu":
        return torch.device("cpu")
    given = torch.cuda.is_available() if gpus is None else gpus > 0
    return torch.device("cuda" if given else "cpu")


def tower_autocast(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast for the towers' forward passes on CUDA; nothing on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def full_precision(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """No autocast on `device`, whatever region the caller is in: float32 throughout."""
    return torch.autocast(device.type, enabled=False)


@contextlib.contextmanager
def gpu_share(device: torch.device, share: float | None) -> Iterator[None]:
    """Run a trial within `share` of the GPU's memory (a fraction below 1 caps the caching
    allocator of this process), with its peak counted from zero, and give back the memory it
    cached when it ends."""
    if device.type != "cuda":
        yield
        return
    if share is not None and share > 0:
        # The cap wants an index: plain "cuda" (what `auto` resolves to) has none.
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.set_per_process_memory_fraction(min(share, 1.0), index)
    torch.cuda.reset_peak_memory_stats(device)
    try:
        yield
    finally:
        # cuBLAS keeps a workspace per handle in the caching allocator (32 MiB each on Hopper)
        # until told: without this a finished trial still holds tens of MB of the card.
        clear_workspaces = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
        if clear_workspaces is not None:
            clear_workspaces()
        torch.cuda.empty_cache()


def peak_memory_gb(device: torch.device) -> dict[str, float]:
    """The trial's peak GPU memory so far, as the metric `gpu_peak_memory_gb` (CUDA only)."""
    if device.type != "cuda":
        return {}
    return {"gpu_peak_memory_gb": torch.cuda.max_memory_allocated(device) / 1e9}


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type != "cuda":
        return x
    # From pinned memory the copy is a DMA that does not hold up the host.
    return x.pin_memory().to(device, non_blocking=True)
