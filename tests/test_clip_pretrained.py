"""A pretrained CLIP from a local transformers folder: a tiny real one, with random weights, an
image processor and a tokenizer saved by the test (tests/clip_fixture.py); nothing downloaded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
import torch

from orchestrator.store.repository import ResultsStore
from tests.clip_fixture import (
    IMAGE_SIZE,
    PROJECTION_DIM,
    save_caption_folder,
    save_labelled_folder,
    save_tiny_clip,
)
from tests.helpers import SWEEPS, mlflow_runs, orchestrator
from trainers.config import TrialConfig
from trainers.data.image_folder import class_folders, class_name
from trainers.data.paired import InputSpec
from trainers.dual_encoder import build_model, make_optimiser
from trainers.reports import FOLDER_METRICS
from trainers.towers.registry import build_tower

TEMPERATURE = 0.05  # the tiny CLIP's learned temperature: logit_scale = ln 20


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("clip")
    yield save_tiny_clip(root / "clip", TEMPERATURE), save_caption_folder(root / "coco", 64)


def trial(clip: Path, captions: Path, **extra: Any) -> dict[str, Any]:
    model = {
        "image": {"kind": "clip_pretrained", "path": str(clip)},
        "text": {"kind": "clip_pretrained"},
    }
    return {
        "data": {"name": "image_text", "captions": str(captions), "n_eval": 16},
        "model": model,
        "optim": {"batch_size": 16, "epochs": 1},
        "eval": {"every_steps": 2},
    } | extra


def test_the_folder_decides_temperature_embedding_size_and_text_tower(
    files: tuple[Path, Path],
) -> None:
    config = TrialConfig.model_validate(trial(*files))
    assert config.loss.temperature == TEMPERATURE
    assert config.model.embed_dim == PROJECTION_DIM
    assert config.model.text.path == str(files[0])  # type: ignore[union-attr]
    chosen = TrialConfig.model_validate(trial(*files, loss={"temperature": 0.01}))
    assert chosen.loss.temperature == 0.01  # a temperature the config sets wins


def test_the_towers_equal_transformers_own_clip_features(files: tuple[Path, Path]) -> None:
    """Independent of the towers' code: CLIPModel's get_*_features on what its processor and
    tokenizer make of the same images and captions."""
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    clip, _ = files
    config = TrialConfig.model_validate(trial(*files))
    images = torch.randint(0, 256, (5, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
    captions = ["a small red circle", "a large blue square", "a photo of a small white cross"]
    reference = CLIPModel.from_pretrained(str(clip), local_files_only=True).eval()
    pixels = CLIPImageProcessor.from_pretrained(str(clip))(list(images), return_tensors="pt")
    tokenizer = AutoTokenizer.from_pretrained(str(clip))
    encoded = tokenizer(captions, padding="max_length", max_length=12, return_tensors="pt")
    spec_a = InputSpec("image", (3, IMAGE_SIZE, IMAGE_SIZE))
    spec_b = InputSpec("tokens", (12,), vocab_size=tokenizer.vocab_size)
    image = build_tower(config.model.image, spec_a, PROJECTION_DIM, "image").eval()
    text = build_tower(config.model.text, spec_b, PROJECTION_DIM, "text").eval()
    with torch.no_grad():
        expected_a = reference.get_image_features(pixel_values=pixels["pixel_values"])
        expected_b = reference.get_text_features(**encoded)
        got_a, got_b = image(images.float() / 255.0), text(encoded["input_ids"])
    normalise = torch.nn.functional.normalize
    assert torch.allclose(got_a, normalise(_features(expected_a), dim=-1), atol=1e-4)
    assert torch.allclose(got_b, normalise(_features(expected_b), dim=-1), atol=1e-5)


def _features(output: Any) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@pytest.mark.parametrize(
    ("train", "trained"),
    [
        ("all", {"encoder", "proj"}),
        ("projection", {"proj"}),
        ("last_blocks", {"encoder.encoder.layers.1", "encoder.final_layer_norm", "proj"}),
        ("none", set()),
    ],
)
def test_what_of_a_tower_trains(files: tuple[Path, Path], train: str, trained: set[str]) -> None:
    config = TrialConfig.model_validate(
        trial(*files) | {"model": {"image": {"kind": "clip_pretrained", "path": str(files[0])},
                                   "text": {"kind": "clip_pretrained", "train": train}}}
    )  # fmt: skip
    spec = InputSpec("tokens", (12,), vocab_size=64)
    tower = build_tower(config.model.text, spec, PROJECTION_DIM, "text")
    names = {n for n, p in tower.named_parameters() if p.requires_grad}
    assert all(any(n.startswith(t) for t in trained) for n in names)
    assert all(any(n.startswith(t) for n in names) for t in trained)
    if train == "last_blocks":
        assert not any(n.startswith("encoder.encoder.layers.0") for n in names)


def test_a_tower_learning_rate_is_its_own_group(files: tuple[Path, Path]) -> None:
    clip, captions = files
    config = TrialConfig.model_validate(
        trial(clip, captions, optim={"lr": 1e-3, "batch_size": 16})
        | {"model": {"image": {"kind": "clip_pretrained", "path": str(clip), "lr": 1e-5},
                     "text": {"kind": "clip_pretrained", "train": "projection"}}}
    )  # fmt: skip
    specs = (
        InputSpec("image", (3, IMAGE_SIZE, IMAGE_SIZE)),
        InputSpec("tokens", (12,), vocab_size=64),
    )
    model = build_model(config, specs, torch.device("cpu"))
    groups = make_optimiser(model, config).param_groups
    assert [g["lr"] for g in groups] == [1e-5, 1e-3, 1e-3]
    assert len(groups[1]["params"]) == 1  # the text projection alone


@pytest.mark.parametrize(
    ("setting", "fragment"),
    [
        ("model.image.path={missing}", "no such folder"),
        ("model.image.path={noprocessor}", "no image processor (preprocessor_config.json)"),
        ("model.image.path={captions}", "no config.json, not a transformers model folder"),
        ("model.embed_dim=16", f"whose projections give {PROJECTION_DIM}"),
    ],
)
def test_bad_folders_and_mismatches_are_one_line_each(
    files: tuple[Path, Path], tmp_path: Path, setting: str, fragment: str
) -> None:
    clip, captions = files
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (broken / name).write_bytes((clip / name).read_bytes())
    paths = {"missing": tmp_path / "nope", "noprocessor": broken, "captions": captions.parent}
    sets = [f"model.image.path={clip}", f"data.captions={captions}", setting.format(**paths)]
    args = [arg for s in sets for arg in ("--set", s)]
    result = orchestrator("validate", str(SWEEPS / "clip_measure.yaml"), *args, cwd=tmp_path)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and fragment in lines[0], lines


@pytest.mark.parametrize(
    ("setting", "fragment"),
    [
        ("eval.folder.root={missing}", "base.eval.folder: root {missing}: no such folder"),
        (None, "base.eval: folder: needs root"),
        ("eval.folder=null", None),  # the spec's header: no labelled folder, no folder metrics
    ],
)
def test_a_bad_or_missing_eval_folder_root_is_one_line_and_null_is_no_folder(
    files: tuple[Path, Path], tmp_path: Path, setting: str | None, fragment: str | None
) -> None:
    clip, captions = files
    missing = tmp_path / "nope"
    sets = [f"model.image.path={clip}", f"data.captions={captions}"]
    sets += [setting.format(missing=missing)] if setting else []
    args = [arg for s in sets for arg in ("--set", s)]
    result = orchestrator("validate", str(SWEEPS / "clip_temperature.yaml"), *args, cwd=tmp_path)
    if fragment is None:
        assert result.returncode == 0, result.stderr
        return
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and fragment.format(missing=missing) in lines[0], lines


def shipped(name: str, clip: Path, captions: Path, *extra: str) -> list[str]:
    sets = [
        f"model.image.path={clip}",
        f"data.captions={captions}",
        f"data.image_size={IMAGE_SIZE}",
    ]
    return [str(SWEEPS / name), *(arg for s in [*sets, *extra] for arg in ("--set", s))]


@pytest.mark.slow
def test_measuring_a_clip_end_to_end_takes_its_temperature(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    args = shipped("clip_measure.yaml", *files, "data.n_eval=32", "optim.batch_size=16")
    result = orchestrator("submit", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    with ResultsStore(f"sqlite:///{tmp_path / 'results.db'}") as store:
        (measured,) = store.trials("clip_measure")
        temperature = store.metric_series("clip_measure", measured.key, "temperature")
    assert measured.status == "completed" and measured.config["loss"]["temperature"] == TEMPERATURE
    assert temperature == [(0, pytest.approx(TEMPERATURE))]
    assert 0 < measured.metrics["gap_norm"] < 2


@pytest.mark.slow
def test_fine_tuning_a_clip_at_six_temperatures_end_to_end(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    """The shipped spec with the paths set: trained on the caption folder, measured on the
    labelled folder (zero-shot and gap) at every evaluation as well."""
    labelled = save_labelled_folder(tmp_path / "labelled", per_class=4, size=IMAGE_SIZE)
    folder = (f"eval.folder.root={labelled}", f"eval.folder.image_size={IMAGE_SIZE}",
              "eval.folder.n_eval=12", "eval.folder.loader_workers=0")  # fmt: skip
    extra = ("data.n_eval=16", "optim.batch_size=16", "eval.every_steps=2", "optim.lr=0.0001")
    args = shipped("clip_temperature.yaml", *files, *extra, *folder)
    result = orchestrator("submit", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    with ResultsStore(f"sqlite:///{tmp_path / 'results.db'}") as store:
        trials = store.trials("clip_temperature")
        series = {
            name: [step for step, _ in store.metric_series("clip_temperature", t.key, name)]
            for t in trials[:1]
            for name in ("gap_norm", *FOLDER_METRICS)
        }
    assert [t.status for t in trials] == ["completed"] * 6
    assert sorted(t.metrics["temperature"] for t in trials) == pytest.approx(
        [0.01, 0.02, 0.0333, 0.05, 0.1, 1.0]
    )
    assert all(0.0 <= t.metrics["folder_zero_shot_acc"] <= 1.0 for t in trials)
    assert all(set(FOLDER_METRICS) <= set(t.metrics) for t in trials)
    assert all(steps == series["gap_norm"] == [0, 2, 3] for steps in series.values())
    _, runs = mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "clip_temperature")
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 6 and all(r.info.status == "FINISHED" for r in children)
    assert all("folder_zero_shot_acc" in r.data.metrics for r in children)
    assert all(r.data.params["eval.folder.root"] == str(labelled) for r in children)
    # The tables show what the user pointed the sweep at: the folder's zero-shot accuracy.
    assert "folder_zero_shot_acc" in result.stdout and " zero_shot_acc " not in result.stdout
    # Each trial's artifacts name the prompts behind the folder's class embeddings.
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    kept = client.download_artifacts(children[0].info.run_id, "folder_prompts.json", str(tmp_path))
    prompts = json.loads(Path(kept).read_text())
    templates = trials[0].config["eval"]["folder"]["templates"]
    names = [class_name(f) for f in class_folders(labelled)]
    assert prompts == {n: [t.format(n) for t in templates] for n in names}
