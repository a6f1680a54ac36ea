"""`--set path=value`: base settings of a spec overridden on the command line, the way a user
points a shipped spec at a local checkpoint or folder. Values are YAML (`0.1`, `true`,
`[16, 32]`, a path); paths are the dotted paths a spec's `parameters` take. The overrides are
applied to `base` before the spec is validated, so they are checked like the spec and become
part of every trial's key, and they are stored with the sweep for `resume`."""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from orchestrator.errors import InputError
from orchestrator.trainer_registry import TRAINERS, config_paths

_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """{path: value} of `path=value` items, in order; an InputError line per malformed one."""
    parsed: dict[str, Any] = {}
    problems = []
    for item in items:
        path, sep, raw = item.partition("=")
        path = path.strip()
        if not sep or not _PATH.fullmatch(path):
            problems.append(f"--set {item!r}: expected path=value, e.g. --set loss.temperature=0.1")
            continue
        try:
            parsed[path] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            problems.append(f"--set {path}: the value {raw!r} is not a YAML value")
    if problems:
        raise InputError(problems)
    return parsed


def override_problems(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, str]:
    """The overrides that cannot apply to the spec `data` (unknown paths, swept paths), each
    with its problem."""
    trainer = data.get("trainer", "dual_encoder")
    if not overrides or not isinstance(trainer, str) or trainer not in TRAINERS:
        return {}
    known = sorted(config_paths(TRAINERS[trainer].config_model))
    parameters = data.get("parameters")
    swept = set(parameters) if isinstance(parameters, dict) else set()
    problems = {}
    for path in overrides:
        if path not in known:
            close = difflib.get_close_matches(path, known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems[path] = f"--set {path}: unknown setting of trainer {trainer}{hint}"
        elif path in swept:
            problems[path] = f"--set {path}: the spec sweeps it (parameters.{path}); drop one"
    return problems


def with_overrides(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The spec `data` with each override set in its `base` (a copy; `data` is unchanged)."""
    base = data.get("base")
    if not overrides or not (base is None or isinstance(base, dict)):
        return data
    return {**data, "base": set_paths(base or {}, overrides)}


def set_paths(base: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of the nested `base` with each dotted path of `values` set (the way both an
    override and a swept parameter reach a trial config)."""
    config = copy.deepcopy(dict(base))
    for path, value in values.items():
        node = config
        *parents, leaf = path.split(".")
        for part in parents:
            child = node.get(part)
            node[part] = child = child if isinstance(child, dict) else {}
            node = child
        node[leaf] = value
    return config
