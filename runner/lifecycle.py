"""What users do to runs, the same for the CLI and the TUI: submit, stop, pause, resume, ...

Control goes through files and signals only: a request file in the run's ``requests/`` folder,
then SIGUSR1 to the supervisor (after checking its identity) so it acts at once.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from runner import envnames, identity, notify_rules, provenance
from runner.config import Config
from runner.durable import dump_json, read_json, write_json
from runner.model import (
    Dependency,
    Lineage,
    Resources,
    RunSpec,
    RunState,
    ShapeError,
    Status,
    validate_name,
    validate_new_name,
)
from runner.notify_rules import RunRules
from runner.registry import (
    CHECKPOINTS,
    REQUESTS,
    SPEC,
    STATE,
    SUPERVISOR_LOCK,
    Registry,
    RunView,
)
from runner.retry import RetryPolicy
from runner.tickets import (
    CANCELLED,
    FORCED_BAND,
    QUEUED,
    TICKET,
    Queue,
    Ticket,
    enqueue,
    sync_tree,
)

# Variables that describe the submitter's terminal, not the job; never passed to a run.
_TERMINAL_ENV = (
    "TMUX",
    "TMUX_PANE",
    "TERM_SESSION_ID",
    "WINDOWID",
    "DISPLAY",
    "SHLVL",
    "_",
    "OLDPWD",
    "PWD",
    "COLUMNS",
    "LINES",
    "STY",
    "SSH_TTY",
    "SSH_AUTH_SOCK",
)
_RUNTIME_ENV_PREFIX = envnames.PREFIX


class LifecycleError(RuntimeError):
    """An action that cannot be done to a run in its current state (one-line message)."""


def captured_env() -> dict[str, str]:
    """The submitter's environment as a run should see it, now and on every resume."""
    return {
        k: v
        for k, v in os.environ.items()
        if (k not in _TERMINAL_ENV and not k.startswith(_RUNTIME_ENV_PREFIX)) or k == envnames.HOME
    }


def build_command(
    target: str, args: Sequence[str], *, python: str | None, config: Config
) -> tuple[list[str], str | None]:
    """Turn ``SCRIPT.py ARGS`` or ``COMMAND ARGS`` into an argv; return it and the script.

    A ``.py`` file runs with ``--python``, else the configured interpreter, else ``python3``.
    """
    if target.endswith(".py"):
        script = Path(target)
        if not script.is_file():
            raise LifecycleError(f"no such script: {target}")
        interp = python or config.run.python or "python3"
        resolved = shutil.which(interp)
        if resolved is None:
            raise LifecycleError(f"python interpreter not found: {interp}")
        return [resolved, "-u", str(script.resolve()), *args], str(script.resolve())
    if shutil.which(target) is None and not Path(target).exists():
        raise LifecycleError(f"command not found: {target}")
    return [target, *args], None


def default_name(command: Sequence[str], script: str | None) -> str:
    """A readable default name: the script's stem or the command's base name."""
    base = Path(script).stem if script else Path(command[0]).name
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in base).lstrip("._-")
    if cleaned.isdigit():  # `123.py` must not name its run like run id 123
        cleaned = f"run-{cleaned}"
    return (cleaned or "run")[:64]


