# over 400 lines: the dispatcher process, with the calls that find, start and wake it
"""The dispatcher: one process per registry and machine that starts queued runs when they fit.

Started on demand (``python -m governor.dispatcher --home H --detach``) by any command that
leaves runs in the queue and finds no live dispatcher (:func:`kick`, :func:`ensure`), detached
in its own session like a supervisor. One per registry: it holds ``queue/dispatcher.lock``
(``flock``) for its life and records who it is (pid, start time, boot id) in
``queue/dispatcher.json``; a second one finds the lock taken and exits at once.

It sleeps on the queue's wake-up FIFO (``queue/wake``): a submission, a stop, a run's end
(its supervisor pokes on exit) wake it at once; without an event it looks again only when the
last round said so (the bucket's refill, a resource poll while runs wait on RAM or GPU
memory, a slow safety poll for a supervisor killed without a word). Each wake-up runs one
:class:`governor.admit_round.Round` and starts the admitted attempts through the backend.

Everything it decides is written before it acts (see :mod:`governor.admit_round`), so
``kill -9`` at any moment loses no run and starts none twice: the next dispatcher picks up
exactly there. It never touches a running run. It exits by itself once the queue has been
empty for ``dispatcher_idle`` and no admitted run waits for its supervisor: releasing the lock
while holding the queue's lock, so a submission either sees it alive and is served, or sees it
gone and starts a new one.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from governor import quiet
from governor.admit_round import Round, RoundResult, StartGate, open_gate
from governor.handoff import backend_to_start
from governor.probes import HostInfo
from governor.requests import Snapshot
from governor.settings import GovernorSettings
from governor.store import store_for
from governor.watch import RunWatch
from runner import identity
from runner.backends import Backend, LocalBackend, backend_for
from runner.config import ConfigError, load_config
from runner.durable import read_json, write_json
from runner.model import ProcessIdentity, ShapeError
from runner.registry import Registry
from runner.tickets import Queue

LOCK_NAME = "dispatcher.lock"
INFO_NAME = "dispatcher.json"
# Without any event, a waiting queue is looked at again this often (a supervisor killed with
# SIGKILL pokes nobody; its run's place is freed at the next look).
SAFETY_POLL_S = 5.0
# ... unless the supervisors' ends are events too (pidfds, governor.quiet): then a full round
# when something moved, or this often (a waiting run's reason is refreshed then, too).
DEEP_POLL_S = 300.0
EXIT_ALREADY_RUNNING = 3


def settings_for(registry: Registry) -> GovernorSettings:
    """The ``[governor]`` settings of a registry: ``$BACKPROP_HOME/backprop.toml``.

    The queue is the machine's, so its limits come from the registry, not from the folder a
    command happens to run in. A section that does not validate is reported and the defaults
    apply, so a typo never strands the queue.
    """
    try:
        return GovernorSettings.from_config(load_config(registry.root, registry.root))
    except ConfigError as exc:
        print(f"backprop: {exc}; using the governor's defaults", file=sys.stderr)
        return GovernorSettings()


def admission_host() -> HostInfo:
    """The host as admission needs it (RAM, load, CPUs), read from ``/proc`` directly.

    Admission never uses the CPU-busy share, and a first ``psutil`` reading in a process is 0
    anyway; reading ``/proc/meminfo`` saves a submitting command importing ``psutil`` (about
    10 ms of the fast path). Falls back to :func:`governor.probes.probe_host`.
    """
    total = available = 0
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemTotal:"):
                    total = int(line.split()[1]) * 1024
                elif line.startswith(b"MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        total = 0
    if not total or not available:
        from governor.probes import probe_host

        return probe_host()
    return HostInfo(
        cpu_percent=0.0,
        load1=os.getloadavg()[0],
        cpu_count=os.cpu_count() or 1,
        ram_total=total,
        ram_available=available,
    )


def default_snapshot() -> Snapshot:
    """Host and GPUs now (the real probes)."""
    from governor.probes import probe_gpus, run_of_pid

    return Snapshot(
        host=admission_host(), gpus=probe_gpus(None, resolve_run=run_of_pid), now=time.time()
    )


# --- who is dispatching -------------------------------------------------------------------


@dataclass(frozen=True)
class DispatcherInfo:
    """The live dispatcher of a registry, as ``backprop status`` shows it."""

    pid: int
    since: float
    queued: int


def alive(registry: Registry) -> DispatcherInfo | None:
    """The live dispatcher, if any: its lock is held and its recorded identity matches."""
    queue = Queue(registry.root)
    path = queue.dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        held = True
    else:
        held = False
    finally:
        os.close(fd)
    if not held:
        return None
    try:
        raw = read_json(queue.dir / INFO_NAME)
        who = ProcessIdentity.from_json(raw.get("process"))
        since = float(raw.get("since", 0.0))
    except (FileNotFoundError, ShapeError, AttributeError, TypeError, ValueError):
        return DispatcherInfo(pid=0, since=0.0, queued=len(queue.entries()))
    pid = who.pid if identity.matches(who) else 0
    return DispatcherInfo(pid=pid, since=since, queued=len(queue.entries()))


def spawn(registry: Registry) -> None:
    """Start a detached dispatcher (returns once it has detached; a spare one just exits)."""
    from runner.control.spawn import popen_detached

    queue = Queue(registry.root)
    queue.ensure()
    proc = popen_detached(
        "governor.dispatcher",
        ["--home", str(registry.root)],
        log=queue.dir / "dispatcher.log",
        cwd=registry.root,
    )
    # It forks once and its parent exits at once; reap that parent without waiting for it
    # (its interpreter's start is not on any command's critical path).
    threading.Thread(target=proc.wait, name="backprop-reap", daemon=True).start()


def start_admitted(registry: Registry, res: RoundResult, backend: Backend | None = None) -> None:
    """Start the supervisors of what a round admitted (and of admitted runs left unstarted).

    Then fire the ``lost`` notifications of runs the round found lost: no supervisor of theirs
    is left to do it (:func:`runner.notify.notify_lost` keeps each to once).
    """
    for run_id, attempt in [*res.started, *res.respawn]:
        be = (
            backend_to_start(registry, run_id, backend)
            if backend
            else backend_for(registry, run_id)
        )
        with contextlib.suppress(OSError):
            be.submit(registry, run_id, attempt)
    if res.lost:
        from runner import notify  # only when a run was lost

        for run_id in res.lost:
            with contextlib.suppress(Exception):  # a hook's trouble never stops the queue
                notify.notify_lost(registry, run_id)


def kick(
    registry: Registry,
    *,
    snapshot: Callable[[], Snapshot] = default_snapshot,
    gate: StartGate = open_gate,
) -> RoundResult:
    """The fast path of every command that changed the queue: one round here, then a dispatcher.

    Runs that fit start now, from this process, without waiting for a dispatcher's round;
    what is left waiting gets a dispatcher if none lives.
    """
    rnd = Round(registry, settings_for(registry), snapshot, gate=gate)
    res = rnd.run()
    # Not waiting for each supervisor to detach: the trainer's start is on the critical path
    # of `backprop run`, this command's exit is not (the supervisor has its own session).
    start_admitted(registry, res, LocalBackend(wait=False))
    if (res.queued or res.wait_s is not None) and alive(registry) is None:
        spawn(registry)
    return res


def ensure(registry: Registry) -> bool:
    """Make sure waiting runs have a dispatcher and ended runs' places are given back.

    Cheap enough for every command and the TUI's start: a ``stat``/``listdir`` of the queue, a
    read of the governor's state and a lock probe. With runs queued and no dispatcher alive,
    one is started; with only leases left (runs that were running, perhaps before a reboot),
    one round runs here, which frees their places and re-queues those with retries left.
    Returns whether a dispatcher was started.
    """
    queue = Queue(registry.root)
    if not queue.dir.is_dir():
        return False
    if queue.entries():
        if alive(registry) is not None:
            return False
        spawn(registry)
        return True
    store = store_for(registry.root, settings_for(registry).shared_dir)
    if store.read().leases and alive(registry) is None:
        kick(registry)
    return False


# --- the process --------------------------------------------------------------------------


class Dispatcher:
    """The dispatcher's loop (see the module docstring).

    Args:
        registry: the registry served.
        idle_s: exit after the queue has been empty this long (``None``: the setting).
        snapshot: the probes.
        gate: the start gate (run dependencies).
    """

    def __init__(
        self,
        registry: Registry,
        *,
        idle_s: float | None = None,
        snapshot: Callable[[], Snapshot] = default_snapshot,
        gate: StartGate = open_gate,
    ) -> None:
        self.registry = registry
        self.queue = Queue(registry.root)
        self.idle_s = idle_s
        self.snapshot = snapshot
        self.gate = gate
        self._lock: int | None = None
        self._fifo: list[int] = []
        self._preloaded = False
        # Supervisors start without waiting for each to detach; SIGCHLD ignored reaps them.
        self.backend = LocalBackend(wait=False)
        self.watches: dict[str, RunWatch] = {}
        self.pause: Callable[[str, str], object] = _pause_run(registry)
        self.cont: Callable[[str], object] = _continue_run(registry)

    def acquire(self) -> bool:
        """Take the registry's dispatcher lock and record who holds it."""
        self.queue.ensure()
        fd = os.open(self.queue.dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock = fd
        me = identity.identity_of(os.getpid())
        info: dict[str, Any] = {"process": me.to_json() if me else None, "since": time.time()}
        write_json(self.queue.dir / INFO_NAME, info, durable=False)
        # Readers block on a FIFO with no writer; our own idle writer keeps select() quiet.
        rd = os.open(self.queue.wake_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        wr = os.open(self.queue.wake_path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self._fifo = [rd, wr]
        return True

    def wait(self, timeout: float, also: list[int] | None = None) -> bool:
        """Sleep until poked, one of ``also`` is readable or ``timeout`` passes.

        Swallows the pokes. Returns whether anything woke it.
        """
        rd = self._fifo[0]
        ready: list[int] = []
        with contextlib.suppress(InterruptedError):
            ready, _, _ = select.select([rd, *(also or ())], [], [], max(0.0, timeout))
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(rd, 4096):
                pass
        return bool(ready)

    def wait_for_change(self, rnd: Round, res: RoundResult) -> None:
        """Wait while only events can move the queue (see :mod:`governor.quiet`).

        Returns on a poke, a lease's supervisor ending (its pidfd), the inputs of a round
        moving, or after :data:`DEEP_POLL_S`.
        """
        mark = quiet.take(self.registry, rnd.store, res.held)
        if mark is None:
            self.wait(SAFETY_POLL_S)
            return
        pidfds = quiet.watch(res.held)
        poll_s = quiet.MARK_POLL_S if pidfds is not None else SAFETY_POLL_S
        until = time.monotonic() + DEEP_POLL_S
        try:
            while time.monotonic() < until:
                if self.wait(min(poll_s, until - time.monotonic()), pidfds):
                    return
                if quiet.take(self.registry, rnd.store, res.held) != mark:
                    return
        finally:
            quiet.close(pidfds or [])

    def serve(self) -> int:
        """Run until idle. Returns the exit code."""
        if not self.acquire():
            return EXIT_ALREADY_RUNNING
        empty_since: float | None = None
        rnd: Round | None = None  # one for the process: it caches the queue's listing
        while True:
            settings = settings_for(self.registry)
            idle_s = self.idle_s if self.idle_s is not None else settings.dispatcher_idle_s
            if rnd is None:
                rnd = Round(self.registry, settings, self.snapshot, gate=self.gate)
            rnd.settings = settings  # edits to backprop.toml apply at the next round
            res = rnd.run()
            if (res.started or res.respawn) and not self._preloaded:
                # Once, before the first start: every supervisor forked from here shares it.
                from runner.control.spawn import preload

                preload()
                self._preloaded = True
            start_admitted(self.registry, res, self.backend)
            if self.watch_gpus(settings):
                res.hint(settings.sample_interval_s)
            now = time.monotonic()
            if res.queued or res.wait_s is not None:
                empty_since = None
                if res.wait_s is None:
                    self.wait_for_change(rnd, res)
                else:
                    self.wait(res.wait_s)
                continue
            if empty_since is None:
                empty_since = now
            if now - empty_since >= idle_s and self.try_exit():
                return 0
            self.wait(max(0.05, idle_s - (now - empty_since)))

    def watch_gpus(self, settings: GovernorSettings) -> bool:
        """Sample the GPUs of running GPU runs: peak VRAM (learned at their end) and heat.

        With ``pause_temperature`` set, a run on a GPU at or above it is paused, and continued
        once every GPU of it is below ``max_temperature`` (:class:`governor.watch.RunWatch`).
        Returns whether any GPU run is watched (the dispatcher stays while one is).
        """
        store = store_for(self.registry.root, settings.shared_dir)
        leases = {rid: lease for rid, lease in store.read().leases.items() if lease.gpus}
        for rid in set(self.watches) - set(leases):
            del self.watches[rid]
        if not leases or not (settings.learn_vram or settings.pause_temperature > 0):
            return False
        gpus = self.snapshot().gpus
        for rid, lease in leases.items():
            watch = self.watches.get(rid)
            if watch is None:
                watch = self.watches[rid] = RunWatch(
                    rid,
                    lease.gpus,
                    lambda: gpus,
                    interval_s=settings.sample_interval_s,
                    pause_temperature=settings.pause_temperature,
                    resume_temperature=settings.max_temperature,
                    pause=self.pause,
                    cont=self.cont,
                )
            watch.probe = lambda: gpus
            watch.sample()
        with store.transaction() as st:
            for rid, watch in self.watches.items():
                held = st.leases.get(rid)
                if held is not None and watch.peak_vram > held.peak_vram:
                    st.leases[rid] = replace(held, peak_vram=watch.peak_vram)
        return True

    def try_exit(self) -> bool:
        """Give up the lock if the queue is still empty (under the queue's lock)."""
        with self.queue.locked():
            if self.queue.entries():
                return False
            with contextlib.suppress(OSError):
                os.unlink(self.queue.dir / INFO_NAME)
            if self._lock is not None:
                os.close(self._lock)  # released while nobody can enqueue
                self._lock = None
        for fd in self._fifo:
            os.close(fd)
        self._fifo = []
        return True


def _pause_run(registry: Registry) -> Callable[[str, str], object]:
    def pause(run_id: str, reason: str) -> object:
        from runner.control import run_actions

        return run_actions.pause(registry, run_id, reason=reason)

    return pause


def _continue_run(registry: Registry) -> Callable[[str], object]:
    def cont(run_id: str) -> object:
        from runner.control import run_actions

        return run_actions.cont(registry, run_id, reason="continued by the governor: GPU cooled")

    return cont


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m governor.dispatcher``."""
    parser = argparse.ArgumentParser(prog="backprop-dispatcher")
    parser.add_argument("--home", required=True)
    parser.add_argument("--detach", action="store_true")
    parser.add_argument("--idle", type=float, default=None, help="exit after idle seconds")
    args = parser.parse_args(argv)
    if args.detach and os.fork() > 0:
        os._exit(0)  # the launcher reaps this parent; the child is adopted by init
    if args.detach:
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.close(devnull)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    # Supervisors are forks of this process (single-threaded; runner.forkstart cleans up
    # what they inherit): no interpreter's start per run.
    from runner import forkstart

    forkstart.allow()
    return Dispatcher(Registry(args.home), idle_s=args.idle).serve()


if __name__ == "__main__":
    sys.exit(main())
