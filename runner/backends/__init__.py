"""Backends: where a run's supervisor runs (see :mod:`runner.backends.base`).

Only ``local`` exists today; Slurm and Ray plug in behind the same interface.
"""

from __future__ import annotations

from runner.backends.base import Backend, BackendStatus
from runner.backends.local import LocalBackend
from runner.registry import Registry

__all__ = ["Backend", "BackendStatus", "LocalBackend", "backend_for", "get_backend"]

_BACKENDS: dict[str, Backend] = {"local": LocalBackend()}


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (raises ``ValueError`` for an unknown one)."""
    try:
        return _BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r} (known: {', '.join(_BACKENDS)})") from None


def backend_for(registry: Registry, run_id: str) -> Backend:
    """The backend a run uses (every run is local until a spec names another)."""
    return _BACKENDS["local"]
