"""One command-line vocabulary: every MPHATE parameter is an option of embed/plot/report with the
estimator's default, and the shared things have the same names on every command."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

import mphate.cli
from mphate.cli import build_parser, main
from mphate.cli._common import estimator_from_args
from mphate.embed.estimator import MPHATE
from mphate.traces.io import save_npz
from mphate.traces.synthetic import make_trace

EMBEDDING_COMMANDS = ["embed", "plot", "report"]

# MPHATE parameters deliberately not exposed as --<param>, each with what stands in for it.
# Every other parameter, including any added later, must have an option of the same name.
MAPPED_DIFFERENTLY = {
    # -q/--quiet gives verbose=0 and -v gives 2; the command line's own default is 1 (one line
    # per stage), not the estimator's silent 0, so it is checked separately below
    "verbose",
}


def subcommand(name, parent=None):
    """The argparse parser of ``mphate NAME`` (or ``mphate PARENT NAME``)."""
    parser = build_parser() if parent is None else subcommand(parent)
    choices = next(a.choices for a in parser._actions if isinstance(getattr(a, "choices", None), dict))
    return choices[name]


def embedding_group(parser):
    return next(g for g in parser._action_groups if g.title.startswith("embedding parameters"))


def shown(value) -> str:
    """How --help should print a default: as the user would type it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory):
    trace = make_trace(n_slices=6, n_units=20, n_trace=12, random_state=0)
    return save_npz(trace, tmp_path_factory.mktemp("vocab") / "run.npz")


# ------------------------------------------------------------------ options <-> estimator parameters
@pytest.mark.parametrize("command", EMBEDDING_COMMANDS)
def test_every_embedding_option_is_an_estimator_parameter_with_its_default(command):
    params = MPHATE().get_params()
    parser = subcommand(command)
    options = embedding_group(parser)._group_actions
    assert options, f"mphate {command} has no embedding parameters"
    help_text = parser.format_help().replace("\n", " ")
    for action in options:
        assert action.dest in params, f"{action.option_strings} of mphate {command} is no MPHATE parameter"
        flag = "--" + action.dest.replace("_", "-")
        assert flag in action.option_strings, f"{action.dest} should be spelled {flag}"
        assert action.default == params[action.dest], (command, action.dest, action.default)
        assert type(action.default) is type(params[action.dest]), (command, action.dest)
        assert f"(default: {shown(params[action.dest])}" in " ".join(action.help.split()), (command, action.dest)
        assert flag in help_text


@pytest.mark.parametrize("command", EMBEDDING_COMMANDS)
def test_every_estimator_parameter_has_an_option(command):
    exposed = {action.dest for action in embedding_group(subcommand(command))._group_actions}
    missing = set(MPHATE().get_params()) - MAPPED_DIFFERENTLY - exposed
    assert not missing, (
        f"MPHATE parameter(s) {sorted(missing)} have no option on `mphate {command}`: add them to "
        "ESTIMATOR_OPTIONS in src/mphate/cli/_common.py"
    )


@pytest.mark.parametrize("command", EMBEDDING_COMMANDS)
def test_no_options_give_the_estimators_defaults_and_q_v_set_verbose(command):
    parser = build_parser()
    defaults = MPHATE().get_params()
    est = estimator_from_args(parser.parse_args([command, "run.npz"]))
    assert {k: v for k, v in est.get_params().items() if k != "verbose"} == {
        k: v for k, v in defaults.items() if k != "verbose"}
    assert est.verbose == 1  # the command line shows the stages unless told not to
    assert estimator_from_args(parser.parse_args([command, "run.npz", "-q"])).verbose == 0
    assert estimator_from_args(parser.parse_args([command, "run.npz", "-v"])).verbose == 2
    with pytest.raises(ValueError, match="-q and -v contradict"):
        estimator_from_args(parser.parse_args([command, "run.npz", "-q", "-v"]))


# one value other than the default for each option, as typed, and what the estimator gets
SAMPLES = {
    "n_components": ("3", 3), "intraslice_knn": ("4", 4), "interslice_knn": ("9", 9),
    "decay": ("2.5", 2.5), "t": ("12", 12), "gamma": ("-0.5", -0.5), "n_landmark": ("none", None),
    "n_svd": ("20", 20), "spectral_stride": ("2", 2), "mds": ("classic", "classic"),
    "mds_max_iter": ("50", 50), "mds_tol": ("0.01", 0.01), "t_max": ("40", 40),
    "random_state": ("3", 3), "n_jobs": ("-1", -1), "device": ("torch", "torch"),
}


@pytest.mark.parametrize("command", EMBEDDING_COMMANDS)
def test_each_option_reaches_its_estimator_parameter(command):
    parser = build_parser()
    for param, (text, expected) in SAMPLES.items():
        assert expected != MPHATE().get_params()[param], param  # a sample that could go unnoticed
        args = parser.parse_args([command, "run.npz", "--" + param.replace("_", "-"), text])
        assert getattr(estimator_from_args(args), param) == expected, (command, param)
    args = parser.parse_args([command, "run.npz", "--no-normalize"])
    assert estimator_from_args(args).normalize is False
    assert estimator_from_args(parser.parse_args([command, "run.npz", "--no-normalize", "--normalize"])).normalize