def submit(
    registry: Registry,
    command: Sequence[str],
    *,
    name: str,
    cwd: str | None = None,
    timeout_s: float | None = None,
    config: Config | None = None,
    group: str | None = None,
    resources: Resources | None = None,
    env: dict[str, str] | None = None,
    script: str | None = None,
    parent: Lineage | None = None,
    resume_from: str | None = None,
    start: bool = True,
    priority: int = 0,
    retry: RetryPolicy | None = None,
    fail_fast: bool = False,
    notify: RunRules | None = None,
    after: Sequence[Dependency] = (),
    checkpoint_globs: Sequence[str] = (),
) -> RunSpec:
    """Record a new run durably and put it in the queue. Returns the spec.

    The run counts as submitted once ``spec.json`` and its place in the queue are on disk.
    Nothing is started here: the caller asks the dispatcher (``governor.dispatcher.kick``),
    which starts it at once when it fits. ``start=False`` records the spec only. The run's
    provenance (git commit, diff, interpreter, host) and its own notification rules are
    written first. ``after``: the runs it waits for (checked by
    :func:`runner.pipeline.resolve_dependencies`); the dispatcher decides when they are met.
    """
    return submit_many(
        registry,
        [(list(command), name)],
        cwd=cwd,
        timeout_s=timeout_s,
        config=config,
        group=group,
        resources=resources,
        env=env,
        script=script,
        parent=parent,
        resume_from=resume_from,
        start=start,
        priority=priority,
        retry=retry,
        fail_fast=fail_fast,
        notify=notify,
        after=after,
        checkpoint_globs=checkpoint_globs,
    )[0]


def submit_many(
    registry: Registry,
    runs: Sequence[tuple[Sequence[str], str]],
    *,
    cwd: str | None = None,
    timeout_s: float | None = None,
    config: Config | None = None,
    group: str | None = None,
    resources: Resources | None = None,
    env: dict[str, str] | None = None,
    script: str | None = None,
    parent: Lineage | None = None,
    resume_from: str | None = None,
    start: bool = True,
    priority: int = 0,
    retry: RetryPolicy | None = None,
    fail_fast: bool = False,
    notify: RunRules | None = None,
    after: Sequence[Dependency] = (),
    checkpoint_globs: Sequence[str] = (),
) -> list[RunSpec]:
    """Submit ``(command, name)`` runs sharing everything else, made durable in one flush.

    A 1,000-run sweep writes its specs and queue entries without an ``fsync`` each, then
    syncs the file system once before returning: durable before acknowledged, at the cost
    of one flush.
    """
    config = config or Config()
    policy = retry if retry is not None else RetryPolicy.from_config(config)
    if group is not None:
        validate_name(group)
    for command, name in runs:
        validate_new_name(name)
        if not command:
            raise LifecycleError("nothing to run")
        if after or any("{after" in a for a in command):
            from runner.pipeline import check_placeholders

            check_placeholders(command, len(after))  # DependencyError: a ValueError (usage)
    queue = Queue(registry.root)
    base_env = captured_env() if env is None else env
    specs: list[RunSpec] = []
    prov: tuple[dict[str, Any], bytes] | None = None
    with contextlib.suppress(Exception):  # provenance is a record, never a reason not to run
        # Once for a whole sweep: its runs share the code, the interpreter and the host.
        prov = provenance.collect(Path(cwd or os.getcwd()).resolve(), runs[0][0], script)
    ids = registry.allocate_ids(len(runs))
    with queue.locked():
        for run_id, (command, name) in zip(ids, runs, strict=True):
            specs.append(
                _record(
                    registry,
                    queue,
                    run_id,
                    list(command),
                    name,
                    cwd=cwd,
                    timeout_s=timeout_s,
                    config=config,
                    group=group,
                    resources=resources,
                    env=base_env,
                    script=script,
                    parent=parent,
                    resume_from=resume_from,
                    start=start,
                    priority=priority,
                    policy=policy,
                    fail_fast=fail_fast,
                    notify=notify,
                    after=after,
                    checkpoint_globs=checkpoint_globs,
                    prov=prov,
                )
            )
    sync_tree(registry.root)
    if start:
        queue.poke()
    return specs


