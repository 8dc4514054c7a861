# over 400 lines: one admission round (gate, policy, lease, ticket) under one lock
"""One admission round: the queue in order against the policy, decisions written first.

A round holds the queue's lock and the governor's state transaction (in that order) for a few
milliseconds and:

1. ends the leases of attempts that are over (their run folder says so), learning their peak
   VRAM, and lists admitted attempts whose supervisor has not appeared (to start again);
2. walks the queue first in line first: each queued attempt passes the start gate (run
   dependencies: :class:`Gate`), then :func:`governor.policy.admit` against the live leases
   and the token bucket. An admitted attempt gets its lease, then its ticket says
   ``admitted`` with the placement (durably), then its entry leaves the queue. Only after the
   round does the caller start its supervisor, so a crash anywhere loses nothing: the next
   round finds the admitted ticket without a supervisor and starts it then, and a supervisor
   never starts an attempt twice (see :mod:`runner.supervisor`);
3. stops at the first run that does not fit (strict FIFO) unless backfill lets later runs
   pass, and writes the reason into the waiting runs' tickets (the first :data:`SHOWN` only,
   when it changed: a 10,000-run queue costs a handful of writes, not 10,000);
4. says when to look again without an event: never for a full ``max_parallel`` (a run's end
   wakes the dispatcher), the bucket's refill time, or the poll interval while a resource
   (RAM, load, GPU memory) is what the queue waits for.

The round is the only place decisions are made: the dispatcher runs it on every wake-up and a
submitting command runs it once itself (the fast path), both under the same locks.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from governor import learn
from governor.bucket import BucketState
from governor.handoff import hand_over, hands_over, local_only, needs_submit
from governor.requests import Decision, Request, Snapshot
from governor.reservations import Lease
from governor.round_inputs import (
    build_request,
    foreign_alive,
    lease_alive,
    note_peaks,
    placement_env,
    prune_foreign,
    with_processes,
)
from governor.round_retry import after_end, may_retry
from governor.settings import GovernorSettings
from governor.store import GovernorState, store_for
from runner import identity
from runner.model import RunSpec, ShapeError, Status
from runner.registry import Registry, RunNotFound
from runner.tickets import ADMITTED, CANCELLED, QUEUED, Entry, Queue, Ticket

# Waiting runs whose reason is kept up to date (the rest say "queued" until they move up).
SHOWN = 16
# A reason keeps its wording while the same rule holds, refreshed at most this often.
REASON_REFRESH_S = 60.0
# An admitted attempt whose supervisor has not taken its lock by then is started again.
RESPAWN_AFTER_S = 3.0
# Rules that only change when hardware does (or when the user starts the run by hand).
SLOW_RULES = frozenset({"no-gpu", "gpu-missing"})
SLOW_POLL_S = 30.0
# A running run with retries left is looked at this often (a supervisor killed with SIGKILL
# announces nothing; its run is lost, and retried).
WATCH_POLL_S = 5.0
# Rules that only change when a run ends (which wakes the dispatcher).
EVENT_RULES = frozenset({"max_parallel", "group"})
# Dependents are looked at again this often without an event (a dependency that was lost or
# cancelled while queued pokes nobody).
GATE_POLL_S = 5.0


@dataclass(frozen=True)
class Gate:
    """The start gate's verdict on one queued attempt (run dependencies decide here).

    ``action``: ``"start"`` (go on to admission, with ``env`` added to the trainer's),
    ``"wait"`` (stay queued with ``reason``, without blocking the runs behind) or
    ``"cancel"`` (end without running, as ``end_status``, with ``reason``).
    """

    action: str
    reason: str = ""
    end_status: Status = Status.FAILED
    env: dict[str, str] = field(default_factory=dict)


StartGate = Callable[[Registry, RunSpec, Ticket], Gate]


def open_gate(registry: Registry, spec: RunSpec, ticket: Ticket) -> Gate:
    """The default gate: run dependencies (a run without any goes on to admission)."""
    if not spec.after:
        return Gate("start")
    from governor.dependency_gate import dependency_gate

    return dependency_gate(registry, spec, ticket)


@dataclass
class RoundResult:
    """What a round decided.

    Attributes:
        started: ``(run_id, attempt)`` admitted now; start their supervisors.
        respawn: admitted before, no supervisor yet; start again (idempotent).
        ended: ``(run_id, attempt)`` whose lease ended this round (the retry policy looks).
        lost: runs among ``ended`` that ended ``lost`` (their ``lost`` notifications are due).
        queued: entries still in line.
        wait_s: look again after this long without an event (``None``: only on an event).
        held: the leases as the round left them (the dispatcher's quiet check reads them).
    """

    started: list[tuple[str, int]] = field(default_factory=list)
    respawn: list[tuple[str, int]] = field(default_factory=list)
    ended: list[tuple[str, int]] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    queued: int = 0
    wait_s: float | None = None
    held: tuple[Lease, ...] = ()

    def hint(self, seconds: float) -> None:
        """Look again after at most ``seconds``."""
        self.wait_s = seconds if self.wait_s is None else min(self.wait_s, seconds)


class Round:
    """Runs admission rounds for one registry (keeps a small cache of resolved requests).

    Args:
        registry: the registry.
        settings: the ``[governor]`` limits.
        snapshot: probes host and GPUs (only called when something is queued).
        gate: the start gate (run dependencies).
        clock: wall-clock time.
    """

    def __init__(
        self,
        registry: Registry,
        settings: GovernorSettings,
        snapshot: Callable[[], Snapshot],
        *,
        gate: StartGate = open_gate,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.snapshot = snapshot
        self.gate = gate
        self.clock = clock
        self.queue = Queue(registry.root)
        self.store = store_for(registry.root, settings.shared_dir)
        self._requests: dict[tuple[str, int], Request] = {}

    def run(self) -> RoundResult:
        """One round (see the module docstring)."""
        res = RoundResult()
        learned_peaks: list[Lease] = []
        with self.queue.locked(), self.store.transaction() as st:
            now = self.clock()
            self._end_leases(st, res, learned_peaks, now)
            prune_foreign(st, now)  # other users' entries: read for liveness, never signalled
            st.waiters.clear()  # the per-supervisor queue of old; the queue folder rules now
            entries = self.queue.entries()
            if entries:
                self._admit(st, entries, res)
            res.held = tuple(st.leases.values())
        self._learn(learned_peaks)
        return res

    # --- leases ------------------------------------------------------------------------------

    def _end_leases(
        self, st: GovernorState, res: RoundResult, peaks: list[Lease], now: float
    ) -> None:
        for rid, lease in list(st.leases.items()):
            if not lease_alive(self.registry, lease):
                with contextlib.suppress(ShapeError, OSError, ValueError, RunNotFound):
                    if (
                        after_end(self.registry, self.queue, lease, now, self._fail_fast)
                        is Status.LOST
                    ):
                        res.lost.append(rid)
                del st.leases[rid]
                res.ended.append((rid, lease.attempt))
                if lease.peak_vram > 0:
                    peaks.append(lease)
                continue
            if may_retry(self.queue, rid, lease):
                res.hint(WATCH_POLL_S)  # its end must be seen, even one nobody announces
            if lease.gpus and (self.settings.learn_vram or self.settings.pause_temperature > 0):
                res.hint(self.settings.sample_interval_s)  # the dispatcher watches GPU runs
            if now - lease.admitted_at < RESPAWN_AFTER_S:
                if lease.started_at is None:
                    res.hint(RESPAWN_AFTER_S)
                continue
            with contextlib.suppress(ShapeError, OSError, ValueError):
                state = self.registry.read_state(rid)
                if lease.backend != "local":
                    # The engine has it unless its submission never returned: submit again.
                    if (state is None or state.attempt < lease.attempt) and needs_submit(
                        self.registry, rid, lease.attempt
                    ):
                        res.respawn.append((rid, lease.attempt))
                        res.hint(RESPAWN_AFTER_S)
                    continue
                if (state is None or state.attempt < lease.attempt) and not (
                    self.registry.supervisor_locked(rid)
                ):
                    res.respawn.append((rid, lease.attempt))
                    res.hint(RESPAWN_AFTER_S)
                elif lease.started_at is None or lease.trainer is None:
                    # Who runs it, for other users of a shared governor (their liveness check).
                    st.leases[rid] = with_processes(lease, state, now)

    def _fail_fast(self, failed: str, group: str) -> None:
        """Stop the queued siblings of a sweep whose run failed for good (``--fail-fast``)."""
        why = f"not started: run {failed} of {group!r} failed (--fail-fast)"
        for entry in self.queue.entries():
            with contextlib.suppress(ShapeError, OSError, ValueError):
                if self.registry.read_spec(entry.run_id).group != group:
                    continue
                ticket = self._ticket(entry)
                if ticket is not None:
                    self._cancel(entry, ticket, why, Status.STOPPED)

    def _learn(self, leases: list[Lease]) -> None:
        if not leases or not self.settings.learn_vram:
            return
        data = learn.load(self.store.learned_path)
        for lease in leases:
            data = learn.record(
                data, lease.command_key, lease.script_key, lease.peak_vram, self.clock()
            )
        learn.save(self.store.learned_path, data)

    # --- the queue -----------------------------------------------------------------------------

    def _admit(self, st: GovernorState, entries: list[Entry], res: RoundResult) -> None:
        from governor.policy import admit  # only when something is queued

        settings = self.settings
        snap = self.snapshot()
        now = snap.now
        note_peaks(st, snap.gpus)
        bucket = st.bucket or BucketState.full(settings.bucket_capacity, now)
        blocked: tuple[str, Decision] | None = None
        shown = 0
        for index, entry in enumerate(entries):
            ticket = self._ticket(entry)
            if ticket is None:
                continue
            res.queued += 1
            if ticket.not_before > now and not entry.forced:
                res.hint(ticket.not_before - now)  # a retry's backoff: others go ahead
                continue
            if blocked is not None and not entry.forced:
                if shown >= SHOWN:
                    res.queued += len(entries) - index - 1  # the rest are not even read
                    break
                shown += 1
                head, why = blocked
                self._wait(
                    ticket,
                    f"behind run {head} in the queue: {why.reason}",
                    f"fifo:{head}:{why.rule}",
                    now,
                )
                continue
            spec = self._spec(entry, ticket)
            if spec is None:
                res.queued -= 1
                continue
            verdict = self.gate(self.registry, spec, replace(ticket, forced=entry.forced))
            if verdict.action == "cancel":
                self._cancel(entry, ticket, verdict.reason, verdict.end_status)
                res.queued -= 1
                continue
            if verdict.action == "wait":
                shown += 1
                self._wait(ticket, verdict.reason, "gate", now)
                res.hint(GATE_POLL_S)
                continue
            if hands_over(spec):  # the engine schedules: no admission, no placement here
                hand_over(self.store, self.queue, st, entry, ticket, spec, now, verdict.env)
                res.started.append((entry.run_id, entry.attempt))
                res.queued -= 1
                continue
            req = self._request(spec, ticket.attempt)
            if settings.enabled:
                decision = admit(
                    snap,
                    req,
                    leases=local_only(
                        [
                            *st.leases.values(),
                            *(x for x in st.foreign_leases() if foreign_alive(x, now)),
                        ]
                    ),
                    ahead=[],
                    bucket=bucket,
                    settings=settings,
                    force=entry.forced,
                )
            else:  # no limits, no placement: every run starts at once
                decision = Decision(admitted=True, reason="admitted (governor disabled)", rule="ok")
            if decision.bucket is not None:
                bucket = decision.bucket
            if decision.admitted:
                self._grant(st, entry, ticket, spec, req, decision, now, verdict.env)
                res.started.append((entry.run_id, entry.attempt))
                if ticket.policy or ticket.fail_fast:
                    res.hint(WATCH_POLL_S)  # someone must be there to see it end
                res.queued -= 1
                continue
            shown += 1
            self._wait(ticket, decision.reason, decision.rule, now)
            if decision.rule == "bucket":
                res.hint(decision.retry_after_s)
            elif decision.rule in SLOW_RULES:
                res.hint(max(SLOW_POLL_S, settings.poll_interval_s))
            elif decision.rule not in EVENT_RULES:
                res.hint(settings.poll_interval_s)
            if settings.backfill and now - ticket.queued_at < settings.backfill_max_wait_s:
                continue  # later runs may pass this one for a while
            blocked = (entry.run_id, decision)
        st.bucket = bucket

    def _ticket(self, entry: Entry) -> Ticket | None:
        """The queued ticket behind an entry; a stale entry (decided already) is removed."""
        try:
            ticket = self.queue.read_ticket(entry.run_id)
        except (ShapeError, OSError, ValueError):
            ticket = None
        if ticket is None or ticket.kind != QUEUED or ticket.attempt != entry.attempt:
            self.queue.remove(entry)
            return None
        return ticket

    def _spec(self, entry: Entry, ticket: Ticket) -> RunSpec | None:
        try:
            return self.registry.read_spec(entry.run_id)
        except (FileNotFoundError, ShapeError, OSError, ValueError) as exc:
            self._cancel(entry, ticket, f"spec.json unreadable: {exc}"[:300], Status.FAILED)
            return None

    def _request(self, spec: RunSpec, attempt: int) -> Request:
        key = (spec.id, attempt)
        req = self._requests.get(key)
        if req is None:
            learned = None
            if spec.resources.vram_bytes is None and self.settings.learn_vram:
                learned = learn.load(self.store.learned_path)
            req = build_request(spec, self.settings, learned)
            if len(self._requests) > 4096:
                self._requests.clear()
            self._requests[key] = req
        return req

    def _grant(
        self,
        st: GovernorState,
        entry: Entry,
        ticket: Ticket,
        spec: RunSpec,
        req: Request,
        decision: Decision,
        now: float,
        gate_env: dict[str, str],
    ) -> None:
        """Lease, then ticket, then entry: the order every crash recovery relies on."""
        st.leases[entry.run_id] = Lease(
            run_id=entry.run_id,
            name=spec.name,
            group=spec.group,
            gpus=decision.gpus,
            vram=decision.vram,
            ram=req.ram,
            admitted_at=now,
            forced=entry.forced,
            command_key=learn.command_key(spec),
            script_key=learn.script_key(spec),
            attempt=entry.attempt,
        )
        self.store.write(st)
        env = placement_env(spec, req, decision, self.settings)
        shown = " ".join(f"{k}={v}" for k, v in sorted(env.items()))
        reason = decision.reason + (f"; env {shown}" if shown else "")
        env = {**gate_env, **env}  # the dependencies' values (not shown: paths, and long)
        self.queue.write_ticket(
            replace(
                ticket,
                kind=ADMITTED,
                reason=reason,
                rule="ok",
                admitted_at=now,
                boot_id=identity.boot_id(),
                env=env,
                gpus=decision.gpus,
                forced=entry.forced,
            )
        )
        self.queue.remove(entry)

    def _wait(self, ticket: Ticket, reason: str, rule: str, now: float) -> None:
        """Keep a waiting run's reason current (written only when its meaning changed)."""
        if ticket.rule == rule and (
            ticket.reason == reason or now - ticket.updated_at < REASON_REFRESH_S
        ):
            return
        first = ticket.first_reason or reason
        self.queue.write_ticket(replace(ticket, reason=reason, rule=rule, first_reason=first))

    def _cancel(self, entry: Entry, ticket: Ticket, reason: str, end: Status) -> None:
        self.queue.write_ticket(
            replace(ticket, kind=CANCELLED, reason=reason, end_status=end.value)
        )
        self.queue.remove(entry)
