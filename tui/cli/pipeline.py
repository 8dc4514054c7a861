"""Pipelines on the command line: ``run --after``, ``backprop wait``, and listing filters.

``backprop wait`` blocks on file events, not a loop: it watches the waited runs' folders
with watchfiles (``state.json`` and the queue's ``ticket.json`` are replaced atomically on
every lifecycle change) and
re-reads them on a slow fallback poll, which catches a supervisor that died without writing
anything. It never imports textual.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from runner.config import ConfigError, parse_duration
from runner.model import Dependency, Status
from runner.pipeline import dependents_of, resolve_dependencies, with_dependents
from runner.registry import STATE, Registry, RunNotFound, RunView
from runner.textsafe import safe_label
from runner.tickets import TICKET

if TYPE_CHECKING:
    from tui.cli.context import Context

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 124
# How often ``wait`` re-reads the runs without a file event (a killed supervisor writes none).
FALLBACK_POLL_S = 5.0


# --- run --after ----------------------------------------------------------------------------


def add_dependency_options(run: argparse.ArgumentParser) -> None:
    """``--after`` and ``--after-any`` for ``backprop run`` (write them before the script)."""
    run.add_argument(
        "--after",
        action="append",
        metavar="ID[,ID...]",
        help="start only once these runs completed (ids or names); if one ends otherwise "
        "this run is skipped, never run. {after.checkpoint} and {after.run_dir} in ARGS "
        "become the first one's latest checkpoint and folder",
    )
    run.add_argument(
        "--after-any",
        action="append",
        metavar="ID[,ID...]",
        help="start only once these runs ended, however they ended",
    )
    run.add_argument(
        "--no-after",
        action="store_true",
        help="ignore [run] after / after_any from backprop.toml for this run",
    )


def dependencies(ctx: Context) -> tuple[Dependency, ...]:
    """The run's dependencies: the flags, else ``[run] after`` / ``after_any`` in the config.

    Raises:
        runner.pipeline.DependencyError: an unknown run or a cycle (a usage error).
    """
    a = ctx.args
    after, after_any = a.after or [], a.after_any or []
    if a.no_after and (after or after_any):
        raise ValueError("--no-after cannot go with --after or --after-any")
    if not after and not after_any and not a.no_after:
        after, after_any = list(ctx.config.run.after), list(ctx.config.run.after_any)
    if not after and not after_any:
        return ()
    return resolve_dependencies(ctx.registry, after, after_any)


def dependency_fields(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """``show`` lines for a run's dependencies and dependents (none when it has neither)."""
    out = []
    after = [d for d in doc.get("after") or [] if isinstance(d, dict)]
    if after:
        kinds = {"ok": "must complete", "any": "must end"}
        text = ", ".join(f"{d.get('id')} ({kinds.get(str(d.get('kind')), '?')})" for d in after)
        out.append(("after", text))
    if doc.get("dependents"):
        out.append(("needed by", ", ".join(str(i) for i in doc["dependents"])))
    return out


def show_doc(registry: Registry, view: RunView) -> dict[str, Any]:
    """``show``'s JSON for a run: its listing entry plus the runs that wait for it."""
    return {**view.to_json(), "dependents": dependents_of(registry, view.id)}


# --- wait -----------------------------------------------------------------------------------


def add_wait_arguments(w: argparse.ArgumentParser) -> None:
    """The arguments of ``backprop wait``."""
    w.add_argument("ids", nargs="*", metavar="ID", help="runs to wait for (ids or names)")
    w.add_argument("--group", action="append", help="every run of this group (repeatable)")
    w.add_argument(
        "--all-queued",
        action="store_true",
        help="every run not ended yet: queued, starting, running or paused",
    )
    w.add_argument("--timeout", help="give up after this long, e.g. 90s, 10m, 2h (exit 124)")


def _targets(ctx: Context) -> list[str]:
    """The runs ``wait`` waits for: those named, those of the groups, those not ended yet."""
    a = ctx.args
    reg: Registry = ctx.registry
    if not (a.ids or a.group or a.all_queued):
        raise ValueError("wait needs run ids, --group G or --all-queued")
    try:
        ids = {reg.resolve(ref) for ref in a.ids}
    except RunNotFound as exc:
        raise ValueError(str(exc.args[0])) from None  # a usage error: exit 2, as documented
    if a.group or a.all_queued:
        grouped = set()
        for view in reg.list_runs():
            if a.group and view.to_json().get("group") in a.group:
                grouped.add(view.id)
            if a.all_queued and view.status.active:
                ids.add(view.id)
        if a.group and not grouped:
            raise ValueError(f"no runs in group {', '.join(a.group)}")
        ids |= grouped
    return sorted(ids, key=lambda i: (len(i), i))


def ended_line(view: RunView | None, run_id: str) -> dict[str, Any]:
    """What ``wait`` prints for a run that ended (``view`` ``None``: it was removed)."""
    if view is None:
        return {"event": "ended", "id": run_id, "name": None, "status": "removed", "reason": ""}
    d = view.to_json()
    return {
        "event": "ended",
        "id": view.id,
        "name": view.name,
        "status": view.status.value,
        "reason": view.reason,
        "exit_code": d.get("exit_code"),
    }


