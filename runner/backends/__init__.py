"""Backends: where a run's supervisor runs (see :mod:`runner.backends.base`).

``local`` is the default and needs nothing installed; ``slurm`` (:mod:`runner.backends.slurm`)
and ``ray`` (:mod:`runner.backends.ray`) are imported only when a run's spec names them, so
neither Slurm's CLI nor the ``ray`` package is needed by anything else. A run's backend is its
spec's :class:`runner.placement.Placement`. Crash-safe submission (an intent record before the
engine's submit call, the handle after it) lives in :mod:`runner.backends.intent`.
"""

from __future__ import annotations

import importlib

from runner.backends.base import Backend, BackendStatus
from runner.backends.local import LocalBackend
from runner.registry import Registry

__all__ = ["Backend", "BackendStatus", "LocalBackend", "backend_for", "get_backend"]

_BACKENDS: dict[str, Backend] = {"local": LocalBackend()}
# Imported on first use: ``module:Class``.
_LAZY = {"slurm": "runner.backends.slurm:SlurmBackend", "ray": "runner.backends.ray:RayBackend"}


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (raises ``ValueError`` for an unknown or missing one)."""
    if name in _BACKENDS:
        return _BACKENDS[name]
    if name not in _LAZY:
        known = ", ".join([*_BACKENDS, *_LAZY])
        raise ValueError(f"unknown backend {name!r} (known: {known})")
    module, _, cls = _LAZY[name].partition(":")
    try:
        backend: Backend = getattr(importlib.import_module(module), cls)()
    except ImportError as exc:
        raise ValueError(f"backend {name!r} is not available here: {exc}") from None
    _BACKENDS[name] = backend
    return backend


def backend_for(registry: Registry, run_id: str) -> Backend:
    """The backend a run's spec names (specs written before backends existed are local)."""
    return get_backend(registry.read_spec(run_id).placement.backend)
