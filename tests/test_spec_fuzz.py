"""Spec fuzzing: random mutations of the shipped specs always end in a valid plan or in exit code 2
with one line per problem that names the file and the field — never a traceback, and never a
started trial (validation runs before anything is started, see test_spec.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.errors import SpecError
from orchestrator.plan import expand
from orchestrator.spec import load_spec
from tests.helpers import self_contained_sweeps

SWEEPS = self_contained_sweeps()
SPECS = [yaml.safe_load(p.read_text()) for p in SWEEPS]

WRONG_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=6), st.integers(), max_size=2),
    st.sampled_from([0, -1, -0.5, 1e-300, 1e300, "", "0.1", [], {}, [[]]]),
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside nested dicts and lists."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            found += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += paths(v, (*prefix, i))
    return found


def set_at(node: Any, path: tuple[Any, ...], value: Any) -> None:
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


@st.composite
def mutated_specs(draw: st.DrawFn) -> bytes:
    spec = yaml.safe_load(yaml.safe_dump(draw(st.sampled_from(SPECS))))
    kind = draw(
        st.sampled_from(
            [
                "value",
                "unknown_key",
                "path_typo",
                "empty_grid",
                "temperature",
                "huge_grid",
                "truncate",
                "duplicate_key",
                "bytes",
                "drop_key",
            ]
        )
    )
    if kind == "value":
        set_at(spec, draw(st.sampled_from(paths(spec))), draw(WRONG_VALUES))
    elif kind == "unknown_key":
        targets = [p for p in paths(spec) if isinstance(_get(spec, p), dict)] + [()]
        target = draw(st.sampled_from(targets))
        (_get(spec, target) if target else spec)[draw(st.text(min_size=1, max_size=8))] = 1
    elif kind == "path_typo" and spec.get("parameters"):
        name = draw(st.sampled_from(sorted(spec["parameters"])))
        cut = draw(st.integers(min_value=0, max_value=len(name) - 1))
        spec["parameters"][name[:cut] + name[cut + 1 :] or "x"] = spec["parameters"].pop(name)
    elif kind == "empty_grid":
        spec.setdefault("parameters", {})["seed"] = {"grid": []}
    elif kind == "temperature":
        value = draw(st.sampled_from([0, -1, -0.01, "hot", None]))
        spec.setdefault("parameters", {})["loss.temperature"] = {"grid": [0.1, value]}
    elif kind == "huge_grid":
        spec.setdefault("parameters", {})["seed"] = {"grid": list(range(3000))}
    elif kind == "drop_key":
        spec.pop(draw(st.sampled_from(sorted(spec))))
    text = yaml.safe_dump(spec, sort_keys=False).encode()
    if kind == "truncate":
        text = text[: draw(st.integers(min_value=0, max_value=len(text)))]
        text += draw(st.sampled_from([b"", b":", b"\t", b"- [", b"{", b"'", b"&a *b"]))
    elif kind == "duplicate_key":
        text += b"\nname: again\n"
    elif kind == "bytes":
        at = draw(st.integers(min_value=0, max_value=len(text)))
        text = text[:at] + draw(st.binary(min_size=1, max_size=4)) + text[at:]
    return text


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(mutated_specs())
def test_mutated_specs_are_valid_or_answered_line_by_line(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "spec.yaml"
        path.write_bytes(content)
        try:
            plan = expand(load_spec(path))
        except SpecError as exc:
            assert exc.problems
            for line in exc.problems:
                assert line.startswith(f"{path}: ") and "\n" not in line, line
                assert len(line.split(": ", 2)) >= 2
            result = CliRunner().invoke(app, ["validate", str(path)])
            assert result.exit_code == 2, result.output
            assert "Traceback" not in result.output
        else:
            assert plan.trials or plan.spec.search == "optuna"  # a study draws them as it runs
