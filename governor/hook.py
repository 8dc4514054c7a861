"""The governor's admission hook for the supervisor (see :mod:`runner.admission`).

Each run's supervisor owns one :class:`GovernorHook`. A request costs one probe (host and
GPUs) and one short transaction on the shared state file: prune dead entries, register the
run in the queue, decide with :func:`governor.policy.admit`, and on admission turn the queue
entry into a lease and take a token. Placement and framework settings come back in
``Admission.env``; ``Admission.reason`` names the GPUs and lists the environment set.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from governor import learn, visible
from governor.bucket import BucketState
from governor.frameworks import framework_env, frameworks_for
from governor.probes import GpuSnapshot, HostInfo, NvmlLike, probe_gpus, probe_host, run_of_pid
from governor.queue import Waiter, order_key, ordered, pending_predecessors
from governor.requests import Decision, Queued, Request, Snapshot
from governor.reservations import Lease, usage_by_run
from governor.settings import GovernorSettings
from governor.store import GovernorState, process_alive, store_for
from governor.watch import RunWatch
from runner import identity
from runner.admission import Admission, AdmissionHook, AdmitAll
from runner.config import Config, ConfigError
from runner.model import ProcessIdentity, RunSpec
from runner.registry import STARTUP_GRACE_S, Registry

# A queued run's reason keeps its wording while the same rule holds, refreshed at most this
# often, so drifting numbers ("3.1 GiB free") do not write a queue event per poll.
REASON_REFRESH_S = 60.0
# Runs deep in the queue cannot start before those ahead: they ask up to this much less often.
MAX_BACKOFF = 10.0


def build_request(
    spec: RunSpec, settings: GovernorSettings, learned: dict[str, object] | None
) -> Request:
    """The request of a run: its flags, else the learned peak VRAM of the same command."""
    res = spec.resources
    vram, source = res.vram_bytes, "requested"
    if vram is None:
        source = "default"
        if settings.learn_vram and learned is not None:
            peak = learn.lookup(learned, learn.command_key(spec), learn.script_key(spec))
            if peak is not None:
                vram, source = peak, "learned"
    return Request(
        run_id=spec.id,
        name=spec.name,
        group=spec.group,
        gpus=res.gpus,
        gpu_ids=res.gpu_ids,
        vram=vram,
        vram_source=source,
        ram=res.ram_bytes or 0,
        visible=visible.restriction(spec.env),
    )


class GovernorHook:
    """The real admission hook.

    Args:
        home: the registry root (the governor state lives in ``home/governor``, or in
            ``settings.shared_dir`` when one is set: see :mod:`governor.shared`).
        settings: the ``[governor]`` limits.
        nvml: where GPUs are read (default: the real NVML).
        host_probe: reads the host (tests pass a fixed one).
        clock: wall-clock time.
        alive: whether a recorded process identity is alive (dead queue entries and leases
            are dropped).
        me: the identity recorded as this hook's supervisor (default: this process).
        watch_threads: sample running GPU runs in a thread (tests call
            :meth:`RunWatch.sample` themselves).
        resolve_run: maps a GPU process to its run id.
    """

    def __init__(
        self,
        home: Path | str,
        settings: GovernorSettings,
        *,
        nvml: NvmlLike | None = None,
        host_probe: Callable[[], HostInfo] = probe_host,
        clock: Callable[[], float] = time.time,
        alive: Callable[[ProcessIdentity | None], bool] = process_alive,
        me: ProcessIdentity | None = None,
        watch_threads: bool = True,
        resolve_run: Callable[[int], str | None] | None = run_of_pid,
    ) -> None:
        self.home = Path(home)
        self.settings = settings
        self.registry = Registry(self.home)
        self.store = store_for(self.home, settings.shared_dir)
        self.nvml = nvml
        self.host_probe = host_probe
        self.clock = clock
        self.alive = alive
        self.me = me if me is not None else identity.identity_of(os.getpid())
        self.watch_threads = watch_threads
        self.resolve_run = resolve_run
        self.watches: dict[str, RunWatch] = {}
        self._requests: dict[tuple[str, int], Request] = {}
        self._shown: dict[str, tuple[str, str, float]] = {}

    # --- probes ------------------------------------------------------------------------------

    def probe_gpus(self) -> GpuSnapshot:
        """GPUs now, processes mapped to runs."""
        return probe_gpus(self.nvml, resolve_run=self.resolve_run)

    def snapshot(self) -> Snapshot:
        """Host and GPUs now."""
        return Snapshot(host=self.host_probe(), gpus=self.probe_gpus(), now=self.clock())

    def request_for(self, spec: RunSpec, attempt: int) -> Request:
        """This attempt's request (resolved once: the learned peak is read on first use)."""
        key = (spec.id, attempt)
        req = self._requests.get(key)
        if req is None:
            learned = None
            if spec.resources.vram_bytes is None and self.settings.learn_vram:
                learned = learn.load(self.store.learned_path)
            req = build_request(spec, self.settings, learned)
            self._requests[key] = req
        return req

    # --- the hook ----------------------------------------------------------------------------

    def request(self, spec: RunSpec, run_dir: Path, attempt: int, *, force: bool) -> Admission:
        """Decide whether the run may start now (see the module docstring)."""
        from governor.policy import admit  # only while queued: a running supervisor never needs it

        req = self.request_for(spec, attempt)
        snap = self.snapshot()
        now = snap.now
        with self.store.transaction() as st:
            st.prune(self.alive)
            _note_peaks(st, snap.gpus)
            mine = st.waiters.get(spec.id)
            if mine is None or mine.supervisor != self.me or mine.attempt != attempt:
                mine = Waiter(
                    request=req,
                    since=now,
                    order_t=spec.created_at if attempt == 1 else now,
                    attempt=attempt,
                    supervisor=self.me,
                )
            st.waiters[spec.id] = mine
            everyone = [*st.waiters.values(), *st.foreign_waiters()]
            line = [(w.key, Queued(w.request, w.since)) for w in ordered(everyone)]
            if not force and attempt == 1 and now - spec.created_at < STARTUP_GRACE_S:
                # Runs submitted just before this one whose supervisors have not asked yet.
                known = set(st.waiters) | set(st.leases)
                early = pending_predecessors(
                    self.registry, spec, known, request_of=lambda s: self.request_for(s, 1)
                )
                line += [(order_key(t, r.run_id), Queued(r, t)) for r, t in early]
                line.sort(key=lambda kq: kq[0])
            ahead = [q for key, q in line if key < mine.key]
            leases = [lease for rid, lease in st.leases.items() if rid != spec.id]
            leases += st.foreign_leases()  # other users' runs (shared folder): counted only
            decision = admit(
                snap,
                req,
                leases=leases,
                ahead=ahead,
                bucket=st.bucket or BucketState.full(self.settings.bucket_capacity, now),
                settings=self.settings,
                force=force,
            )
            if decision.admitted:
                del st.waiters[spec.id]
                st.bucket = decision.bucket
                st.leases[spec.id] = Lease(
                    run_id=spec.id,
                    name=spec.name,
                    group=spec.group,
                    gpus=decision.gpus,
                    vram=decision.vram,
                    ram=req.ram,
                    admitted_at=now,
                    forced=force,
                    supervisor=self.me,
                    command_key=learn.command_key(spec),
                    script_key=learn.script_key(spec),
                )
            else:
                reason = self._stable_reason(spec.id, decision, now)
                st.waiters[spec.id] = replace(mine, reason=reason, rule=decision.rule)
        if decision.admitted:
            self._shown.pop(spec.id, None)
            env = self._env(spec, req, decision)
            shown = " ".join(f"{k}={v}" for k, v in sorted(env.items()))
            reason = decision.reason + (f"; env {shown}" if shown else "")
            return Admission(admitted=True, reason=reason, env=env, gpus=decision.gpus)
        backoff = 1.0 + min(len(ahead), 4 * (MAX_BACKOFF - 1)) / 4
        retry = decision.retry_after_s * (1.0 if decision.rule == "bucket" else backoff)
        return Admission(admitted=False, reason=reason, retry_after_s=retry)

    def started(self, spec: RunSpec, run_dir: Path, trainer_pid: int) -> None:
        """Record the trainer in the lease; start watching its GPUs."""
        ident = identity.identity_of(trainer_pid)
        with self.store.transaction() as st:
            lease = st.leases.get(spec.id)
            if lease is None:
                return
            st.leases[spec.id] = replace(lease, started_at=self.clock(), trainer=ident)
        if lease.gpus and spec.id not in self.watches:
            watch = RunWatch(
                spec.id,
                lease.gpus,
                self.probe_gpus,
                interval_s=self.settings.sample_interval_s,
                pause_temperature=self.settings.pause_temperature,
                resume_temperature=self.settings.max_temperature,
                pause=self._pause_run,
                cont=self._continue_run,
            )
            self.watches[spec.id] = watch
            if self.watch_threads:
                watch.start()

    def release(self, spec: RunSpec, run_dir: Path) -> None:
        """Drop the run's queue entry or lease; learn its peak VRAM."""
        watch = self.watches.pop(spec.id, None)
        if watch is not None:
            watch.stop()
        self._shown.pop(spec.id, None)
        with self.store.transaction() as st:
            waiter = st.waiters.get(spec.id)
            if waiter is not None and waiter.supervisor in (None, self.me):
                del st.waiters[spec.id]
            lease = st.leases.get(spec.id)
            if lease is None or lease.supervisor not in (None, self.me):
                return
            del st.leases[spec.id]
            peak = max(lease.peak_vram, watch.peak_vram if watch else 0)
            if peak > 0 and self.settings.learn_vram:
                data = learn.load(self.store.learned_path)
                data = learn.record(data, lease.command_key, lease.script_key, peak, self.clock())
                learn.save(self.store.learned_path, data)

    # --- helpers -----------------------------------------------------------------------------

    def _stable_reason(self, run_id: str, decision: Decision, now: float) -> str:
        shown = self._shown.get(run_id)
        if shown is not None and shown[0] == decision.rule and now - shown[2] < REASON_REFRESH_S:
            return shown[1]
        self._shown[run_id] = (decision.rule, decision.reason, now)
        return decision.reason

    def _env(self, spec: RunSpec, req: Request, decision: Decision) -> dict[str, str]:
        env: dict[str, str] = {}
        if decision.lane == "gpu" and decision.gpus:
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in decision.gpus)
            env.update(
                framework_env(
                    frameworks_for(spec.resources.framework, spec.script),
                    vram=decision.vram,
                    vram_explicit=req.vram_source == "requested" and req.vram is not None,
                    gpu_totals=decision.gpu_totals,
                    user_env=spec.env,
                )
            )
        elif decision.lane == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env

    def _pause_run(self, run_id: str, reason: str) -> object:
        from runner import lifecycle

        return lifecycle.pause(self.registry, run_id, reason=reason)

    def _continue_run(self, run_id: str) -> object:
        from runner import lifecycle

        return lifecycle.cont(self.registry, run_id, reason="continued by the governor: GPU cooled")


