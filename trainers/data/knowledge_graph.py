"""The `knowledge_graph` data set: a generated knowledge graph whose entities are paired with
short descriptions, drawn deterministically from a seed.

Entities have a type (person, city, company, river, university, band; the first
`entity_types` of them) and the categorical attributes of that type (a city has a size and a
region, a band an era, a region and a genre, ...). Typed relations join them (person works_for
company, company located_in city, river flows_through city, ...). Each entity's description
names its type and attributes and states up to `relation_facts` facts about neighbours, e.g.
"a young northern person who works for a small company". The pairs are (entity, description);
the class of a pair is the entity type, and with `region_groups` its group is the region.

Tower a reads an entity as a fixed-size neighbourhood tensor of shape (1 + max_neighbours, F)
(`InputSpec("graph", ...)`), F = T + A + 2R + 1 columns:

    [0, T)              entity type, one-hot             } the entity feature vector: one
    [T, T + A)          attribute values, one-hot each   } draw of N(0, feature_noise^2) is
                        (the attributes of the active     } added per entity, so an entity
                        types, in ATTRIBUTES order)       } reads the same wherever it appears
    [T + A, T + A + 2R) relation of the neighbour row: column T + A + 2r is relation r with the
                        centre as head (centre -> neighbour), T + A + 2r + 1 relation r with the
                        centre as tail (neighbour -> centre); all zero in row 0
    F - 1               mask: 1 for a real row (row 0 always), 0 for padding

Row 0 is the entity itself; rows 1.. are its neighbours (one row per edge, in random order),
padded with all-zero rows. When an entity has more edges than `max_neighbours`, its own
(outgoing) edges are kept first and incoming ones sampled; the neighbours its description
mentions are always among the rows. T, A and R depend only on `entity_types`:
`feature_layout` gives them.

Entities 0..n_train-1 are the training split and the rest the eval split; edges may cross the
split. The graph, the noise and the wording are drawn from separate streams of the seed, so
changing `feature_noise` keeps the same graph and texts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from trainers.config.data import KnowledgeGraphDataConfig
from trainers.data.paired import InputSpec, PairedData, text_split, token_spec
from trainers.data.tokenizer import WordTokenizer

ENTITY_TYPES = ("person", "city", "company", "river", "university", "band")
# Dict order is adjective order in descriptions ("a large muddy southern river").
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "size": ("small", "large"),
    "age": ("young", "elderly"),
    "era": ("old", "new"),
    "colour": ("muddy", "clear"),
    "region": ("northern", "southern", "eastern", "western"),
    "sector": ("tech", "shipping", "food"),
    "genre": ("rock", "jazz", "folk"),
}
TYPE_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "person": ("age", "region"),
    "city": ("size", "region"),
    "company": ("size", "region", "sector"),
    "river": ("size", "colour", "region"),
    "university": ("size", "era", "region"),
    "band": ("era", "region", "genre"),
}
GROUP_ATTRIBUTE = "region"  # every type has one, so every entity has a group


@dataclass(frozen=True)
class Relation:
    """Each `head` entity gets between `low` and `high` edges to random `tail` entities."""

    name: str
    head: str
    tail: str
    low: int
    high: int


# Each type after the first two relates to an earlier one, so any prefix of ENTITY_TYPES is a
# connected schema.
RELATIONS = (
    Relation("born_in", "person", "city", 1, 1),
    Relation("lives_in", "person", "city", 1, 1),
    Relation("works_for", "person", "company", 1, 1),
    Relation("located_in", "company", "city", 1, 1),
    Relation("flows_through", "river", "city", 1, 3),
    Relation("studied_at", "person", "university", 0, 1),
    Relation("located_in", "university", "city", 1, 1),
    Relation("member_of", "person", "band", 0, 1),
    Relation("formed_in", "band", "city", 1, 1),
)
OUT, IN = 0, 1  # the centre entity is the relation's head (OUT) or its tail (IN)
# How a description states a fact about a neighbour {n}, by (relation, direction).
PHRASES: dict[tuple[str, int], tuple[str, ...]] = {
    ("born_in", OUT): ("born in {n}", "who was born in {n}"),
    ("born_in", IN): ("where {n} was born", "the birthplace of {n}"),
    ("lives_in", OUT): ("who lives in {n}", "living in {n}"),
    ("lives_in", IN): ("where {n} lives", "home of {n}"),
    ("works_for", OUT): ("who works for {n}", "employed by {n}"),
    ("works_for", IN): ("that employs {n}", "employing {n}"),
    ("located_in", OUT): ("located in {n}", "based in {n}"),
    ("located_in", IN): ("home to {n}", "that hosts {n}"),
    ("flows_through", OUT): ("that flows through {n}", "running through {n}"),
    ("flows_through", IN): ("on {n}", "crossed by {n}"),
    ("studied_at", OUT): ("who studied at {n}", "who graduated from {n}"),
    ("studied_at", IN): ("that taught {n}", "whose alumni include {n}"),
    ("member_of", OUT): ("who plays in {n}", "playing in {n}"),
    ("member_of", IN): ("featuring {n}", "whose members include {n}"),
    ("formed_in", OUT): ("formed in {n}", "that started in {n}"),
    ("formed_in", IN): ("where {n} was formed", "the hometown of {n}"),
}
OPENERS = ("{np}", "this is {np}", "here is {np}")
ZERO_SHOT_TEMPLATE = "a {type}"


@dataclass(frozen=True)
class Schema:
    """The entity types, attributes and relations in use for one `entity_types` setting."""

    types: tuple[str, ...]
    attributes: tuple[str, ...]
    relations: tuple[Relation, ...]
    relation_names: tuple[str, ...]  # distinct names: the relation one-hot's order

    @classmethod
    def of(cls, entity_types: int) -> Schema:
        types = ENTITY_TYPES[:entity_types]
        used = {a for t in types for a in TYPE_ATTRIBUTES[t]}
        relations = tuple(r for r in RELATIONS if r.head in types and r.tail in types)
        return cls(
            types=types,
            attributes=tuple(a for a in ATTRIBUTES if a in used),
            relations=relations,
            relation_names=tuple(dict.fromkeys(r.name for r in relations)),
        )


@dataclass(frozen=True)
class FeatureLayout:
    """Column offsets of a neighbourhood row (see the module docstring)."""

    types: int  # T
    attribute_values: int  # A
    relations: int  # R

    @property
    def entity_width(self) -> int:
        return self.types + self.attribute_values

    @property
    def width(self) -> int:
        return self.entity_width + 2 * self.relations + 1


def feature_layout(entity_types: int) -> FeatureLayout:
    schema = Schema.of(entity_types)
    values = sum(len(ATTRIBUTES[a]) for a in schema.attributes)
    return FeatureLayout(len(schema.types), values, len(schema.relation_names))


@dataclass(frozen=True)
class Edges:
    """Every edge seen from both ends, one row per (centre, neighbour) with its rank among the
    centre's edges: outgoing edges first, each set in random order."""

    centre: np.ndarray
    neighbour: np.ndarray
    relation: np.ndarray  # index into Schema.relation_names
    direction: np.ndarray  # OUT or IN
    rank: np.ndarray


