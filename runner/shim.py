"""The per-run supervisor ("shim"): one small process per attempt that outlives every UI.

Started as ``python -m runner.shim --home ROOT --run ID --attempt N [--detach]`` by a backend
(:mod:`runner.backends.local`) once the dispatcher admitted the attempt. With ``--detach`` it
forks once and the parent exits at once, so the launcher can reap it and the supervisor is
adopted by init (or a subreaper) in a session of its own: closing the terminal, killing tmux
or the launcher does not reach it.

It alone writes the run's ``state.json`` and ``events.jsonl``. It holds ``supervisor.lock`` for
its whole life (so two supervisors never run one run) and starts only an attempt the queue
admitted (``ticket.json``) that no supervisor has started before: a second start of the same
attempt (a dispatcher killed between its decision and the start, then restarted) exits at
once. It never asks for admission: placement arrives in the ticket. It starts the trainer in
its own process group with default signal dispositions and output straight to
``output.log``, adopts orphans as a child subreaper, and enforces stop, time limit and pause.
Control requests arrive as files in ``requests/`` (written by anyone), with SIGUSR1 as a nudge.
When it ends it pokes the queue, so a waiting run takes its place at once.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import envnames, identity, proctree, runcgroup

if TYPE_CHECKING:
    from runner.metrics.ingest import Ingestor
from runner.exits import StopKind, as_stop_kind, classify, with_write_note
from runner.model import ProcessIdentity, RunSpec, RunState, ShapeError, Status
from runner.recordkeeper import RecordKeeper, describe_write_error
from runner.registry import (
    OUTPUT,
    REQUESTS,
    SUPERVISOR_LOCK,
    Registry,
)
from runner.tickets import ADMITTED, Queue, Ticket

POLL_S = 0.1
TRIM_EVERY_S = 10.0  # how often a running supervisor returns freed heap pages
CLEANUP_GRACE_S = 2.0
OUTPUT_HEAD_BYTES = 1024 * 1024
EXIT_ALREADY_SUPERVISED = 3
EXIT_NOT_ADMITTED = 4  # already started by another supervisor, or never admitted

VALID_ACTIONS = frozenset({"stop", "kill", "pause", "continue", "start"})


def read_requests(folder: Path) -> list[tuple[str, str | None]]:
    """Consume pending control requests (oldest first): their actions and optional reasons."""
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    actions = []
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        path = folder / name
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read(4096))
            action = data.get("action") if isinstance(data, dict) else None
            reason = data.get("reason") if isinstance(data, dict) else None
        except (OSError, ValueError):
            action = reason = None
        with contextlib.suppress(OSError):
            os.unlink(path)
        if action in VALID_ACTIONS:
            actions.append((str(action), reason[:200] if isinstance(reason, str) else None))
    return actions


def compact_output(path: Path, cap: int, head: int = OUTPUT_HEAD_BYTES) -> int | None:
    """Keep the first ``head`` bytes and the latest tail of an output file grown past ``cap``.

    The trainer's descriptor is in append mode, so after the rewrite its next write lands at
    the new end. Returns the new size, or ``None`` if nothing was done.
    """
    try:
        size = path.stat().st_size
    except OSError:
        return None
    if size <= cap:
        return None
    head = min(head, cap // 4)
    keep = max(cap // 2 - head, 0)
    with open(path, "r+b") as f:
        tail_start = size - keep
        f.seek(tail_start)
        tail = f.read(keep)
        nl = tail.find(b"\n")
        if 0 <= nl < len(tail) - 1:
            tail = tail[nl + 1 :]  # start the kept tail on a line boundary
        f.seek(0)
        head_bytes = f.read(head)
        cut = head_bytes.rfind(b"\n")
        if cut >= 0:
            head_bytes = head_bytes[: cut + 1]
        marker = (
            f"\n[backprop: output over {cap} bytes; "
            f"{size - len(head_bytes) - len(tail)} bytes omitted here]\n"
        ).encode()
        f.seek(len(head_bytes))
        f.write(marker)
        f.write(tail)
        f.truncate()
        return f.tell()


class Supervisor:
    """Runs one attempt of one run to its end and records it truthfully."""

    def __init__(
        self,
        registry: Registry,
        run_id: str,
        attempt: int,
        *,
        timeout_s: float | None,
        resume_from: str | None,
        ticket: Ticket | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.run_id = run_id
        self.run_dir = registry.run_dir(run_id)
        self.attempt = attempt
        self.timeout_s = timeout_s
        self.resume_from = resume_from
        self.ticket = ticket or Ticket(run_id=run_id, attempt=attempt, kind="admitted")
        self.clock = clock
        self.spec: RunSpec = registry.read_spec(run_id)
        me = identity.identity_of(os.getpid())
        assert me is not None
        self.state = RunState(
            run_id=run_id,
            attempt=attempt,
            status=Status.STARTING,
            updated_at=clock(),
            supervisor=me,
            timeout_s=timeout_s,
            resume_from=resume_from,
            queued_at=self.ticket.queued_at or None,
        )
        self.trainer_pid: int | None = None
        self.cgroup: Path | None = None
        self.stop_kind: StopKind | None = None
        self.stop_phase = 0  # 0 none, 1 SIGINT sent, 2 SIGTERM sent, 3 SIGKILL sent
        self.phase_at = 0.0
        self.paused_at: float | None = None
        self.paused_total = 0.0
        self.trimmed_at = 0.0
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # State and events go through the keeper: a write error never ends supervision.
        self.keeper = RecordKeeper(self.run_dir)
        self.write_trouble: str | None = None  # the first write error of this attempt

    # --- records ---------------------------------------------------------------------------

    def record(self, event: str, /, **fields: Any) -> None:
        """Append a lifecycle event (an end also fires its notifications)."""
        entry = {"t": self.clock(), "attempt": self.attempt, "event": event, **fields}
        self.keeper.put_event(entry)
        self._note_write_trouble(self.keeper.error)
        if event in _ENDS:
            _notify(self, getattr(self, "ingestor", None))

    def set_state(self, **changes: Any) -> None:
        """Durably replace ``state.json`` with the current state plus ``changes``.

        While writes fail the newest state waits in memory (see :class:`RecordKeeper`).
        """
        self.state = replace(self.state, updated_at=self.clock(), **changes)
        self.keeper.put_state(self.state.to_json())
        self._note_write_trouble(self.keeper.error)

    def _note_write_trouble(self, error: str | None) -> None:
        if error is not None and self.write_trouble is None:
            self.write_trouble = error

    def sync_records(self) -> None:
        """Retry records that could not be written yet (on the keeper's schedule)."""
        failing = self.keeper.error
        if failing is not None and self.keeper.flush():
            self.record("write_recovered", error=failing)

    # --- signals ---------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """Route signals to the wake-up pipe; SIGTERM/SIGINT to the shim mean "stop the run"."""
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for sig in (signal.SIGCHLD, signal.SIGUSR1):
            signal.signal(sig, lambda s, f: None)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_terminate)
        # A force-stop that could not be written as a request (full disk, read-only registry).
        signal.signal(signal.SIGUSR2, self._on_force_stop)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    def _on_terminate(self, signum: int, frame: object) -> None:
        if self.stop_kind is None:
            self.stop_kind = "stop"
            self._terminate_reason = f"supervisor received {signal.Signals(signum).name}"

    def _on_force_stop(self, signum: int, frame: object) -> None:
        if self.stop_kind != "kill":
            self.stop_kind = "kill"
            self._terminate_reason = ""  # classify words it: "stopped (forced: SIGKILL)"

    def wait(self, timeout: float) -> None:
        """Sleep until a signal arrives or ``timeout`` passes."""
        with contextlib.suppress(InterruptedError):
            select.select([self._wake_r], [], [], max(timeout, 0.0))
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_r, 512):
                pass

    # --- phases ----------------------------------------------------------------------------

    def run(self) -> Status:
        """Start, supervise and record one admitted attempt. Returns the final status."""
        self._terminate_reason = ""
        self.install_signal_handlers()
        proctree.set_child_subreaper()
        self.keeper.make_reserve()
        self.set_state(status=Status.STARTING, reason="supervisor started")
        self.record(
            "supervisor_started",
            pid=os.getpid(),
            timeout_s=self.timeout_s,
            resume_from=self.resume_from,
        )
        t = self.ticket
        if t.first_reason:  # the queue's history, told once its single writer exists
            self.record("queued", reason=t.first_reason, queued_at=t.queued_at)
        self.record("admitted", reason=t.reason, gpus=list(t.gpus), env=dict(t.env))
        try:
            if self.stopped_before_start():
                return self.state.status
            self.start_trainer()
            self.supervise()
        except _StartFailed:
            raise
        except BaseException as exc:  # record the truth even when the supervisor itself fails
            self.fail_on_own_error(exc)
        return self.state.status

    def fail_on_own_error(self, exc: BaseException) -> None:
        """End the run ``failed`` for an error of the supervisor's own; re-raise unless OSError.

        Everything of the run is killed first, so no trainer is left unsupervised.
        """
        self.kill_everything()
        self.set_state(
            status=Status.FAILED,
            ended_at=self.clock(),
            reason=f"supervisor error: {type(exc).__name__}: {exc}"[:300],
        )
        self.record("supervisor_error", error=repr(exc)[:300])
        self.drain_records()
        if not isinstance(exc, OSError):
            raise exc

    def stopped_before_start(self) -> bool:
        """Honour a stop that arrived between admission and now (then no trainer starts)."""
        for action, _ in read_requests(self.run_dir / REQUESTS):
            if action in ("stop", "kill"):
                self.stop_kind = as_stop_kind(action)
        if self.stop_kind is None:
            return False
        reason = self._terminate_reason or "stopped before it started"
        self.set_state(
            status=Status.STOPPED,
            reason=reason,
            ended_at=self.clock(),
            stop_requested=self.stop_kind,
        )
        self.record("stopped", reason=reason)
        return True

    def trainer_env(self) -> dict[str, str]:
        """The trainer's environment: the submitter's, the run's, Backprop's and placement."""
        env = dict(os.environ)
        env.update(self.spec.env)
        env.update(self.ticket.env)
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                envnames.RUN_ID: self.run_id,
                envnames.RUN_DIR: str(self.run_dir),
                envnames.CHECKPOINT_DIR: str(self.run_dir / "checkpoints"),
                envnames.ATTEMPT: str(self.attempt),
                envnames.HOME: str(self.registry.root),
            }
        )
        env.pop(envnames.RESUME_FROM, None)
        if self.resume_from:
            env[envnames.RESUME_FROM] = self.resume_from
        return env

    def trainer_command(self) -> list[str]:
        """The command, plus the resume-argument template when resuming or forking.

        A template naming ``{checkpoint}`` applies only when there is a checkpoint; one that
        does not (``--init_from=resume``) applies to every attempt after the first.
        """
        cmd = list(self.spec.command)
        if self.spec.after:  # {after.checkpoint} and the like, from the dispatcher's gate
            from runner.pipeline import substitute

            cmd = substitute(cmd, self.ticket.env)
        if self.spec.resume_args:
            needs_ckpt = any("{checkpoint}" in a for a in self.spec.resume_args)
            if self.resume_from or (self.attempt > 1 and not needs_ckpt):
                values = {
                    "checkpoint": self.resume_from or "",
                    "checkpoint_dir": str(self.run_dir / "checkpoints"),
                    "run_dir": str(self.run_dir),
                    "attempt": str(self.attempt),
                }
                cmd += [_substitute(a, values) for a in self.spec.resume_args]
        return cmd

    def start_trainer(self) -> None:
        """Start the trainer: own process group, default signals, output straight to a file."""
        import subprocess

        cmd = self.trainer_command()
        # Every process of the run in one cgroup where allowed (see runner.runcgroup).
        self.cgroup = runcgroup.create(self.run_dir, self.run_id, self.attempt)
        try:
            out = os.open(
                self.run_dir / OUTPUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
            )
        except OSError as exc:
            reason = f"could not start: {describe_write_error(exc, OUTPUT)}"
            self.set_state(status=Status.FAILED, reason=reason, ended_at=self.clock())
            self.record("failed_to_start", reason=reason)
            self.drain_records()
            runcgroup.remove(self.cgroup)
            raise _StartFailed from None
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=self.spec.cwd,
                env=self.trainer_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                close_fds=True,
                process_group=0,
                preexec_fn=runcgroup.preexec(self.cgroup),
            )
        except OSError as exc:
            os.close(out)
            reason = f"could not start {cmd[0]!r}: {exc.strerror or exc}"
            self.set_state(
                status=Status.FAILED,
                reason=reason,
                ended_at=self.clock(),
                started_at=self.clock(),
                exit_code=127,
            )
            self.record("failed_to_start", reason=reason)
            self.drain_records()
            runcgroup.remove(self.cgroup)
            raise _StartFailed from None
        os.close(out)
        # We reap children ourselves (we are a subreaper and adopt orphans too).
        self._popen = proc
        self.trainer_pid = proc.pid
        ident = identity.identity_of(proc.pid)
        if ident is None:  # exited already: still record who it was
            ident = ProcessIdentity(pid=proc.pid, start_ticks=0, boot_id=identity.boot_id())
        self.ingestor = self._make_ingestor()
        self.started_at = self.clock()
        self.set_state(
            status=Status.RUNNING,
            reason="running",
            trainer=ident,
            started_at=self.started_at,
            gpus=self.ticket.gpus,
            ended_at=None,
            exit_code=None,
            signal=None,
        )
        self.record("started", pid=proc.pid, command=cmd, gpus=list(self.ticket.gpus))
        proctree.trim_heap()
        self.trimmed_at = self.clock()

    def _make_ingestor(self) -> Ingestor | _NoIngestor:
        """Metric capture; if it cannot start (a corrupt history...), the run goes on without."""
        try:
            from runner.metrics.ingest import Ingestor

            return Ingestor(
                self.run_dir,
                self.spec,
                self.attempt,
                stall_factor=self.spec.stall_factor,
                stall_floor_s=self.spec.stall_after_s,
            )
        except Exception as exc:
            self.record("metrics_unavailable", error=repr(exc)[:300])
            return _NoIngestor()

    # --- supervision -----------------------------------------------------------------------

    def deadline(self) -> float | None:
        """When the time limit runs out (paused time does not count)."""
        if self.timeout_s is None:
            return None
        return self.started_at + self.timeout_s + self.paused_total

    def supervise(self) -> None:
        """Loop until the trainer exits, then clean up and record the exit."""
        assert self.trainer_pid is not None
        status: int | None = None
        while status is None:
            status = self.reap()
            if status is not None:
                break
            for action, reason in read_requests(self.run_dir / REQUESTS):
                self.handle(action, reason)
            now = self.clock()
            dl = self.deadline()
            if dl is not None and now >= dl and self.stop_kind is None and self.paused_at is None:
                self.stop_kind = "timeout"
            self.escalate(now)
            self.ingestor.poll()
            _notify(self, self.ingestor)
            self.enforce_output_cap()
            self.sync_records()
            if now - self.trimmed_at >= TRIM_EVERY_S:
                proctree.trim_heap()
                self.trimmed_at = now
            self.wait(POLL_S)
        self.finish(status)

    def reap(self) -> int | None:
        """Reap every exited child; return the trainer's wait status once it has exited."""
        trainer_status = None
        while True:
            try:
                pid, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid == self.trainer_pid:
                trainer_status = st
                self._popen.returncode = os.waitstatus_to_exitcode(st)
        return trainer_status

    def handle(self, action: str, reason: str | None = None) -> None:
        """Act on one control request (``reason``: who asked and why, shown in the status)."""
        if action in ("stop", "kill"):
            if self.stop_kind in (None, "stop", "timeout") and (
                action == "kill" or self.stop_kind is None
            ):
                self.stop_kind = as_stop_kind(action)
                self.stop_phase = 0 if action == "stop" else self.stop_phase
                self.record("stop_requested", kind=action)
        elif action == "pause" and self.paused_at is None and self.stop_kind is None:
            self.signal_trainer(signal.SIGSTOP)
            self.paused_at = self.clock()
            self.ingestor.set_paused(True)
            self.set_state(status=Status.PAUSED, reason=reason or "paused by user")
            self.record("paused", reason=reason or "paused by user")
        elif action == "continue" and self.paused_at is not None:
            self.signal_trainer(signal.SIGCONT)
            self.paused_total += self.clock() - self.paused_at
            self.paused_at = None
            self.ingestor.set_paused(False)
            self.set_state(status=Status.RUNNING, reason="running")
            self.record("continued", reason=reason or "continued by user")

    def signal_group(self, sig: int) -> None:
        """Signal the trainer's process group (our unreaped child's: never a reused pid)."""
        assert self.trainer_pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.trainer_pid, sig)

    def signal_trainer(self, sig: int) -> None:
        """Signal the trainer's process group and every other descendant."""
        assert self.trainer_pid is not None
        proctree.signal_tree(os.getpid(), sig, group=self.trainer_pid)

    def escalate(self, now: float) -> None:
        """Drive the stop sequence: SIGINT, then SIGTERM, then SIGKILL on schedule."""
        if self.stop_kind is None or self.trainer_pid is None:
            return
        if self.stop_kind == "kill":
            if self.stop_phase < 3 or now - self.phase_at >= 1.0:
                self.send_phase(3, signal.SIGKILL, now)
            return
        if self.stop_phase == 0:
            if self.stop_kind == "stop" and not self.state.stop_requested:
                self.set_state(stop_requested="stop", reason="stopping (SIGINT sent)")
            elif self.stop_kind == "timeout":
                self.set_state(stop_requested="timeout", reason="time limit reached")
            # SIGINT goes to the group only: the trainer decides what its children do.
            self.signal_group(signal.SIGINT)
            if self.paused_at is not None:
                self.signal_trainer(signal.SIGCONT)
                self.paused_at = None
            self.stop_phase, self.phase_at = 1, now
            self.record("signal", signal="SIGINT", kind=self.stop_kind)
        elif self.stop_phase == 1 and now - self.phase_at >= self.spec.grace_int_s:
            self.send_phase(2, signal.SIGTERM, now)
        elif self._kill_due(now):
            self.send_phase(3, signal.SIGKILL, now)

    def _kill_due(self, now: float) -> bool:
        """SIGKILL after the SIGTERM grace, and again each second for stragglers."""
        waited = now - self.phase_at
        if self.stop_phase == 2:
            return waited >= self.spec.grace_term_s
        return self.stop_phase == 3 and waited >= 1.0

    def send_phase(self, phase: int, sig: int, now: float) -> None:
        """Send ``sig`` to the whole tree and remember when."""
        if self.stop_phase != phase:
            self.record("signal", signal=signal.Signals(sig).name, kind=self.stop_kind)
        if self.stop_kind is not None and not self.state.stop_requested:
            self.set_state(stop_requested=self.stop_kind)
        self.signal_trainer(sig)
        if sig == signal.SIGKILL and self.paused_at is not None:
            self.paused_at = None
        self.stop_phase, self.phase_at = phase, now

    def enforce_output_cap(self) -> None:
        """Compact ``output.log`` once it passes the cap (after consuming it)."""
        path = self.run_dir / OUTPUT
        try:
            if path.stat().st_size <= self.spec.output_cap_bytes:
                return
        except OSError:
            return
        self.ingestor.poll()
        try:
            new_size = compact_output(path, self.spec.output_cap_bytes)
        except OSError as exc:  # read-only or full: the cap waits, the run goes on
            self._note_write_trouble(describe_write_error(exc, OUTPUT))
            return
        if new_size is not None:
            self.ingestor.output_rewritten(new_size)
            self.record("output_compacted", size=new_size)

    def kill_everything(self) -> None:
        """SIGTERM, then SIGKILL, whatever is left of the run's tree; reap it all."""
        me = os.getpid()
        group = self.trainer_pid
        if not proctree.descendants(me):
            self.reap()
            return
        proctree.signal_tree(me, signal.SIGTERM, group=group)
        proctree.signal_tree(me, signal.SIGCONT, group=group)
        end = time.monotonic() + CLEANUP_GRACE_S
        while proctree.descendants(me) and time.monotonic() < end:
            self.reap()
            self.wait(0.05)
        for _ in range(50):
            if not proctree.descendants(me):
                break
            proctree.signal_tree(me, signal.SIGKILL, group=group)
            self.reap()
            self.wait(0.02)
        self.reap()

    def finish(self, wait_status: int) -> None:
        """Clean up the tree, take the last metrics and record a truthful exit."""
        ended = self.clock()
        self.kill_everything()
        left = runcgroup.clear(self.cgroup)
        self.ingestor.poll(final=True)
        self.enforce_output_cap()
        code = os.waitstatus_to_exitcode(wait_status)
        exit_code = code if code >= 0 else None
        sig = -code if code < 0 else None
        status, reason = classify(
            code,
            self.stop_kind,
            self.stop_phase,
            self.ingestor.failure_hint(),
            self._terminate_reason,
        )
        self._note_write_trouble(self.ingestor.write_error())
        self.keeper.make_room(self.ingestor.write_error())  # the last metrics go first
        reason = with_write_note(reason, self.write_trouble, self.ingestor.settle())
        if left:
            reason += f"; could not end pid {', '.join(map(str, left[:10]))}"
        self.set_state(
            status=status, reason=reason, ended_at=ended, exit_code=exit_code, signal=sig
        )
        self.record("exited", status=status.value, exit_code=exit_code, signal=sig, reason=reason)
        if self.drain_records() is not None:
            self.ingestor.poll(final=True)  # the summary could not be written either
        self.ingestor.close()

    def drain_records(self) -> str | None:
        """Stay until the last records are written; return the error that delayed them.

        The trainer has ended, so there is nothing left to watch (see
        :meth:`RecordKeeper.drain`). A final state written late says why.
        """
        delayed = self.keeper.drain(self.wait)
        if delayed is not None and not self.state.status.active:
            self.record("write_recovered", error=delayed)
            if delayed not in self.state.reason:
                self.set_state(reason=with_write_note(self.state.reason, delayed, 0))
            self.keeper.drain(self.wait)
        self.keeper.close()
        return delayed


