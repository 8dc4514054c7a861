# over 400 lines: the run's frozen records (spec, state) and their one strict schema parser
"""Frozen records of a run: what to run (spec), what happened (state), and how it reads.

Every file in a run folder carries ``"schema": SCHEMA``. Parsing is strict: a value of the
wrong shape raises :class:`ShapeError`, which the registry turns into a ``corrupt`` run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from runner.placement import Placement, PlacementError

SCHEMA = 1

ID_RE = re.compile(r"^[0-9]{6,12}$")
NAME_RE = re.compile(r"^\w[\w.,:=+@ -]{0,127}$")
MAX_NAME = 128
MAX_DEPENDENCIES = 64


class ShapeError(ValueError):
    """A file's content does not have the shape Backprop wrote."""


class Status(StrEnum):
    """Lifecycle status of a run (the reconciled view, not only what a file says)."""

    STARTING = "starting"
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    TIMEBOXED = "timeboxed"
    LOST = "lost"
    SKIPPED = "skipped"
    CORRUPT = "corrupt"

    @property
    def active(self) -> bool:
        """Whether a supervisor is (or should be) looking after the run."""
        return self in ACTIVE

    @property
    def finished(self) -> bool:
        """Whether the attempt has ended, for any reason."""
        return self in FINISHED


ACTIVE = frozenset({Status.STARTING, Status.QUEUED, Status.RUNNING, Status.PAUSED})
FINISHED = frozenset(
    {
        Status.COMPLETED,
        Status.FAILED,
        Status.STOPPED,
        Status.TIMEBOXED,
        Status.LOST,
        Status.SKIPPED,
    }
)


def validate_name(name: str) -> str:
    """Return ``name`` if it is an acceptable display name.

    Names are labels only and never become paths, but they are drawn in terminals and typed
    on command lines, so control characters, markup brackets and path separators are refused.

    Raises:
        ValueError: with a one-line explanation.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("run name must be a non-empty string")
    if len(name) > MAX_NAME:
        raise ValueError(f"run name is {len(name)} characters long; at most {MAX_NAME} allowed")
    if not NAME_RE.fullmatch(name):
        raise ValueError(
            f"run name {name!r} may contain only letters, digits, spaces and . , : = + @ - _ "
            "and must start with a letter, digit or _"
        )
    return name


def validate_new_name(name: str) -> str:
    """Return ``name`` if a new run may take it: :func:`validate_name`, and not id-shaped.

    ``backprop stop 42`` reads an all-digit reference as a run id, so a run named ``000001``
    would pose as run 000001. Specs already on disk are read with :func:`validate_name`
    only, so a run named so before this rule still lists.

    Raises:
        ValueError: with a one-line explanation.
    """
    validate_name(name)
    if name.strip().isdigit():
        raise ValueError(f"run name {name!r} looks like a run id; use a name with a letter in it")
    return name


def validate_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is a well-formed run id (digits only, so never a path).

    Raises:
        ValueError: if it is not.
    """
    if not isinstance(run_id, str) or not ID_RE.fullmatch(run_id):
        raise ValueError(f"not a run id: {run_id!r}")
    return run_id


# --- small strict readers -------------------------------------------------------------------


def _get(
    d: Mapping[str, Any], key: str, kind: type | tuple[type, ...], *, optional: bool = False
) -> Any:
    if key not in d or d[key] is None:
        if optional:
            return None
        raise ShapeError(f"missing {key!r}")
    value = d[key]
    # bool is an int subclass; a bool where a number is expected is a wrong shape.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ShapeError(f"{key!r} has the wrong type")
    if not isinstance(value, kind):
        raise ShapeError(f"{key!r} has the wrong type")
    if isinstance(value, float) and not math.isfinite(value):
        raise ShapeError(f"{key!r} is not finite")
    return value


def _num(d: Mapping[str, Any], key: str, *, optional: bool = False) -> float | None:
    v = _get(d, key, (int, float), optional=optional)
    return None if v is None else float(v)


