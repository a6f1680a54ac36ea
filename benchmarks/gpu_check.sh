#!/usr/bin/env bash
# The GPU check: the training step alone on CUDA (bf16 autocast on the towers, float32 loss),
# then the quickstart sweep with one GPU per trial (`resources.gpu: 1`, its 4 trials one after
# another) against the same 4 trials packed on the GPU (`resources.gpu: 0.25`). Under 10
# minutes on one NVIDIA GPU. Everything it prints also goes to $OUT (or /tmp/gpu_check):
# gpu_check.log, results.json and gpu_figures.md, the block `record` puts into the README.
#
#   bash benchmarks/gpu_check.sh prepare        # here, with pip: .whl/gpu-site.tar.xz (ignored)
#   bash benchmarks/gpu_check.sh                # on the GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh record DIR     # here: DIR/gpu_figures.md into benchmarks/README.md
#
# The GPU machine has Python 3.12 with torch, transformers, numpy, pandas, pyarrow, rich and
# typer, but no Ray, MLflow, SQLAlchemy, Alembic or pydantic, and no network. `prepare` fills a
# bundle with exactly those (the versions this checkout's .venv runs, for Python 3.12) that
# travels with the working tree: the device tool's `carry` takes ignored paths up to 64 MiB, so
# pass carry=[".whl/gpu-site.tar.xz"]. Ray's wheel alone is 79 MB, so its Java jars, dashboard
# UI, RLlib, Serve and LLM parts are left out; none of them is used here. On the GPU machine the
# bundle is unpacked and every requirement of every bundled package is checked against what is
# installed before anything runs; a missing module or a broken requirement is named, exit 2.
set -euo pipefail
cd "$(dirname "$0")/.."

BUNDLE=.whl/gpu-site.tar.xz
SITE=/tmp/gapsweep-site
PY_TAGS=(--python-version 3.12 --implementation cp --only-binary=:all:
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
    --platform manylinux2014_x86_64 --platform any)
# Already on the GPU machine (its image's package list); not carried.
PRESENT=(annotated-doc anyio attrs certifi charset-normalizer click cloudpickle filelock fsspec h11
    idna jinja2 markupsafe msgpack numpy packaging pandas protobuf pyarrow python-dateutil pyyaml
    requests six typing-extensions urllib3 zipp)
MODULES=(torch transformers numpy scipy sklearn matplotlib threadpoolctl yaml typer rich pydantic
    ray ray.tune mlflow sqlalchemy alembic)

version_here() { # the version this checkout's .venv runs, so both sides match
    .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || echo "$2"
}

