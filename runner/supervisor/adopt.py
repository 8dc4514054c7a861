"""Re-adoption: a new supervisor for a run whose supervisor vanished while its trainer lives.

Whoever reconciles a run and finds it ``lost`` with a live trainer (the next command, the TUI)
calls :func:`adopt_orphan`. It starts ``python -m runner.supervisor.adopt`` detached, which
takes the run's supervisor lock (so two commands never adopt one run twice), checks the trainer
again (pid + start time + boot id, our user, the run's environment marker) and supervises it
from there on: it reads metrics on from the last offsets recorded in ``metrics.jsonl``, acts on
stop, pause and continue requests, enforces the time limit and records the end.

The trainer is not its child, so it cannot ``wait()`` for it: it watches a pidfd. The exit
code of a process that is not one's child is lost when its parent (init) reaps it; the
adopter reads it from ``/proc`` if it sees the process as a zombie, else the end says
``exit code unknown``. Without the code, a trainer that ended on its own is recorded as
``lost`` with that reason (``failed`` when its output shows why, ``stopped`` or
``timeboxed`` when we ended it): never ``completed`` on a guess.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import sys
import time
from dataclasses import replace

from runner import envnames, identity
from runner.model import ProcessIdentity, RunState, ShapeError, Status
from runner.registry import Registry
from runner.supervisor import members, runcgroup
from runner.supervisor.claim import acquire_lock
from runner.supervisor.escalate import CLEANUP_GRACE_S
from runner.supervisor.exits import as_stop_kind, classify, classify_unknown, with_write_note
from runner.supervisor.loop import Supervisor
from runner.supervisor.main import EXIT_ALREADY_SUPERVISED
from runner.supervisor.recordkeeper import RecordKeeper
from runner.tickets import Queue

RESPAWN_AFTER_S = 5.0
_spawned: dict[tuple[str, str], float] = {}


def takeover(registry: Registry, run_id: str, state: RunState | None) -> str | None:
    """What a new supervisor would do for this run now (cheap; no side effects).

    Returns:
        ``"adopt"`` (its trainer lives, is ours and carries the run's marker),
        ``"finalize"`` (nothing of it runs any more: read the rest of its output and record
        it as lost, its time ending at its last sign of life) or ``None`` (leave it be: it
        is supervised, finished, or its trainer lives but cannot be recognised as the run's).
    """
    if state is None or not state.status.active:
        return None
    same_boot = state.supervisor.boot_id == identity.boot_id()
    if same_boot and identity.matches(state.supervisor):
        return None
    if live_trainer(registry, run_id, state) is not None:
        return "adopt"
    if same_boot and state.trainer is not None and identity.matches(state.trainer):
        return None  # alive but unmarked: stays lost, and stop ends it by identity
    return "finalize"


def live_trainer(registry: Registry, run_id: str, state: RunState) -> ProcessIdentity | None:
    """The run's live trainer, identity-checked and carrying the run's marker."""
    if state.supervisor.boot_id != identity.boot_id():
        return None
    if state.trainer is None:  # the supervisor died before recording it: look for it
        return members.find_trainer(run_id, registry.root)
    if identity.matches(state.trainer) and members.belongs(
        state.trainer.pid, run_id, registry.root
    ):
        return state.trainer
    return None


def adopt_orphan(registry: Registry, run_id: str, state: RunState | None) -> str | None:
    """Start a new supervisor for the run if it needs one (see :func:`takeover`).

    Cheap to call on every reconcile: a run is offered to a new supervisor at most once every
    few seconds per process, and that supervisor gives way to any other holding the run's
    lock, so two commands never take over one run twice.

    Returns:
        What the new supervisor will do, or ``None`` if none was started.
    """
    action = takeover(registry, run_id, state)
    if action is None or registry.supervisor_locked(run_id):
        return None
    key = (str(registry.root), run_id)
    now = time.monotonic()
    if now - _spawned.get(key, -1e9) < RESPAWN_AFTER_S:
        return action
    _spawned[key] = now
    env = dict(os.environ)
    for name in (envnames.RUN_ID, envnames.RUN_DIR, envnames.CHECKPOINT_DIR):
        env.pop(name, None)  # the new supervisor is no member of any run
    from runner.control.spawn import popen_detached

    run_dir = registry.run_dir(run_id)
    proc = popen_detached(
        "runner.supervisor.adopt",
        ["--home", str(registry.root), "--run", run_id],
        log=run_dir / "supervisor.log",
        cwd=run_dir,
        env=env,
        log_or_null=True,  # a read-only or full registry: adopt all the same
    )
    proc.wait()
    return action


def finalize(registry: Registry, run_id: str, state: RunState) -> None:
    """Record a run whose supervisor and trainer are both gone (the run's lock held).

    Its output is read on from where capture stopped, and it is recorded ``lost`` with its
    time ending at its last sign of life, so it no longer counts on in listings.
    """
    from runner.metrics import reingest

    run_dir = registry.run_dir(run_id)
    ended = registry.last_sign_of_life(run_id, state)  # before we write anything
    dropped, error = 0, None
    with contextlib.suppress(FileNotFoundError, ShapeError):
        spec = registry.read_spec(run_id)
        _, dropped, error = reingest.catch_up(run_dir, spec, state.attempt)
    if state.supervisor.boot_id != identity.boot_id():
        reason = "host rebooted"
    else:
        reason = "supervisor gone without recording an exit"
    if state.trainer is not None:
        reason += "; exit code unknown"
    reason = with_write_note(reason, error, dropped)
    keeper = RecordKeeper(run_dir)
    keeper.put_event(
        {"t": time.time(), "attempt": state.attempt, "event": "finalized", "reason": reason}
    )
    final = replace(
        state, status=Status.LOST, reason=reason, ended_at=ended, updated_at=time.time()
    )
    keeper.put_state(final.to_json())
    keeper.flush_final()
    for path in runcgroup.leftovers(run_dir, run_id):
        runcgroup.remove(path)  # only if empty
    # A round that found the lease dead while we held the lock could not notify: we do (the
    # ``notified`` record keeps ``lost`` to once whoever gets there first).
    from runner.notify import fire_lost_locked

    with contextlib.suppress(Exception):  # a hook's trouble never loses the record above
        fire_lost_locked(registry, run_id)


def zombie_exit_status(pid: int, start_ticks: int) -> int | None:
    """The wait status of an exited, not yet reaped process (``/proc/PID/stat`` field 52)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    if len(fields) < 50 or fields[0] not in (b"Z", b"X") or int(fields[19]) != start_ticks:
        return None
    return int(fields[49])


class AdoptingSupervisor(Supervisor):
    """Supervises a trainer started by another, vanished supervisor (see the module notes)."""

    def __init__(
        self,
        registry: Registry,
        run_id: str,
        previous: RunState,
        trainer: ProcessIdentity,
        pidfd: int,
    ) -> None:
        super().__init__(
            registry,
            run_id,
            previous.attempt,
            timeout_s=previous.timeout_s,
            resume_from=previous.resume_from,
        )
        self.previous = previous
        self.trainer_ident = trainer
        self.trainer_pid = trainer.pid
        self.pidfd = pidfd
        self.started_at = previous.started_at or self.clock()
        self.state = replace(
            previous,
            supervisor=self.state.supervisor,
            trainer=trainer,
            status=Status.PAUSED if previous.status is Status.PAUSED else Status.RUNNING,
            started_at=self.started_at,
        )
        self.exit_status: int | None = None  # a wait status, when it could be read
        self.survivors: list[int] = []  # processes of the run that SIGKILL did not end
        kind = as_stop_kind(previous.stop_requested)
        if kind is not None:
            self.stop_kind = kind
        if previous.status is Status.PAUSED:
            self.paused_at = self.clock()

    def run(self) -> Status:
        """Take over, supervise to the end and record it. Returns the final status."""
        from runner.metrics import reingest

        self._terminate_reason = ""
        self.install_signal_handlers()
        self.keeper.make_reserve()
        resume_at, skip = reingest.continue_point(self.run_dir, self.attempt)
        self.ingestor = reingest.make_ingestor(
            self.run_dir, self.spec, self.attempt, resume_at, skip
        )
        if self.paused_at is not None:
            self.ingestor.set_paused(True)
        self.set_state(
            reason=f"re-adopted by a new supervisor (the previous one, pid "
            f"{self.previous.supervisor.pid}, vanished)"
        )
        self.record(
            "adopted", pid=os.getpid(), trainer=self.trainer_pid, output_offset=resume_at[0]
        )
        try:
            self.supervise()
        except BaseException as exc:
            self.fail_on_own_error(exc)
        return self.state.status

    # --- the trainer is not our child -----------------------------------------------------

    def reap(self) -> int | None:
        """The trainer's end, seen through its pidfd (0 stands for "ended, code unknown")."""
        ready, _, _ = select.select([self.pidfd], [], [], 0)
        if not ready:
            return None
        self.exit_status = zombie_exit_status(self.trainer_pid or 0, self.trainer_ident.start_ticks)
        return 0

    def wait(self, timeout: float) -> None:
        """Sleep until a signal arrives, the trainer ends or ``timeout`` passes."""
        with contextlib.suppress(InterruptedError):
            select.select([self._wake_r, self.pidfd], [], [], max(timeout, 0.0))
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_r, 512):
                pass

    def signal_group(self, sig: int) -> None:
        """Signal the trainer's group, by identity (its pid may be reused once it ends)."""
        identity.signal_group(self.trainer_ident, sig)

    def signal_trainer(self, sig: int) -> None:
        """Signal the trainer's group and every other process of the run."""
        self.signal_group(sig)
        members.signal_members(self.run_id, self.registry.root, sig)

    def kill_everything(self) -> None:
        """SIGKILL whatever is left of the run (every process in its cgroup or with its marker)."""
        self.survivors = members.end_members(
            self.run_id, self.registry.root, graceful=False, kill_wait_s=CLEANUP_GRACE_S
        ).survivors

    def finish(self, wait_status: int) -> None:
        """Clean up, take the last metrics and record the end as truthfully as it is known."""
        ended = self.clock()
        self.kill_everything()
        self.ingestor.poll(final=True)
        hint = self.ingestor.failure_hint()
        exit_code = sig = None
        if self.exit_status is not None:
            code = os.waitstatus_to_exitcode(self.exit_status)
            exit_code, sig = (code, None) if code >= 0 else (None, -code)
            status, reason = classify(
                code, self.stop_kind, self.stop_phase, hint, self._terminate_reason
            )
        else:
            status, reason = classify_unknown(self.stop_kind, hint)
        self._note_write_trouble(self.ingestor.write_error())
        self.keeper.make_room(self.ingestor.write_error())  # the last metrics go first
        reason = with_write_note(reason, self.write_trouble, self.ingestor.settle())
        if self.survivors:
            reason += f"; could not end pid {', '.join(map(str, self.survivors[:10]))}"
        self.set_state(
            status=status, reason=reason, ended_at=ended, exit_code=exit_code, signal=sig
        )
        self.record("exited", status=status.value, exit_code=exit_code, signal=sig, reason=reason)
        if self.drain_records() is not None:
            self.ingestor.poll(final=True)
        self.ingestor.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m runner.supervisor.adopt``."""
    parser = argparse.ArgumentParser(prog="backprop-adopt")
    parser.add_argument("--home", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--detach", action="store_true")
    args = parser.parse_args(argv)
    if args.detach and os.fork() > 0:
        os._exit(0)  # the caller reaps this parent; the child is adopted by init
    registry = Registry(args.home)
    lock = acquire_lock(registry.run_dir(args.run))
    if lock is None:
        return EXIT_ALREADY_SUPERVISED
    try:
        state = registry.read_state(args.run)
    except (ShapeError, OSError):
        return 0  # a damaged record is never acted on
    action = takeover(registry, args.run, state)
    if action == "finalize":
        assert state is not None
        finalize(registry, args.run, state)
        os.close(lock)  # notify_lost takes the run's lock itself (it keeps the hook to once)
        with contextlib.suppress(Exception):  # a hook's trouble never changes the record
            from runner import notify

            notify.notify_lost(registry, args.run)
        _poke(registry)  # lost for good: the dispatcher's retry policy looks at it now
        return 0
    if action != "adopt":
        return 0
    assert state is not None
    trainer = live_trainer(registry, args.run, state)
    if trainer is None:
        return 0
    try:
        pidfd = os.pidfd_open(trainer.pid)
    except OSError:
        return 0
    # Checked again once the pidfd is open: from now on it refers to this very process.
    if not identity.matches(trainer):
        return 0
    try:
        AdoptingSupervisor(registry, args.run, state, trainer, pidfd).run()
    finally:
        _poke(registry)  # its place is free: wake the dispatcher (as a supervisor's end does)
    return 0


def _poke(registry: Registry) -> None:
    with contextlib.suppress(OSError):
        Queue(registry.root).poke()


if __name__ == "__main__":
    sys.exit(main())
