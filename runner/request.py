"""One way to read a new run's request, shared by the CLI and the TUI.

The CLI's ``backprop run`` and the TUI's dialogs both build a :class:`RunRequest` with
:func:`parse_run_request`, so they accept and refuse the same inputs with the same one-line
reasons.

Meanings fixed here, once:

* A time limit left empty (or ``none``) means "no limit of the run's own": the configuration's
  ``[run] timeout`` applies, else none. ``0`` is refused: it reads both as "no limit" and as
  "stop at once", and a request should never be guessed.
* ``gpus`` is a whole number, 0 or more (0: CPU only); ``gpu_ids`` are 0 or more, with commas.
* Sizes are binary (``8G`` is 8 GiB); env pairs are ``KEY=VALUE`` with a non-empty key;
  a sweep is ``KEY=V1,V2``.

This module checks what the user typed; whether a script exists or a command is on ``PATH``
stays with :func:`runner.control.submission.build_command`, which the submit path calls.
"""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from runner.checkpoints.forms import glob_error
from runner.config import ConfigError, parse_duration, parse_size
from runner.model import validate_name, validate_new_name
from runner.placement import BACKENDS

NO_LIMIT_WORDS = ("", "none", "no", "-")


class RequestError(ValueError):
    """A request the user must correct; the message is one line and names the field."""


@dataclass(frozen=True)
class RunRequest:
    """A new run as the user asked for it, checked and converted.

    ``timeout_s`` ``None`` means the configuration's default applies; ``gpus`` ``None`` means
    the framework's guess applies.
    """

    target: str
    args: tuple[str, ...] = ()
    name: str | None = None
    group: str | None = None
    timeout_s: float | None = None
    gpus: int | None = None
    gpu_ids: tuple[int, ...] | None = None
    vram_bytes: int | None = None
    ram_bytes: int | None = None
    env: tuple[tuple[str, str], ...] = ()
    sweeps: tuple[tuple[str, tuple[str, ...]], ...] = ()
    sweep_template: str | None = None
    checkpoint_globs: tuple[str, ...] = field(default=())
    # Where it runs, as typed; ``None``/empty: ``[backend]`` in the configuration decides
    # (:func:`runner.backends.settings.placement_from`, at submission).
    backend: str | None = None
    partition: str | None = None
    account: str | None = None
    slurm_args: tuple[str, ...] = ()
    ray_address: str | None = None

    def sweep_points(self) -> list[list[tuple[str, str]]]:
        """Every combination of the sweep's values (one list of ``(key, value)`` per run)."""
        axes = [[(key, v) for v in values] for key, values in self.sweeps]
        return [list(p) for p in itertools.product(*axes)]


def parse_time_limit(text: str | None) -> float | None:
    """A time limit as typed: empty or ``none`` for none of its own, else ``90s``/``10m``/``2h``.

    Raises:
        RequestError: ``time limit: ...`` for ``0``, a negative or an unreadable duration.
    """
    text = (text or "").strip()
    if text.lower() in NO_LIMIT_WORDS:
        return None
    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise RequestError(f"time limit: {exc} (leave it empty for none)") from None


def parse_gpus(text: str | None) -> int | None:
    """A GPU count: empty for the default, else a whole number, 0 or more.

    Raises:
        RequestError: ``GPUs: ...``.
    """
    text = (text or "").strip()
    if not text:
        return None
    try:
        gpus = int(text)
    except ValueError:
        raise RequestError(f"GPUs: not a whole number: {text!r}") from None
    if gpus < 0:
        raise RequestError(f"GPUs: must be 0 or more: {text!r}")
    return gpus


def parse_gpu_ids(text: str | None) -> tuple[int, ...] | None:
    """GPU indices like ``0,2`` (empty: no pinning).

    Raises:
        RequestError: ``GPU ids: ...``.
    """
    text = (text or "").strip()
    if not text:
        return None
    try:
        ids = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise RequestError(f"GPU ids: integers like 0,2: {text!r}") from None
    if any(i < 0 for i in ids):
        raise RequestError(f"GPU ids: must be 0 or more: {text!r}")
    return ids


def parse_size_field(label: str, text: str | None) -> int | None:
    """A size like ``8G`` for the field ``label`` (empty: not given).

    Raises:
        RequestError: ``<label>: ...``.
    """
    text = (text or "").strip()
    if not text:
        return None
    try:
        return parse_size(text)
    except ConfigError as exc:
        raise RequestError(f"{label}: {exc}") from None