@pytest.mark.parametrize("option, text, message", [
    ("--t", "0", "must be 'auto', 'knee' or a positive integer"),
    ("--gamma", "2", "must be a number in [-1, 1]"),
    ("--decay", "-1", "must be a positive number"),
    ("--n-landmark", "1", "must be an integer >= 2 or 'none'"),
    ("--t-max", "2", "must be an integer >= 3"),
    ("--n-jobs", "0", "must be a number of threads, -1 (all cores) or 'none'"),
    ("--random-state", "-3", "must be a non-negative integer or 'none'"),
    ("--mds", "fast", "invalid choice"),
])
def test_bad_values_are_one_clear_argparse_error(capsys, option, text, message):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["embed", "run.npz", option, text])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and option in err and message in err


def test_embed_with_options_writes_what_the_estimator_computes(tmp_path, trace_file, capsys):
    from mphate.traces.embedding_file import load_embedding

    out = tmp_path / "e.npz"
    code = main(["embed", str(trace_file), "-o", str(out), "-q", "--random-state", "0", "--interslice-knn", "4",
                 "--no-normalize", "--mds", "classic", "--n-landmark", "none", "--t", "6"])
    assert code == 0, capsys.readouterr().err
    expected = MPHATE(random_state=0, interslice_knn=4, normalize=False, mds="classic", n_landmark=None,
                      t=6).fit_transform(trace_file)
    np.testing.assert_allclose(load_embedding(out), expected, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ the same names on every command
def all_commands():
    yield from ["demo", "info", "embed", "plot", "report", "compare"]
    yield from [("experiment", name) for name in ("generalization", "continual")]


def parser_of(command):
    return subcommand(command[1], command[0]) if isinstance(command, tuple) else subcommand(command)


@pytest.mark.parametrize("command", list(all_commands()), ids=str)
def test_one_spelling_per_thing(command):
    parser = parser_of(command)
    visible = {flag for a in parser._actions if a.help != argparse.SUPPRESS for flag in a.option_strings}
    text = parser.format_help()
    for old in ("--seed", "--out ", "--threads"):
        assert old not in text, f"{command}: {old.strip()} is an old spelling"
    by_dest = {}
    for action in parser._actions:
        if action.help != argparse.SUPPRESS:
            by_dest.setdefault(action.dest, set()).update(action.option_strings)
    if "-o" in visible:
        assert by_dest["output"] == {"-o", "--output"}, command
    if "random_state" in by_dest:
        assert by_dest["random_state"] == {"--random-state"}, command
    if "n_jobs" in by_dest:
        assert "thread" in next(a.help for a in parser._actions if a.dest == "n_jobs"), command
    if "quiet" in by_dest:
        assert by_dest["quiet"] == {"-q", "--quiet"}, command


@pytest.mark.parametrize("argv, dest, value", [
    (["demo", "--seed", "3"], "random_state", 3),
    (["demo", "--threads", "2"], "n_jobs", 2),
    (["compare", "run.npz", "--out", "x"], "output", "x"),
    (["experiment", "continual", "--out", "x"], "output", "x"),
    (["experiment", "generalization", "--seed", "4"], "random_state", 4),
    (["experiment", "generalization", "--n-jobs", "3"], "workers", 3),
])
def test_old_spellings_still_work_with_one_deprecation_line(capsys, argv, dest, value):
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "deprecated" in lines[0] and argv[-2] in lines[0], lines


def test_new_spellings_print_nothing(capsys):
    args = build_parser().parse_args(["experiment", "generalization", "--workers", "3", "--random-state", "4",
                                      "-o", "x"])
    assert (args.workers, args.random_state, args.output) == (3, 4, "x")
    args = build_parser().parse_args(["demo", "--n-jobs", "2", "--random-state", "5"])
    assert (args.n_jobs, args.random_state) == (2, 5)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("prefix", [["embed", "run.npz"], ["plot", "run.npz"], ["report", "run.npz"], ["demo"],
                                    ["compare", "run.npz"], ["experiment", "continual"]], ids=lambda p: p[0])
def test_n_landmark_is_parsed_the_same_everywhere(capsys, prefix):
    parser = build_parser()
    assert parser.parse_args([*prefix, "--n-landmark", "none"]).n_landmark is None
    assert parser.parse_args([*prefix, "--n-landmark", "500"]).n_landmark == 500
    with pytest.raises(SystemExit):
        parser.parse_args([*prefix, "--n-landmark", "1"])
    assert "must be an integer >= 2 or 'none'" in capsys.readouterr().err


def test_demo_passes_on_only_the_embedding_options_given(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    pytest.importorskip("plotly")
    out = tmp_path / "demo"
    code = main(["demo", "-q", "-o", str(out), "--epochs", "4", "--hidden", "4", "--no-3d",
                 "--mds", "classic", "--n-landmark", "none"])
    assert code == 0, capsys.readouterr().err
    params = np.load(out / "embedding.npz", allow_pickle=False)["params"]

    saved = json.loads(str(params))
    assert saved["mds"] == "classic" and "n_landmark" not in saved  # None: every point its own
    assert saved["interslice_knn"] == 3  # not given: the demo still lowers it for 4 epochs


# ------------------------------------------------------------------ the command table
def test_a_command_module_that_fails_to_import_is_an_error(monkeypatch):
    monkeypatch.setattr(mphate.cli, "_COMMAND_MODULES", [*mphate.cli._COMMAND_MODULES, "no_such_command"])
    with pytest.raises(ModuleNotFoundError, match="no_such_command"):
        build_parser()


def test_missing_trace_is_one_line(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert main(["embed", str(missing), "-q"]) == 1
    assert capsys.readouterr().err.strip() == f"mphate embed: error: no trace at {missing}"
