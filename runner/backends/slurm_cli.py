"""Slurm's command-line tools, called with timeouts and parsed strictly.

Only the commands every Slurm user has: ``sbatch``, ``squeue``, ``sacct``, ``scancel``,
``sinfo``. Each call has a timeout (a controller that hangs must not hang Backprop) and every
failure becomes a :class:`SlurmError` with Slurm's own one-line message. The parsers are pure
functions of the text, so they are tested without a cluster.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

TIMEOUT_S = 20.0
SEP = "|"  # squeue/sacct field separator; our job names never contain it
# squeue: job id, name, state, node list, reason last (the one field with free text).
SQUEUE_FORMAT = SEP.join(("%i", "%j", "%T", "%N", "%r"))
SACCT_FIELDS = "JobID,JobName,State,NodeList,ExitCode"
# States in which the job holds (or is about to hold) its allocation.
ACTIVE_STATES = frozenset(
    {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "RESIZING"}
)
WAITING_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"})


# Words of a failure that may pass by itself (the controller is down, busy or restarting).
_TRANSIENT = (
    "unable to contact slurm controller",
    "did not answer",
    "socket timed out",
    "temporarily",
    "try again",
    "connection refused",
    "slurmctld not responding",
)


class SlurmError(OSError):
    """A Slurm command failed or is missing (one-line message in Slurm's words).

    An ``OSError``: like a file system that does not answer, the caller keeps its records and
    tries again later (the dispatcher does).
    """

    @property
    def transient(self) -> bool:
        """Whether trying again later may succeed (else Slurm refused: a bad partition...)."""
        text = str(self).lower()
        return any(word in text for word in _TRANSIENT)


class NoAccounting(SlurmError):
    """``sacct`` cannot answer: the cluster keeps no accounting (no slurmdbd)."""


@dataclass(frozen=True)
class Job:
    """One job as Slurm lists it.

    Attributes:
        job_id: Slurm's job id (reused after a controller crash: check the name too).
        name: the job name (ours: the submission key).
        state: Slurm's state word (``PENDING``, ``RUNNING``, ``COMPLETED``, ``NODE_FAIL``...).
        node: the node list (empty while pending).
        reason: the pending reason (``Resources``, ``Priority``...) or ``None``; for sacct the
            exit code.
    """

    job_id: str
    name: str
    state: str
    node: str = ""
    reason: str = ""

    @property
    def waiting(self) -> bool:
        """Queued in Slurm (pending or requeued)."""
        return self.state in WAITING_STATES

    @property
    def active(self) -> bool:
        """Started and not yet over."""
        return self.state in ACTIVE_STATES

    @property
    def ended(self) -> bool:
        """Over, in any way (completed, failed, cancelled, timed out, node failure...)."""
        return not self.waiting and not self.active


def run(
    argv: Sequence[str],
    *,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = TIMEOUT_S,
) -> str:
    """Run a Slurm command; return its stdout or raise :class:`SlurmError` with its message."""
    try:
        proc = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=dict(env) if env is not None else None,
            check=False,
        )
    except FileNotFoundError:
        raise SlurmError(f"{argv[0]} not found: Slurm's client tools are not installed") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{argv[0]} did not answer in {timeout_s:.0f}s") from None
    if proc.returncode != 0:
        raise SlurmError(f"{argv[0]}: {last_line(proc.stderr) or f'exit {proc.returncode}'}")
    return proc.stdout


def last_line(text: str) -> str:
    """The last non-empty line of a command's message, without Slurm's ``sbatch: error:``."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ""
    line = lines[-1]
    for prefix in ("sbatch: error: ", "squeue: error: ", "scancel: error: ", "sacct: error: "):
        if line.startswith(prefix):
            line = line[len(prefix) :]
    return line[:300]


def parse_sbatch(text: str) -> str:
    """The job id from ``sbatch --parsable`` (``123`` or ``123;cluster``)."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    job_id = first.split(";", 1)[0].strip()
    if not job_id.isdigit():
        raise SlurmError(f"sbatch answered {first[:80]!r}, not a job id")
    return job_id


def parse_squeue(text: str) -> list[Job]:
    """Jobs from ``squeue --noheader --format=SQUEUE_FORMAT`` (malformed lines are skipped)."""
    jobs = []
    for line in text.splitlines():
        parts = line.split(SEP, 4)
        if len(parts) != 5 or not parts[0].strip():
            continue
        job_id, name, state, node, reason = (p.strip() for p in parts)
        jobs.append(
            Job(
                job_id=job_id,
                name=name,
                state=state.split()[0].rstrip("+") if state else "",
                node="" if node in ("", "(null)") else node,
                reason="" if reason in ("None", "(null)") else reason,
            )
        )
    return jobs


def parse_sacct(text: str) -> list[Job]:
    """Allocations from ``sacct --parsable2 --noheader`` (job steps ``123.batch`` skipped)."""
    jobs = []
    for line in text.splitlines():
        parts = line.split(SEP)
        if len(parts) != 5 or not parts[0] or "." in parts[0]:
            continue
        job_id, name, state, node, exit_code = parts
        jobs.append(
            Job(
                job_id=job_id,
                name=name,
                # "CANCELLED by 0" -> CANCELLED
                state=state.split()[0].rstrip("+") if state else "",
                node="" if node in ("None assigned", "(null)") else node,
                reason=f"exit code {exit_code}" if exit_code else "",
            )
        )
    return jobs


def sbatch(args: Sequence[str], script: str, *, env: Mapping[str, str] | None = None) -> str:
    """Submit ``script`` (given on stdin) with ``args``; return the job id."""
    forget()
    return parse_sbatch(run(["sbatch", "--parsable", *args], stdin=script, env=env))


def squeue(*, name: str | None = None, job_id: str | None = None) -> list[Job]:
    """This user's jobs in every state Slurm still remembers, by name or by id.

    An id Slurm no longer knows is an empty answer, not an error.
    """
    argv = ["squeue", "--noheader", "--states=all", f"--format={SQUEUE_FORMAT}"]
    if name is not None:
        argv += [f"--name={name}", f"--user={os.getuid()}"]
    if job_id is not None:
        argv.append(f"--jobs={job_id}")
    try:
        return parse_squeue(run(argv))
    except SlurmError as exc:
        if job_id is not None and "Invalid job id" in str(exc):
            return []
        raise


_MINE: tuple[float, list[Job] | SlurmError] | None = None
MINE_MAX_AGE_S = 5.0


def my_jobs(*, since: float = 0.0, max_age_s: float = MINE_MAX_AGE_S) -> list[Job]:
    """Every job of this user that Slurm still lists, from one ``squeue`` per ``max_age_s``.

    ``since``: a listing taken before this (Unix) time is not used (it cannot hold a job
    submitted then). A failure is remembered as long: with the controller down each call
    waits ~9 s, and a listing of many runs must not wait that long per run.
    """
    global _MINE
    import time

    now = time.time()
    if _MINE is None or now - _MINE[0] > max_age_s or _MINE[0] < since:
        argv = ["squeue", "--noheader", "--states=all", f"--format={SQUEUE_FORMAT}"]
        try:
            _MINE = (now, parse_squeue(run([*argv, f"--user={os.getuid()}"])))
        except SlurmError as exc:
            _MINE = (time.time(), exc)
    answer = _MINE[1]
    if isinstance(answer, SlurmError):
        raise answer
    return answer


def forget() -> None:
    """Drop the shared listing (after a change of ours: the next look-up asks afresh)."""
    global _MINE
    _MINE = None


def sacct(*, name: str, since: float) -> list[Job]:
    """What accounting recorded for jobs called ``name`` since ``since`` (a Unix time).

    ``--starttime`` keeps a reused job id of a lost job from answering for ours. Raises
    :class:`NoAccounting` where the cluster keeps none.
    """
    import time

    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(max(0.0, since - 60)))
    argv = [
        "sacct",
        "--noheader",
        "--parsable2",
        f"--name={name}",
        f"--starttime={start}",
        f"--format={SACCT_FIELDS}",
    ]
    try:
        return parse_sacct(run(argv))
    except SlurmError as exc:
        if "accounting storage is disabled" in str(exc).lower():
            raise NoAccounting("no accounting (slurmdbd): Slurm forgets ended jobs") from None
        raise


def scancel(
    job_id: str, *, signal: str | None = None, batch: bool = False, state: str | None = None
) -> None:
    """Cancel or signal one job (``batch``: only its batch step's process, our supervisor)."""
    argv = ["scancel"]
    if signal is not None:
        argv.append(f"--signal={signal}")
    if batch:
        argv.append("--batch")
    if state is not None:
        argv.append(f"--state={state}")
    forget()
    run([*argv, job_id])


def sinfo() -> str:
    """One line on the cluster: its partitions and node states (raises when it does not answer)."""
    out = run(["sinfo", "--noheader", "--format=%P %a %D %t"], timeout_s=10.0)
    parts = sorted({" ".join(line.split()) for line in out.splitlines() if line.strip()})
    if not parts:
        raise SlurmError("sinfo lists no partitions")
    return "; ".join(parts)
