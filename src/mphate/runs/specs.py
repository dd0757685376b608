"""Which runs to compare: names, paths, and the content fingerprint each run's cache entry is keyed by."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

#: bumped whenever what a cached result holds, or how it is computed, changes
CACHE_VERSION = 1
_SUFFIXES = (".npz", ".npy", ".mat", ".trace")


@dataclass(frozen=True)
class RunSpec:
    """One run to embed: its display name and the path its trace is read from (on the worker)."""

    name: str
    path: str


def _stem(path: Path) -> str:
    name = path.name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _unique_names(paths: list[Path]) -> list[str]:
    """Each run's file name without its suffix; where two clash, as many parent folders as it
    takes to tell them apart ("seed0/run", "seed1/run")."""
    parts = [list(p.resolve().parts[:-1]) + [_stem(p)] for p in paths]
    depth = [1] * len(paths)
    while True:
        names = ["/".join(part[-d:]) for part, d in zip(parts, depth)]
        clashes = {n for n in names if names.count(n) > 1}
        if not clashes:
            return names
        grown = False
        for i, name in enumerate(names):
            if name in clashes and depth[i] < len(parts[i]):
                depth[i] += 1
                grown = True
        if not grown:  # the same path twice is caught earlier; this is a last resort
            return [f"{n}#{i + 1}" if n in clashes else n for i, n in enumerate(names)]


def resolve_runs(runs) -> list[RunSpec]:
    """RunSpecs from a list of paths, a dict ``{name: path}``, or a list of RunSpec.

    Raises ValueError for no runs, the same path twice or two runs of one name, and
    FileNotFoundError naming every path that does not exist (before any work starts, so a typo
    in a long sweep costs nothing). A path that exists but cannot be read is not checked here:
    it becomes that run's error row.
    """
    if isinstance(runs, (str, Path)):
        runs = [runs]
    if isinstance(runs, dict):
        names, paths = [str(n) for n in runs], [Path(p) for p in runs.values()]
    else:
        runs = list(runs)
        if all(isinstance(r, RunSpec) for r in runs):
            names, paths = [r.name for r in runs], [Path(r.path) for r in runs]
        else:
            paths = [Path(r) for r in runs]
            names = _unique_names(paths) if paths else []
    if not paths:
        raise ValueError("no runs given: pass at least one trace store or trace file")
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"no trace at {', '.join(missing)}: the path does not exist")
    resolved = [str(p.resolve()) for p in paths]
    for group, label in ((resolved, "path"), (names, "name")):
        seen = set()
        for item in group:
            if item in seen:
                raise ValueError(f"the run {label} {item!r} is given twice; each run must appear once")
            seen.add(item)
    return [RunSpec(name, path) for name, path in zip(names, resolved)]


def content_digest(path) -> str:
    """A fingerprint of what a run's trace holds, read without loading the activations.

    Store directory: its ``meta.json`` and ``index.jsonl`` (which records each slice's size and
    CRC-32) plus the size of every slice file, so a slice appended, a scalar logged late or a
    file torn on disk all change it. Trace file: a hash of its bytes.
    """
    path = Path(path)
    digest = hashlib.blake2b(digest_size=16)
    if path.is_dir():
        for name in ("meta.json", "index.jsonl"):
            file = path / name
            digest.update(name.encode() + b"\0")
            digest.update(file.read_bytes() if file.is_file() else b"<missing>")
        slices = path / "slices"
        if slices.is_dir():
            for file in sorted(slices.glob("*.npy")):
                digest.update(f"{file.name}:{file.stat().st_size}\n".encode())
    else:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def params_digest(params: dict) -> str:
    """A fingerprint of the parameters a result depends on (embedding and metric settings)."""
    text = json.dumps({"version": CACHE_VERSION, **params}, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def run_key(content: str, params_key: str) -> str:
    """The cache key of one run: its content and the parameters, nothing else (not its name)."""
    return hashlib.blake2b(f"{content}|{params_key}".encode(), digest_size=16).hexdigest()
