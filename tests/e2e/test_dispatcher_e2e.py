"""The dispatcher with real processes: killed with SIGKILL while a queue drains, it loses no
run, starts none twice and never lets more runs start than ``max_parallel``."""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from governor import dispatcher
from runner.control.submission import SubmitOptions
from runner.model import Status
from runner.registry import Registry
from tests.conftest import Cli, wait_until

pytestmark = pytest.mark.slow


def configure(home: Path, **governor: object) -> None:
    lines = ["[governor]"] + [f"{k} = {json.dumps(v)}" for k, v in governor.items()]
    (home / "backprop.toml").write_text("\n".join(lines) + "\n")


def dispatchers(home: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "governor.dispatcher" in cmd and str(home) in cmd:
            found.append(p)
    return found


def max_overlap(spans: list[tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    best = cur = 0
    for _, d in points:
        cur += d
        best = max(best, cur)
    return best


def test_sigkill_of_the_dispatcher_while_200_runs_drain(cli: Cli, home: Path) -> None:
    configure(home, max_parallel=4, bucket_capacity=1000, bucket_rate=1000.0)
    marks = cli.cwd / "marks"
    marks.mkdir()
    # A trivial trainer: one marker file per start (run id + its own pid), then a short wait
    # so that four at once is a limit worth checking and the drain (>= 10 s) outlasts the 20
    # kills (about 4.5 s) even on a fast machine.
    body = f'touch "{marks}/$BACKPROP_RUN_ID.$$"; sleep 0.2'
    n = 200
    out = cli.json("run", "--sweep", "i=" + ",".join(map(str, range(n))), "sh", "-c", body)
    ids = out["ids"]
    assert len(ids) == n
    reg = Registry(home)
    rng = random.Random(20260)
    kills = 0
    deadline = time.monotonic() + 120
    while kills < 20 and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.05, 0.4))
        victims = []
        for p in dispatchers(home):
            # A dispatcher forks once to detach: the parent (same command line) exits at once.
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
                victims.append(p)
        psutil.wait_procs(victims, timeout=5)
        kills += bool(victims)
        dispatcher.ensure(reg)  # what the next command (or the TUI) does
    assert kills == 20

    left = set(ids)

    def all_done() -> bool:
        dispatcher.ensure(reg)
        left.difference_update([i for i in left if reg.load(i).status.finished])
        return not left

    wait_until(all_done, timeout=120, interval=1.0, message="the queue to drain")
    views = [reg.load(i) for i in ids]
    assert Counter(v.status for v in views) == {Status.COMPLETED: n}
    started = Counter(p.name.split(".")[0] for p in marks.iterdir())
    assert started == dict.fromkeys(ids, 1)  # every run started, and exactly once
    spans = []
    for v in views:
        assert v.state is not None and v.state.started_at and v.state.ended_at
        spans.append((v.state.started_at, v.state.ended_at))
    assert max_overlap(spans) <= 4


def test_the_boot_unit_drains_the_queue_and_exits(cli: Cli, home: Path) -> None:
    import shlex
    import subprocess

    from runner.control import submission

    configure(home, dispatcher_idle="1s")
    unit = cli.cwd / "unit.service"
    out = cli.json("init", "--boot-unit", "--path", str(unit))
    assert out["file"] == str(unit) and out["cron"].startswith("@reboot ")
    text = unit.read_text()
    exec_start = next(x for x in text.splitlines() if x.startswith("ExecStart="))
    env_line = next(x for x in text.splitlines() if x.startswith("Environment="))
    # Queued before "the boot": nothing is running for them, as after a reboot.
    reg = Registry(home)
    spec = submission.submit(reg, ["true"], name="after-boot", options=SubmitOptions(env={}))
    assert reg.load(spec.id).status is Status.QUEUED
    key, _, value = env_line.removeprefix("Environment=").partition("=")
    proc = subprocess.run(
        shlex.split(exec_start.removeprefix("ExecStart=")),
        env={**os.environ, key: value},
        timeout=60,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr  # it exits by itself once the queue is empty
    wait_until(lambda: reg.load(spec.id).status is Status.COMPLETED, timeout=30)


def test_stop_and_resume_a_sweep_as_a_whole(cli: Cli, home: Path) -> None:
    configure(home, max_parallel=1)
    gate = cli.cwd / "gate"
    body = f'while [ ! -e "{gate}" ]; do sleep 0.05; done'
    out = cli.json("run", "--name", "sw", "--sweep", "i=1,2,3", "sh", "-c", body)
    ids, group = out["ids"], out["group"]
    cli.wait_status(ids[0], "running")
    assert [q["id"] for q in cli.json("queue")["queue"]] == ids[1:]
    cli("queue", "move", ids[2], "--top")
    assert [q["id"] for q in cli.json("queue")["queue"]] == [ids[2], ids[1]]
    stopped = cli.json("stop", "--group", group)
    assert {r["id"] for r in stopped} == set(ids) and all(r["ok"] for r in stopped)
    for rid in ids:
        cli.wait_status(rid, "stopped")
    gate.touch()
    resumed = cli.json("resume", "--group", group)["resumed"]
    assert sorted(r["id"] for r in resumed) == sorted(ids)
    for rid in ids:
        cli.wait_status(rid, "completed", timeout=60)


def test_a_run_killed_without_a_word_frees_its_place_with_no_command_run(
    cli: Cli, home: Path
) -> None:
    """SIGKILL of a run's supervisor and trainer pokes nobody, and no command runs after it (a
    listing would notice, record it and poke): the waiting dispatcher's own quiet check
    (a pidfd per supervisor, governor.quiet) sees it end and a full round gives the place away."""
    import signal

    from governor.store import store_for

    configure(home, max_parallel=1)
    holder = cli.json("run", "--name", "holder", "sleep", "3600")["id"]
    waiting = cli.json("run", "--name", "next", "true")["id"]
    reg = Registry(home)
    assert reg.load(waiting).status is Status.QUEUED
    first = wait_until(
        lambda: (lambda d: d if d is not None and d.pid > 0 else None)(dispatcher.alive(reg)),
        message="a dispatcher",
    )
    # The holder's supervisor is on its lease once the dispatcher has looked at it: from then
    # on the dispatcher waits with a quiet mark (nothing else is due).
    lease = wait_until(
        lambda: (lambda x: x if x is not None and x.supervisor else None)(
            store_for(home).read().leases.get(holder)
        ),
        timeout=30,
        message="the holder's lease to name its supervisor",
    )
    state = reg.read_state(holder)
    assert state is not None and state.trainer is not None and lease.supervisor is not None
    os.kill(lease.supervisor.pid, signal.SIGKILL)
    os.killpg(state.trainer.pid, signal.SIGKILL)
    t0 = time.monotonic()
    wait_until(
        lambda: (lambda s: s is not None and s.status is Status.COMPLETED)(reg.read_state(waiting)),
        timeout=30,
        interval=0.2,
        message="the waiting run to start and complete",
    )
    took = time.monotonic() - t0
    assert took < dispatcher.SAFETY_POLL_S  # its pidfd told it: no poll was due yet
    now = dispatcher.alive(reg)
    assert now is None or now.pid == first.pid  # no new one was needed


def test_a_supervisors_end_is_an_event_through_its_pidfd() -> None:
    """governor.quiet.watch: one pidfd per lease's supervisor, readable once it has ended
    (SIGKILL included); none at all when one of them is already gone or not known."""
    import select
    import signal
    import subprocess

    from governor import quiet
    from governor.reservations import Lease
    from runner import identity
    from runner.model import ProcessIdentity

    procs = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    try:
        idents = [identity.identity_of(p.pid) for p in procs]
        assert all(idents)
        leases = [Lease(run_id=f"r{i}", supervisor=ident) for i, ident in enumerate(idents)]
        fds = quiet.watch(leases)
        assert fds is not None and len(fds) == 2
        assert select.select(fds, [], [], 0)[0] == []
        procs[1].send_signal(signal.SIGKILL)
        ready, _, _ = select.select(fds, [], [], 10)
        assert ready == [fds[1]]
        quiet.close(fds)
        assert fds == []
        procs[1].wait()
        gone = idents[1]
        assert gone is not None
        assert quiet.watch(leases) is None  # its pid is free (or someone else's) now
        live = idents[0]
        assert live is not None
        recycled = ProcessIdentity(live.pid, live.start_ticks + 1, live.boot_id)
        assert quiet.watch([Lease(run_id="x", supervisor=recycled)]) is None
        assert quiet.watch([Lease(run_id="y")]) is None
        assert quiet.watch([]) == []
        many = [Lease(run_id=str(i), supervisor=live) for i in range(quiet.MAX_WATCHED + 1)]
        assert quiet.watch(many) is None  # polled: select() would not take that many
    finally:
        for p in procs:
            p.kill()
            p.wait()