def _record(
    registry: Registry,
    queue: Queue,
    run_id: str,
    command: list[str],
    name: str,
    *,
    cwd: str | None,
    timeout_s: float | None,
    config: Config,
    group: str | None,
    resources: Resources | None,
    env: dict[str, str],
    script: str | None,
    parent: Lineage | None,
    resume_from: str | None,
    start: bool,
    priority: int,
    policy: RetryPolicy,
    fail_fast: bool,
    notify: RunRules | None,
    after: Sequence[Dependency],
    checkpoint_globs: Sequence[str],
    prov: tuple[dict[str, Any], bytes] | None,
) -> RunSpec:
    """Write one run's spec and, with ``start``, its place in the queue (lock held; no sync)."""
    spec = RunSpec(
        id=run_id,
        name=name,
        command=tuple(command),
        cwd=str(Path(cwd or os.getcwd()).resolve()),
        created_at=time.time(),
        timeout_s=timeout_s,
        env=env,
        group=group,
        grace_int_s=config.run.grace_int_s,
        grace_term_s=config.run.grace_term_s,
        output_cap_bytes=config.run.output_cap_bytes,
        resume_args=config.run.resume_args,
        parent=parent,
        resources=resources or Resources(),
        script=script,
        primary_metric=config.run.primary_metric,
        stall_factor=config.run.stall_factor,
        stall_after_s=config.run.stall_after_s,
        after=tuple(after),
        checkpoint_globs=tuple(dict.fromkeys((*config.run.checkpoint_globs, *checkpoint_globs))),
    )
    folder = registry.create(spec, durable=False)
    if prov is not None:
        with contextlib.suppress(Exception):  # provenance is a record, never a reason not to run
            provenance.write(folder, *prov)
    if notify is not None:
        notify_rules.write_run_rules(folder, notify)
    if start:
        ticket = Ticket(
            run_id=run_id,
            attempt=1,
            queued_at=spec.created_at,
            priority=priority,
            timeout_s=timeout_s,
            resume_from=resume_from,
            policy=policy.to_json() if policy.retries else {},
            retry={"of": 1 + policy.retries} if policy.retries else {},
            fail_fast=fail_fast,
        )
        enqueue(queue, ticket, durable=False, lock=False)
    return spec


def spawn_supervisor(registry: Registry, run_id: str, *, attempt: int, wait: bool = True) -> None:
    """Start a detached supervisor for one admitted attempt.

    What it runs (time limit, checkpoint, placement) it reads from the run's ticket. With
    ``wait`` this returns once the supervisor has detached; without, at once (a long-lived
    caller that ignores ``SIGCHLD`` starts many without waiting for each interpreter).
    """
    run_dir = registry.run_dir(run_id)
    cmd = [
        sys.executable,
        "-m",
        "runner.supervisor.main",
        "--home",
        str(registry.root),
        "--run",
        run_id,
        "--attempt",
        str(attempt),
        "--detach",
    ]
    env = dict(os.environ)
    # The supervisor must import this very package, wherever the launcher was started.
    pkg_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [pkg_root, env.get("PYTHONPATH")]))
    with open(run_dir / "supervisor.log", "ab") as err:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
            close_fds=True,
            env=env,
            cwd=run_dir,
        )
    if wait:
        proc.wait()


def _require(view: RunView, allowed: set[Status], action: str) -> None:
    if view.status not in allowed:
        detail = f" ({view.reason})" if view.reason else ""
        raise LifecycleError(f"cannot {action} run {view.id}: it is {view.status.value}{detail}")


