"""Running again: resume a run from its checkpoint, fork it with changes, rerun it afresh."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence

from runner import identity
from runner.config import Config
from runner.control.errors import LifecycleError
from runner.control.run_actions import (
    require_status,
)
from runner.control.submission import SubmitOptions, submit
from runner.model import (
    FINISHED,
    Lineage,
    RunSpec,
    Status,
)
from runner.registry import (
    CHECKPOINTS,
    Registry,
)
from runner.tickets import (
    Queue,
    Ticket,
    enqueue,
)


def latest_checkpoint(registry: Registry, run_id: str) -> str | None:
    """The run's newest whole checkpoint, by modification time.

    Candidates: the checkpoints the run announced or saved by itself (the summary's latest
    and recent ones) and the files in ``checkpoints/`` (a script may save there without
    announcing). A file or folder whose format shows it was cut short is passed over.
    """
    from runner.checkpoints.forms import is_whole

    folder = registry.run_dir(run_id)
    summary = registry.read_summary(run_id)
    named: list[str] = []
    recent = summary.get("recent_checkpoints")
    if isinstance(recent, list):
        named += [p for p in recent if isinstance(p, str)]
    if isinstance(summary.get("latest_checkpoint"), str):
        named.append(summary["latest_checkpoint"])
    candidates = [p if os.path.isabs(p) else str(folder / p) for p in named]
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder / CHECKPOINTS):
            with contextlib.suppress(OSError):
                if not entry.name.startswith(".") and entry.is_file():
                    candidates.append(entry.path)
    best: tuple[float, str] | None = None
    for path in dict.fromkeys(candidates):
        with contextlib.suppress(OSError):
            mtime = os.stat(path).st_mtime
            if (best is None or mtime > best[0]) and is_whole(path) is not False:
                best = (mtime, path)
    return best[1] if best else None


def resume(
    registry: Registry,
    run_id: str,
    *,
    timeout_s: float | None = None,
    retry: dict[str, object] | None = None,
    priority: int | None = None,
    dependents: bool = True,
) -> int:
    """Queue the next attempt of a finished run, from its latest checkpoint. Returns it.

    ``retry`` marks an automatic retry (what the tree shows). The caller asks the dispatcher
    to start it (``governor.dispatcher.kick``). With ``dependents`` (the default), runs that
    were skipped because this one did not complete are queued again as well, and theirs in
    turn: they wait for this attempt.
    """
    with registry.lock(f".resume-{run_id}.lock"):
        view = registry.load(run_id)
        require_status(
            view,
            FINISHED,
            "resume",
        )
        if registry.supervisor_locked(run_id):
            raise LifecycleError(f"cannot resume run {run_id}: its supervisor is still alive")
        if view.state and view.state.trainer and identity.matches(view.state.trainer):
            raise LifecycleError(
                f"cannot resume run {run_id}: its trainer (pid {view.state.trainer.pid}) "
                "is still running; stop it first"
            )
        # An attempt that ended before it ran (stopped while queued) is given again.
        attempt = (view.state.attempt if view.state else 0) + 1
        previous = view.ticket
        ticket = Ticket(
            run_id=run_id,
            attempt=attempt,
            queued_at=time.time(),
            priority=(previous.priority if previous else 0) if priority is None else priority,
            timeout_s=timeout_s,
            resume_from=latest_checkpoint(registry, run_id),
            retry=dict(retry or {}),
            policy=dict(previous.policy) if previous else {},
            fail_fast=previous.fail_fast if previous else False,
        )
        enqueue(Queue(registry.root), ticket)
    if dependents:
        requeue_skipped_dependents(registry, run_id)
    Queue(registry.root).poke()
    return attempt


def requeue_skipped_dependents(registry: Registry, run_id: str) -> list[str]:
    """Queue again the runs skipped because ``run_id`` did not complete; return their ids.

    Each is resumed (a new attempt that waits for its dependencies again), and so are its
    own skipped dependents, transitively.
    """
    from runner.pipeline import dependents_of

    requeued: list[str] = []
    for other in dependents_of(registry, run_id):
        with contextlib.suppress(LifecycleError, ValueError, OSError):
            if registry.load(other).status is Status.SKIPPED:
                resume(registry, other, dependents=False)
                requeued += [other, *requeue_skipped_dependents(registry, other)]
    return requeued


def merge_args(command: Sequence[str], changes: Sequence[str]) -> list[str]:
    """Apply ``--key value`` / ``--key=value`` changes to a command; append new ones."""
    cmd = list(command)
    i = 0
    pairs: list[tuple[str, str | None, bool]] = []  # key, value, was "key=value" form
    while i < len(changes):
        tok = changes[i]
        if tok.startswith("--") and "=" in tok:
            k, v = tok.split("=", 1)
            pairs.append((k, v, True))
            i += 1
        elif tok.startswith("-") and i + 1 < len(changes) and not changes[i + 1].startswith("--"):
            pairs.append((tok, changes[i + 1], False))
            i += 2
        else:
            pairs.append((tok, None, False))
            i += 1
    for key, value, eq in pairs:
        for j, tok in enumerate(cmd):
            if tok == key:
                if value is not None:
                    if j + 1 < len(cmd):
                        cmd[j + 1] = value
                    else:
                        cmd.append(value)
                break
            if value is not None and tok.startswith(key + "="):
                cmd[j] = f"{key}={value}"
                break
        else:
            if value is None:
                cmd.append(key)
            elif eq:
                cmd.append(f"{key}={value}")
            else:
                cmd += [key, value]
    return cmd


def fork(
    registry: Registry,
    run_id: str,
    changes: Sequence[str],
    *,
    name: str | None = None,
    timeout_s: float | None = None,
    config: Config | None = None,
    from_checkpoint: bool = True,
) -> RunSpec:
    """A new run from another run's checkpoint, with changed arguments and recorded lineage."""
    view = registry.load(run_id)
    if view.spec is None:
        raise LifecycleError(f"cannot fork run {run_id}: it is {view.status.value}")
    parent_spec = view.spec
    ckpt = latest_checkpoint(registry, run_id) if from_checkpoint else None
    new_name = name or _fork_name(parent_spec.name)
    return submit(
        registry,
        merge_args(parent_spec.command, changes),
        name=new_name,
        options=SubmitOptions(
            cwd=parent_spec.cwd,
            timeout_s=timeout_s if timeout_s is not None else parent_spec.timeout_s,
            config=config,
            group=parent_spec.group,
            resources=parent_spec.resources,
            env=parent_spec.env,
            script=parent_spec.script,
            parent=Lineage(run_id=run_id, checkpoint=ckpt),
            resume_from=ckpt,
            after=parent_spec.after,
            checkpoint_globs=parent_spec.checkpoint_globs,
            placement=parent_spec.placement,  # a fork runs where its parent ran
        ),
    )


def rerun(registry: Registry, run_id: str, *, config: Config | None = None) -> RunSpec:
    """Run the same command again as a new run (no checkpoint, no lineage)."""
    view = registry.load(run_id)
    if view.spec is None:
        raise LifecycleError(f"cannot rerun run {run_id}: it is {view.status.value}")
    s = view.spec
    return submit(
        registry,
        s.command,
        name=s.name,
        options=SubmitOptions(
            cwd=s.cwd,
            timeout_s=s.timeout_s,
            config=config,
            group=s.group,
            resources=s.resources,
            env=s.env,
            script=s.script,
            after=s.after,
            checkpoint_globs=s.checkpoint_globs,
            placement=s.placement,
        ),
    )


def _fork_name(name: str) -> str:
    base = name if len(name) <= 120 else name[:120]
    return f"{base}-fork"