_ENDS = frozenset({"exited", "stopped", "supervisor_error", "failed_to_start"})


def _notify(sup: Supervisor, ingestor: object | None) -> None:
    from runner import notify  # only once a run is admitted or ends: queued shims stay small

    notify.observe(sup, ingestor)


def _substitute(template: str, values: dict[str, str]) -> str:
    out = template
    for key, value in values.items():
        out = out.replace("{" + key + "}", value)
    return out


class _NoIngestor:
    """Stands in for the ingestor when metric capture could not start."""

    def poll(self, final: bool = False) -> None:
        """Nothing to read."""

    def output_rewritten(self, size: int) -> None:
        """Nothing to re-align."""

    def set_paused(self, paused: bool) -> None:
        """Nothing to pause."""

    def failure_hint(self) -> str | None:
        """No hint without capture."""
        return None

    def write_error(self) -> str | None:
        """Nothing was written, so nothing failed."""
        return None

    def settle(self) -> int:
        """No pending metric lines."""
        return 0

    def close(self) -> None:
        """Nothing to close."""


class _StartFailed(Exception):
    """The trainer could not be executed (already recorded)."""


def acquire_lock(run_dir: Path) -> int | None:
    """Take the run's supervisor lock for the life of this process (``None``: already held)."""
    try:
        fd = os.open(run_dir / SUPERVISOR_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:  # a read-only registry: flock needs no write access
        fd = os.open(run_dir / SUPERVISOR_LOCK, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        # A reader may hold a shared lock for a few microseconds while it checks.
        for _ in range(100):
            time.sleep(0.01)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                continue
        os.close(fd)
        return None
    return fd


def claim_attempt(registry: Registry, run_id: str, attempt: int) -> Ticket | str:
    """The admitted ticket of this attempt, or why this supervisor must not start it.

    Called with the run's lock held, so no other supervisor can be between its check and its
    first state write: a state of this attempt or later means another one started it.
    """
    try:
        state = registry.read_state(run_id)
    except (ShapeError, OSError) as exc:
        return f"state.json unreadable: {exc}"
    if state is not None and state.attempt >= attempt:
        return f"attempt {attempt} of run {run_id} was started already"
    try:
        ticket = Queue(registry.root).read_ticket(run_id)
    except (ShapeError, OSError) as exc:
        return f"ticket.json unreadable: {exc}"
    if ticket is None or ticket.attempt != attempt or ticket.kind != ADMITTED:
        return f"attempt {attempt} of run {run_id} is not admitted"
    return ticket


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m runner.shim``."""
    parser = argparse.ArgumentParser(prog="backprop-supervisor")
    parser.add_argument("--home", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--attempt", type=int, default=1)
    parser.add_argument("--detach", action="store_true")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the dispatcher ignores it; we reap
    if args.detach and os.fork() > 0:
        os._exit(0)  # the launcher reaps this parent; the child is adopted by init
    if args.detach:
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.close(devnull)
    registry = Registry(args.home)
    run_dir = registry.run_dir(args.run)
    lock = acquire_lock(run_dir)
    if lock is None:
        print(f"run {args.run} already has a supervisor", file=sys.stderr)
        return EXIT_ALREADY_SUPERVISED
    claimed = claim_attempt(registry, args.run, args.attempt)
    if isinstance(claimed, str):
        print(f"backprop: {claimed}; nothing to do", file=sys.stderr)
        return EXIT_NOT_ADMITTED
    sup = Supervisor(
        registry,
        args.run,
        args.attempt,
        timeout_s=claimed.timeout_s,
        resume_from=claimed.resume_from,
        ticket=claimed,
    )
    try:
        sup.run()
    except _StartFailed:
        return 1
    finally:
        with contextlib.suppress(OSError):
            Queue(registry.root).poke()  # a slot is free: wake the dispatcher
    return 0


if __name__ == "__main__":
    sys.exit(main())
