"""The end of an attempt: clean up, take the last metrics and record a truthful exit."""

from __future__ import annotations

import os

from runner.model import Status
from runner.registry import OUTPUT
from runner.supervisor import runcgroup
from runner.supervisor.escalate import Escalation
from runner.supervisor.exits import classify, with_write_note
from runner.supervisor.output_cap import compact_output
from runner.supervisor.recordkeeper import describe_write_error


class ExitRecording(Escalation):
    """Records how an attempt ended, whatever ended it."""

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
