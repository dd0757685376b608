"""PyTorch capture: forward hooks on chosen modules, run on the trace inputs during training.

Hooks exist only while a slice is being recorded: they are registered, the trace inputs are run
through the model (eval mode, no gradients), and they are removed again in a ``finally`` block.
Training forward passes never see them, and a crash cannot leave them behind.
"""
from __future__ import annotations

import difflib

import numpy as np

from mphate.optional import require
from mphate.capture.recorder import per_input_labels, recorder_for_inputs

__all__ = ["TorchRecorder", "default_layer_types"]

UNIT_REDUCTIONS = ("mean", "max", "flatten")


class _LayerOutputError(ValueError):
    """A traced module produced something that cannot be traced (not a tensor, ran twice...)."""


def default_layer_types():
    """Module types traced by default: every Linear and Conv layer (outputs before activation)."""
    nn = require("torch", "PyTorch capture").nn
    return (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class TorchRecorder:
    """Record a PyTorch model's hidden units on fixed trace inputs during training.

    Parameters
    ----------
    model : torch.nn.Module
    inputs : Tensor or ndarray, shape (n_trace, ...)
        The trace inputs, shaped like a training batch (see :func:`select_trace_inputs`).
        They are moved to the model's device, and cast to its floating dtype, at each record.
    path : str or Path, optional
        Trace store directory; None keeps the trace in memory.
    labels : array-like, shape (n_trace,), optional
        Class of each trace input.
    layers : list of str or dict of str -> callable, optional
        Modules to trace, by their dotted name in ``model.named_modules()``. A dict maps a name
        to a function picking the tensor to trace from the module's output (for modules that
        return tuples or dicts, e.g. ``{"lstm": lambda out: out[0]}``). Default: every module
        of ``layer_types``.
    layer_types : tuple of module classes, optional
        Used when ``layers`` is None. Default: Linear and Conv1d/2d/3d. Their outputs are the
        pre-activation values the paper traces (the nonlinearity is a separate module).
    every_n_steps : int, optional
        Period of :meth:`maybe_record`.
    unit_reduce : {"mean", "max", "flatten"}, default "mean"
        How an output with positions (a conv feature map, a sequence) becomes units: "mean" or
        "max" over positions give one unit per channel; "flatten" makes every position of
        every channel a unit (many units).
    channel_dims : dict of str -> int, optional
        Channel dimension of a layer's output, where the default is wrong. Default: the last
        dimension for Linear, LayerNorm and Embedding outputs, dimension 1 (NCHW) otherwise.
    batch_size : int, default 256
        Trace inputs run through the model in chunks of this size.
    resume, run_id, fsync, attrs
        See :class:`mphate.capture.Recorder`.
    watch, tensorboard, wandb, log_every
        The live view: ``watch=True`` serves a page that grows with the run (its address is
        printed and kept in ``live.url``); ``tensorboard=writer`` / ``wandb=run`` log its
        picture every ``log_every`` slices. See :class:`mphate.capture.Recorder`.

    Examples
    --------
    >>> X_trace, y_trace = select_trace_inputs(X_train, y_train)         # doctest: +SKIP
    >>> with TorchRecorder(model, X_trace, "run.trace", labels=y_trace) as rec:  # doctest: +SKIP
    ...     for epoch in range(1, n_epochs + 1):
    ...         loss = train_one_epoch(model)
    ...         rec.record(step=epoch * steps_per_epoch, epoch=epoch, loss=loss)
    >>> trace = rec.to_trace()                                           # doctest: +SKIP
    """

    def __init__(
        self,
        model,
        inputs,
        path=None,
        *,
        labels=None,
        layers=None,
        layer_types=None,
        every_n_steps=None,
        unit_reduce="mean",
        channel_dims=None,
        batch_size=256,
        resume=False,
        run_id=None,
        fsync=True,
        attrs=None,
        watch=False,
        tensorboard=None,
        wandb=None,
        log_every=10,
    ):
        self._torch = torch = require("torch", "PyTorch capture")
        if not isinstance(model, torch.nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if unit_reduce not in UNIT_REDUCTIONS:
            raise ValueError(f"unit_reduce must be one of {UNIT_REDUCTIONS}, got {unit_reduce!r}")
        if every_n_steps is not None and int(every_n_steps) < 1:
            raise ValueError(f"every_n_steps must be a positive integer, got {every_n_steps}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        self.model = model
        self.inputs = self._check_inputs(inputs)
        self.labels = per_input_labels(labels, self.inputs.shape[0])
        self.every_n_steps = None if every_n_steps is None else int(every_n_steps)
        self.unit_reduce = unit_reduce
        self.batch_size = int(batch_size)
        self.modules, self._extractors = self._select_modules(layers, layer_types)
        self.channel_dims = self._check_channel_dims(channel_dims or {})
        if attrs is None:
            attrs = {}
        attrs = {"framework": "torch", "layer_types": {n: type(m).__name__ for n, m in self.modules.items()}, **attrs}
        self.recorder = recorder_for_inputs(
            path, self.inputs, self.labels, resume=resume, run_id=run_id, fsync=fsync, attrs=attrs,
            watch=watch, tensorboard=tensorboard, wandb=wandb, log_every=log_every,
        )

    # --- configuration checks ---------------------------------------------------------------
    def _check_inputs(self, inputs):
        torch = self._torch
        if isinstance(inputs, np.ndarray):
            inputs = torch.from_numpy(np.ascontiguousarray(inputs))
        if not isinstance(inputs, torch.Tensor):
            raise ValueError(
                f"trace inputs must be a torch Tensor or numpy array shaped like a batch, got {type(inputs).__name__}"
            )
        if inputs.ndim < 1 or inputs.shape[0] == 0:
            raise ValueError(f"trace inputs must hold at least one example, got shape {tuple(inputs.shape)}")
        return inputs.detach()

    def _select_modules(self, layers, layer_types):
        named = dict(self.model.named_modules())
        named.pop("", None)  # the model itself is not a layer
        if layers is None:
            types = tuple(layer_types) if layer_types is not None else default_layer_types()
            modules = {name: m for name, m in named.items() if isinstance(m, types)}
            if not modules:
                raise ValueError(
                    f"the model has no module of type {[t.__name__ for t in types]} to trace; "
                    f"choose modules by name with layers=[...] (available: {_preview(named)})"
                )
            return modules, {}
        if isinstance(layers, str):
            layers = [layers]
        extractors = dict(layers) if isinstance(layers, dict) else {}
        names = list(layers)
        if not names:
            raise ValueError("layers is empty: name at least one module to trace")
        unknown = [n for n in names if n not in named]
        if unknown:
            hints = []
            for n in unknown:
                close = difflib.get_close_matches(str(n), list(named), n=3)
                hints.append(f"{n!r}" + (f" (did you mean {close}?)" if close else ""))
            raise ValueError(f"unknown module name(s) {', '.join(hints)}; available: {_preview(named)}")
        for name, fn in extractors.items():
            if fn is not None and not callable(fn):
                raise ValueError(f"layers[{name!r}] must be a function picking a tensor from the output, or None")
        return {n: named[n] for n in names}, {n: fn for n, fn in extractors.items() if fn is not None}

    def _check_channel_dims(self, channel_dims):
        unknown = [n for n in channel_dims if n not in self.modules]
        if unknown:
            raise ValueError(f"channel_dims names modules that are not traced: {unknown}")
        nn = self._torch.nn
        dims = {}
        for name, module in self.modules.items():
            if name in channel_dims:
                dims[name] = int(channel_dims[name])
            elif isinstance(module, (nn.Linear, nn.LayerNorm, nn.Embedding, nn.Bilinear)):
                dims[name] = -1  # features last
            else:
                dims[name] = 1  # PyTorch's (N, C, *positions) convention
        return dims

    # --- recording --------------------------------------------------------------------------
    @property
    def layer_names(self) -> list[str]:
        return list(self.modules)

    @property
    def run_id(self) -> str:
        return self.recorder.run_id

    @property
    def n_slices(self) -> int:
        return self.recorder.n_slices

    @property
    def store(self):
        return self.recorder.store

    @property
    def path(self):
        return self.recorder.path

    @property
    def live(self):
        """The live view started by ``watch=``/``tensorboard=``/``wandb=`` (``.url``, ``.stop()``), or None."""
        return self.recorder.live

    def activations(self) -> dict:
        """Each traced layer's units on the trace inputs now: ``{name: ndarray (n_trace, n_units)}``.

        Runs in eval mode without gradients, then puts every module back in the mode it was in.
        """
        torch = self._torch
        collected = {name: [] for name in self.modules}
        calls = dict.fromkeys(self.modules, 0)

        def make_hook(name):
            def hook(module, args, output):
                calls[name] += 1
                if calls[name] > 1:
                    raise _LayerOutputError(
                        f"module {name!r} ran more than once in one forward pass (a shared module); "
                        f"trace a module that runs once"
                    )
                collected[name].append(self._units(name, module, output))

            return hook

        device, float_dtype = self._model_device_dtype()
        previous_modes = [(m, m.training) for m in self.model.modules()]
        handles = []
        try:
            for name, module in self.modules.items():
                handles.append(module.register_forward_hook(make_hook(name)))
            self.model.eval()
            with torch.no_grad():
                for start in range(0, self.inputs.shape[0], self.batch_size):
                    chunk = self.inputs[start : start + self.batch_size].to(device)
                    if chunk.is_floating_point() and float_dtype is not None:
                        chunk = chunk.to(float_dtype)
                    for name in calls:
                        calls[name] = 0
                    self._forward(chunk)
                    silent = [n for n, c in calls.items() if c == 0]
                    if silent:
                        raise _LayerOutputError(
                            f"module(s) {silent} did not run when the trace inputs went through the model"
                        )
        finally:
            for handle in handles:
                handle.remove()
            for module, was_training in previous_modes:
                module.training = was_training
        return {name: torch.cat(parts).numpy() for name, parts in collected.items()}

    def _forward(self, chunk):
        try:
            self.model(chunk)
        except _LayerOutputError:
            raise
        except Exception as exc:  # shape/dtype mismatches surface here
            raise ValueError(
                f"running the trace inputs (shape {tuple(self.inputs.shape)}, dtype {self.inputs.dtype}) "
                f"through the model failed: {type(exc).__name__}: {exc}. The trace inputs must be "
                f"shaped like a training batch"
            ) from exc

    def _model_device_dtype(self):
        for p in self.model.parameters():
            return p.device, (p.dtype if p.is_floating_point() else None)
        return self.inputs.device, None

    def _units(self, name, module, output):
        """One layer's output as (chunk, n_units) float32 on the CPU."""
        torch = self._torch
        if name in self._extractors:
            output = self._extractors[name](output)
        if not isinstance(output, torch.Tensor):
            kind = type(output).__name__
            pick = "out['key']" if isinstance(output, dict) else "out[0]"
            raise _LayerOutputError(
                f"module {name!r} ({type(module).__name__}) returned a {kind}, not a tensor; trace "
                f"another module, or pass layers={{{name!r}: lambda out: {pick}}} to pick the tensor"
            )
        if not (output.is_floating_point() or output.dtype in (torch.int32, torch.int64)):
            raise _LayerOutputError(f"module {name!r} returned a {output.dtype} tensor, not numbers to trace")
        output = output.detach().float()
        if output.ndim == 1:
            return output[:, None].cpu()
        if output.ndim == 2:
            return output.cpu()
        if self.unit_reduce == "flatten":
            return output.reshape(output.shape[0], -1).cpu()
        channels = output.movedim(self.channel_dims[name], 1).flatten(2)  # (N, C, positions)
        reduced = channels.mean(dim=2) if self.unit_reduce == "mean" else channels.amax(dim=2)
        return reduced.cpu()

    def record(self, step=None, epoch=None, **scalars) -> int:
        """Record one slice now; returns its index.

        Parameters
        ----------
        step : int, optional
            Optimiser step; default: one after the last recorded step (0 for the first).
        epoch : float, optional
        **scalars : float or 0-d tensor
            loss, val_loss, accuracy, task, ... logged with this slice.
        """
        if step is None:
            last = self.recorder.last_step
            step = 0 if last is None else last + 1
        return self.recorder.record(step, self.activations(), epoch=epoch, **scalars)

    def maybe_record(self, step, epoch=None, **scalars):
        """Record if ``step`` is a multiple of ``every_n_steps``; returns the slice index or None."""
        if self.every_n_steps is None:
            raise ValueError("maybe_record needs every_n_steps (give it to TorchRecorder)")
        if int(step) % self.every_n_steps != 0:
            return None
        return self.record(step=step, epoch=epoch, **scalars)

    def log(self, slice_index=None, **scalars) -> None:
        """Attach scalars (e.g. val_loss) to a recorded slice, by default the last."""
        self.recorder.log(slice_index, **scalars)

    def to_trace(self):
        return self.recorder.to_trace()

    def close(self) -> None:
        self.recorder.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _preview(named, limit=40) -> str:
    names = [n for n in named]
    shown = ", ".join(f"{n} ({type(named[n]).__name__})" for n in names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
