"""The queue on the command line: submit options, the fast path, and ``backprop queue``.

Every command that changes the queue ends with :func:`kick` (runs that fit start from this
very process, the rest get a dispatcher); every command that reads runs starts with
:func:`ensure` (waiting runs without a dispatcher get one, runs lost in a reboot are looked
at). Neither ever fails the command: the queue on disk stays the truth either way.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import TYPE_CHECKING, Any

from runner.config import parse_duration
from runner.control import reruns
from runner.control.errors import LifecycleError
from runner.model import ACTIVE, ShapeError, Status
from runner.retry import RetryPolicy
from runner.textsafe import safe_label
from runner.tickets import Queue, move_to_top
from tui.cli.conventions import UsageError

if TYPE_CHECKING:
    from tui.cli.context import Context


def _usage(message: str) -> Exception:
    return UsageError(message)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The queue's options of ``backprop run``."""
    parser.add_argument(
        "--priority",
        type=int,
        default=0,
        help="place in the queue: higher starts first (default 0, range -4999..4999)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=None,
        help="retry up to N times after an end named by --retry-on (default: [retry] retries)",
    )
    parser.add_argument(
        "--retry-on",
        default=None,
        metavar="CAUSES",
        help="comma-separated among failed, lost, oom, preempted (default lost,oom,preempted)",
    )
    parser.add_argument(
        "--fail-fast",
        action="store_true",
        help="a sweep: the first run that fails for good stops the siblings still queued",
    )


def submit_options(ctx: Context) -> dict[str, Any]:
    """Keyword arguments for :class:`runner.control.submission.SubmitOptions` from the run options.

    Raises:
        ConfigError: a bad ``--retries``/``--retry-on`` or ``[retry]`` (a usage error).
    """
    a = ctx.args
    base = RetryPolicy.from_config(ctx.config)
    retries = base.retries if a.retries is None else a.retries
    retry_on = base.retry_on if a.retry_on is None else a.retry_on
    policy = RetryPolicy.build(retries, retry_on, base.backoff_s, base.backoff_max_s)
    return {
        "priority": int(getattr(a, "priority", 0) or 0),
        "retry": policy,
        "fail_fast": bool(getattr(a, "fail_fast", False)),
    }


def kick(ctx: Context) -> None:
    """After a change to the queue: start what fits now, leave a dispatcher for the rest."""
    try:
        from governor import dispatcher  # only commands that change the queue load it

        dispatcher.kick(ctx.registry)
    except OSError as exc:  # the runs are queued on disk; the next command tries again
        print(f"backprop: warning: could not start the queue: {exc}", file=sys.stderr)


def ensure(ctx: Context) -> None:
    """Before reading runs: waiting runs get a dispatcher if none lives."""
    root = ctx.registry.root
    if not (root / "queue").is_dir():
        return  # nothing was ever queued here: the governor need not even load
    with contextlib.suppress(OSError):
        from governor import dispatcher

        dispatcher.ensure(ctx.registry)


# --- sweeps as a whole --------------------------------------------------------------------


def group_ids(ctx: Context, group: str, statuses: set[Status]) -> list[str]:
    """The runs of ``group`` whose status is one of ``statuses``, oldest first."""
    views = ctx.registry.list_runs()
    return [
        v.id for v in reversed(views) if v.status in statuses and v.to_json().get("group") == group
    ]


def expand_stop(ctx: Context) -> None:
    """``stop --group G``: every active run of the sweep (queued ones end without running)."""
    a = ctx.args
    if a.group:
        a.ids = list(a.ids) + group_ids(ctx, a.group, set(ACTIVE))
        if not a.ids:
            raise LifecycleError(f"no active runs in group {a.group!r}")
    elif not a.ids:
        raise _usage("stop needs run ids or --group")


def resume_group(ctx: Context) -> int:
    """``resume --group G``: a new attempt of every run of the sweep that did not complete."""
    a = ctx.args
    ids = group_ids(ctx, a.group, {Status.FAILED, Status.STOPPED, Status.TIMEBOXED, Status.LOST})
    if not ids:
        raise LifecycleError(f"nothing to resume in group {a.group!r}: every run completed")
    timeout = parse_duration(a.timeout) if a.timeout else None
    results = []
    for run_id in ids:
        try:
            attempt = reruns.resume(ctx.registry, run_id, timeout_s=timeout)
            results.append({"id": run_id, "attempt": attempt})
        except LifecycleError as exc:
            results.append({"id": run_id, "error": str(exc)})
    kick(ctx)
    ctx.emit(
        {"group": a.group, "resumed": results},
        "\n".join(
            f"resumed run {r['id']} as attempt {r['attempt']}"
            if "attempt" in r
            else f"backprop: error: {r['error']}"
            for r in results
        ),
    )
    return 0 if all("attempt" in r for r in results) else 1


