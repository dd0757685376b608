"""Checks on where plots and reports are written, so a bad folder fails with a clear message."""
from __future__ import annotations

import tempfile
from pathlib import Path


def ensure_writable_dir(folder) -> Path:
    """Create ``folder`` if needed and check files can be written in it.

    Raises
    ------
    ValueError
        when something that is not a folder is in the way.
    PermissionError
        when the folder cannot be created or written (permissions, read-only file system).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise ValueError(f"output folder {folder} cannot be used: a file is in the way ({exc.strerror})") from exc
    except OSError as exc:
        raise PermissionError(f"output folder {folder} cannot be created: {exc.strerror}") from exc
    # os.access lies for root and on read-only mounts; writing a probe file is the honest test
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".mphate-write-test-"):
            pass
    except OSError as exc:
        raise PermissionError(f"output folder {folder} is not writable: {exc.strerror}") from exc
    return folder


def ensure_parent_writable(path) -> Path:
    """Check the folder that will hold file ``path`` (creating it if needed); return ``path``."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"output path {path} is a folder; give a file name such as {path / 'mphate.png'}")
    ensure_writable_dir(path.parent if str(path.parent) else ".")
    return path
