"""scikit-learn's estimator contract (``get_params``/``set_params``/``repr``), without importing it.

Importing anything from scikit-learn loads ``sklearn.utils.fixes``, which imports
``scipy.stats`` and, when installed, pandas: about 85 MB of resident memory and 1-2 s of
start-up (measured 2026-12-07: VmHWM 59 MB after NumPy + SciPy's sparse and linalg modules,
145 MB after ``import sklearn.base``). That was a sixth to a fifth of a whole fit's peak on
the benchmark panel (docs/benchmarks.md). The contract itself is a protocol: scikit-learn's
``clone``, ``GridSearchCV`` and ``Pipeline`` call these methods, not ``isinstance`` checks, so
:class:`ParamsMixin` keeps everything they need, and defers to scikit-learn's own code for
the estimator tags, which only scikit-learn asks for (so it is already imported then).
"""
from __future__ import annotations

import inspect


class ParamsMixin:
    """``get_params``/``set_params`` read from ``__init__``'s signature, as scikit-learn's do.

    Every ``__init__`` parameter must be stored unchanged under its own name (the contract
    ``clone`` relies on); ``*args`` are not allowed.
    """

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        names = []
        for name, parameter in signature.parameters.items():
            if name == "self" or parameter.kind == parameter.VAR_KEYWORD:
                continue
            if parameter.kind == parameter.VAR_POSITIONAL:
                raise TypeError(f"{cls.__name__}.__init__ must not take *{name}: "
                                "estimator parameters are named")
            names.append(name)
        return sorted(names)

    def get_params(self, deep: bool = True) -> dict:
        """The constructor parameters, ``{name: value}``; ``deep`` also lists those of any
        parameter that is itself an estimator, as ``name__sub``."""
        params = {}
        for name in self._param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                params.update((f"{name}__{key}", sub) for key, sub in value.get_params().items())
            params[name] = value
        return params

    def set_params(self, **params):
        """Set constructor parameters (``name__sub`` reaches into a nested estimator); returns self.

        Raises
        ------
        ValueError
            For a name that is not a parameter, naming the valid ones.
        """
        if not params:
            return self
        valid = self.get_params(deep=True)
        nested: dict[str, dict] = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise ValueError(f"{key!r} is not a parameter of {type(self).__name__}; "
                                 f"valid parameters: {', '.join(self._param_names())}")
            if sub:
                if not hasattr(valid[name], "set_params"):
                    raise ValueError(f"{key!r}: parameter {name!r} of {type(self).__name__} is not an "
                                     f"estimator, so it has no parameter {sub!r}")
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
                valid[name] = value
        for name, sub_params in nested.items():
            valid[name].set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        # like scikit-learn's: only the parameters that differ from their defaults
        defaults = {name: p.default for name, p in inspect.signature(type(self).__init__).parameters.items()}
        changed = []
        for name in self._param_names():
            value = getattr(self, name)
            default = defaults.get(name, inspect.Parameter.empty)
            if default is inspect.Parameter.empty or not _same(value, default):
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self):
        # only scikit-learn calls this, so importing it here costs nothing extra
        from sklearn.base import BaseEstimator
        return BaseEstimator.__sklearn_tags__(self)


def _same(value, default) -> bool:
    """Whether a parameter still holds its default (arrays and NaN compared sensibly)."""
    if value is default:
        return True
    if type(value) is not type(default):
        return False
    try:
        return bool(value == default)
    except (TypeError, ValueError):  # arrays and other values without one truth value
        return False
