"""Notifications from the run's supervisor: each event fires its hooks once, detached.

The supervisor calls :func:`observe` on every loop turn and once at the end. A new health flag
(``nan``, ``stalled``, ``diverging``, ``oom``) or the end of the attempt (``completed``,
``failed``, ``stopped``, ``timeboxed``) becomes an event; the last run of a group to end also
fires ``sweep_done`` (decided under a registry lock, so exactly one supervisor fires it).

Each event is recorded as ``{"event": "notified", "kind": ...}`` in the run's
``events.jsonl`` *before* its hooks start, and an event already recorded for the attempt is
never fired again (a re-executed supervisor reads the record back): at most once, never twice.

A hook is ``/bin/sh -c COMMAND`` with the event as one JSON object on stdin and as
``BACKPROP_*`` environment variables. It runs under :mod:`runner.notify_hook`, a detached
process in its own session that the supervisor's clean-up spares, which kills the hook's
process group after its timeout and appends the outcome to ``notify.jsonl``. Nothing a hook
does (hang, fail, flood its output) reaches the run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from runner import envnames
from runner.config import ConfigError, load_config
from runner.durable import append_jsonl, read_json, read_jsonl, write_json
from runner.metrics.history import encode_value
from runner.model import RunSpec, RunState, ShapeError, Status
from runner.notify_rules import (
    Rule,
    config_rules,
    effective_rules,
    matching,
    read_run_rules,
)
from runner.registry import EVENTS, SUPERVISOR_LOCK, Registry
from runner.supervisor import proctree
from runner.textsafe import safe_label

NOTIFIED = "notified"
OUTCOMES = "notify.jsonl"
HOOK_OUTPUT = "notify.log"
SWEEP_LOCK = ".notify-sweep.lock"
SWEEP_MARKS = "notify"


class _Builder(Protocol):
    step: int | None

    @property
    def last(self) -> float | None: ...

    @property
    def best(self) -> float | None: ...


class SupervisorView(Protocol):
    """What :func:`observe` reads from the supervisor (the shim's ``Supervisor``)."""

    registry: Registry
    run_id: str
    run_dir: Path
    attempt: int
    spec: RunSpec
    state: RunState

    def record(self, event: str, /, **fields: Any) -> None:
        """Append a lifecycle event."""


class Notifier:
    """The notification state of one attempt of one run (owned by its supervisor)."""

    def __init__(
        self,
        registry: Registry,
        spec: RunSpec,
        attempt: int,
        record: Callable[..., None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.spec = spec
        self.run_dir = registry.run_dir(spec.id)
        self.attempt = attempt
        self.record = record
        self.clock = clock
        self.flags_seen: set[str] = set()
        self.ended = False
        self._fired: set[str] | None = None
        self._rules: list[Rule] | None = None

    # --- rules and records -------------------------------------------------------------------

    def rules(self) -> list[Rule]:
        """The configured rules plus the run's own (read once, when first needed)."""
        if self._rules is None:
            try:
                configured = config_rules(load_config(self.registry.root, Path(self.spec.cwd)))
            except (ConfigError, OSError) as exc:
                self.record("notify_error", error=f"configuration: {exc}"[:300])
                configured = []
            self._rules = effective_rules(configured, read_run_rules(self.run_dir))
        return self._rules

    def fired(self) -> set[str]:
        """Keys (``kind@attempt``) of the events already fired, read back from the events."""
        if self._fired is None:
            records, _ = read_jsonl(self.run_dir / EVENTS)
            self._fired = {
                f"{r.get('kind')}@{r.get('attempt')}"
                for r in records
                if isinstance(r, dict) and r.get("event") == NOTIFIED
            }
        return self._fired

    # --- events ------------------------------------------------------------------------------

    def check(self, state: RunState, flags: Sequence[str], builder: _Builder | None) -> None:
        """Fire what changed: new health flags, then the end of the attempt."""
        for flag in flags:
            if flag not in self.flags_seen:
                self.flags_seen.add(flag)
                self.fire(flag, state, builder)
        if state.status.finished and not self.ended:
            self.ended = True
            self.fire(state.status.value, state, builder)
            if self.spec.group:
                self.check_sweep(state)

    def fire(
        self,
        kind: str,
        state: RunState,
        builder: _Builder | None = None,
        extra: dict[str, Any] | None = None,
    ) -> bool:
        """Fire ``kind`` once for this attempt; return whether hooks were started."""
        key = f"{kind}@{self.attempt}"
        if not self.rules() or key in self.fired():
            return False
        rules = matching(self.rules(), kind)
        if not rules:
            return False
        self.fired().add(key)
        event = build_event(kind, self.spec, state, builder, clock=self.clock, extra=extra)
        self.record(NOTIFIED, kind=kind, hooks=len(rules))
        for rule in rules:
            try:
                spawn_hook(self.run_dir, rule, event)
            except OSError as exc:
                self.record("notify_error", kind=kind, error=repr(exc)[:300])
        return True

    def check_sweep(self, state: RunState) -> None:
        """Fire ``sweep_done`` if this run's group has no active run left (once per outcome)."""
        group = self.spec.group
        if group is None or not matching(self.rules(), "sweep_done"):
            return
        with self.registry.lock(SWEEP_LOCK):
            members = group_members(self.registry, group)
            for rid, _, status, _ in members:
                if status is Status.LOST and rid != self.spec.id:
                    notify_lost(self.registry, rid, sweep=False)  # no supervisor of its own
            if not members or any(not s.finished for _, _, s, _ in members):
                return
            signature = sorted(f"{rid}:{att}" for rid, att, _, _ in members)
            marks = self.registry.root / SWEEP_MARKS
            marks.mkdir(exist_ok=True)
            mark = marks / f"{hashlib.sha1(group.encode()).hexdigest()[:16]}.json"
            with contextlib.suppress(OSError, ValueError):
                if read_json(mark).get("runs") == signature:
                    return
            write_json(mark, {"group": group, "runs": signature, "at": self.clock()})
            runs = [
                {"run_id": rid, "name": name, "status": s.value, "attempt": att}
                for rid, att, s, name in members
            ]
            counts: dict[str, int] = {}
            for r in runs:
                counts[str(r["status"])] = counts.get(str(r["status"]), 0) + 1
            self.fire("sweep_done", state, extra={"runs": runs, "counts": counts})


def group_members(registry: Registry, group: str) -> list[tuple[str, int, Status, str]]:
    """Each run of ``group``: id, attempt, reconciled status and name."""
    out = []
    for run_id in registry.ids():
        try:
            spec = registry.read_spec(run_id)
        except (OSError, ShapeError, ValueError):
            continue
        if spec.group != group:
            continue
        with contextlib.suppress(OSError, ShapeError, ValueError):
            view = registry.load(run_id)
            out.append((run_id, view.attempt, view.status, spec.name))
    return out


def build_event(
    kind: str,
    spec: RunSpec,
    state: RunState,
    builder: _Builder | None,
    *,
    clock: Callable[[], float] = time.time,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The event document a hook receives (see the README's notification section)."""
    step = builder.step if builder is not None else None
    value = builder.last if builder is not None else None
    best = builder.best if builder is not None else None
    name = safe_label(spec.name)
    if kind == "sweep_done":
        message = f"sweep {spec.group} done"
    elif kind in ("nan", "stalled", "diverging", "oom"):
        message = f"run {spec.id} ({name}) {kind}" + (f" at step {step}" if step else "")
    else:
        message = f"run {spec.id} ({name}) {kind}" + (
            f": {safe_label(state.reason)}" if state.reason else ""
        )
    event: dict[str, Any] = {
        "event": kind,
        "run_id": spec.id,
        "name": spec.name,
        "group": spec.group,
        "attempt": state.attempt,
        "status": state.status.value,
        "reason": state.reason,
        "exit_code": state.exit_code,
        "signal": state.signal,
        "step": step,
        "metric": spec.primary_metric,
        "value": encode_value(value) if value is not None else None,
        "best": best,
        "host": os.uname().nodename,
        "run_dir": None,  # filled in by spawn_hook
        "time": clock(),
        "message": message,
    }
    if extra:
        event.update(extra)
    return event


def hook_env(event: dict[str, Any], run_dir: Path) -> dict[str, str]:
    """The hook's environment: the supervisor's plus the event as ``BACKPROP_*`` variables."""
    env = dict(os.environ)
    fields = {
        envnames.EVENT: event["event"],
        envnames.RUN_ID: event["run_id"],
        envnames.RUN_NAME: event["name"],
        envnames.GROUP: event.get("group") or "",
        envnames.ATTEMPT: event["attempt"],
        envnames.STATUS: event["status"],
        envnames.REASON: event.get("reason") or "",
        envnames.STEP: "" if event.get("step") is None else event["step"],
        envnames.MESSAGE: event["message"],
        envnames.RUN_DIR: str(run_dir),
    }
    env.update({k: safe_label(str(v), 500) for k, v in fields.items()})
    return env


def spawn_hook(run_dir: Path, rule: Rule, event: dict[str, Any]) -> int:
    """Start the detached hook runner for one rule; return its pid (never waits for it)."""
    event = {**event, "run_dir": str(run_dir)}
    payload = json.dumps({"command": rule.command, "timeout_s": rule.timeout_s, "event": event})
    env = hook_env(event, run_dir)
    pkg_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [pkg_root, env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner.notify_hook", str(run_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own session: spared by the supervisor's clean-up
        close_fds=True,
        env=env,
        cwd=run_dir,
    )
    proctree.spare_session(proc.pid)
    assert proc.stdin is not None
    with contextlib.suppress(OSError):
        proc.stdin.write(payload.encode())
        proc.stdin.close()
    return proc.pid


def notify_lost(registry: Registry, run_id: str, *, sweep: bool = True) -> bool:
    """Fire ``lost`` for a run whose supervisor vanished; return whether hooks started.

    For whoever notices (a dispatcher, a sibling's supervisor): no supervisor is left to do
    it. The run's supervisor lock is held meanwhile, so this is the run's only writer and a
    supervisor starting now (a resume) waits; the ``notified`` record keeps it to once.
    """
    run_dir = registry.run_dir(run_id)
    try:
        fd = os.open(run_dir / SUPERVISOR_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a supervisor holds it: the run is not lost
        return fire_lost_locked(registry, run_id, sweep=sweep)
    finally:
        os.close(fd)


def fire_lost_locked(registry: Registry, run_id: str, *, sweep: bool = True) -> bool:
    """:func:`notify_lost` for a caller that holds the run's supervisor lock already.

    The adopter records a run ``lost`` under that lock; it must notify there too, since a
    round that found the lease dead meanwhile could not take the lock and left it to us.
    """
    run_dir = registry.run_dir(run_id)
    view = registry.load(run_id)  # under the lock: the truth now
    if view.status is not Status.LOST or view.spec is None or view.state is None:
        return False
    state = replace(view.state, status=Status.LOST, reason=view.reason)

    def record(event: str, /, **fields: Any) -> None:
        entry = {"t": time.time(), "attempt": state.attempt, "event": event, **fields}
        append_jsonl(run_dir / EVENTS, [entry])

    notifier = Notifier(registry, view.spec, state.attempt, record)
    fired = notifier.fire("lost", state)
    if sweep and view.spec.group:
        notifier.check_sweep(state)
    return fired


# --- the supervisor's one entry point --------------------------------------------------------

_notifiers: dict[tuple[str, int], Notifier] = {}


def observe(sup: SupervisorView, ingestor: object | None = None) -> None:
    """Fire whatever the supervisor's current state and health flags call for (never raises).

    Called by the supervisor on each loop turn and after it recorded the end; cheap when
    nothing changed (a set comparison).
    """
    try:
        key = (sup.run_id, sup.attempt)
        notifier = _notifiers.get(key)
        if notifier is None:
            notifier = _notifiers[key] = Notifier(sup.registry, sup.spec, sup.attempt, sup.record)
        flags = tuple(getattr(ingestor, "health_flags", ()) or ())
        builder = getattr(ingestor, "builder", None)
        notifier.check(sup.state, flags, builder)
    except Exception as exc:  # a notification must never bring the supervisor down
        with contextlib.suppress(Exception):
            sup.record("notify_error", error=repr(exc)[:300])