def send_request(
    registry: Registry, run_id: str, action: str, *, reason: str | None = None
) -> bool:
    """Leave a control request for the run's supervisor and nudge it. Returns if nudged.

    ``reason`` (optional) is what the run's status will say, e.g. why the governor paused it.
    A stop or force-stop that cannot be written (full disk, read-only registry) is sent as a
    signal to the supervisor instead (SIGTERM, SIGUSR2).
    """
    folder = registry.run_dir(run_id) / REQUESTS
    name = f"{time.time_ns():020d}-{os.urandom(3).hex()}.json"
    doc: dict[str, object] = {"action": action, "at": time.time(), "by": os.getpid()}
    if reason:
        doc["reason"] = reason
    try:
        folder.mkdir(exist_ok=True)
        write_json(folder / name, doc)
    except OSError as exc:
        from runner.supervisor.recordkeeper import describe_write_error

        fallback = {"stop": signal.SIGTERM, "kill": signal.SIGUSR2}.get(action)
        with contextlib.suppress(ShapeError, OSError):
            state = registry.read_state(run_id)
            if fallback and state and identity.send_signal(state.supervisor, fallback):
                return True
        why = describe_write_error(exc, REQUESTS)
        raise LifecycleError(f"cannot {action} run {run_id}: {why}") from None
    with contextlib.suppress(ShapeError, OSError):
        state = registry.read_state(run_id)
        if state is not None:
            return identity.send_signal(state.supervisor, signal.SIGUSR1)
    return False


def stop(registry: Registry, run_id: str, *, force: bool = False) -> str:
    """Stop a run: graceful (SIGINT, then SIGTERM, then SIGKILL) or, with ``force``, SIGKILL.

    Returns a one-line description of what was done.
    """
    view = registry.load(run_id)
    if view.status is Status.LOST:
        # The supervisor is gone: end every process of the run ourselves, by identity.
        from runner.supervisor.members import stop_unsupervised

        ending = stop_unsupervised(
            view.state.trainer if view.state else None,
            run_id,
            registry.root,
            force=force,
            grace_s=view.spec.grace_int_s if view.spec else 30.0,
        )
        if not ending.ended and not ending.survivors:
            raise LifecycleError(f"cannot stop run {run_id}: it is lost and nothing is running")
        if ending.survivors:
            raise LifecycleError(f"run {run_id} had no supervisor: {ending.describe()}")
        return f"run {run_id} had no supervisor: {ending.describe()}"
    _require(view, {Status.STARTING, Status.QUEUED, Status.RUNNING, Status.PAUSED}, "stop")
    if view.status is Status.QUEUED and cancel_queued(registry, run_id, "stopped while queued"):
        return f"stopped queued run {run_id}"
    send_request(registry, run_id, "kill" if force else "stop")
    return f"{'force-' if force else ''}stop requested for run {run_id}"


def cancel_queued(
    registry: Registry, run_id: str, reason: str, *, end_status: Status = Status.STOPPED
) -> bool:
    """End a queued run without running it. Returns ``False`` if it left the queue already.

    The ticket says why, and the run reads as ``end_status`` with that reason.
    """
    queue = Queue(registry.root)
    with queue.locked():
        ticket = queue.read_ticket(run_id)
        if ticket is None or ticket.kind != QUEUED:
            return False
        queue.write_ticket(
            replace(ticket, kind=CANCELLED, reason=reason, end_status=end_status.value)
        )
        for entry in queue.find(run_id):
            queue.remove(entry)
    queue.poke()
    return True


def pause(registry: Registry, run_id: str, *, reason: str | None = None) -> str:
    """Pause a running run (SIGSTOP to its process group); ``reason`` defaults to the user."""
    _require(registry.load(run_id), {Status.RUNNING}, "pause")
    send_request(registry, run_id, "pause", reason=reason)
    return f"pause requested for run {run_id}"


def cont(registry: Registry, run_id: str, *, reason: str | None = None) -> str:
    """Continue a paused run (SIGCONT)."""
    _require(registry.load(run_id), {Status.PAUSED}, "continue")
    send_request(registry, run_id, "continue", reason=reason)
    return f"continue requested for run {run_id}"


def start_now(registry: Registry, run_id: str) -> str:
    """Start a queued run now, bypassing the governor's limits (moves it to the front)."""
    _require(registry.load(run_id), {Status.QUEUED}, "start")
    queue = Queue(registry.root)
    with queue.locked():
        for entry in queue.find(run_id):
            queue.move(entry, replace(entry, band=FORCED_BAND))
    queue.poke()
    return f"start requested for run {run_id}"


