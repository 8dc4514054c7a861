"""Starting the trainer: its environment, command, process group, cgroup and output file."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from runner import envnames, identity
from runner.backends import slurm_job
from runner.backends.job_env import keep_job_placement
from runner.model import ProcessIdentity, Status
from runner.registry import OUTPUT, REQUESTS
from runner.supervisor import proctree, runcgroup
from runner.supervisor.exit_record import ExitRecording
from runner.supervisor.exits import as_stop_kind
from runner.supervisor.inbox import read_requests
from runner.supervisor.recordkeeper import describe_write_error

if TYPE_CHECKING:
    from runner.metrics.ingest import Ingestor


class Starting(ExitRecording):
    """Starts an admitted attempt's trainer (or records why it did not start)."""

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

    @property
    def on_slurm(self) -> bool:
        """Whether this supervisor is the batch step of the run's Slurm job."""
        return slurm_job.applies(self.spec.placement.backend)

    @property
    def on_ray(self) -> bool:
        """Whether this supervisor is a Ray job's entrypoint (a Ray run's always is)."""
        return self.spec.placement.backend == "ray"

    def trainer_env(self) -> dict[str, str]:
        """The trainer's environment: the submitter's, the run's, Backprop's and placement."""
        env = dict(os.environ)
        env.update(self.spec.env)
        env.update(self.ticket.env)
        if self.on_slurm:  # the job's GPUs and SLURM_* win over the submitter's
            env = slurm_job.trainer_env(env, {**self.spec.env, **self.ticket.env}, os.environ)
        elif self.on_ray:  # the job's GPUs and cluster win over the submitter's
            keep_job_placement(env, os.environ, "ray")
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
                cmd += [substitute_values(a, values) for a in self.spec.resume_args]
        return cmd

    def start_trainer(self) -> None:
        """Start the trainer: own process group, default signals, output straight to a file."""
        import subprocess

        cmd = self.trainer_command()
        # Every process of the run in one cgroup where allowed (see runner.supervisor.runcgroup).
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
            raise StartFailed from None
        preexec = runcgroup.preexec(self.cgroup)
        if self.on_slurm or self.on_ray:  # the engine frees the job's GPUs when it dies
            preexec = slurm_job.die_with_supervisor(preexec)
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
                preexec_fn=preexec,
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
            raise StartFailed from None
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

    def _make_ingestor(self) -> Ingestor | NoIngestor:
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
            return NoIngestor()


def substitute_values(template: str, values: dict[str, str]) -> str:
    """``template`` with each ``{key}`` replaced by its value."""
    out = template
    for key, value in values.items():
        out = out.replace("{" + key + "}", value)
    return out


class NoIngestor:
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


class StartFailed(Exception):
    """The trainer could not be executed (already recorded)."""
