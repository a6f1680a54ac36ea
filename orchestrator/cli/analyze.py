"""The `orchestrator analyze` command: measure the modality gap of embeddings in files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.analyze.inputs import (
    DEFAULT_LANDSCAPE_TEMPERATURES,
    DEFAULT_SHIFT,
    AnalyzeRequest,
)
from orchestrator.cli.common import console, err_console, exit_codes
from trainers.gap import DEFAULT_MAX_PAIRS, DEFAULT_TEMPERATURE


def analyze(
    files: Annotated[
        list[Path],
        typer.Argument(
            metavar="FILE [B]",
            help="one .npy of shape (2, N, d), or two files A B of shape (N, d) (.npy or .npz)",
            show_default=False,
        ),
    ],
    key: Annotated[
        str | None, typer.Option("--key", help="name of the array inside .npz files")
    ] = None,
    names: Annotated[
        str, typer.Option("--names", help="names of the two modalities, e.g. image,text")
    ] = "a,b",
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            help="one class id per pair (.npy, or text with one per line): adds the "
            "nearest-class-centroid accuracy to the shift curve",
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="print one JSON object instead of tables")
    ] = False,
    shift: Annotated[
        str,
        typer.Option("--shift", help="λ grid of the gap shift curve: start:stop:step or a,b,c"),
    ] = DEFAULT_SHIFT,
    temperature: Annotated[
        float, typer.Option("--temperature", help="temperature of the contrastive loss")
    ] = DEFAULT_TEMPERATURE,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot", help="write a PNG: 2-D PCA with the gap vector, and the shift curve"
        ),
    ] = None,
    sample_size: Annotated[
        int,
        typer.Option(
            "--sample-size",
            help="pairwise metrics, classifier, PCA and shift curve use all pairs up to this "
            "many, a seeded sample beyond",
        ),
    ] = DEFAULT_MAX_PAIRS,
    seed: Annotated[
        int, typer.Option("--seed", help="seed of the sample and of the classifier's split")
    ] = 0,
    landscape: Annotated[
        bool,
        typer.Option(
            "--landscape",
            help="the loss landscape (the paper's Fig. 3b-d): the contrastive loss along the "
            "--shift grid at each of --temperatures, with each minimum",
        ),
    ] = False,
    temperatures: Annotated[
        str, typer.Option("--temperatures", help="temperatures of the landscape, e.g. 0.01,0.1,1")
    ] = DEFAULT_LANDSCAPE_TEMPERATURES,
    class_prompts: Annotated[
        Path | None,
        typer.Option(
            "--class-prompts",
            help="(K, d) .npy: row k the text-side embedding of class k's prompt; with --labels "
            "(class numbers), adds CLIP's zero-shot accuracy to the shift curve",
        ),
    ] = None,
    direction_from: Annotated[
        Path | None,
        typer.Option(
            "--direction-from",
            help="a (2, N, d) .npy of another data set: shift along its gap direction",
        ),
    ] = None,
) -> None:
    """Measure the modality gap of paired embeddings computed elsewhere."""
    request = AnalyzeRequest(
        files=tuple(files),
        key=key,
        names=names,
        labels=labels,
        shift=shift,
        temperature=temperature,
        plot=plot,
        sample_size=sample_size,
        seed=seed,
        landscape=landscape,
        temperatures=temperatures,
        class_prompts=class_prompts,
        direction_from=direction_from,
    )
    from orchestrator.analyze.measure import run
    from orchestrator.analyze.output import json_text, print_tables, sampling_note

    with exit_codes():
        analysis = run(request)
    if json_output:
        note = sampling_note(analysis.report)
        if note:
            err_console.print(f"note: {note}", highlight=False, soft_wrap=True)  # stdout: JSON only
        typer.echo(json_text(analysis.report))
    else:
        print_tables(analysis, console)
    if plot is not None:
        (err_console if json_output else console).print(f"wrote {plot}", highlight=False)