def latest_checkpoint(registry: Registry, run_id: str) -> str | None:
    """The run's newest whole checkpoint, by modification time.

    Candidates: the checkpoints the run announced or saved by itself (the summary's latest
    and recent ones) and the files in ``checkpoints/`` (a script may save there without
    announcing). A file or folder whose format shows it was cut short is passed over.
    """
    from runner.checkpoint_forms import is_whole

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
        _require(
            view,
            {
                Status.COMPLETED,
                Status.FAILED,
                Status.STOPPED,
                Status.TIMEBOXED,
                Status.LOST,
                Status.SKIPPED,
            },
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
        cwd=s.cwd,
        timeout_s=s.timeout_s,
        config=config,
        group=s.group,
        resources=s.resources,
        env=s.env,
        script=s.script,
        after=s.after,
        checkpoint_globs=s.checkpoint_globs,
    )


def _fork_name(name: str) -> str:
    base = name if len(name) <= 120 else name[:120]
    return f"{base}-fork"


def live_processes(registry: Registry, run_id: str, view: RunView | None = None) -> list[str]:
    """What still runs of a run: its supervisor and trainer, identity-checked (one line each).

    The status alone is not enough: a ``lost`` run's trainer may live on without its
    supervisor.
    """
    view = view or registry.load(run_id)
    found = []
    if registry.supervisor_locked(run_id):
        found.append("its supervisor")
    st = view.state
    if st is not None:
        if "its supervisor" not in found and identity.matches(st.supervisor):
            found.append(f"its supervisor (pid {st.supervisor.pid})")
        if st.trainer is not None and identity.matches(st.trainer):
            found.append(f"its trainer (pid {st.trainer.pid})")
    return found