def _int(d: Mapping[str, Any], key: str, *, optional: bool = False) -> int | None:
    v: int | None = _get(d, key, int, optional=optional)
    return v


def _str_list(d: Mapping[str, Any], key: str) -> tuple[str, ...]:
    v = _get(d, key, list)
    if not all(isinstance(x, str) for x in v):
        raise ShapeError(f"{key!r} must be a list of strings")
    return tuple(v)


def _str_map(d: Mapping[str, Any], key: str) -> dict[str, str]:
    v = _get(d, key, dict, optional=True) or {}
    if not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise ShapeError(f"{key!r} must map strings to strings")
    return dict(v)


def _check_schema(d: Any) -> Mapping[str, Any]:
    if not isinstance(d, dict):
        raise ShapeError("not a JSON object")
    if d.get("schema") != SCHEMA:
        raise ShapeError(f"unknown schema {d.get('schema')!r}")
    return d


# --- identities ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessIdentity:
    """A process as it can be recognised later: pid, kernel start time and boot id.

    ``start_ticks`` is field 22 of ``/proc/PID/stat`` (clock ticks since boot), which the
    kernel never changes for a process, so pid + start_ticks + boot_id names exactly one.
    """

    pid: int
    start_ticks: int
    boot_id: str

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {"pid": self.pid, "start_ticks": self.start_ticks, "boot_id": self.boot_id}

    @classmethod
    def from_json(cls, d: Any) -> ProcessIdentity:
        """Parse the JSON form strictly."""
        if not isinstance(d, dict):
            raise ShapeError("process identity is not an object")
        pid = _int(d, "pid")
        ticks = _int(d, "start_ticks")
        boot = _get(d, "boot_id", str)
        assert pid is not None and ticks is not None
        return cls(pid=pid, start_ticks=ticks, boot_id=boot)


# --- spec -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resources:
    """What a run asks of the machine; the governor decides whether it fits."""

    gpus: int | None = None
    vram_bytes: int | None = None
    ram_bytes: int | None = None
    gpu_ids: tuple[int, ...] | None = None
    framework: str = "auto"

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "gpus": self.gpus,
            "vram_bytes": self.vram_bytes,
            "ram_bytes": self.ram_bytes,
            "gpu_ids": list(self.gpu_ids) if self.gpu_ids is not None else None,
            "framework": self.framework,
        }

    @classmethod
    def from_json(cls, d: Any) -> Resources:
        """Parse the JSON form strictly."""
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise ShapeError("resources is not an object")
        ids = _get(d, "gpu_ids", list, optional=True)
        if ids is not None and not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise ShapeError("gpu_ids must be integers")
        return cls(
            gpus=_int(d, "gpus", optional=True),
            vram_bytes=_int(d, "vram_bytes", optional=True),
            ram_bytes=_int(d, "ram_bytes", optional=True),
            gpu_ids=tuple(ids) if ids is not None else None,
            framework=_get(d, "framework", str, optional=True) or "auto",
        )


@dataclass(frozen=True)
class Lineage:
    """Where a forked run came from."""

    run_id: str
    checkpoint: str | None

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {"run_id": self.run_id, "checkpoint": self.checkpoint}

    @classmethod
    def from_json(cls, d: Any) -> Lineage | None:
        """Parse the JSON form strictly (``None`` stays ``None``)."""
        if d is None:
            return None
        if not isinstance(d, dict):
            raise ShapeError("parent is not an object")
        return cls(
            run_id=_get(d, "run_id", str), checkpoint=_get(d, "checkpoint", str, optional=True)
        )


# How a run depends on another: "ok" (it must complete) or "any" (it must end, however).
DEPENDENCY_KINDS = ("ok", "any")


@dataclass(frozen=True)
class Dependency:
    """A run this run waits for (``backprop run --after`` / ``--after-any``)."""

    run_id: str
    kind: str = "ok"

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {"id": self.run_id, "kind": self.kind}

    @classmethod
    def from_json(cls, d: Any) -> Dependency:
        """Parse the JSON form strictly."""
        if not isinstance(d, dict):
            raise ShapeError("dependency is not an object")
        kind = _get(d, "kind", str)
        if kind not in DEPENDENCY_KINDS:
            raise ShapeError(f"unknown dependency kind {kind!r}")
        return cls(run_id=validate_run_id_shape(_get(d, "id", str)), kind=kind)


