"""The graph tower: a small message-passing network over one entity's neighbourhood.

It reads the `knowledge_graph` layout (trainers/data/knowledge_graph.py): a (1 + neighbours, F)
tensor per entity, row 0 the entity, the last column a mask that is 0 for padding rows. It needs
nothing else of the layout: the relation one-hot is part of each neighbour row, so every message
is computed from the neighbour's features together with its relation type and direction.

Each round, every real neighbour sends the centre a message computed from its own state and the
centre's; the centre adds an update computed from the masked mean of the messages (a residual
step), and each neighbour likewise updates from the new centre state. After `num_layers` rounds
the centre state is normalised, projected by the linear `proj` and L2-normalised.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from trainers.config.towers import GraphTowerConfig
from trainers.data.paired import InputSpec
from trainers.errors import DataError


def _mlp(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))


class MessageRound(nn.Module):
    """One round: neighbours -> centre messages, masked mean, residual updates of both ends."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.message = _mlp(2 * hidden, hidden)
        self.update_centre = _mlp(2 * hidden, hidden)
        self.update_neighbours = _mlp(2 * hidden, hidden)
        self.norm_centre = nn.LayerNorm(hidden)
        self.norm_neighbours = nn.LayerNorm(hidden)

    def forward(
        self, centre: torch.Tensor, neighbours: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """centre (B, H), neighbours (B, K, H), mask (B, K) bool -> the updated pair."""
        expanded = centre[:, None, :].expand_as(neighbours)
        messages = self.message(torch.cat([neighbours, expanded], dim=-1))
        # Padded rows still get a message (from the biases): leave them out of the mean.
        messages = torch.where(mask[..., None], messages, torch.zeros_like(messages))
        count = mask.sum(dim=1, keepdim=True).clamp(min=1).to(messages.dtype)
        mean = messages.sum(dim=1) / count  # an entity with no neighbours receives zeros
        centre = self.norm_centre(centre + self.update_centre(torch.cat([centre, mean], dim=-1)))
        expanded = centre[:, None, :].expand_as(neighbours)
        step = self.update_neighbours(torch.cat([neighbours, expanded], dim=-1))
        neighbours = self.norm_neighbours(neighbours + step)
        return centre, neighbours


class GraphTower(nn.Module):
    """Embeds entity neighbourhoods (B, 1 + K, F) to L2-normalised (B, embed_dim) vectors."""

    def __init__(self, config: GraphTowerConfig, spec: InputSpec, embed_dim: int) -> None:
        super().__init__()
        if spec.kind != "graph" or len(spec.shape) != 2 or spec.shape[1] < 2:
            raise DataError(
                f"a graph_mpnn tower reads graph inputs of shape (1 + neighbours, features >= 2),"
                f" not {spec.kind} inputs of shape {spec.shape}"
            )
        features = spec.shape[1] - 1  # every column but the mask
        hidden = config.hidden_size
        # Separate encoders: the centre row has no relation columns set, neighbour rows do.
        self.encode_centre = nn.Linear(features, hidden)
        self.encode_neighbours = nn.Linear(features, hidden)
        self.rounds = nn.ModuleList(MessageRound(hidden) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(hidden)
        self.proj = nn.Linear(hidden, embed_dim)

    def forward(self, graphs: torch.Tensor) -> torch.Tensor:
        mask = graphs[:, 1:, -1] > 0.5
        # Padding is zeroed first, so whatever it holds cannot reach the output or the gradients.
        rows = torch.where(mask[..., None], graphs[:, 1:, :-1], graphs.new_zeros(()))
        centre = self.encode_centre(graphs[:, 0, :-1])
        neighbours = self.encode_neighbours(rows)
        for message_round in self.rounds:
            centre, neighbours = message_round(centre, neighbours, mask)
        return F.normalize(self.proj(self.norm(centre)), dim=-1)
