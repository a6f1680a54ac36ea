"""Adam over K members' stacked parameters, each member with its own learning rate and weight
decay: the same update torch.optim.Adam makes for each member alone.

A stacked parameter is (K, *shape), contiguous: member k's tensor is row k, one dense block.
The update is the kernel torch.optim.Adam(fused=True) runs (the unpacked trainer's optimiser,
dual_encoder.make_optimiser), called once for each distinct (rate, decay) over those members'
rows of every parameter, so a member's update is exactly the one it gets alone. A pack whose
members share their rate and decay (a sweep of temperatures or seeds) is one call over the whole
stacks. Rates and decays are Python floats, as torch's are: reading them never waits for a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

Setting = tuple[float, float]  # (base rate, L2 decay) of one member's row


@dataclass
class StackedGroup:
    """Stacked parameters that share a rule: each member's base rate and L2 decay. The rate
    a step uses is the base rate times `scale` (the warm-up's)."""

    params: list[torch.Tensor]
    lr: list[float]
    weight_decay: list[float]
    scale: float = 1.0

    def rows_by_setting(self) -> dict[Setting, list[int]]:
        out: dict[Setting, list[int]] = {}
        for row, setting in enumerate(zip(self.lr, self.weight_decay, strict=True)):
            out.setdefault(setting, []).append(row)
        return out


@dataclass
class _Moments:
    exp_avg: torch.Tensor
    exp_avg_sq: torch.Tensor


@dataclass
class StackedAdam:
    """Adam with betas and eps shared by the pack and every other setting per member."""

    groups: list[StackedGroup]
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    steps: int = 0
    state: dict[int, _Moments] = field(default_factory=dict)

    def set_scale(self, scale: float) -> None:
        for group in self.groups:
            group.scale = scale

    def zero_grad(self) -> None:
        for group in self.groups:
            for p in group.params:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        calls: dict[Setting, list[tuple[torch.Tensor, ...]]] = {}
        for group in self.groups:
            by_setting = group.rows_by_setting()
            for p in group.params:
                if p.grad is None:
                    continue
                moments = self.state.get(id(p))
                if moments is None:
                    moments = self.state[id(p)] = _Moments(torch.zeros_like(p), torch.zeros_like(p))
                whole = (p, p.grad.contiguous(), moments.exp_avg, moments.exp_avg_sq)
                for (lr, decay), rows in by_setting.items():
                    setting = (lr * group.scale, decay)
                    if len(by_setting) == 1:  # every member alike: the whole stacks at once
                        calls.setdefault(setting, []).append(whole)
                        continue
                    for row in rows:
                        calls.setdefault(setting, []).append(tuple(t[row] for t in whole))
        for (lr, decay), tensors in calls.items():
            self._fused(lr, decay, tensors)

    def _fused(self, lr: float, decay: float, tensors: list[tuple[torch.Tensor, ...]]) -> None:
        params, grads, exp_avgs, exp_avg_sqs = (list(part) for part in zip(*tensors, strict=True))
        # The kernel reads each tensor's step (torch.optim.Adam increments them just before).
        step = torch.tensor(float(self.steps), device=params[0].device)
        torch._fused_adam_(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            [],
            [step] * len(params),
            lr=lr,
            beta1=self.betas[0],
            beta2=self.betas[1],
            weight_decay=decay,
            eps=self.eps,
            amsgrad=False,
            maximize=False,
        )

    def moments(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The first and second moments of a stacked parameter, None before its first step."""
        found = self.state.get(id(p))
        return None if found is None else (found.exp_avg, found.exp_avg_sq)

    def set_moments(self, p: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor) -> None:
        self.state[id(p)] = _Moments(exp_avg, exp_avg_sq)

    def keep(self, rows: list[int], params: list[torch.Tensor]) -> None:
        """Only the members at `rows` go on; `params` are the kept stacks, one per group in
        the groups' order (each group holds one stacked parameter)."""
        index = torch.tensor(rows, device=params[0].device) if params else None
        for group, new in zip(self.groups, params, strict=True):
            (old,) = group.params
            moments = self.state.pop(id(old), None)
            if moments is not None:
                kept = _Moments(moments.exp_avg[index], moments.exp_avg_sq[index])
                self.state[id(new)] = kept
            group.params = [new]
            group.lr = [group.lr[r] for r in rows]
            group.weight_decay = [group.weight_decay[r] for r in rows]
