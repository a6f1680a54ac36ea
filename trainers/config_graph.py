"""Configuration of the knowledge-graph/text pair: the generated `knowledge_graph` data set
(data_graph.py) and the message-passing tower that reads its entity neighbourhoods
(towers_graph.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from trainers.config_base import FrozenModel

ENTITY_TYPE_COUNT = 6  # person, city, company, river, university, band (data_graph.ENTITY_TYPES)
MAX_RELATION_FACTS = 3


class KnowledgeGraphDataConfig(FrozenModel):
    """A generated knowledge graph: typed entities with categorical attributes and typed
    relations, each entity paired with a short description of itself and some neighbours.
    Tower a reads the entity's neighbourhood, tower b the description; the class is the type."""

    name: Literal["knowledge_graph"] = "knowledge_graph"
    n_train: int = Field(2048, ge=8, le=200_000, description="training entities (pairs)")
    n_eval: int = Field(512, ge=8, le=100_000, description="held-out entities (pairs)")
    entity_types: int = Field(
        ENTITY_TYPE_COUNT,
        ge=2,
        le=ENTITY_TYPE_COUNT,
        description="how many of person, city, company, river, university, band to use, in order",
    )
    max_neighbours: int = Field(
        8, ge=1, le=64, description="neighbour rows per entity; more are sampled, fewer padded"
    )
    feature_noise: float = Field(
        0.3, ge=0.0, le=10.0, description="std of the Gaussian noise on entity feature vectors"
    )
    relation_facts: int = Field(
        1,
        ge=0,
        le=MAX_RELATION_FACTS,
        description="facts about neighbours each description states (fewer if it has fewer)",
    )
    region_groups: bool = Field(
        False, description="group the pairs by the entity's region, for per-group accuracy"
    )

    @model_validator(mode="after")
    def _facts_fit_the_neighbourhood(self) -> KnowledgeGraphDataConfig:
        # A described neighbour must be in the tower's input, or the text says what it cannot see.
        if self.relation_facts > self.max_neighbours:
            raise ValueError(
                f"relation_facts {self.relation_facts} exceeds max_neighbours "
                f"{self.max_neighbours}: every neighbour a description mentions must fit in the "
                "neighbourhood; raise max_neighbours or lower relation_facts"
            )
        return self


class GraphTowerConfig(FrozenModel):
    """A message-passing network over an entity's neighbourhood: relation-typed messages, masked
    mean aggregation, `num_layers` residual rounds, then a projection of the centre entity."""

    kind: Literal["graph_mpnn"] = "graph_mpnn"
    hidden_size: int = Field(64, ge=8, le=1024, description="width of the entity states")
    num_layers: int = Field(2, ge=1, le=8, description="rounds of message passing")