def parse_env(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``KEY=VALUE`` pairs, in order.

    Raises:
        RequestError: ``env: ...`` for an item without ``=`` or with an empty key.
    """
    pairs: list[tuple[str, str]] = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RequestError(f"env: takes KEY=VALUE: {item!r}")
        pairs.append((key, value))
    return tuple(pairs)


def parse_sweeps(items: Sequence[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Sweep axes from ``["lr=1e-3,3e-4", "batch=32,64"]`` (a leading ``--`` on a key is dropped).

    Raises:
        RequestError: ``bad --sweep ...`` for an item that is not ``KEY=V1,V2,...``.
    """
    axes: list[tuple[str, tuple[str, ...]]] = []
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip().lstrip("-")
        vals = tuple(v.strip() for v in values.split(",") if v.strip())
        if not sep or not key or not vals:
            raise RequestError(f"bad --sweep {item!r}: use KEY=V1,V2,...")
        axes.append((key, vals))
    return tuple(axes)


def parse_name(text: str | None, *, new: bool = True) -> str | None:
    """A run's name as typed (empty: the default name); ``new`` also refuses id-shaped names.

    Raises:
        RequestError: the reason from :func:`runner.model.validate_name` or ``validate_new_name``.
    """
    name = (text or "").strip() or None
    if name is not None:
        try:
            (validate_new_name if new else validate_name)(name)
        except ValueError as exc:
            raise RequestError(str(exc)) from None  # the message already says "run name"
    return name


def split_command(target: str, args: str | Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """The program and its arguments.

    With ``args`` a string (a form's fields), both are split as a shell would, without
    expansion; with ``args`` a list (a command line, already split by the shell), ``target``
    is the program as given, spaces and all.

    Raises:
        RequestError: ``script or command: required`` or ``arguments: ...`` for bad quoting.
    """
    if not isinstance(args, str):
        if not target.strip():
            raise RequestError("script or command: required")
        return target, tuple(args)
    try:
        parts = shlex.split(target)
        rest = shlex.split(args)
    except ValueError as exc:
        raise RequestError(f"arguments: {exc}") from None
    if not parts:
        raise RequestError("script or command: required")
    return parts[0], (*parts[1:], *rest)


def parse_run_request(
    target: str,
    args: str | Sequence[str] = "",
    *,
    name: str | None = None,
    group: str | None = None,
    timeout: str | None = None,
    gpus: str | None = None,
    gpu_ids: str | None = None,
    vram: str | None = None,
    ram: str | None = None,
    env: Sequence[str] = (),
    sweeps: Sequence[str] = (),
    sweep_template: str | None = None,
    checkpoint_globs: Sequence[str] = (),
    backend: str | None = None,
    partition: str | None = None,
    account: str | None = None,
    slurm_args: Sequence[str] = (),
    ray_address: str | None = None,
) -> RunRequest:
    """Check and convert a new run's fields as the user typed them.

    ``target`` may hold arguments too (``train.py --lr 3``), as the TUI's first field allows;
    ``args`` is either a string to split as a shell would or a list already split (the CLI's).
    Fields are checked in the order a form shows them, so the first mistake is the one named.

    Raises:
        RequestError: one line that names the field.
    """
    program, argv = split_command(target, args)
    return RunRequest(
        target=program,
        args=argv,
        name=parse_name(name, new=True),
        group=parse_name(group, new=False),
        timeout_s=parse_time_limit(timeout),
        gpus=parse_gpus(gpus),
        gpu_ids=parse_gpu_ids(gpu_ids),
        vram_bytes=parse_size_field("VRAM", vram),
        ram_bytes=parse_size_field("RAM", ram),
        env=parse_env(env),
        sweeps=parse_sweeps(sweeps),
        sweep_template=sweep_template or None,
        checkpoint_globs=_check_globs(checkpoint_globs),
        backend=parse_backend(backend),
        partition=(partition or "").strip() or None,
        account=(account or "").strip() or None,
        slurm_args=tuple(slurm_args),
        ray_address=(ray_address or "").strip() or None,
    )


def parse_backend(text: str | None) -> str | None:
    """A backend's name (empty: the configuration's).

    Raises:
        RequestError: ``backend: ...`` for a name no backend has.
    """
    name = (text or "").strip().lower() or None
    if name is not None and name not in BACKENDS:
        raise RequestError(f"backend: unknown {name!r} (known: {', '.join(BACKENDS)})")
    return name


def _check_globs(patterns: Sequence[str]) -> tuple[str, ...]:
    for pattern in patterns:
        problem = glob_error(pattern)
        if problem:
            raise RequestError(f"--checkpoint-glob: {problem}")
    return tuple(patterns)