def make_knowledge_graph(config: KnowledgeGraphDataConfig, seed: int) -> PairedData:
    """The whole graph at once (neighbourhoods reach across the split), then split by entity."""
    schema = Schema.of(config.entity_types)
    layout = feature_layout(config.entity_types)
    # Separate streams: the noise level or the wording can change without redrawing the graph.
    graph_rng, noise_rng, text_rng = (np.random.default_rng([seed, s]) for s in (0, 1, 2))
    n = config.n_train + config.n_eval
    # Balanced and shuffled, so every type has entities to relate to even in tiny graphs.
    types = graph_rng.permutation(np.arange(n) % len(schema.types))
    attributes = _draw_attributes(schema, types, graph_rng)
    edges = _draw_edges(schema, types, graph_rng)
    features = _entity_features(schema, layout, types, attributes)
    features += noise_rng.normal(0.0, config.feature_noise, features.shape).astype(np.float32)
    graphs = _neighbourhoods(features, edges, layout, config.max_neighbours, graph_rng)
    described = edges.rank < config.relation_facts
    texts = _descriptions(schema, types, attributes, edges, described, text_rng)
    prompts = [ZERO_SHOT_TEMPLATE.format(type=t) for t in schema.types]
    tokenizer = WordTokenizer.from_texts(texts + prompts)
    groups = attributes[:, schema.attributes.index(GROUP_ATTRIBUTE)]
    parts = (slice(0, config.n_train), slice(config.n_train, n))
    train, evaluation = (
        text_split(
            torch.from_numpy(graphs[part]),
            texts[part],
            tokenizer,
            types[part],
            groups[part] if config.region_groups else None,
        )
        for part in parts
    )
    return PairedData(
        train=train,
        eval=evaluation,
        a_input=InputSpec("graph", (1 + config.max_neighbours, layout.width)),
        b_input=token_spec(tokenizer),
        class_names=schema.types,
        class_inputs=tokenizer.encode_batch(prompts),
        class_texts=tuple(prompts),
        tokenizer=tokenizer,
        group_names=ATTRIBUTES[GROUP_ATTRIBUTE] if config.region_groups else (),
    )


def _draw_attributes(schema: Schema, types: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, len(schema.attributes)) value indices; -1 where the entity's type lacks the attribute."""
    values = np.empty((len(types), len(schema.attributes)), dtype=np.int64)
    for column, name in enumerate(schema.attributes):
        has = np.array([name in TYPE_ATTRIBUTES[t] for t in schema.types])[types]
        drawn = rng.integers(len(ATTRIBUTES[name]), size=len(types))
        values[:, column] = np.where(has, drawn, -1)
    return values