@dataclass(frozen=True)
class RunSpec:
    """What to run. Written once by the launcher, before anything starts; never rewritten."""

    id: str
    name: str
    command: tuple[str, ...]
    cwd: str
    created_at: float
    timeout_s: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    group: str | None = None
    grace_int_s: float = 30.0
    grace_term_s: float = 10.0
    output_cap_bytes: int = 256 * 1024 * 1024
    resume_args: tuple[str, ...] = ()
    parent: Lineage | None = None
    resources: Resources = field(default_factory=Resources)
    script: str | None = None
    primary_metric: str = "loss"
    stall_factor: float = 10.0
    stall_after_s: float = 60.0
    after: tuple[Dependency, ...] = ()
    checkpoint_globs: tuple[str, ...] = ()
    placement: Placement = field(default_factory=Placement)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form (with schema)."""
        return {
            "schema": SCHEMA,
            "id": self.id,
            "name": self.name,
            "command": list(self.command),
            "cwd": self.cwd,
            "created_at": self.created_at,
            "timeout_s": self.timeout_s,
            "env": dict(self.env),
            "group": self.group,
            "grace_int_s": self.grace_int_s,
            "grace_term_s": self.grace_term_s,
            "output_cap_bytes": self.output_cap_bytes,
            "resume_args": list(self.resume_args),
            "parent": self.parent.to_json() if self.parent else None,
            "resources": self.resources.to_json(),
            "script": self.script,
            "primary_metric": self.primary_metric,
            "stall_factor": self.stall_factor,
            "stall_after_s": self.stall_after_s,
            "after": [d.to_json() for d in self.after],
            "checkpoint_globs": list(self.checkpoint_globs),
            "placement": self.placement.to_json(),
        }

    @classmethod
    def from_json(cls, raw: Any) -> RunSpec:
        """Parse strictly; raise :class:`ShapeError` on any deviation."""
        d = _check_schema(raw)
        run_id = _get(d, "id", str)
        try:
            validate_run_id(run_id)
            validate_name(_get(d, "name", str))
        except ValueError as exc:
            raise ShapeError(str(exc)) from None
        command = _str_list(d, "command")
        if not command:
            raise ShapeError("empty command")
        grace_int = _num(d, "grace_int_s")
        grace_term = _num(d, "grace_term_s")
        cap = _int(d, "output_cap_bytes")
        created = _num(d, "created_at")
        assert grace_int is not None and grace_term is not None and cap is not None
        assert created is not None
        if grace_int < 0 or grace_term < 0 or cap <= 0:
            raise ShapeError("negative grace period or output cap")
        group = _get(d, "group", str, optional=True)
        if group is not None:
            try:
                validate_name(group)
            except ValueError as exc:
                raise ShapeError(str(exc)) from None
        return cls(
            id=run_id,
            name=d["name"],
            command=command,
            cwd=_get(d, "cwd", str),
            created_at=created,
            timeout_s=_num(d, "timeout_s", optional=True),
            env=_str_map(d, "env"),
            group=group,
            grace_int_s=grace_int,
            grace_term_s=grace_term,
            output_cap_bytes=cap,
            resume_args=_str_list(d, "resume_args") if d.get("resume_args") is not None else (),
            parent=Lineage.from_json(d.get("parent")),
            resources=Resources.from_json(d.get("resources")),
            script=_get(d, "script", str, optional=True),
            primary_metric=_get(d, "primary_metric", str, optional=True) or "loss",
            stall_factor=_num(d, "stall_factor", optional=True) or 10.0,
            stall_after_s=_num(d, "stall_after_s", optional=True) or 60.0,
            after=_dependencies(d.get("after"), run_id),
            checkpoint_globs=(
                _str_list(d, "checkpoint_globs") if d.get("checkpoint_globs") is not None else ()
            ),
            placement=_placement(d.get("placement")),
        )


def _placement(raw: Any) -> Placement:
    """The spec's backend and options (absent in specs written before backends: local)."""
    try:
        return Placement.from_json(raw)
    except PlacementError as exc:
        raise ShapeError(str(exc)) from None


