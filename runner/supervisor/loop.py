"""The supervisor of one attempt: start, watch until the trainer exits, record the end."""

from __future__ import annotations

import os
from typing import NoReturn

from runner.backends import slurm_job
from runner.backends.job_env import ray_job_facts
from runner.model import Status
from runner.registry import REQUESTS
from runner.supervisor import proctree, runcgroup
from runner.supervisor.inbox import read_requests
from runner.supervisor.records import notify_observers
from runner.supervisor.start import StartFailed, Starting

POLL_S = 0.1
EXIT_SUPERSEDED = 5  # a remote attempt declared lost found its retry in the queue
TRIM_EVERY_S = 10.0  # how often a running supervisor returns freed heap pages


class Supervisor(Starting):
    """Runs one attempt of one run to its end and records it truthfully."""

    def run(self) -> Status:
        """Start, supervise and record one admitted attempt. Returns the final status."""
        self._terminate_reason = ""
        self.install_signal_handlers()
        proctree.set_child_subreaper()
        self.keeper.make_reserve()
        self.set_state(status=Status.STARTING, reason="supervisor started")
        self.node.tick(self.clock(), running=False)
        self.record(
            "supervisor_started",
            pid=os.getpid(),
            timeout_s=self.timeout_s,
            resume_from=self.resume_from,
        )
        if self.spec.placement.backend == "ray" and (job := ray_job_facts(os.environ)):
            self.record("ray_job", **job)  # the job's id, node and devices, for `show`
        t = self.ticket
        if t.first_reason:  # the queue's history, told once its single writer exists
            self.record("queued", reason=t.first_reason, queued_at=t.queued_at)
        self.record("admitted", reason=t.reason, gpus=list(t.gpus), env=dict(t.env))
        if self.on_slurm:  # its job's facts; Slurm's USR1 and SIGTERM
            slurm_job.attach(self, self.run_dir / REQUESTS)
        try:
            if self.stopped_before_start():
                return self.state.status
            self.start_trainer()
            self.supervise()
        except StartFailed:
            raise
        except BaseException as exc:  # record the truth even when the supervisor itself fails
            self.fail_on_own_error(exc)
        return self.state.status

    def give_way(self, later: int) -> NoReturn:
        """End this attempt's tree and exit without a state write: ``later`` replaced it.

        The run folder's ``state.json`` belongs to the newer attempt now; only the event log
        (append-only, each line names its attempt) says what happened to this one.
        """
        self.kill_everything()
        runcgroup.clear(self.cgroup)
        self.ingestor.close()
        self.record("superseded", by_attempt=later)
        os._exit(EXIT_SUPERSEDED)

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
            if self.node.requests_due(self.clock()):
                for action, reason in read_requests(self.run_dir / REQUESTS):
                    self.handle(action, reason)
            now = self.clock()
            dl = self.deadline()
            if dl is not None and now >= dl and self.stop_kind is None and self.paused_at is None:
                self.stop_kind = "timeout"
            self.escalate(now)
            self.ingestor.poll()
            notify_observers(self, self.ingestor)
            self.enforce_output_cap()
            self.sync_records()
            self.node.tick(now, running=self.paused_at is None)
            later = self.node.superseded(now)
            if later is not None:
                self.give_way(later)
            if now - self.trimmed_at >= TRIM_EVERY_S:
                proctree.trim_heap()
                self.trimmed_at = now
            self.wait(POLL_S)
        self.finish(status)
