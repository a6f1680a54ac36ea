"""Issue 16: a results store away longer than its retries. The recorder's writes wait in order
(in memory, past a bound in a spill file) and go in once the store is back; a store that never
comes back leaves them in the spill file, which the next driver applies once, in order. Against
a real PostgreSQL server of the test's own (tests/chaos.py), stopped and started again; the spill
file itself against a SQLite store. The sweep-sized test is tests/test_store_outage_sweep.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import InputError, LeaseLostError, ServiceError
from orchestrator.store.buffered import BufferedWriter
from orchestrator.store.engine import tried_once
from orchestrator.store.lease import Holder
from orchestrator.store.pending import PendingWrites, Write, read_spill, replay_spilled, spill_path
from orchestrator.store.repository import ResultsStore
from orchestrator.store.views import NewTrial
from tests.chaos import PrivatePostgres, create_database, private_postgres_or_skip

STEPS = list(range(0, 50, 5))


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    with private_postgres_or_skip() as server:
        yield server


def new_store(url: str, trials: int = 2) -> ResultsStore:
    store = ResultsStore(url)
    store.upsert_sweep("s", "dual_encoder", "name: s\n", "abc", ("gap_norm", "min"))
    new = [NewTrial(f"k{i}", f"seed={i}", i, {"seed": i}, {"seed": i}) for i in range(trials)]
    store.register_trials("s", new)
    return store


def trial_writes(key: str, steps: list[int] = STEPS) -> list[Write]:
    """What the recorder writes for one trial: its start, a report and checkpoint per step, its
    end; the first report of the attempt says so."""
    writes = [Write("mark_running", {"key": key, "host": None, "node_id": None})]
    for step in steps:
        metrics = {"gap_norm": 1.0 / (step + 1), "loss": float(step)}
        args = {"key": key, "step": step, "metrics": metrics, "first_of_attempt": step == 0}
        writes.append(Write("record_metrics", args))
        writes.append(Write("set_checkpoint", {"key": key, "path": f"/ckpt/{key}/{step}"}))
    last = {"gap_norm": 1.0 / (steps[-1] + 1), "loss": float("nan")}
    end = {"key": key, "status": "completed", "metrics": last, "error": None}
    return [*writes, Write("finish_trial", end)]


def assert_recorded_once(store: ResultsStore, keys: list[str], steps: list[int] = STEPS) -> None:
    views = {v.key: v for v in store.trials("s")}
    for key in keys:
        assert views[key].status == "completed", key
        assert views[key].checkpoint_path == f"/ckpt/{key}/{steps[-1]}"
        assert views[key].non_finite == {"loss": "nan"}
        for name in ("gap_norm", "loss"):
            assert [s for s, _ in store.metric_series("s", key, name)] == steps, (key, name)


def test_writes_past_the_bound_spill_to_a_file_and_go_in_in_order(tmp_path: Path) -> None:
    path = spill_path(tmp_path / "runs", "s")
    pending = PendingWrites(path, "s", epoch=3, memory_bound=4)
    writes = trial_writes("k0") + trial_writes("k1")
    for write in writes:
        pending.add(write)
    assert len(pending) == len(writes) == 44
    assert 0 < len(pending.memory) <= 4  # the rest went to the file, the oldest first
    header, spilled = read_spill(path)
    assert header == {"gapsweep_pending_writes": 1, "sweep": "s", "epoch": 3}
    assert len(spilled) == 44 - len(pending.memory)
    assert [w.line() for w in spilled] == [w.line() for w in writes[: len(spilled)]]  # NaN kept

    with new_store(f"sqlite:///{tmp_path / 'results.db'}") as store:
        pending.drain(lambda w: w.apply(store, "s"))
        assert len(pending) == 0 and not path.exists()
        assert_recorded_once(store, ["k0", "k1"])


def test_a_spill_file_is_replayed_once_in_order_by_the_next_driver_only(tmp_path: Path) -> None:
    storage, said = tmp_path / "runs", []
    path = spill_path(storage, "s")
    pending = PendingWrites(path, "s", epoch=3, memory_bound=1000)
    for write in trial_writes("k0") + trial_writes("k1"):
        pending.add(write)
    pending.spill()
    kept = path.read_text()
    with new_store(f"sqlite:///{tmp_path / 'results.db'}") as store:
        assert replay_spilled(store, "s", storage, 5, said.append) == 0  # epoch 4 came between
        aside = path.with_name("pending-writes.epoch-3.not-applied.jsonl")
        assert aside.read_text() == kept and not path.exists()
        assert "not applied" in said[-1] and store.count_metric_rows("s") == 0

        path.write_text(kept + '{"op":"record_metr')  # a last line cut off by a kill: left out
        assert replay_spilled(store, "s", storage, 4, said.append) == 44
        assert not path.exists()
        assert_recorded_once(store, ["k0", "k1"])
        before = store.count_metric_rows("s")
        path.write_text(kept)  # applied twice (a replaying driver killed before the unlink)
        replay_spilled(store, "s", storage, 4, said.append)
        assert store.count_metric_rows("s") == before == 2 * 2 * len(STEPS)
        assert_recorded_once(store, ["k0", "k1"])


def test_a_spill_file_names_only_the_recorders_writes(tmp_path: Path) -> None:
    storage = tmp_path / "runs"
    path = spill_path(storage, "s")
    path.parent.mkdir(parents=True)
    head = json.dumps({"gapsweep_pending_writes": 1, "sweep": "s", "epoch": 1})
    path.write_text(head + "\n" + json.dumps({"op": "release_lease", "args": {}}) + "\n")
    with new_store(f"sqlite:///{tmp_path / 'results.db'}") as store, pytest.raises(InputError) as e:
        replay_spilled(store, "s", storage, 2, print)
    assert "not a results store write kept by gapsweep" in str(e.value)


def writer_for(store: ResultsStore, tmp_path: Path, epoch: int, said: list[str]) -> BufferedWriter:
    pending = PendingWrites(spill_path(tmp_path / "runs", "s"), "s", epoch, memory_bound=5)
    return BufferedWriter(store, pending, max_pending=1000, say=said.append)


def test_writes_wait_while_postgres_is_stopped_and_go_in_once_it_is_back(
    tmp_path: Path, postgres: PrivatePostgres
) -> None:
    said: list[str] = []
    url = create_database(postgres, "waiting")
    with new_store(url) as store:
        fence = store.acquire_lease("s", Holder.this_process(), 120)
        writer = writer_for(store, tmp_path, fence.epoch, said)
        writes = trial_writes("k0") + trial_writes("k1")
        writer.write_many([writes[0]])  # the store answers: straight in
        assert not writer.away and store.trial("s", "k0").status == "running"
        assert postgres.stop("fast").returncode == 0
        try:
            with tried_once():  # the retries' 7 s are tests/test_store.py's
                for start in range(1, len(writes), 3):  # as the recorder's batches come
                    writer.write_many(writes[start : start + 3])
            assert writer.away and len(writer.pending) == len(writes) - 1
            assert writer.pending.path.exists()  # past 5 in memory
            assert not writer.drain()  # still away: tried once, kept
        finally:
            assert postgres.start().returncode == 0
        assert writer.drain() and not writer.away and len(writer.pending) == 0
        assert not writer.pending.path.exists()
        assert_recorded_once(store, ["k0", "k1"])
        assert "answers again" in said[-1] and f"the {len(writes) - 1} results" in said[-1]


def test_a_store_that_never_comes_back_leaves_its_writes_for_the_next_driver(
    tmp_path: Path, postgres: PrivatePostgres
) -> None:
    said: list[str] = []
    url = create_database(postgres, "never")
    with new_store(url) as store:
        fence = store.acquire_lease("s", Holder.this_process(), 120)
        writer = writer_for(store, tmp_path, fence.epoch, said)
        assert postgres.stop("immediate").returncode == 0  # as if it crashed
        try:
            with tried_once():
                for write in trial_writes("k0"):
                    writer.write_many([write])
            with pytest.raises(ServiceError) as left:
                writer.settle(1.0, said.append)
        finally:
            assert postgres.start().returncode == 0
        message = str(left.value)
        assert str(writer.pending.path) in message and "submitting the sweep again" in message
        assert not writer.pending.memory and writer.pending.in_file == len(trial_writes("k0"))
        store.release_lease("s")  # what the next driver's takeover amounts to: epoch + 1
        nxt = store.acquire_lease("s", Holder.this_process(), 120)
        assert replay_spilled(store, "s", tmp_path / "runs", nxt.epoch, said.append) == 22
        assert_recorded_once(store, ["k0"])
        assert store.trial("s", "k0").attempts == 1


def test_writes_kept_while_the_lease_was_taken_over_are_never_applied(
    tmp_path: Path, postgres: PrivatePostgres
) -> None:
    said: list[str] = []
    url = create_database(postgres, "fenced")
    with new_store(url) as store, ResultsStore(url) as other:
        fence = store.acquire_lease("s", Holder.this_process(), 120)
        writer = writer_for(store, tmp_path, fence.epoch, said)
        assert postgres.stop("fast").returncode == 0
        try:
            with tried_once():
                for write in trial_writes("k0"):
                    writer.write_many([write])
        finally:
            assert postgres.start().returncode == 0
        # No heartbeat came (the store was away, and here no thread beats): the lease is stale.
        other.acquire_lease("s", Holder.this_process(), stale_after_s=0.001)
        with pytest.raises(LeaseLostError):
            writer.drain()
        assert len(writer.pending) == 0 and not writer.pending.path.exists()
        assert "discarded" in said[-1]
        assert store.trial("s", "k0").status == "pending" and store.count_metric_rows("s") == 0
