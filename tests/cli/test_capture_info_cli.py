"""`mphate info PATH`: a summary of a store or trace file, and plain words for damage."""
import numpy as np

from mphate.capture import Recorder
from mphate.cli import main
from mphate.traces.io import save_npz


def record_run(path, n_slices=4):
    rec = Recorder(path, trace_labels=np.array([0, 0, 1, 1, 2]))
    for i in range(n_slices):
        acts = {"fc1": np.full((5, 3), i), "fc2": np.ones((5, 2))}
        rec.record(100 + 10 * i, acts, epoch=i + 1, loss=1.0 / (i + 1))
    rec.log(val_loss=0.25)
    rec.close()


def test_info_summarises_a_store(tmp_path, capsys):
    record_run(tmp_path / "run")
    assert main(["info", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "slices:       4" in out
    assert "steps:        100 .. 130" in out
    assert "epochs:       1 .. 4" in out
    assert "trace inputs: 5 (3 classes: 0, 1, 2)" in out
    assert "units:        5 in 2 layer(s)" in out
    assert "fc1  3" in out and "fc2  2" in out
    assert "loss      4, last 0.25" in out and "val_loss  1, last 0.25" in out
    assert "status:       ok" in out


def test_info_after_a_kill_mid_append(tmp_path, capsys):
    record_run(tmp_path / "run")
    with open(tmp_path / "run" / "index.jsonl", "ab") as fh:
        fh.write(b'{"slice": 4, "ste')
    assert main(["info", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "slices:       4" in out and "incomplete last slice is ignored" in out


def test_info_on_a_damaged_store_says_what_is_wrong_and_what_is_readable(tmp_path, capsys):
    record_run(tmp_path / "run")
    (tmp_path / "run" / "slices" / "00000002.npy").unlink()
    assert main(["info", str(tmp_path / "run")]) == 1
    out = capsys.readouterr().out
    assert "slices:       2" in out
    assert "DAMAGED" in out and "slice 2 file (slices/00000002.npy) is missing; slices 0-1 are readable" in out
    assert "truncate(2)" in out


def test_info_on_files_and_errors(tmp_path, capsys):
    record_run(tmp_path / "run")
    save_npz(tmp_path / "run", tmp_path / "run.npz")
    assert main(["info", str(tmp_path / "run.npz")]) == 0
    out = capsys.readouterr().out
    assert "format:       npz file" in out and "slices:       4" in out and "fc2  2" in out
    assert main(["info", str(tmp_path / "nothing")]) == 1
    assert "no trace at" in capsys.readouterr().err
    (tmp_path / "run" / "meta.json").write_text("{")
    assert main(["info", str(tmp_path / "run")]) == 1
    assert "meta.json is unreadable" in capsys.readouterr().err
