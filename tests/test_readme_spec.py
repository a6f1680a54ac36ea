"""The README's annotated spec is the format's reference: it must load as a spec, and every
setting it shows with its default value must be the default the code applies."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from orchestrator.spec import SweepSpec, load_spec_text

README = Path(__file__).resolve().parents[1] / "README.md"
# The keys the README shows at their defaults; the others (name, base, parameters, metric,
# stages) are examples.
SHOWN_AT_DEFAULT = (
    "trainer", "search", "sampler", "seed", "num_samples", "constraints", "scheduler",
    "resources", "max_concurrent_trials", "max_failures", "pack",
)  # fmt: skip


def readme_spec() -> tuple[str, dict[str, Any]]:
    section = README.read_text().split("## The spec format", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None, "README: no yaml block under 'The spec format'"
    return block[1], yaml.safe_load(block[1])


def test_the_readme_spec_loads(tmp_path: Path) -> None:
    text, _ = readme_spec()
    loaded = load_spec_text(text, tmp_path / "README-spec.yaml")
    assert loaded.spec.name == "temperature"
    assert [stage.name for stage in loaded.spec.stages] == ["pretrain"]


def test_the_readme_shows_the_defaults() -> None:
    _, shown = readme_spec()
    defaults = SweepSpec(name="defaults")
    for key in SHOWN_AT_DEFAULT:
        default = getattr(defaults, key)
        if hasattr(default, "model_dump"):
            default = default.model_dump()
        assert shown[key] == default, (
            f"README shows {key}: {shown[key]!r}, the default is {default!r}"
        )
