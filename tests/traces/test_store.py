"""The on-disk trace store: appending, lazy reads, crash states, resume and refusals."""
import json
import os
import signal
import zlib

import numpy as np
import pytest

from mphate.traces.store import INDEX_FILE, META_FILE, TraceStore, is_trace_store

LAYERS = ["fc1", "fc2"]
UNITS = [3, 2]
N_TRACE = 4


def slice_data(i):
    """Deterministic slice i: what a run records, so a reader can check it afterwards."""
    return np.random.default_rng(i).normal(size=(sum(UNITS), N_TRACE)).astype(np.float32)


def make_store(path, n_slices=0, **kwargs):
    store = TraceStore.create(path, LAYERS, UNITS, N_TRACE, trace_labels=np.array([0, 0, 1, 1]), **kwargs)
    for i in range(n_slices):
        store.append(slice_data(i), step=10 * i, epoch=i, scalars={"loss": 1.0 / (i + 1)})
    return store


def test_append_then_read_everything(tmp_path):
    with make_store(tmp_path / "s", 5) as store:
        store.log_scalars(val_loss=0.7)  # a value known only after the slice
    trace = TraceStore.open(tmp_path / "s").to_trace()
    assert trace.data.dtype == np.float32
    assert trace.data.shape == (5, 5, N_TRACE)
    np.testing.assert_array_equal(trace.data, np.stack([slice_data(i) for i in range(5)]))
    np.testing.assert_array_equal(trace.steps, [0, 10, 20, 30, 40])
    np.testing.assert_array_equal(trace.epochs, [0, 1, 2, 3, 4])
    np.testing.assert_allclose(trace.scalars["loss"], [1, 1 / 2, 1 / 3, 1 / 4, 1 / 5])
    np.testing.assert_array_equal(np.isnan(trace.scalars["val_loss"]), [True] * 4 + [False])
    assert trace.scalars["val_loss"][-1] == pytest.approx(0.7)
    assert trace.layer_names == LAYERS
    np.testing.assert_array_equal(trace.unit_layer, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(trace.trace_labels, [0, 0, 1, 1])


def test_read_range_and_stride_loads_only_those_slices(tmp_path):
    make_store(tmp_path / "s", 7).close()
    store = TraceStore.open(tmp_path / "s")
    # a missing file outside the selection must not matter: reads are lazy
    (tmp_path / "s" / store._files[6]).unlink()
    part = store.read(start=1, stop=6, step=2)
    np.testing.assert_array_equal(part.steps, [10, 30, 50])
    np.testing.assert_array_equal(part.data, np.stack([slice_data(i) for i in (1, 3, 5)]))
    np.testing.assert_allclose(part.scalars["loss"], [1 / 2, 1 / 4, 1 / 6])
    with pytest.raises(ValueError, match="slice 6 file .* is missing; slices 0-5 are readable"):
        store.read(start=6)


def test_epochs_default_to_steps_when_never_given(tmp_path):
    store = TraceStore.create(tmp_path / "s", ["a"], [2], 3)
    store.append(np.zeros((2, 3)), step=5)
    store.append(np.ones((2, 3)), step=9)
    np.testing.assert_array_equal(store.to_trace().epochs, [5.0, 9.0])


def test_non_finite_scalars_survive_the_json_index(tmp_path):
    store = make_store(tmp_path / "s", 1)
    store.log_scalars(loss=float("inf"), acc=float("nan"))
    trace = TraceStore.open(tmp_path / "s").to_trace()
    assert trace.scalars["loss"][0] == np.inf
    assert np.isnan(trace.scalars["acc"][0])


# --- the states a killed writer can leave behind -----------------------------------------


def test_torn_last_index_line_is_ignored_and_cut_before_the_next_append(tmp_path):
    make_store(tmp_path / "s", 3).close()
    with open(tmp_path / "s" / INDEX_FILE, "ab") as fh:
        fh.write(b'{"slice": 3, "step": 30, "epo')  # the writer died mid-line
    reader = TraceStore.open(tmp_path / "s")
    assert reader.n_slices == 3 and reader.torn_tail and reader.problem is None
    with TraceStore.open(tmp_path / "s", mode="a") as store:
        store.append(slice_data(3), step=30)
    trace = TraceStore.open(tmp_path / "s").to_trace()
    np.testing.assert_array_equal(trace.steps, [0, 10, 20, 30])
    np.testing.assert_array_equal(trace.data[3], slice_data(3))
    for line in (tmp_path / "s" / INDEX_FILE).read_text().splitlines():
        json.loads(line)  # no garbage left between lines


def test_orphan_slice_file_without_index_line_is_ignored_then_overwritten(tmp_path):
    make_store(tmp_path / "s", 2).close()
    # killed after the rename, before the index line: a complete file nobody points at
    (tmp_path / "s" / "slices" / "00000002.npy").write_bytes(b"half-written garbage")
    assert TraceStore.open(tmp_path / "s").n_slices == 2
    with TraceStore.open(tmp_path / "s", mode="a") as store:
        store.append(slice_data(2), step=20)
    np.testing.assert_array_equal(TraceStore.open(tmp_path / "s").read_slice(2), slice_data(2))


def test_truncated_slice_file_is_reported_with_what_is_readable(tmp_path):
    make_store(tmp_path / "s", 4).close()
    target = tmp_path / "s" / "slices" / "00000002.npy"
    target.write_bytes(target.read_bytes()[:40])
    with pytest.raises(ValueError, match=r"slice 2 file .* is truncated.*slices 0-1 are readable"):
        TraceStore.open(tmp_path / "s")
    lenient = TraceStore.open(tmp_path / "s", strict=False)
    assert lenient.n_slices == 2
    assert "slice 2" in lenient.problem
    np.testing.assert_array_equal(lenient.to_trace().data[1], slice_data(1))


def test_bit_rot_is_caught_by_the_checksum(tmp_path):
    make_store(tmp_path / "s", 3).close()
    target = tmp_path / "s" / "slices" / "00000001.npy"
    raw = bytearray(target.read_bytes())
    raw[-1] ^= 0xFF  # same size, different content
    target.write_bytes(bytes(raw))
    store = TraceStore.open(tmp_path / "s")
    np.testing.assert_array_equal(store.read_slice(0), slice_data(0))
    with pytest.raises(ValueError, match="slice 1 .* checksum .* slice 0 is readable"):
        store.to_trace()


def test_damaged_middle_index_line_keeps_the_slices_before_it(tmp_path):
    make_store(tmp_path / "s", 4).close()
    index = tmp_path / "s" / INDEX_FILE
    lines = index.read_bytes().split(b"\n")
    lines[2] = b"{not json"
    index.write_bytes(b"\n".join(lines))
    with pytest.raises(ValueError, match="line 3 of index.jsonl is damaged.*slices 0-1 are readable"):
        TraceStore.open(tmp_path / "s")


def test_repair_by_truncation_then_append(tmp_path):
    make_store(tmp_path / "s", 4).close()
    (tmp_path / "s" / "slices" / "00000003.npy").unlink()
    with pytest.raises(ValueError, match="slices 0-2 are readable"):
        TraceStore.open(tmp_path / "s", mode="a")
    with TraceStore.open(tmp_path / "s", mode="a", strict=False) as store:
        with pytest.raises(ValueError, match="truncate"):
            store.append(slice_data(3), step=30)
        store.truncate(store.n_slices)
        store.append(slice_data(3), step=31)
    trace = TraceStore.open(tmp_path / "s").to_trace()
    np.testing.assert_array_equal(trace.steps, [0, 10, 20, 31])


def test_truncate_after_step_rewinds_to_a_checkpoint(tmp_path):
    store = make_store(tmp_path / "s", 5)
    with pytest.raises(ValueError, match="not after the last recorded step 40.*truncate_after_step"):
        store.append(slice_data(9), step=25)
    assert store.truncate_after_step(25) == 3
    store.append(slice_data(9), step=26)
    store.close()
    reopened = TraceStore.open(tmp_path / "s")
    np.testing.assert_array_equal(reopened.steps, [0, 10, 20, 26])
    assert not (tmp_path / "s" / "slices" / "00000004.npy").exists()


def test_missing_or_foreign_metadata(tmp_path):
    with pytest.raises(FileNotFoundError):
        TraceStore.open(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not an mphate trace store"):
        TraceStore.open(tmp_path / "empty")
    make_store(tmp_path / "s", 1).close()
    (tmp_path / "s" / META_FILE).write_text("{broken")
    with pytest.raises(ValueError, match="meta.json is unreadable"):
        TraceStore.open(tmp_path / "s")


# --- refusals that must leave the store untouched ----------------------------------------


def _snapshot(path):
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file() and p.name != ".lock"}


def test_bad_appends_write_nothing(tmp_path):
    store = make_store(tmp_path / "s", 2)
    before = _snapshot(tmp_path / "s")
    bad_calls = [
        dict(data=np.zeros((4, N_TRACE)), step=99),  # wrong unit count
        dict(data=np.zeros((5, N_TRACE + 1)), step=99),  # wrong number of trace inputs
        dict(data=np.zeros((5, N_TRACE)), step=10),  # step not increasing
        dict(data=np.zeros((5, N_TRACE)), step=99, scalars={"loss": "high"}),
        dict(data=np.array([["x"] * N_TRACE] * 5), step=99),
    ]
    for call in bad_calls:
        with pytest.raises(ValueError):
            store.append(**call)
    assert _snapshot(tmp_path / "s") == before
    assert store.n_slices == 2


def test_create_refuses_an_existing_store_or_a_non_empty_directory(tmp_path):
    make_store(tmp_path / "s", 1).close()
    with pytest.raises(ValueError, match="already holds one"):
        make_store(tmp_path / "s")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        make_store(tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_appending_to_another_runs_store_is_refused(tmp_path):
    store = make_store(tmp_path / "s", 1)
    run_id = store.run_id
    store.close()
    with pytest.raises(ValueError, match="belongs to run"):
        TraceStore.open(tmp_path / "s", mode="a", run_id="someone-else")
    with TraceStore.open(tmp_path / "s", mode="a", run_id=run_id) as resumed:
        resumed.append(slice_data(1), step=10)
    assert TraceStore.open(tmp_path / "s").n_slices == 2


def test_second_writer_is_locked_out_until_the_first_closes(tmp_path):
    first = make_store(tmp_path / "s", 1)
    with pytest.raises(ValueError, match="already open for appending"):
        TraceStore.open(tmp_path / "s", mode="a")
    assert TraceStore.open(tmp_path / "s").n_slices == 1  # readers are never locked out
    first.close()
    TraceStore.open(tmp_path / "s", mode="a").close()


def test_layout_check_lists_the_differences(tmp_path):
    store = make_store(tmp_path / "s")
    store.check_layout(["fc2", "fc1"], [2, 3], N_TRACE)  # order does not matter
    with pytest.raises(ValueError, match="layers not in the store: \\['fc3'\\].*'fc2' has 4 units, the store has 2"):
        store.check_layout(["fc1", "fc2", "fc3"], [3, 4, 1], N_TRACE)


def test_is_trace_store(tmp_path):
    assert not is_trace_store(tmp_path)
    make_store(tmp_path / "s").close()
    assert is_trace_store(tmp_path / "s")


# --- a real kill at every durability point -----------------------------------------------

# Slice i's writes, in order: slice file fsync, rename, directory fsync, index line write,
# index fsync. Creating the store fsyncs 4 times first.
# (os function, n-th call at which the writer dies, slices completed by then)
CRASH_POINTS = [
    ("fsync", 5, 0),  # slice 0 file written, not yet renamed
    ("replace", 3, 1),  # slice 1 file complete under its temp name only (meta.json was rename 1)
    ("fsync", 9, 1),  # slice 1 renamed into place, index line not yet written
    ("write", 2, 1),  # slice 1 index line half written
    ("fsync", 10, 2),  # slice 1 index line written, not yet fsynced (the page cache has it)
]


def _run_until_killed(path, kind, n):
    """Fork a writer that SIGKILLs itself at the n-th call of os.<kind>; return its status."""
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            real = getattr(os, kind)
            calls = [0]

            def dying(*args):
                calls[0] += 1
                if calls[0] == n:
                    if kind == "write":  # leave a torn line behind
                        real(args[0], args[1][: len(args[1]) // 2])
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(*args)

            setattr(os, kind, dying)
            store = make_store(path)
            for i in range(4):
                store.append(slice_data(i), step=10 * i, epoch=i)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    return status


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
# the child only writes files with numpy and the standard library, so threads that other
# tests started (torch's pool) cannot deadlock it
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")
@pytest.mark.parametrize("kind,n,completed", CRASH_POINTS)
def test_kill_at_any_write_keeps_every_completed_slice(tmp_path, kind, n, completed):
    path = tmp_path / "s"
    status = _run_until_killed(path, kind, n)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    store = TraceStore.open(path)  # strict: a kill must never look like corruption
    assert store.n_slices == completed
    for i in range(completed):
        np.testing.assert_array_equal(store.read_slice(i), slice_data(i))
    # resume appends right after the completed slices
    with TraceStore.open(path, mode="a", run_id=store.run_id) as resumed:
        resumed.append(slice_data(completed), step=10 * completed)
    assert not list((path / "slices").glob(".*.tmp-*"))  # a dead writer's temp file is cleaned up
    trace = TraceStore.open(path).to_trace()
    np.testing.assert_array_equal(trace.steps, 10 * np.arange(completed + 1))
    np.testing.assert_array_equal(trace.data, np.stack([slice_data(i) for i in range(completed + 1)]))


def test_index_lines_carry_a_checksum_of_their_file(tmp_path):
    make_store(tmp_path / "s", 2).close()
    for line in (tmp_path / "s" / INDEX_FILE).read_text().splitlines():
        event = json.loads(line)
        payload = (tmp_path / "s" / event["file"]).read_bytes()
        assert event["crc32"] == zlib.crc32(payload) and event["nbytes"] == len(payload)
