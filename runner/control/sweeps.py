"""Sweep expansion: the points of ``--sweep key=v1,v2`` and their arguments."""

from __future__ import annotations

from collections.abc import Sequence

from runner.control.errors import LifecycleError


def sweep_points(sweeps: Sequence[str]) -> list[list[tuple[str, str]]]:
    """Expand ``["lr=1e-3,3e-4", "batch=32,64"]`` into the product of assignments.

    Raises:
        LifecycleError: for an item that is not ``KEY=V1,V2,...``.
    """
    from runner.request import RequestError, RunRequest, parse_sweeps

    try:
        return RunRequest(target="", sweeps=parse_sweeps(sweeps)).sweep_points()
    except RequestError as exc:
        raise LifecycleError(str(exc)) from None


def sweep_args(point: Sequence[tuple[str, str]], template: str | None = None) -> list[str]:
    """Arguments for one sweep point: ``--key value`` each, or a template like ``{key}={value}``."""
    out: list[str] = []
    for key, value in point:
        if template:
            out.append(template.replace("{key}", key).replace("{value}", value))
        else:
            out += [f"--{key}", value]
    return out
