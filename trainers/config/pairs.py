"""Modality-pair presets: one name picks the data set and both towers, so a sweep can put
image-text, speech-text and graph-text models on one axis (the paper's Figure 1 across pairs).

A preset only fills what the trial config leaves out; sizes and every other field stay the
user's. Naming a different data set or tower kind beside a preset is a contradiction, not an
override, and is reported as one.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

PairName = Literal["clip_like", "vit_bert", "speech_text", "graph_text"]

# pair -> dotted path -> value it fixes
PAIRS: dict[str, dict[str, str]] = {
    "clip_like": {
        "data.name": "shapes",
        "model.image.kind": "clip_vision",
        "model.text.kind": "clip_text",
    },
    "vit_bert": {
        "data.name": "shapes",
        "model.image.kind": "vit",
        "model.text.kind": "text_transformer",
    },
    "speech_text": {
        "data.name": "spoken_captions",
        "model.image.kind": "audio_cnn",
        "model.text.kind": "text_transformer",
    },
    "graph_text": {
        "data.name": "knowledge_graph",
        "model.image.kind": "graph_mpnn",
        "model.text.kind": "text_transformer",
    },
}


def apply_pair(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` with the preset's data set and tower kinds filled in; a contradiction raises."""
    preset = PAIRS.get(str(raw.get("pair")))
    if preset is None:
        return raw  # unknown names are the Literal field's to report
    filled = _plain(raw)
    for path, value in preset.items():
        node = filled
        *parents, leaf = path.split(".")
        for part in parents:
            child = node.get(part)
            node[part] = child = {} if child is None else _plain(child)
            node = child
        given = node.get(leaf)
        if given is not None and given != value:
            raise ValueError(
                f"pair {raw['pair']} sets {path} to {value}, but the config sets {given}; "
                "drop one of them"
            )
        node[leaf] = value
    return filled


def _plain(value: Any) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, dict):
        return dict(value)
    raise ValueError(f"expected a mapping, got {type(value).__name__}")
