"""Signals, control requests and the stop sequence (SIGINT, then SIGTERM, then SIGKILL)."""

from __future__ import annotations

import contextlib
import os
import signal
import time

from runner.backends.job_env import engine_stop
from runner.model import Status
from runner.supervisor import proctree
from runner.supervisor.exits import as_stop_kind
from runner.supervisor.records import SupervisorBase

CLEANUP_GRACE_S = 2.0


class Escalation(SupervisorBase):
    """Acts on signals and control requests, and ends the run's process tree."""

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
            from_engine = engine_stop(self.spec.placement.backend, signum)
            self.engine_sigint = from_engine is not None
            self._terminate_reason = from_engine or (
                f"supervisor received {signal.Signals(signum).name}"
            )

    def _on_force_stop(self, signum: int, frame: object) -> None:
        if self.stop_kind != "kill":
            self.stop_kind = "kill"
            self._terminate_reason = ""  # classify words it: "stopped (forced: SIGKILL)"

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
            # SIGINT goes to the group only: the trainer decides what its children do. Not a
            # second one after the engine's: it could cut short the checkpoint the first began.
            if not self.engine_sigint:
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
