"""Following a store another process writes: whole slices only, torn tails, resets, writer alive/gone."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from mphate import Recorder, TraceStore
from mphate.live import StoreFollower, writer_alive

N_UNITS, N_TRACE = 12, 8

# a writer in its own process: slice s is np.full(..., s) plus the unit index, written as fast
# as the store allows (fsync off), so the reader polls while files and index lines land
WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from mphate import Recorder
    rec = Recorder(sys.argv[1], fsync=False, resume=len(sys.argv) > 3)
    start = rec.n_slices
    for s in range(start, start + int(sys.argv[2])):
        block = s + np.arange({units})[None, :] / 100.0 + np.zeros(({trace}, 1))
        rec.record(s, {{"layer": block}}, epoch=s)
    print("ready", flush=True)
    sys.stdin.readline()  # hold the store open until told to go
    """
).format(units=N_UNITS, trace=N_TRACE)


def expected(s):
    return s + np.arange(N_UNITS)[:, None] / 100.0 + np.zeros((1, N_TRACE))


def start_writer(path, n, resume=False):
    args = [sys.executable, "-c", WRITER, str(path), str(n)] + (["resume"] if resume else [])
    return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_a_reader_beside_a_writer_sees_every_slice_whole_and_in_order(tmp_path):
    path = tmp_path / "run.trace"
    follower = StoreFollower(path)
    assert not follower.poll().exists  # not created yet: wait for it, no error
    writer = start_writer(path, 150)
    got, writers, polls = [], set(), 0
    try:
        while len(got) < 150:
            update = follower.poll()
            polls += 1
            if update.exists:
                got.extend(update.new_data)
                writers.add(update.writer)
            time.sleep(0.002)
        assert writer.stdout.readline().strip() == "ready"
        assert follower.poll().writer == "alive"  # it holds the store open
    finally:
        writer.stdin.close()
        writer.wait(30)
    assert len(got) == 150 and polls > 3  # it really read a growing store
    for s, data in enumerate(got):  # whole slices, in order, never a half-written one
        assert np.array_equal(data, expected(s).astype(np.float32)), s
    update = follower.poll()
    assert update.writer == "gone" and len(update.new_data) == 0 and not update.reset
    assert "alive" in writers


def test_torn_tail_rewind_and_new_run_at_the_same_path(tmp_path):
    path = tmp_path / "run.trace"
    with Recorder(path) as rec:
        for s in range(5):
            rec.record(s, {"layer": expected(s).T})
        assert writer_alive(path) is True
    assert writer_alive(path) is False
    follower = StoreFollower(path)
    assert len(follower.poll().new_data) == 5
    # the writer died while appending a line: the reader ignores it and says so
    with open(path / "index.jsonl", "ab") as index:
        index.write(b'{"slice": 5, "step": 5, "ep')
    update = follower.poll()
    assert update.torn_tail and len(update.new_data) == 0 and update.n_slices == 5
    # a resume from an older checkpoint rewinds the store: start over from its first slice
    with TraceStore.open(path, mode="a") as store:
        store.truncate(3)
        store.append(expected(9).T.T, step=9)
    update = follower.poll()
    assert update.reset and len(update.new_data) == 4
    assert np.array_equal(update.new_data[-1], expected(9).astype(np.float32))
    # another run created at the same path: also a reset
    import shutil

    shutil.rmtree(path)
    assert not follower.poll().exists
    with Recorder(path) as rec:
        rec.record(0, {"layer": expected(0).T})
    update = follower.poll()
    assert update.reset and len(update.new_data) == 1


def test_writer_liveness_survives_a_kill(tmp_path):
    path = tmp_path / "run.trace"
    writer = start_writer(path, 3)
    assert writer.stdout.readline().strip() == "ready"
    assert writer_alive(path) is True
    writer.kill()  # SIGKILL: no clean close; the OS drops the lock
    writer.wait(30)
    assert writer_alive(path) is False
    # and a resumed run takes the store again (the liveness probe never blocks it)
    writer = start_writer(path, 2, resume=True)
    assert writer.stdout.readline().strip() == "ready"
    assert writer_alive(path) is True
    writer.stdin.close()
    writer.wait(30)
    follower = StoreFollower(path)
    assert len(follower.poll().new_data) == 5
    meta = json.loads((path / "meta.json").read_text())
    assert meta["layer_units"] == [N_UNITS]