class RunWaiter:
    """Blocks until runs end, on ``state.json`` events plus a slow fallback poll.

    Args:
        registry: where the runs are.
        ids: the runs to wait for.
        on_end: called once per run as it is seen to end.
        fallback_s: the slow poll (a supervisor killed outright writes no file).
        clock: monotonic time.
    """

    def __init__(
        self,
        registry: Registry,
        ids: Sequence[str],
        on_end: Callable[[dict[str, Any]], None],
        *,
        fallback_s: float = FALLBACK_POLL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.pending = dict.fromkeys(ids)
        self.on_end = on_end
        self.fallback_s = fallback_s
        self.clock = clock

    def check(self) -> None:
        """Report every pending run that has ended."""
        for run_id in list(self.pending):
            try:
                view: RunView | None = self.registry.load(run_id)
            except RunNotFound:
                view = None
            if view is None or view.status.finished or view.status is Status.CORRUPT:
                del self.pending[run_id]
                self.on_end(ended_line(view, run_id))

    def wait(self, timeout_s: float | None) -> list[str]:
        """Block until every run ended or ``timeout_s`` passed; return the runs left."""
        deadline = None if timeout_s is None else self.clock() + timeout_s
        self.check()
        while self.pending:
            remaining = None if deadline is None else deadline - self.clock()
            if remaining is not None and remaining <= 0:
                break
            step = self.fallback_s if remaining is None else min(self.fallback_s, remaining)
            self._watch(step, deadline)
        return list(self.pending)

    def _watch(self, step_s: float, deadline: float | None) -> None:
        """Watch the pending runs' folders, checking on each event and every ``step_s``.

        Returns when nothing is pending, when the set of folders changed, or when the
        deadline is nearer than ``step_s`` (the caller then watches again with less).
        """
        from watchfiles import watch

        ids = list(self.pending)
        paths = [p for p in (self.registry.run_dir(i) for i in ids) if p.is_dir()]
        if len(paths) != len(ids):
            self.check()  # a run folder went away: that run has ended
            return

        def is_state(change: Any, path: str) -> bool:
            # A run that ends without running (stopped while queued, skipped) ends in its
            # ticket, which the queue writes: no supervisor writes its state.json.
            return os.path.basename(path) in (STATE, TICKET)

        try:
            for _ in watch(
                *paths,
                watch_filter=is_state,
                debounce=50,
                step=20,
                rust_timeout=max(1, int(step_s * 1000)),
                yield_on_timeout=True,
                recursive=False,
            ):
                self.check()
                if list(self.pending) != ids:
                    return
                remaining = None if deadline is None else deadline - self.clock()
                if remaining is not None and remaining < step_s:
                    return
        except (OSError, RuntimeError):  # a folder vanished under the watcher
            time.sleep(min(step_s, 1.0))
            self.check()


def cmd_wait(ctx: Context) -> int:
    """``backprop wait``: block until runs end; one line per run as it ends."""
    a = ctx.args
    timeout = None
    if a.timeout is not None:
        try:
            timeout = parse_duration(a.timeout)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
    ids = _targets(ctx)
    statuses: list[str] = []

    def on_end(line: dict[str, Any]) -> None:
        statuses.append(str(line["status"]))
        if ctx.json:
            print(json.dumps(line, default=str), flush=True)
        else:
            reason = f"  ({safe_label(str(line['reason']), 80)})" if line.get("reason") else ""
            name = safe_label(str(line["name"] or "-"), 40)
            print(f"{line['id']}  {line['status']:<9}  {name}{reason}", flush=True)

    left = RunWaiter(ctx.registry, ids, on_end).wait(timeout)
    if left:
        if ctx.json:
            print(json.dumps({"event": "timeout", "pending": left}), flush=True)
        else:
            print(
                f"backprop: timed out after {a.timeout}; still waiting for {', '.join(left)}",
                file=sys.stderr,
            )
        return EXIT_TIMEOUT
    return EXIT_OK if all(s == Status.COMPLETED.value for s in statuses) else EXIT_FAIL


# --- ls filters -----------------------------------------------------------------------------


def add_ls_filters(ls: argparse.ArgumentParser) -> None:
    """``-n/--limit``, ``--name`` and ``--since`` for ``backprop ls``."""
    ls.add_argument("-n", "--limit", type=int, metavar="N", help="only the newest N runs")
    ls.add_argument(
        "--name",
        dest="name_pattern",
        metavar="PATTERN",
        help="names matching this shell pattern ('train*'); without * ? [ a substring",
    )
    ls.add_argument(
        "--since",
        metavar="WHEN",
        help="created within this long (2h, 3d) or since this date (2026-12-01, 2026-12-01T09:30)",
    )


def parse_since(text: str, now: float) -> float:
    """``2h`` (ago), ``2026-12-01`` or ``2026-12-01T09:30`` (local time) as a timestamp.

    Raises:
        ValueError: with a one-line message.
    """
    try:
        return now - parse_duration(text)
    except ConfigError:
        pass
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise ValueError(
            f"--since takes a duration (2h, 3d) or a date (2026-12-01): {text!r}"
        ) from None


def filter_runs(views: list[RunView], args: argparse.Namespace) -> list[RunView]:
    """Apply ``--name``, ``--since`` and then ``--limit`` to a newest-first listing."""
    if args.limit is not None and args.limit < 0:
        raise ValueError("--limit must be 0 or more")
    if args.name_pattern:
        pattern = args.name_pattern
        if not any(c in pattern for c in "*?["):
            pattern = f"*{pattern}*"
        views = [v for v in views if fnmatch.fnmatchcase(v.name, pattern)]
    if args.since:
        since = parse_since(args.since, time.time())
        views = [v for v in views if (v.to_json().get("created_at") or 0) >= since]
    if args.limit is not None:
        views = views[: args.limit]
    return views


def ls_json(views: Sequence[RunView], everything: Sequence[RunView]) -> str:
    """``ls --json`` of ``views``: each entry with its ``after`` and its ``dependents``.

    Dependents are found among ``everything`` listed before filtering.
    """
    return "[" + ",".join(with_dependents(views, everything)) + "]\n"
