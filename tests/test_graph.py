"""The knowledge-graph/text pair: the generated graph's documented layout, its descriptions,
determinism from the seed, clear errors for bad configuration, and the graph tower."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from trainers.config.data import KnowledgeGraphDataConfig
from trainers.config.towers import GraphTowerConfig
from trainers.data.knowledge_graph import (
    ATTRIBUTES,
    IN,
    OUT,
    RELATIONS,
    Schema,
    feature_layout,
    make_knowledge_graph,
)
from trainers.data.paired import InputSpec, PairedData
from trainers.errors import DataError
from trainers.loss import contrastive_loss
from trainers.towers.graph import GraphTower

TINY: dict[str, Any] = {"n_train": 40, "n_eval": 20, "max_neighbours": 4}


def graph(seed: int = 0, **changes: Any) -> PairedData:
    return make_knowledge_graph(KnowledgeGraphDataConfig(**{**TINY, **changes}), seed)


def test_tensors_follow_the_documented_layout() -> None:
    data = graph(feature_noise=0.0)
    layout = feature_layout(6)
    assert data.a_input == InputSpec("graph", (5, layout.width))
    assert data.train.a.shape == (40, 5, layout.width) and data.train.a.dtype == torch.float32
    assert data.eval.b.shape[0] == 20 and data.eval.b.dtype == torch.int64
    assert data.class_names == Schema.of(6).types and data.class_texts is not None
    assert data.class_texts[0] == "a person"
    assert data.class_inputs is not None and data.class_inputs.shape[0] == 6
    a = data.train.a
    mask = a[:, :, -1]
    assert bool((mask[:, 0] == 1).all())
    assert bool((a[mask == 0] == 0).all())  # padding rows are all zero
    assert bool((mask[:, 1:-1] >= mask[:, 2:]).all())  # real neighbours come first
    relations = a[:, :, layout.entity_width : -1]
    assert bool((relations[:, 0] == 0).all())
    assert torch.equal(relations[:, 1:].sum(-1), mask[:, 1:])  # one relation per real row
    # Without noise, row 0 holds the entity's type one-hot.
    assert data.train.labels is not None
    assert torch.equal(a[:, 0, : layout.types].argmax(-1), data.train.labels)


def test_neighbour_relations_fit_the_schema() -> None:
    data = graph(feature_noise=0.0, n_train=60)
    layout, schema = feature_layout(6), Schema.of(6)
    assert data.train.labels is not None
    allowed = {(r.name, OUT, r.head, r.tail) for r in RELATIONS}
    allowed |= {(r.name, IN, r.tail, r.head) for r in RELATIONS}
    a = data.train.a
    seen = set()
    for entity, row in (a[:, 1:, -1] == 1).nonzero().tolist():
        neighbour = a[entity, 1 + row]
        column = int(neighbour[layout.entity_width : -1].argmax())
        centre_type = schema.types[int(data.train.labels[entity])]
        other_type = schema.types[int(neighbour[: layout.types].argmax())]
        fact = (schema.relation_names[column // 2], column % 2, centre_type, other_type)
        assert fact in allowed
        seen.add(fact[:2])
    assert ("works_for", OUT) in seen and ("flows_through", IN) in seen


@pytest.mark.parametrize("relation_facts", [0, 1, 2])
def test_descriptions_state_the_entity_and_its_neighbours(relation_facts: int) -> None:
    data = graph(feature_noise=0.0, relation_facts=relation_facts, region_groups=True)
    layout, schema = feature_layout(6), Schema.of(6)
    split = data.train
    assert split.b_texts is not None and split.groups is not None and split.labels is not None
    for entity, text in enumerate(split.b_texts):
        words = text.split()
        own = split.a[entity, 0]
        values = own[layout.types : layout.entity_width].nonzero().flatten().tolist()
        names = [v for a in schema.attributes for v in ATTRIBUTES[a]]
        assert {names[v] for v in values} <= set(words)
        assert data.group_names[int(split.groups[entity])] in words
        # The first type word is the entity's, each later one a described neighbour's.
        mentioned = [w for w in words if w in schema.types]
        assert mentioned[0] == schema.types[int(split.labels[entity])]
        rows = split.a[entity, 1:][split.a[entity, 1:, -1] == 1]
        neighbours = {schema.types[int(r[: layout.types].argmax())] for r in rows}
        assert len(mentioned) == 1 + min(relation_facts, len(rows))
        assert set(mentioned[1:]) <= neighbours
    assert len(set(split.b_texts)) > len(split) // 2  # descriptions are mostly distinct


def test_the_tokens_are_the_descriptions() -> None:
    data = graph()
    assert data.tokenizer is not None and data.train.b_texts is not None
    first = [data.tokenizer.vocab[t] for t in data.train.b[0].tolist() if t > 2]
    assert first == data.train.b_texts[0].split()
    assert data.b_input.vocab_size == len(data.tokenizer.vocab)


def test_same_seed_same_graph_other_seed_other_graph() -> None:
    first, again, other = graph(3), graph(3), graph(4)
    assert torch.equal(first.train.a, again.train.a) and torch.equal(first.eval.b, again.eval.b)
    assert first.train.b_texts == again.train.b_texts
    assert not torch.equal(first.train.a[:, :, -9:], other.train.a[:, :, -9:])
    assert first.train.b_texts != other.train.b_texts


def test_noise_level_keeps_the_graph_and_texts() -> None:
    clean, noisy = graph(feature_noise=0.0), graph(feature_noise=2.0)
    width = feature_layout(6).entity_width
    assert clean.train.b_texts == noisy.train.b_texts
    assert torch.equal(clean.train.a[:, :, width:], noisy.train.a[:, :, width:])
    real = noisy.train.a[:, :, -1] == 1
    drift = (noisy.train.a[:, :, :width] - clean.train.a[:, :, :width])[real]
    assert 1.5 < float(drift.std()) < 2.5


def test_fewer_entity_types_shrink_the_schema() -> None:
    data = graph(entity_types=2)
    schema = Schema.of(2)
    assert data.class_names == ("person", "city")
    assert schema.relation_names == ("born_in", "lives_in")
    assert schema.attributes == ("size", "age", "region")
    assert data.a_input.shape == (5, 2 + (2 + 2 + 4) + 2 * 2 + 1)
    assert set(data.train.labels.tolist()) == {0, 1}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"entity_types": 7}, "entity_types\n.*less than or equal to 6"),
        ({"entity_types": 1}, "greater than or equal to 2"),
        ({"max_neighbours": 0}, "max_neighbours\n.*greater than or equal to 1"),
        ({"feature_noise": -0.1}, "feature_noise"),
        ({"n_train": 4}, "n_train"),
        ({"relation_facts": 3, "max_neighbours": 2}, "raise max_neighbours or lower relation_f"),
        ({"neighbours": 3}, "Extra inputs are not permitted"),
    ],
)
def test_bad_configuration_is_rejected(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        KnowledgeGraphDataConfig(**{**TINY, **changes})


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"hidden_size": 4}, "hidden_size"), ({"num_layers": 0}, "num_layers"),
     ({"kind": "gcn"}, "kind")],
)  # fmt: skip
def test_bad_tower_configuration_is_rejected(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        GraphTowerConfig(**changes)


def tower(spec: InputSpec, layers: int = 2, hidden: int = 16) -> GraphTower:
    torch.manual_seed(0)
    return GraphTower(GraphTowerConfig(hidden_size=hidden, num_layers=layers), spec, 6)


def test_tower_embeds_to_unit_vectors() -> None:
    data = graph()
    out = tower(data.a_input)(data.train.a[:7])
    assert out.shape == (7, 6)
    assert torch.allclose(out.norm(dim=1), torch.ones(7), atol=1e-5)
    assert isinstance(tower(data.a_input).proj, torch.nn.Linear)


@pytest.mark.usefixtures("one_thread")
def test_tower_ignores_padded_neighbours() -> None:
    data = graph(max_neighbours=12)
    a = data.train.a
    padded = a[:, :, -1] == 0
    assert bool(padded.any())
    changed = a.clone()
    changed[padded] = torch.randn(int(padded.sum()), a.shape[2]) * 5
    changed[:, :, -1] = a[:, :, -1]
    model = tower(data.a_input)
    assert torch.allclose(model(a), model(changed), atol=1e-6)
    # ... but does read the real ones.
    real = changed.clone()
    real[:, 1, :-1] += 1.0
    assert not torch.allclose(model(a), model(real), atol=1e-3)


@pytest.mark.parametrize(
    "spec", [InputSpec("vector", (5, 10)), InputSpec("graph", (10,)), InputSpec("graph", (3, 1))]
)
def test_tower_refuses_other_inputs(spec: InputSpec) -> None:
    with pytest.raises(DataError, match="graph_mpnn tower reads graph inputs"):
        tower(spec)


@pytest.fixture
def one_thread() -> Iterator[None]:
    # The matrices are tiny: a second thread only fights for a busy runner's cores (20x slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_tower_learns_to_match_descriptions() -> None:
    """A fixed random target per description stands in for the text tower."""
    data = graph(n_train=128, max_neighbours=6, feature_noise=0.3, relation_facts=1)
    torch.manual_seed(0)
    targets = torch.nn.functional.normalize(torch.randn(int(data.train.match_ids.max()) + 1, 6))
    model = tower(data.a_input, layers=2, hidden=16)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    scale = torch.tensor(10.0)

    def loss() -> torch.Tensor:
        return contrastive_loss(model(data.train.a), targets[data.train.match_ids], scale)

    with torch.no_grad():
        before = float(loss())
    for _ in range(150):
        batch = torch.randint(len(data.train), (64,))
        wanted = targets[data.train.match_ids[batch]]
        step = contrastive_loss(model(data.train.a[batch]), wanted, scale)
        optimiser.zero_grad()
        step.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
    with torch.no_grad():
        after = float(loss())
    assert after < 0.5 * before, (before, after)