def remove(registry: Registry, run_id: str, *, force: bool = False, wait_s: float = 15.0) -> str:
    """Delete a finished run's folder; returns a one-line description of what was done.

    A run with any live process (an active run, or a ``lost`` run whose trainer lives on) is
    refused: deleting its record would leave that process untracked. With ``force`` it is
    force-stopped first and removed once nothing of it runs.
    """
    view = registry.load(run_id)
    alive = live_processes(registry, run_id, view)
    stopped = ""
    if (alive or view.status.active) and not force:
        what = " and ".join(alive) if alive else "it"
        verb = "are" if len(alive) > 1 else "is"
        raise LifecycleError(
            f"cannot remove run {run_id}: {what} {verb} still running ({view.status.value}); "
            "stop it first or use rm --force"
        )
    if alive or view.status.active:
        with contextlib.suppress(LifecycleError):
            stop(registry, run_id, force=True)
        deadline = time.monotonic() + wait_s
        while live_processes(registry, run_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = live_processes(registry, run_id)
        if left:
            raise LifecycleError(
                f"cannot remove run {run_id}: {' and '.join(left)} survived a forced stop"
            )
        stopped = " after stopping it"
    folder = registry.run_dir(run_id)
    trash = registry.runs_dir / f".trash-{run_id}-{os.urandom(4).hex()}"
    os.rename(folder, trash)  # vanishes from listings atomically
    shutil.rmtree(trash, ignore_errors=True)
    return f"removed run {run_id}{stopped}"


_EXPORT_SKIP = {SUPERVISOR_LOCK, REQUESTS, ".reserve", "cgroup"}  # this machine's only


def export_run(registry: Registry, run_id: str, out: Path, *, with_env: bool = False) -> Path:
    """Write the run folder as a portable ``.tar.gz`` bundle (0600, like the run's files).

    The run's environment (tokens and keys included) stays out of the bundle unless
    ``with_env``: its ``spec.json`` is written with an empty ``env``, and a run imported from
    it inherits the importer's environment on resume.
    """
    folder = registry.run_dir(run_id)
    if not (folder / SPEC).is_file():
        raise LifecycleError(f"cannot export run {run_id}: it has no spec.json")
    spec_bytes: bytes | None = None
    if not with_env:
        try:
            raw = read_json(folder / SPEC)
        except ShapeError as exc:
            raise LifecycleError(f"cannot export run {run_id}: spec.json: {exc}") from None
        if isinstance(raw, dict):
            raw["env"] = {}
        spec_bytes = dump_json(raw)

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        if len(parts) > 1 and parts[1] in _EXPORT_SKIP:
            return None
        if spec_bytes is not None and parts[1:] == (SPEC,):
            return None  # added below without the environment
        if not (info.isfile() or info.isdir()):
            return None
        return info

    tmp = out.with_name(f".{out.name}.{os.urandom(3).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as raw_out, tarfile.open(fileobj=raw_out, mode="w:gz") as tar:
        tar.add(folder, arcname=run_id, filter=keep)
        if spec_bytes is not None:
            info = tar.gettarinfo(str(folder / SPEC), arcname=f"{run_id}/{SPEC}")
            info.size = len(spec_bytes)
            tar.addfile(info, io.BytesIO(spec_bytes))
    os.replace(tmp, out)
    return out


def import_run(registry: Registry, bundle: Path) -> str:
    """Add a bundle made by :func:`export_run` as a new run (new id); return the id."""
    registry.ensure()
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=registry.runs_dir))
    try:
        try:
            with tarfile.open(bundle, "r:*") as tar:
                members = tar.getmembers()
                roots = {Path(m.name).parts[0] for m in members if m.name not in ("", ".")}
                if len(roots) != 1:
                    raise LifecycleError(f"{bundle}: not a Backprop run bundle")
                tar.extractall(staging, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise LifecycleError(f"{bundle}: not a readable bundle ({exc})") from None
        (root,) = roots
        src = staging / root
        try:
            old_spec = RunSpec.from_json(read_json(src / SPEC))
        except (FileNotFoundError, ShapeError) as exc:
            raise LifecycleError(f"{bundle}: bundle has no valid spec.json ({exc})") from None
        new_id = registry.allocate_id()
        # Its dependencies were runs of another registry: their ids mean nothing here.
        write_json(src / SPEC, replace(old_spec, id=new_id, after=()).to_json())
        with contextlib.suppress(FileNotFoundError):
            raw = read_json(src / STATE)
            try:
                st = RunState.from_json(raw)
                if st.status.active:
                    st = replace(st, status=Status.LOST, reason="imported while it was running")
                write_json(src / STATE, replace(st, run_id=new_id).to_json())
            except ShapeError:
                pass  # keep it as it is: the run will list as corrupt, nothing is lost
        _import_ticket(src, new_id)
        (src / REQUESTS).mkdir(exist_ok=True)
        dest = registry.run_dir(new_id)
        os.rmdir(dest)  # allocate_id created it empty; the bundle takes its place
        os.rename(src, dest)
        return new_id
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _import_ticket(src: Path, new_id: str) -> None:
    """Give an imported run's ticket its new id; one still waiting here never will there."""
    path = src / TICKET
    try:
        ticket = Ticket.from_json(read_json(path))
    except FileNotFoundError:
        return
    except ShapeError:
        return  # kept as it is: the run lists as corrupt, nothing is lost
    if ticket.kind != CANCELLED:
        ticket = replace(ticket, kind=CANCELLED, reason="imported while queued")
    write_json(path, replace(ticket, run_id=new_id).to_json())


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


def events(registry: Registry, run_id: str) -> list[dict[str, object]]:
    """The run's lifecycle history."""
    from runner.durable import read_jsonl

    records, _ = read_jsonl(registry.run_dir(run_id) / "events.jsonl")
    return [r for r in records if isinstance(r, dict)]


def dump(obj: object) -> str:
    """JSON for ``--json`` output."""
    return json.dumps(obj, indent=2, sort_keys=False, default=str)