def _dependencies(raw: Any, run_id: str) -> tuple[Dependency, ...]:
    """The spec's ``after`` list (absent in specs written before dependencies existed)."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_DEPENDENCIES:
        raise ShapeError(f"'after' must be a list of at most {MAX_DEPENDENCIES} dependencies")
    deps = tuple(Dependency.from_json(x) for x in raw)
    if any(d.run_id == run_id for d in deps):
        raise ShapeError("a run cannot depend on itself")
    return deps


# --- state ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunState:
    """Lifecycle of the latest attempt. Written only by that attempt's supervisor."""

    run_id: str
    attempt: int
    status: Status
    updated_at: float
    supervisor: ProcessIdentity
    reason: str = ""
    trainer: ProcessIdentity | None = None
    queued_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    timeout_s: float | None = None
    stop_requested: str | None = None
    resume_from: str | None = None
    gpus: tuple[int, ...] = ()
    host: str = ""  # where the supervisor runs (``show`` and the tree say where it ran)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form (with schema)."""
        return {
            "schema": SCHEMA,
            "run_id": self.run_id,
            "attempt": self.attempt,
            "status": self.status.value,
            "reason": self.reason,
            "updated_at": self.updated_at,
            "supervisor": self.supervisor.to_json(),
            "trainer": self.trainer.to_json() if self.trainer else None,
            "queued_at": self.queued_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "timeout_s": self.timeout_s,
            "stop_requested": self.stop_requested,
            "resume_from": self.resume_from,
            "gpus": list(self.gpus),
            "host": self.host,
        }

    @classmethod
    def from_json(cls, raw: Any) -> RunState:
        """Parse strictly; raise :class:`ShapeError` on any deviation."""
        d = _check_schema(raw)
        try:
            status = Status(_get(d, "status", str))
        except ValueError:
            raise ShapeError("unknown status") from None
        if status is Status.CORRUPT:
            raise ShapeError("a state file never says corrupt")
        attempt = _int(d, "attempt")
        updated = _num(d, "updated_at")
        assert attempt is not None and updated is not None
        if attempt < 1:
            raise ShapeError("attempt must be >= 1")
        trainer_raw = d.get("trainer")
        gpus = _get(d, "gpus", list, optional=True) or []
        if not all(isinstance(g, int) and not isinstance(g, bool) for g in gpus):
            raise ShapeError("gpus must be integers")
        return cls(
            run_id=validate_run_id_shape(_get(d, "run_id", str)),
            attempt=attempt,
            status=status,
            reason=_get(d, "reason", str, optional=True) or "",
            updated_at=updated,
            supervisor=ProcessIdentity.from_json(d.get("supervisor")),
            trainer=ProcessIdentity.from_json(trainer_raw) if trainer_raw is not None else None,
            queued_at=_num(d, "queued_at", optional=True),
            started_at=_num(d, "started_at", optional=True),
            ended_at=_num(d, "ended_at", optional=True),
            exit_code=_int(d, "exit_code", optional=True),
            signal=_int(d, "signal", optional=True),
            timeout_s=_num(d, "timeout_s", optional=True),
            stop_requested=_get(d, "stop_requested", str, optional=True),
            resume_from=_get(d, "resume_from", str, optional=True),
            gpus=tuple(gpus),
            host=(_get(d, "host", str, optional=True) or "")[:200],
        )


def validate_run_id_shape(run_id: str) -> str:
    """Like :func:`validate_run_id` but raising :class:`ShapeError` (for file parsing)."""
    try:
        return validate_run_id(run_id)
    except ValueError as exc:
        raise ShapeError(str(exc)) from None