# --- backprop queue -----------------------------------------------------------------------


def cmd_queue(ctx: Context) -> int:
    """``backprop queue``: the queue in order, or ``queue move ID --top``."""
    a = ctx.args
    queue = Queue(ctx.registry.root)
    if a.action == "move":
        if not a.id:
            raise _usage("queue move needs a run id")
        run_id = ctx.resolve(a.id)
        if not move_to_top(queue, run_id):
            raise LifecycleError(f"run {run_id} is not queued")
        kick(ctx)
        ctx.emit({"id": run_id, "moved": "top"}, f"moved run {run_id} to the top of the queue")
        return 0
    ensure(ctx)
    rows = []
    for pos, entry in enumerate(queue.entries(), start=1):
        try:
            ticket = queue.read_ticket(entry.run_id)
        except (ShapeError, OSError):
            ticket = None
        rows.append(
            {
                "position": pos,
                "id": entry.run_id,
                "attempt": entry.attempt,
                "priority": ticket.priority if ticket else 0,
                "forced": entry.forced,
                "reason": ticket.reason if ticket else "",
            }
        )
    from governor import dispatcher

    info = dispatcher.alive(ctx.registry)
    doc = {
        "queue": rows,
        "dispatcher": {"pid": info.pid, "since": info.since} if info else None,
    }

    def human() -> None:
        who = f"dispatcher pid {info.pid}" if info else "no dispatcher"
        print(f"{len(rows)} queued ({who})")
        for r in rows:
            print(
                f"{r['position']:>5}. {r['id']}  #{r['attempt']}  prio {r['priority']:<5} "
                f"{safe_label(str(r['reason'] or 'queued'), 100)}"
            )

    ctx.emit(doc, human)
    return 0


def add_commands(cmd: Any) -> None:
    """Register ``backprop queue`` with the CLI's command factory."""
    q = cmd("queue", cmd_queue, "the queue in order; `queue move ID --top` puts a run first")
    q.add_argument("action", nargs="?", choices=["ls", "move"], default="ls")
    q.add_argument("id", nargs="?")
    q.add_argument("--top", action="store_true", help="move to the front of the queue")


# --- draining right after boot ------------------------------------------------------------

UNIT_NAME = "backprop-queue.service"


def boot_unit_text(home: str, python: str, pkg_root: str) -> str:
    """A ``systemd --user`` unit that runs one dispatcher at login/boot until the queue drains."""
    return (
        "[Unit]\n"
        "Description=Backprop: start the runs queued in " + home + "\n"
        "After=default.target\n\n"
        "[Service]\n"
        "Type=simple\n"
        f"Environment=PYTHONPATH={pkg_root}\n"
        f"ExecStart={python} -m governor.dispatcher --home {home}\n"
        "Restart=no\n\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def write_boot_unit(ctx: Context) -> int:
    """``backprop init --boot-unit``: write the unit, print how to enable it (or cron's line)."""
    import os
    import shlex
    from pathlib import Path

    home = str(ctx.registry.root.resolve())
    pkg_root = str(Path(__file__).resolve().parent.parent)
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    path = Path(ctx.args.path) if ctx.args.path else config / "systemd" / "user" / UNIT_NAME
    if path.exists() and not ctx.args.force:
        raise LifecycleError(f"{path} exists; use --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(boot_unit_text(home, sys.executable, pkg_root))
    cron = (
        f"@reboot PYTHONPATH={shlex.quote(pkg_root)} {shlex.quote(sys.executable)} "
        f"-m governor.dispatcher --home {shlex.quote(home)}"
    )
    ctx.emit(
        {"file": str(path), "enable": f"systemctl --user enable {UNIT_NAME}", "cron": cron},
        f"wrote {path}\n"
        f"enable it:  systemctl --user enable {UNIT_NAME}  "
        "(and `loginctl enable-linger $USER` to start it at boot without a login)\n"
        f"or, without systemd, add to `crontab -e`:\n  {cron}",
    )
    return 0