def _note_peaks(state: GovernorState, gpus: GpuSnapshot) -> None:
    """Raise leases' peak VRAM to what this probe shows (learning while others wait)."""
    if not state.leases or not gpus.gpus:
        return
    used = usage_by_run(gpus.gpus)
    for rid, lease in list(state.leases.items()):
        peak = max((used.get((rid, i), 0) for i in lease.gpus), default=0)
        if peak > lease.peak_vram:
            state.leases[rid] = replace(lease, peak_vram=peak)


def build_hook(home: Path, config: Config) -> AdmissionHook:
    """Return the hook the supervisor of a run under ``home`` should ask.

    Dependencies come first, whether or not the governor is on: the governor's hook (or
    admit-all) is wrapped in a :class:`~governor.dependency_gate.DependencyGate`.

    A ``[governor]`` section that does not validate is reported on stderr (the supervisor's
    log) and the defaults apply, so a typo never strands a run.
    """
    from governor.dependency_gate import DependencyGate

    try:
        settings = GovernorSettings.from_config(config)
    except ConfigError as exc:
        print(f"backprop: {exc}; using the governor's defaults", file=sys.stderr)
        settings = GovernorSettings()
    inner: AdmissionHook = GovernorHook(home, settings) if settings.enabled else AdmitAll()
    return DependencyGate(inner, Registry(home))