def _draw_edges(schema: Schema, types: np.ndarray, rng: np.random.Generator) -> Edges:
    rows = []
    for relation in schema.relations:
        heads = np.flatnonzero(types == schema.types.index(relation.head))
        tails = np.flatnonzero(types == schema.types.index(relation.tail))
        counts = rng.integers(relation.low, relation.high + 1, size=len(heads))
        head = np.repeat(heads, counts)
        tail = rng.choice(tails, size=len(head))
        name = np.full(len(head), schema.relation_names.index(relation.name))
        rows.append(np.stack([head, tail, name], axis=1))
    # A river drawn to flow through the same city twice is one edge.
    head, tail, name = np.unique(np.concatenate(rows), axis=0).T
    centre = np.concatenate([head, tail])
    direction = np.repeat([OUT, IN], len(head))
    # Outgoing edges rank first: they are the entity's own facts (where a person works) while
    # incoming ones can be many (everyone born in a city), so those are sampled.
    key = rng.random(len(centre)) + direction
    order = np.lexsort((key, centre))
    return Edges(
        centre=centre[order],
        neighbour=np.concatenate([tail, head])[order],
        relation=np.concatenate([name, name])[order],
        direction=direction[order],
        rank=_rank_within(centre[order]),
    )


def _rank_within(sorted_groups: np.ndarray) -> np.ndarray:
    """Position of each element within its run of equal values of a sorted array."""
    first = np.searchsorted(sorted_groups, sorted_groups, side="left")
    ranks: np.ndarray = np.arange(len(sorted_groups)) - first
    return ranks


def _entity_features(
    schema: Schema, layout: FeatureLayout, types: np.ndarray, attributes: np.ndarray
) -> np.ndarray:
    """(n, T + A) clean one-hots of type and attribute values."""
    features = np.zeros((len(types), layout.entity_width), dtype=np.float32)
    rows = np.arange(len(types))
    features[rows, types] = 1.0
    offset = layout.types
    for column, name in enumerate(schema.attributes):
        has = attributes[:, column] >= 0
        features[rows[has], offset + attributes[has, column]] = 1.0
        offset += len(ATTRIBUTES[name])
    return features


def _neighbourhoods(
    features: np.ndarray,
    edges: Edges,
    layout: FeatureLayout,
    max_neighbours: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """(n, 1 + max_neighbours, F) float32 tensors in the documented layout."""
    graphs = np.zeros((len(features), 1 + max_neighbours, layout.width), dtype=np.float32)
    graphs[:, 0, : layout.entity_width] = features
    graphs[:, 0, -1] = 1.0
    kept = edges.rank < max_neighbours
    centre, neighbour = edges.centre[kept], edges.neighbour[kept]
    # Shuffle each centre's rows, so that a row's position does not say it is described.
    order = np.lexsort((rng.random(len(centre)), centre))
    row = np.empty(len(centre), dtype=np.int64)
    row[order] = 1 + _rank_within(centre[order])
    graphs[centre, row, : layout.entity_width] = features[neighbour]
    columns = layout.entity_width + 2 * edges.relation[kept] + edges.direction[kept]
    graphs[centre, row, columns] = 1.0
    graphs[centre, row, -1] = 1.0
    return graphs


def _descriptions(
    schema: Schema,
    types: np.ndarray,
    attributes: np.ndarray,
    edges: Edges,
    described: np.ndarray,
    rng: np.random.Generator,
) -> list[str]:
    """One description per entity: its noun phrase, then its described facts joined by "and"."""
    openers = rng.integers(len(OPENERS), size=len(types))
    facts: list[list[str]] = [[] for _ in types]
    for row in np.flatnonzero(described):
        centre, neighbour = int(edges.centre[row]), int(edges.neighbour[row])
        key = (schema.relation_names[edges.relation[row]], int(edges.direction[row]))
        phrasing = PHRASES[key][rng.integers(len(PHRASES[key]))]
        other = _neighbour_phrase(schema, types, attributes, neighbour, rng)
        facts[centre].append(phrasing.format(n=other))
    texts = []
    for entity, opener in enumerate(openers):
        noun = _noun_phrase(schema, types, attributes, entity)
        text = OPENERS[opener].format(np=noun)
        texts.append(" ".join([text, " and ".join(facts[entity])]).strip())
    return texts


def _noun_phrase(schema: Schema, types: np.ndarray, attributes: np.ndarray, entity: int) -> str:
    """Every attribute the entity has, then its type: "a large northern city"."""
    words = [
        ATTRIBUTES[name][attributes[entity, column]]
        for column, name in enumerate(schema.attributes)
        if attributes[entity, column] >= 0
    ]
    return _with_article([*words, schema.types[types[entity]]])


def _neighbour_phrase(
    schema: Schema,
    types: np.ndarray,
    attributes: np.ndarray,
    entity: int,
    rng: np.random.Generator,
) -> str:
    """One random attribute of a neighbour, then its type: "a small company"."""
    own = [c for c in range(len(schema.attributes)) if attributes[entity, c] >= 0]
    column = own[rng.integers(len(own))]
    value = ATTRIBUTES[schema.attributes[column]][attributes[entity, column]]
    return _with_article([value, schema.types[types[entity]]])


def _with_article(words: list[str]) -> str:
    article = "an" if words[0][0] in "aeiou" else "a"
    return " ".join([article, *words])
