#!/usr/bin/env bash
# GPU check of the cluster issue: the quickstart sweep with `resources.gpu: 0.25` packs its four
# trials on one GPU. Measures their aggregate throughput against a single trial on the same GPU,
# shows how many processes shared the GPU, and checks that the trainer ran on CUDA with bf16
# autocast (benchmarks/gpu_trainer.py). Under 5 minutes on one NVIDIA GPU.
#
#   bash benchmarks/gpu_check.sh prepare   # on a machine with pip: bundle what the GPU machine lacks
#   bash benchmarks/gpu_check.sh           # on the GPU machine, from the repository root
#
# The GPU machine this was written for has Python 3.12 with torch, transformers, numpy, pandas,
# pyarrow, rich and typer, but no Ray, MLflow, SQLAlchemy or pydantic, and no network. `prepare`
# downloads those (Python 3.12, manylinux) and packs them, trimmed, into .whl/gpu-site.tar.xz
# (ignored by git): Ray's wheel alone is 79 MB, over the 64 MiB that may travel, so its Java jars,
# dashboard UI, RLlib, Serve and LLM parts are left out; none of them is used here. Everything the
# check prints is also written to $OUT (or /tmp/gpu_check) as gpu_check.log and results.json.
set -euo pipefail
cd "$(dirname "$0")/.."

BUNDLE=.whl/gpu-site.tar.xz
PY_TAGS=(--python-version 3.12 --implementation cp --only-binary=:all:
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
    --platform manylinux2014_x86_64 --platform any)
# Already on the GPU machine (its image's package list); not carried.
PRESENT=(annotated-doc anyio attrs certifi charset-normalizer click cloudpickle filelock fsspec h11
    idna jinja2 markupsafe msgpack numpy packaging pandas protobuf pyarrow python-dateutil pyyaml
    requests six typing-extensions urllib3 zipp)

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
}

# -- on the GPU machine -----------------------------------------------------------------------------

unpack() {
    if python3 -c "import ray, mlflow, sqlalchemy, pydantic" 2>/dev/null; then return; fi
    [[ -f "$BUNDLE" ]] || { echo "no $BUNDLE: run 'bash $0 prepare' first" >&2; exit 2; }
    mkdir -p /tmp/gapsweep-site
    tar -xJf "$BUNDLE" -C /tmp/gapsweep-site
    export PYTHONPATH="/tmp/gapsweep-site${PYTHONPATH:+:$PYTHONPATH}"
}

write_specs() { # the quickstart with gpu 0.25 per trial, and the same as one trial alone
    python3 - "$1" <<'EOF'
import os, sys, yaml
work = sys.argv[1]
spec = yaml.safe_load(open("sweeps/quickstart.yaml"))
spec["resources"] = {"cpu": 1, "gpu": float(os.environ.get("GPU_CHECK_GPU", "0.25"))}
# Long enough that start-up does not dominate (GPU_CHECK_EPOCHS shortens a dry run).
spec["base"]["optim"]["epochs"] = int(os.environ.get("GPU_CHECK_EPOCHS", "16"))
packed = dict(spec, name="gpu_packed")
single = dict(spec, name="gpu_single")
single["parameters"] = {k: {"grid": v["grid"][:1]} for k, v in spec["parameters"].items()}
for s in (packed, single):
    yaml.safe_dump(s, open(f"{work}/{s['name']}.yaml", "w"), sort_keys=False)
EOF
}

watch_gpu() { # processes holding the GPU, once a second, until killed
    while true; do
        { nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader 2>/dev/null || true; } |
            awk -v t="$(date +%s)" '{print t, $0}'
        sleep 1
    done
}

submit() { # $1: sweep name; prints the sweep's wall time
    local name=$1 watcher
    watch_gpu >"$WORK/$name.gpu" &
    watcher=$!
    local status=0
    (cd "$WORK" && python3 -m orchestrator.cli submit "$name.yaml" \
        --results-db "sqlite:///$WORK/results.db" --mlflow-uri "sqlite:///$WORK/mlflow.db" \
        --storage "$WORK/runs") >"$WORK/$name.out" 2>&1 || status=$?
    kill "$watcher" 2>/dev/null || true
    if ((status)); then tail -40 "$WORK/$name.out"; exit "$status"; fi
    tail -12 "$WORK/$name.out"
}

summarise() { # throughput of the packed sweep against the single trial, from the results store
    python3 - "$WORK" <<'EOF'
import json, sys
from pathlib import Path
from orchestrator.store.repository import ResultsStore

work = Path(sys.argv[1])
store = ResultsStore(f"sqlite:///{work}/results.db")

def throughput(sweep: str) -> dict:
    trials = store.trials(sweep)
    assert all(t.status == "completed" for t in trials), [(t.name, t.status, t.error) for t in trials]
    samples = sum(t.config["optim"]["batch_size"] * (t.last_step or 0) for t in trials)
    start = min(t.started_at for t in trials)
    wall = (max(t.ended_at for t in trials) - start).total_seconds()
    ticks: dict[str, set[str]] = {}  # second -> pids holding the GPU then
    for line in (work / f"{sweep}.gpu").read_text().splitlines():
        second, pid = line.split()[:2]
        ticks.setdefault(second, set()).add(pid.rstrip(","))
    return {
        "sweep": sweep,
        "trials": len(trials),
        "samples": samples,
        "wall_s": round(wall, 1),
        "samples_per_s": round(samples / wall, 1),
        "max_processes_on_gpu_at_once": max((len(p) for p in ticks.values()), default=0),
        "distinct_gpu_processes": len(set().union(*ticks.values())),
    }

single, packed = throughput("gpu_single"), throughput("gpu_packed")
packed["speedup_vs_single"] = round(packed["samples_per_s"] / single["samples_per_s"], 2)
for record in (single, packed):
    print(json.dumps(record))
seen = packed["max_processes_on_gpu_at_once"]
print(
    f"packing: {seen} trial processes held the GPU at once (4 expected)"
    if seen else "packing: nvidia-smi lists no processes here (a sandbox hides them)"
)
json.dump({"single": single, "packed": packed}, open(work / "results.json", "w"), indent=1)
EOF
}

check() {
    OUTDIR=${OUT:-/tmp/gpu_check}
    mkdir -p "$OUTDIR"
    exec > >(tee "$OUTDIR/gpu_check.log") 2>&1
    unpack
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
        RAY_USAGE_STATS_ENABLED=0 COLUMNS=160
    python3 -c "import torch, ray, mlflow; print('torch', torch.__version__, 'ray', ray.__version__, 'mlflow', mlflow.__version__)"
    if [[ "${GPU_CHECK_GPU:-0.25}" != 0 ]]; then # GPU_CHECK_GPU=0 tries the plumbing on CPUs
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
        echo "== the trainer on CUDA with bf16 autocast (benchmarks/gpu_trainer.py)"
        timeout 150 python3 -m benchmarks.gpu_trainer --epochs 1
    fi

    WORK=$(mktemp -d)
    write_specs "$WORK"
    echo "== one quickstart trial alone on the GPU (gpu: 0.25)"
    submit gpu_single
    echo "== the quickstart's four trials packed on the one GPU (gpu: 0.25 each)"
    submit gpu_packed
    echo "== throughput"
    summarise
    cp "$WORK/results.json" "$OUTDIR/"
}

case "${1:-check}" in
prepare) prepare ;;
check) check ;;
*) echo "usage: $0 [prepare|check]" >&2; exit 2 ;;
esac
