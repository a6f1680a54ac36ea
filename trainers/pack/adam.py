"""Adam over K members' stacked parameters, each member with its own learning rate and weight
decay: the same update torch.optim.Adam makes for each member alone.

A stacked parameter is (K, *shape), contiguous: member k's tensor is row k, one dense block.
Rates and decays are (K,) tensors. The update is the kernel torch.optim.Adam(fused=True) runs
(the unpacked trainer's optimiser, dual_encoder.make_optimiser), called once for each distinct
(rate, decay) over those members' rows of every parameter, so a member's update is exactly the
one it gets alone; a sweep that varies neither runs one call for the whole pack.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class StackedGroup:
    """Stacked parameters that share a rule: per-member base rates `lr` (K,), per-member L2
    decays `weight_decay` (K,). The rate a step uses is `lr * scale` (the warm-up's)."""

    params: list[torch.Tensor]
    lr: torch.Tensor
    weight_decay: torch.Tensor
    scale: float = 1.0


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
        """One update of every member: for each distinct (rate, decay) of the members, one
        call of the kernel torch.optim.Adam(fused=True) runs, over those members' rows of
        every parameter. A sweep over temperatures or seeds is one call; over K rates, K."""
        self.steps += 1
        calls: dict[tuple[float, float], list[tuple[torch.Tensor, ...]]] = {}
        for group in self.groups:
            rates = (group.lr.double() * group.scale).tolist()
            decays = group.weight_decay.double().tolist()
            for p in group.params:
                if p.grad is None:
                    continue
                moments = self.state.get(id(p))
                if moments is None:
                    moments = self.state[id(p)] = _Moments(torch.zeros_like(p), torch.zeros_like(p))
                grad = p.grad.contiguous()
                for row, setting in enumerate(zip(rates, decays, strict=True)):
                    views = (p[row], grad[row], moments.exp_avg[row], moments.exp_avg_sq[row])
                    calls.setdefault(setting, []).append(views)
        for (lr, decay), rows in calls.items():
            self._fused(lr, decay, rows)

    def _fused(self, lr: float, decay: float, rows: list[tuple[torch.Tensor, ...]]) -> None:
        params, grads, exp_avgs, exp_avg_sqs = (list(part) for part in zip(*rows, strict=True))
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

    def keep(self, rows: torch.Tensor, params: list[torch.Tensor]) -> None:
        """Only the members at `rows` go on; `params` are the kept stacks, one per group in
        the groups' order (each group holds one stacked parameter)."""
        for group, new in zip(self.groups, params, strict=True):
            (old,) = group.params
            moments = self.state.pop(id(old), None)
            if moments is not None:
                self.state[id(new)] = _Moments(moments.exp_avg[rows], moments.exp_avg_sq[rows])
            group.params = [new]
            group.lr, group.weight_decay = group.lr[rows], group.weight_decay[rows]
