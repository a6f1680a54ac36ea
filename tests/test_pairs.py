"""Modality-pair presets: one `pair` value picks the data set and both towers, fills only what
the config leaves out, and reports a contradiction instead of silently overriding it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from trainers.config import TrialConfig
from trainers.config.pairs import PAIRS


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_pair_sets_data_and_both_towers(pair: str) -> None:
    config = TrialConfig.model_validate({"pair": pair, "data": {"n_train": 64, "n_eval": 32}})
    assert config.data.name == PAIRS[pair]["data.name"]
    assert config.model.image.kind == PAIRS[pair]["model.image.kind"]
    assert config.model.text.kind == PAIRS[pair]["model.text.kind"]
    assert (config.data.n_train, config.data.n_eval) == (64, 32)


def test_pair_keeps_the_users_tower_sizes() -> None:
    config = TrialConfig.model_validate(
        {"pair": "clip_like", "model": {"image": {"hidden_size": 32, "num_heads": 4}}}
    )
    assert config.model.image.kind == "clip_vision"
    assert config.model.image.hidden_size == 32


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ({"data": {"name": "digits"}}, "data.name"),
        ({"model": {"text": {"kind": "clip_text"}}}, "model.text.kind"),
    ],
)
def test_pair_contradicted_by_the_config_is_an_error(extra: dict[str, Any], path: str) -> None:
    with pytest.raises(ValidationError, match=rf"pair vit_bert sets {path} to .* drop one"):
        TrialConfig.model_validate({"pair": "vit_bert", **extra})


def test_naming_the_same_choice_as_the_pair_is_fine() -> None:
    config = TrialConfig.model_validate({"pair": "vit_bert", "data": {"name": "shapes"}})
    assert config.model.image.kind == "vit"


def test_unknown_pair_lists_the_known_ones() -> None:
    with pytest.raises(ValidationError, match="clip_like"):
        TrialConfig.model_validate({"pair": "audio_video"})


def test_resolved_config_revalidates_to_itself() -> None:
    """Trial keys hash the resolved config; loading it back (resume, workers) must not change it."""
    config = TrialConfig.model_validate({"pair": "clip_like"})
    again = TrialConfig.model_validate(config.model_dump(mode="json"))
    assert again == config
