"""`orchestrator analyze`: check the inputs, measure the gap, draw the picture if asked. The
metrics themselves live in `trainers.gap`; this package only reads, checks and renders."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from orchestrator.analyze.inputs import (
    AnalyzeRequest,
    PairedEmbeddings,
    direction_of,
    load_class_prompts,
    load_labels,
    load_pairs,
    option_problems,
    parse_lambdas,
    parse_names,
    parse_temperatures,
)
from orchestrator.analyze.output import Analysis, write_plot
from orchestrator.errors import InputError
from trainers.errors import DataError
from trainers.gap import gap_report

T = TypeVar("T")


def run(request: AnalyzeRequest) -> Analysis:
    """Check everything, then measure; the plot (if asked for) is written here too."""
    problems: list[str] = []
    names = _collect(problems, parse_names, request.names)
    lambdas = _collect(problems, parse_lambdas, request.shift)
    temperatures = _collect(problems, parse_temperatures, request.temperatures)
    problems += option_problems(request)
    arrays = _collect(problems, load_pairs, request.files, request.key)
    if problems or names is None or lambdas is None or arrays is None or temperatures is None:
        raise InputError(problems)
    labels = None if request.labels is None else load_labels(request.labels, arrays[0].shape[0])
    dim = arrays[0].shape[1]
    prompts = (
        None
        if request.class_prompts is None
        else load_class_prompts(request.class_prompts, dim, labels)
    )
    direction = (
        None if request.direction_from is None else direction_of(request.direction_from, dim)
    )
    data = PairedEmbeddings(arrays[0], arrays[1], names, labels)
    try:
        report = gap_report(
            data.a,
            data.b,
            labels=labels,
            lambdas=lambdas,
            temperature=request.temperature,
            max_pairs=request.sample_size,
            seed=request.seed,
            names=names,
            landscape_temperatures=temperatures if request.landscape else (),
            prompts=prompts,
            direction=direction,
        )
    except DataError as exc:
        raise InputError(str(exc).splitlines()) from exc
    analysis = Analysis(data, report)
    if request.plot is not None:
        write_plot(analysis, request.plot)
    return analysis


def _collect(problems: list[str], parse: Callable[..., T], *args: Any) -> T | None:
    """`parse(*args)`, or None with its problems added to `problems`."""
    try:
        return parse(*args)
    except InputError as exc:
        problems.extend(exc.problems)
        return None
