# over 400 lines: the registry folder and the run view read from it are one concept
"""The registry: one folder per run under ``$BACKPROP_HOME/runs``, the store of record.

Files in a run folder and their single writers:

==================  =========================================================
``spec.json``       the launcher, once, before anything starts
``state.json``      the run's supervisor (latest attempt), atomically
``events.jsonl``    the supervisor: lifecycle history, append-only
``output.log``      the trainer's stdout and stderr
``report.jsonl``    the trainer, through :func:`runner.report`
``metrics.jsonl``   the supervisor: the one metric history, append-only
``summary.json``    the supervisor: a rebuildable digest of the history
``requests/``       anyone: control requests the supervisor consumes
``checkpoints/``    the trainer
``cgroup``          the supervisor: the path of the attempt's cgroup, if it has one
``.reserve``        the supervisor: space given back to record an exit on a full disk
``heartbeat``       the supervisor of a run placed on an engine: its sign of life
``gpu.json``        the supervisor: its process tree's GPU memory, sampled on its node
==================  =========================================================

Reading is strict (a wrong-shaped file marks the run ``corrupt``; nothing is ever deleted
or signalled because of it) and every listing reconciles records with live processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from runner import envnames, identity
from runner.durable import read_json, write_json
from runner.listing_cache import ListingCache
from runner.model import (
    ID_RE,
    SCHEMA,
    RunSpec,
    RunState,
    ShapeError,
    Status,
    validate_run_id,
)
from runner.privacy import PRIVATE_DIR, make_private_dir, tighten_registry
from runner.tickets import Queue, Ticket, ticket_status

SPEC = "spec.json"
STATE = "state.json"
EVENTS = "events.jsonl"
OUTPUT = "output.log"
REPORT = "report.jsonl"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
REQUESTS = "requests"
CHECKPOINTS = "checkpoints"
SUPERVISOR_LOCK = "supervisor.lock"
INDEX = "index.cache"

# A run with a spec but no state yet is "starting" this long before it counts as lost.
STARTUP_GRACE_S = 30.0
# Cached listing entries must be older than this, so a folder changed twice within one
# file-system timestamp tick can never keep a stale entry.
CACHE_SETTLE_S = 2.0
ID_WIDTH = 6
_BACKEND_KEY = '"backend":"'  # in a cached listing entry (compact JSON)


class RunNotFound(LookupError):
    """No run matches the given id or name."""


def default_home() -> Path:
    """``$BACKPROP_HOME`` or ``~/.backprop``."""
    env = os.environ.get(envnames.HOME)
    return Path(env).expanduser() if env else Path.home() / ".backprop"


@dataclass(frozen=True)
class RunView:
    """A run as listing shows it: its records plus the reconciled status."""

    id: str
    status: Status
    reason: str
    spec: RunSpec | None = None
    state: RunState | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    raw: str | None = None  # the encoded JSON of a cached listing entry
    ticket: Ticket | None = None  # the queue's record of an attempt not yet supervised

    @cached_property
    def cached(self) -> dict[str, Any] | None:
        """The decoded cached entry (``None`` for a view read from the run folder)."""
        if self.raw is None:
            return None
        value = json.loads(self.raw)
        return value if isinstance(value, dict) else {"id": self.id}

    def forget_decoded(self) -> None:
        """Drop the decoded cached entry; it is decoded again when next needed.

        A long-lived holder of thousands of views (the TUI's producer) keeps only the compact
        text: the decoded dicts of 10,000 runs weigh about 40 MB, their text about 6 MB.
        """
        self.__dict__.pop("cached", None)

    def to_json_text(self) -> str:
        """``to_json()`` encoded compactly (cached entries are passed through untouched)."""
        if self.raw is not None:
            return self.raw
        return json.dumps(self.to_json(), separators=(",", ":"), default=str)

    @property
    def name(self) -> str:
        """Display name (the id when the spec is unreadable)."""
        if self.cached is not None:
            return str(self.cached.get("name", self.id))
        return self.spec.name if self.spec else self.id

    @property
    def backend(self) -> str:
        """The backend that runs the run (``local`` when the spec says none or is unreadable)."""
        if self.raw is not None:
            # Found in the text, not by decoding it: ``ls --json`` of 10,000 cached entries
            # decodes none. The key is written last and no nested object has one.
            at = self.raw.rfind(_BACKEND_KEY)
            if at < 0:
                return "local"
            start = at + len(_BACKEND_KEY)
            return self.raw[start : self.raw.find('"', start)] or "local"
        return self.spec.placement.backend if self.spec else "local"

    @property
    def attempt(self) -> int:
        """Latest attempt number (0 before the first supervisor reported)."""
        if self.cached is not None:
            return int(self.cached.get("attempt", 0))
        state = self.state.attempt if self.state else 0
        return max(state, self.ticket.attempt if self.ticket else 0)

    def to_json(self) -> dict[str, Any]:
        """The JSON object printed by ``ls --json`` and ``show --json``."""
        if self.cached is not None:
            return dict(self.cached)
        spec, st, sm = self.spec, self.state, self.summary
        return {
            "id": self.id,
            "name": self.name,
            "group": spec.group if spec else None,
            "status": self.status.value,
            "reason": self.reason,
            "attempt": self.attempt,
            "command": list(spec.command) if spec else None,
            "cwd": spec.cwd if spec else None,
            "step": sm.get("step"),
            "loss": sm.get("loss"),
            "best_loss": sm.get("best"),
            "primary_metric": spec.primary_metric if spec else "loss",
            "metrics": sm.get("metrics", {}),
            "steps_per_s": sm.get("steps_per_s"),
            "total_steps": sm.get("total_steps"),
            "progress": sm.get("progress"),
            "eta_s": sm.get("eta_s"),
            "checkpoints": sm.get("checkpoints", 0),
            "latest_checkpoint": sm.get("latest_checkpoint"),
            "health": sm.get("health", []),
            "created_at": spec.created_at if spec else None,
            "started_at": st.started_at if st else None,
            "ended_at": st.ended_at if st else None,
            "exit_code": st.exit_code if st else None,
            "signal": st.signal if st else None,
            "pid": st.trainer.pid if st and st.trainer else None,
            "timeout_s": st.timeout_s if st else (spec.timeout_s if spec else None),
            "gpus": list(st.gpus) if st else [],
            "host": st.host if st else None,
            "resources": spec.resources.to_json() if spec else None,
            "parent": spec.parent.to_json() if spec and spec.parent else None,
            "queue": _queue_json(self.ticket),
            "attempt_text": _attempt_text(self.attempt, self.ticket),
            "after": [d.to_json() for d in spec.after] if spec else [],
            "backend": spec.placement.backend if spec else "local",
        }


def _attempt_text(attempt: int, ticket: Ticket | None) -> str:
    from runner.retry import describe  # listing only: supervisors never load it

    return describe(attempt, ticket.retry if ticket else {})


def _queue_json(ticket: Ticket | None) -> dict[str, Any] | None:
    """What ``ls --json`` says about a run's place in the queue and its retries."""
    if ticket is None:
        return None
    return {
        "attempt": ticket.attempt,
        "ticket": ticket.kind,
        "priority": ticket.priority,
        "queued_at": ticket.queued_at,
        "retry": dict(ticket.retry) or None,
    }


def reconcile(
    state: RunState | None,
    *,
    created_at: float,
    now: float,
    current_boot: str,
    alive: Callable[[Any], bool],
    supervisor_locked: Callable[[], bool],
) -> tuple[Status, str]:
    """Decide a run's true status from its records and the live processes (pure).

    Args:
        state: the supervisor's last record, or ``None`` if it never wrote one.
        created_at: when the spec was written.
        now: the current time.
        current_boot: this boot's id.
        alive: whether a recorded process identity is alive now.
        supervisor_locked: whether some supervisor holds the run's lock right now.

    Returns:
        The status and a human reason.
    """
    if state is None:
        if supervisor_locked():
            return Status.STARTING, "supervisor starting"
        if now - created_at < STARTUP_GRACE_S:
            return Status.STARTING, "submitted"
        return Status.LOST, "supervisor never started"
    if not state.status.active:
        return state.status, state.reason
    if state.supervisor.boot_id != current_boot:
        return Status.LOST, "host rebooted"
    if alive(state.supervisor):
        return state.status, state.reason
    if state.trainer is not None and alive(state.trainer):
        return Status.LOST, (
            f"supervisor gone; trainer pid {state.trainer.pid} still running (stop kills it)"
        )
    return Status.LOST, "supervisor gone without recording an exit"


class Registry:
    """Access to the run folders under one root. Cheap to construct; holds no open files."""

    def __init__(self, root: Path | str | None = None, *, adopt: bool = True) -> None:
        self.root = Path(root) if root is not None else default_home()
        self.runs_dir = self.root / "runs"
        # Reconciling a lost run whose trainer lives starts a supervisor for it
        # (runner.supervisor.adopt).
        self.adopt = adopt

    # --- paths ----------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the root and ``runs/`` if missing, both 0700; tighten a looser root."""
        make_private_dir(self.root, parents=True)
        make_private_dir(self.runs_dir)
        tighten_registry(self.root)

    def run_dir(self, run_id: str) -> Path:
        """The folder of ``run_id``; a malformed id raises ``ValueError`` (never a path)."""
        return self.runs_dir / validate_run_id(run_id)

    @contextlib.contextmanager
    def lock(self, name: str = ".lock") -> Iterator[None]:
        """Hold an exclusive ``flock`` on a registry-wide lock file (short sections only)."""
        self.ensure()
        fd = os.open(self.root / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # --- creation -------------------------------------------------------------------------

    def allocate_id(self) -> str:
        """Create an empty run folder under a fresh id and return the id.

        Ids are zero-padded decimal counters: short, sortable, safe as file names, typed
        easily (``backprop stop 42``). ``mkdir`` is the claim, so the counter file is a hint.
        """
        return self.allocate_ids(1)[0]

    def allocate_ids(self, count: int) -> list[str]:
        """Allocate ``count`` fresh ids, consecutive where no one else allocates (a sweep's).

        ``mkdir`` of the run folder is the claim (:mod:`runner.idclaim`), so ids are unique
        across processes and hosts; the ``flock`` only keeps this machine's allocators from
        racing for the same numbers, and is not taken on a network file system (see
        :mod:`runner.netfs`).
        """
        from runner import idclaim, netfs  # submitting commands only

        self.ensure()
        shared = netfs.on_network_fs(self.root)
        with contextlib.nullcontext() if shared else self.lock():
            return idclaim.claim_ids(
                self.runs_dir,
                count,
                hint=self.root / "next_id",
                width=ID_WIDTH,
                highest=self._max_id,
                mode=PRIVATE_DIR,
            )

    def _max_id(self) -> int:
        best = 0
        for name in self.ids():
            best = max(best, int(name))
        return best

    def create(self, spec: RunSpec, *, durable: bool = True) -> Path:
        """Write ``spec.json`` into the (already allocated) run folder.

        ``durable=False``: the caller makes a whole batch durable at once afterwards.
        """
        folder = self.run_dir(spec.id)
        for path in (folder, folder / CHECKPOINTS, folder / REQUESTS):
            make_private_dir(path)
        write_json(folder / SPEC, spec.to_json(), durable=durable)  # 0600: it holds the env
        return folder

    # --- reading --------------------------------------------------------------------------

    def ids(self) -> list[str]:
        """All run ids present, oldest first (folders with other names are ignored)."""
        try:
            names = os.listdir(self.runs_dir)
        except FileNotFoundError:
            return []
        return sorted((n for n in names if ID_RE.fullmatch(n)), key=lambda n: (len(n), n))

    def read_spec(self, run_id: str) -> RunSpec:
        """Read and validate ``spec.json``.

        Raises:
            FileNotFoundError: no spec.
            ShapeError: a spec of the wrong shape or for another run.
        """
        spec = RunSpec.from_json(read_json(self.run_dir(run_id) / SPEC))
        if spec.id != run_id:
            raise ShapeError(f"spec.json names run {spec.id}, not {run_id}")
        return spec

    def read_state(self, run_id: str) -> RunState | None:
        """Read and validate ``state.json`` (``None`` before the supervisor wrote one)."""
        try:
            raw = read_json(self.run_dir(run_id) / STATE)
        except FileNotFoundError:
            return None
        state = RunState.from_json(raw)
        if state.run_id != run_id:
            raise ShapeError(f"state.json names run {state.run_id}, not {run_id}")
        return state

    def read_summary(self, run_id: str) -> dict[str, Any]:
        """Read ``summary.json`` loosely: it is a rebuildable cache, never a reason for corrupt."""
        try:
            raw = read_json(self.run_dir(run_id) / SUMMARY)
        except (FileNotFoundError, ShapeError):
            return {}
        return raw if isinstance(raw, dict) and raw.get("schema") == SCHEMA else {}

    def supervisor_locked(self, run_id: str) -> bool:
        """Whether a live supervisor holds the run's lock (it does for its whole life)."""
        path = self.run_dir(run_id) / SUPERVISOR_LOCK
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def load(self, run_id: str, *, now: float | None = None) -> RunView:
        """Read one run and reconcile it with the live processes. Never raises for bad files."""
        folder = self.run_dir(run_id)
        try:
            spec = self.read_spec(run_id)
        except FileNotFoundError:
            if not folder.is_dir():
                raise RunNotFound(run_id) from None
            try:
                age = time.time() - folder.stat().st_mtime
            except OSError:
                age = 0.0
            if age < STARTUP_GRACE_S:
                return RunView(id=run_id, status=Status.STARTING, reason="being created")
            return RunView(id=run_id, status=Status.CORRUPT, reason="spec.json is missing")
        except (ShapeError, OSError) as exc:
            return RunView(id=run_id, status=Status.CORRUPT, reason=f"spec.json: {exc}")
        try:
            state = self.read_state(run_id)
        except (ShapeError, OSError) as exc:
            return RunView(id=run_id, status=Status.CORRUPT, reason=f"state.json: {exc}", spec=spec)
        try:
            ticket = Queue(self.root).read_ticket(run_id)
        except (ShapeError, OSError) as exc:
            return RunView(
                id=run_id, status=Status.CORRUPT, reason=f"ticket.json: {exc}", spec=spec
            )
        t = time.time() if now is None else now
        remote = None
        if not spec.placement.is_local:  # its supervisor may be on another host
            from runner.remote_status import remote_status

            remote = remote_status(self, spec, state, ticket, now=t)
        if remote is not None:
            status, reason = remote
            if status is Status.LOST and state is not None and state.ended_at is None:
                state = replace(state, ended_at=self.last_sign_of_life(run_id, state))
        elif ticket is not None and (state is None or state.attempt < ticket.attempt):
            # The latest attempt has not reached a supervisor: the queue's record rules.
            status, reason = ticket_status(
                ticket,
                now=t,
                current_boot=identity.boot_id(),
                supervisor_locked=self.supervisor_locked(run_id),
                grace_s=STARTUP_GRACE_S,
            )
        else:
            status, reason = reconcile(
                state,
                created_at=spec.created_at,
                now=t,
                current_boot=identity.boot_id(),
                alive=identity.matches,
                supervisor_locked=lambda: self.supervisor_locked(run_id),
            )
            if status is Status.LOST and state is not None:
                status, reason, state = self._after_lost(run_id, state, status, reason)
        return RunView(
            id=run_id,
            status=status,
            reason=reason,
            spec=spec,
            state=state,
            summary=self.read_summary(run_id),
            ticket=ticket,
        )

    def _after_lost(
        self, run_id: str, state: RunState, status: Status, reason: str
    ) -> tuple[Status, str, RunState]:
        """Re-adopt a lost run whose trainer lives; else end its time at its last sign of life."""
        if self.adopt and state.status.active:
            from runner.supervisor.adopt import (
                adopt_orphan,
            )  # local: rarely needed, spawns a process

            try:
                action = adopt_orphan(self, run_id, state)
            except Exception:  # no process to spare, say: listing must go on; next time
                action = None
            if action == "adopt":
                return state.status, "re-adopting: a new supervisor takes over", state
        if state.ended_at is None:
            state = replace(state, ended_at=self.last_sign_of_life(run_id, state))
        return status, reason, state

    def last_sign_of_life(self, run_id: str, state: RunState) -> float:
        """When a run last showed it was alive: its newest record or output."""
        folder = self.run_dir(run_id)
        latest = state.updated_at
        for name in (OUTPUT, REPORT, METRICS, EVENTS):
            with contextlib.suppress(OSError):
                latest = max(latest, os.stat(folder / name).st_mtime)
        return latest

    def list_runs(self, *, use_cache: bool = True) -> list[RunView]:
        """Every run, newest first, reconciled.

        Finished runs whose files have not changed since the last listing come from a cache
        (``index.cache``, see :mod:`runner.listing_cache`), so listing 10,000 runs reads one
        file plus three ``stat`` per run. The cache is rebuilt from the folders whenever it is
        missing, stale or damaged.
        """
        cache = ListingCache(self.root / INDEX, CACHE_SETTLE_S) if use_cache else None
        views: list[RunView] = []
        now = time.time()
        runs_dir = str(self.runs_dir)
        for run_id in reversed(self.ids()):
            folder = f"{runs_dir}/{run_id}"
            hit = cache.get(folder, run_id) if cache else None
            if hit is not None:
                view = RunView(id=run_id, status=hit.status, reason=hit.reason, raw=hit.raw)
            else:
                try:
                    view = self.load(run_id, now=now)
                except RunNotFound:
                    continue
                if cache:
                    raw = json.dumps(view.to_json(), separators=(",", ":"), default=str)
                    cache.put(folder, run_id, view.status, view.reason, raw, now)
            views.append(view)
        if cache:
            cache.save()
        return views

    def resolve(self, ref: str) -> str:
        """Turn what a user typed (``42``, ``000042`` or a unique name) into a run id.

        Raises:
            RunNotFound: with a one-line message.
        """
        ref = ref.strip()
        if ref.isdigit() and len(ref) <= 12:
            run_id = ref.zfill(ID_WIDTH) if len(ref) < ID_WIDTH else ref
            if (self.runs_dir / run_id).is_dir():
                return run_id
            raise RunNotFound(f"no run with id {ref}")
        matches = []
        for run_id in self.ids():
            with contextlib.suppress(FileNotFoundError, ShapeError, OSError):
                if self.read_spec(run_id).name == ref:
                    matches.append(run_id)
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise RunNotFound(f"no run with id or name {ref!r}")
        raise RunNotFound(f"name {ref!r} matches runs {', '.join(matches)}; use an id")