prepare() {
    local dl site
    dl=$(mktemp -d) site=$(mktemp -d)
    python3 -m pip download -q "${PY_TAGS[@]}" -d "$dl" \
        "ray[tune]==$(version_here ray 2.60.0)" \
        "mlflow-skinny==$(version_here mlflow-skinny 3.17.2)" \
        "sqlalchemy==$(version_here sqlalchemy 2.1.9)" "alembic==$(version_here alembic 1.20.1)" \
        "pydantic==$(version_here pydantic 2.14.4)"
    for wheel in "$dl"/*.whl; do
        name=$(basename "$wheel" | sed -E 's/-[0-9].*//' | tr 'A-Z_' 'a-z-')
        if [[ " ${PRESENT[*]} " == *" $name "* ]]; then rm "$wheel"; fi
    done
    python3 -m pip install -q --no-deps --no-compile --ignore-requires-python "${PY_TAGS[@]}" \
        --target "$site" "$dl"/*.whl
    rm -rf "$site"/bin "$site"/ray/{jars,rllib,serve,llm,dashboard/client/build}
    find "$site" -name tests -type d -prune -exec rm -rf {} +
    mkdir -p .whl
    tar -C "$site" -cf - . | xz -T0 -6 >"$BUNDLE"
    rm -rf "$dl" "$site"
    du -h "$BUNDLE"
    echo "carry it: device run with carry=[\"$BUNDLE\"] (at most 64 MiB travel)"
}

# -- on the GPU machine -----------------------------------------------------------------------------

unpack() {
    if python3 -c "import ray, mlflow, sqlalchemy, alembic, pydantic" 2>/dev/null; then return; fi
    if [[ ! -f "$BUNDLE" ]]; then
        echo "error: Ray, MLflow, SQLAlchemy, Alembic or pydantic is missing here and $BUNDLE" \
            "did not travel: run 'bash $0 prepare' on a machine with pip, then carry" \
            "$BUNDLE with the working tree" >&2
        exit 2
    fi
    mkdir -p "$SITE"
    tar -xJf "$BUNDLE" -C "$SITE"
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
}

check_dependencies() { # every module imports, every bundled package's requirements hold
    python3 - "$SITE" "${MODULES[@]}" <<'EOF'
import importlib, importlib.metadata as md, sys
from packaging.requirements import Requirement

site, modules = sys.argv[1], sys.argv[2:]
problems, warnings, found = [], [], {}
for name in modules:
    try:
        module = importlib.import_module(name)
        found[name] = getattr(module, "__version__", "?")
    except Exception as exc:  # the message names what is missing
        problems.append(f"cannot import {name}: {type(exc).__name__}: {exc}")
for dist in md.distributions(path=[site]):
    for text in dist.requires or ():
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            have = md.version(req.name)
        except md.PackageNotFoundError:
            problems.append(f"{dist.metadata['Name']} needs {req}, which is not installed")
            continue
        if req.specifier and not req.specifier.contains(have, prereleases=True):
            # A pin the image's older package misses (mlflow-skinny's databricks-sdk wants a
            # newer certifi) is worth a line, not the run: the imports above are the test.
            warnings.append(f"{dist.metadata['Name']} asks {req}, found {req.name} {have}")
print(" ".join(f"{k} {v}" for k, v in found.items()))
for line in warnings:
    print(f"warning: {line}", file=sys.stderr)
for line in problems:
    print(f"error: {line}", file=sys.stderr)
sys.exit(2 if problems else 0)
EOF
}

write_specs() { # the quickstart at one GPU per trial, and packed four to a GPU
    python3 - "$1" <<'EOF'
import os, sys, yaml
work = sys.argv[1]
spec = yaml.safe_load(open("sweeps/quickstart.yaml"))
# Long enough that start-up does not dominate (GPU_CHECK_EPOCHS shortens a dry run).
spec["base"]["optim"]["epochs"] = int(os.environ.get("GPU_CHECK_EPOCHS", "16"))
for name, gpu in (("gpu_whole", 1.0), ("gpu_packed", 0.25)):
    share = float(os.environ.get("GPU_CHECK_GPU", gpu))  # GPU_CHECK_GPU=0: the plumbing on CPUs
    s = dict(spec, name=name, resources={"cpu": 2, "gpu": share})
    yaml.safe_dump(s, open(f"{work}/{name}.yaml", "w"), sort_keys=False)
EOF
}

watch_gpu() { # processes holding the GPU, once a second, until killed
    while true; do
        { nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader 2>/dev/null || true; } |
            awk -v t="$(date +%s)" '{print t, $0}'
        sleep 1
    done
}

submit() { # $1: sweep name
    local name=$1 watcher status=0
    watch_gpu >"$WORK/$name.gpu" &
    watcher=$!
    (cd "$WORK" && GAPSWEEP_TRACE="$WORK/$name.trace" python3 -m orchestrator.cli submit \
        "$name.yaml" --results-db "sqlite:///$WORK/results.db" \
        --mlflow-uri "sqlite:///$WORK/mlflow.db" --storage "$WORK/runs") \
        >"$WORK/$name.out" 2>&1 || status=$?
    kill "$watcher" 2>/dev/null || true
    if ((status)); then tail -40 "$WORK/$name.out"; exit "$status"; fi
    tail -8 "$WORK/$name.out"
}

summarise() { # trials per hour of each sweep from its trace, peak memory from the store
    python3 - "$WORK" "$OUTDIR" <<'EOF'
import json, sys
from pathlib import Path
from orchestrator.store.repository import ResultsStore

work, out = Path(sys.argv[1]), Path(sys.argv[2])

def sweep(name: str) -> dict:
    with ResultsStore(f"sqlite:///{work}/results.db") as store:
        trials = store.trials(name)
    bad = [(t.name, t.status, t.error) for t in trials if t.status != "completed"]
    if bad:
        sys.exit(f"error: {name}: trials did not complete: {bad}")
    events = [json.loads(line) for line in (work / f"{name}.trace").read_text().splitlines()]
    first = min(e["recorded"] for e in events if e["event"] == "start")
    last = max(e["recorded"] for e in events if e["event"] == "done")
    ticks: dict[str, set[str]] = {}  # second -> pids holding the GPU then
    for line in (work / f"{name}.gpu").read_text().splitlines():
        second, pid = line.split()[:2]
        ticks.setdefault(second, set()).add(pid.rstrip(","))
    return {
        "sweep": name,
        "trials": len(trials),
        "trial_phase_s": round(last - first, 1),
        "trials_per_hour": round(len(trials) * 3600 / (last - first)),
        "peak_gpu_memory_gb": max(t.metrics.get("gpu_peak_memory_gb", 0.0) for t in trials),
        "max_processes_on_gpu_at_once": max((len(p) for p in ticks.values()), default=0),
    }

whole, packed = sweep("gpu_whole"), sweep("gpu_packed")
packed["vs_one_trial_per_gpu"] = round(packed["trials_per_hour"] / whole["trials_per_hour"], 2)
steps = [json.loads(l) for l in (out / "gpu_trainer.jsonl").read_text().splitlines() if l.startswith("{")]
records = {"steps": steps, "sweeps": [whole, packed]}
(out / "results.json").write_text(json.dumps(records, indent=1))
rows = [r for r in steps if "step_ms" in r or "wall_s" in r]
lines = ["| record | device | batch | step ms | samples/s | share of bf16 peak |", "|---|---|---|---|---|---|"]
lines += [
    f"| {r['size']} | {r['device']} | {r['batch_size']} | {r.get('step_ms', '')} | "
    f"{r['samples_per_s']:,} | {r.get('share_of_peak') or ''} |"
    for r in rows
]
lines += ["", "| sweep | resources.gpu | trials | trial phase s | trials/hour | peak GPU GB each | vs one trial per GPU |", "|---|---|---|---|---|---|---|"]
for r, gpu in ((whole, 1), (packed, 0.25)):
    lines.append(
        f"| {r['sweep']} | {gpu} | {r['trials']} | {r['trial_phase_s']} | {r['trials_per_hour']:,} "
        f"| {r['peak_gpu_memory_gb']:.3f} | {r.get('vs_one_trial_per_gpu', 1.0)} |"
    )
(out / "gpu_figures.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
}

check() {
    OUTDIR=${OUT:-/tmp/gpu_check}
    mkdir -p "$OUTDIR"
    exec > >(tee "$OUTDIR/gpu_check.log") 2>&1
    unpack
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
        RAY_USAGE_STATS_ENABLED=0 COLUMNS=160
    # The trainer's figures need only torch, transformers and pydantic: they come first, so a
    # problem with the sweep's packages (checked next) cannot cost them.
    if [[ "${GPU_CHECK_GPU:-1}" != 0 ]]; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
        echo "== the training step alone, then whole trials (benchmarks/gpu_trainer.py)"
        timeout 240 python3 -m benchmarks.gpu_trainer --epochs 1 | tee "$OUTDIR/gpu_trainer.jsonl"
    else
        python3 -m benchmarks.gpu_trainer --tiny | tee "$OUTDIR/gpu_trainer.jsonl"
    fi
    echo "== dependencies of the sweeps"
    check_dependencies
    WORK=$(mktemp -d)
    write_specs "$WORK"
    echo "== the quickstart, one GPU per trial (gpu: 1)"
    submit gpu_whole
    echo "== the quickstart, four trials packed on one GPU (gpu: 0.25 each)"
    submit gpu_packed
    echo "== figures"
    summarise
}

record() { # put DIR/gpu_figures.md between the markers of benchmarks/README.md
    local figures=${1:?usage: $0 record DIR}/gpu_figures.md
    [[ -f "$figures" ]] || { echo "error: no $figures" >&2; exit 2; }
    python3 - "$figures" <<'EOF'
import sys
from pathlib import Path
readme = Path("benchmarks/README.md")
start, end = "<!-- gpu_check -->", "<!-- /gpu_check -->"
text = readme.read_text()
head, rest = text.split(start, 1)
readme.write_text(f"{head}{start}\n{Path(sys.argv[1]).read_text()}{end}{rest.split(end, 1)[1]}")
EOF
}

case "${1:-check}" in
prepare) prepare ;;
check) check ;;
record) record "${2:-}" ;;
*) echo "usage: $0 [prepare|check|record DIR]" >&2; exit 2 ;;
esac
