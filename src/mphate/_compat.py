"""Old import paths from before the package was laid out by role (0.1 -> 0.2).

``import mphate.kernel`` and friends keep working: a finder on ``sys.meta_path`` answers each
old name with a thin module that forwards every attribute to the module's new home and warns
once, at import, with a DeprecationWarning naming the new path. Nothing else imports this
table; delete an entry a release after its deprecation.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys
import types
import warnings

MOVED_MODULES = {
    "mphate.estimator": "mphate.embed.estimator",
    "mphate.normalize": "mphate.embed.normalize",
    "mphate.kernel": "mphate.embed.kernel",
    "mphate.landmarks": "mphate.embed.landmarks",
    "mphate.diffusion": "mphate.embed.diffusion",
    "mphate.mds": "mphate.embed.mds",
    "mphate.trace": "mphate.traces.trace",
    "mphate.store": "mphate.traces.store",
    "mphate.io": "mphate.traces.io",
    "mphate.datasets": "mphate.traces.datasets",
    "mphate.synthetic": "mphate.traces.synthetic",
    "mphate.embedding_file": "mphate.traces.embedding_file",
    "mphate.report": "mphate.plot.report",
    "mphate.demo": "mphate.experiments.demo",
}


class _ForwardingModule(types.ModuleType):
    """A module whose attributes are those of another module (read and written through)."""

    def __init__(self, name: str, target: types.ModuleType):
        super().__init__(name, f"moved to {target.__name__}")
        object.__setattr__(self, "_target", target)

    def __getattr__(self, attr):
        return getattr(object.__getattribute__(self, "_target"), attr)

    def __setattr__(self, attr, value):
        if attr.startswith("__") and attr.endswith("__"):
            super().__setattr__(attr, value)  # the import system's own bookkeeping
        else:
            setattr(object.__getattribute__(self, "_target"), attr, value)

    def __dir__(self):
        return dir(object.__getattribute__(self, "_target"))


class _MovedModuleLoader(importlib.abc.Loader):
    def __init__(self, new_name: str):
        self.new_name = new_name

    def create_module(self, spec):
        warnings.warn(
            f"{spec.name} moved to {self.new_name}; import it from there "
            f"(the old path will be removed in a later release)",
            DeprecationWarning,
            stacklevel=_importer_stacklevel(),
        )
        return _ForwardingModule(spec.name, importlib.import_module(self.new_name))

    def exec_module(self, module):
        pass


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new_name = MOVED_MODULES.get(fullname)
        if new_name is None:
            return None
        return importlib.util.spec_from_loader(fullname, _MovedModuleLoader(new_name))


def _importer_stacklevel() -> int:
    """``stacklevel`` of the first frame outside the import machinery (the user's import).

    ``warnings.warn`` itself skips importlib's frozen ``_bootstrap`` frames when counting, so
    only this module's frames and ``importlib.import_module`` are counted here.
    """
    frame, level = sys._getframe(1), 1
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename == __file__ or filename.endswith(os.path.join("importlib", "__init__.py")):
            level += 1
        elif not ("importlib" in filename and "_bootstrap" in filename):
            break
        frame = frame.f_back
    return level


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
