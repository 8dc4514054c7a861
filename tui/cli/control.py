"""Acting on runs: stop, pause, continue, start now, rm, resume, fork and rerun."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from runner.control import removal, reruns, run_actions
from runner.control.errors import LifecycleError
from runner.registry import RunNotFound
from runner.request import RequestError, parse_name
from tui.cli import queue
from tui.cli.context import Context, time_limit
from tui.cli.conventions import EXIT_FAIL, EXIT_OK, UsageError


def _each(ctx: Context, action: Callable[[str], str]) -> int:
    results, code = [], EXIT_OK
    for ref in ctx.args.ids:
        try:
            run_id = ctx.resolve(ref)
            results.append({"id": run_id, "ok": True, "message": action(run_id)})
        except (LifecycleError, RunNotFound) as exc:
            results.append({"id": ref, "ok": False, "message": str(exc)})
            code = EXIT_FAIL
    if ctx.json:
        print(json.dumps(results))
    else:
        for r in results:
            print(
                r["message"] if r["ok"] else f"backprop: error: {r['message']}",
                file=sys.stdout if r["ok"] else sys.stderr,
            )
    return code


def cmd_stop(ctx: Context) -> int:
    """``backprop stop``."""
    queue.expand_stop(ctx)
    return _each(ctx, lambda i: run_actions.stop(ctx.registry, i, force=ctx.args.force))


def cmd_pause(ctx: Context) -> int:
    """``backprop pause``."""
    return _each(ctx, lambda i: run_actions.pause(ctx.registry, i))


def cmd_continue(ctx: Context) -> int:
    """``backprop continue``."""
    return _each(ctx, lambda i: run_actions.cont(ctx.registry, i))


def cmd_start(ctx: Context) -> int:
    """``backprop start``: start queued runs now."""
    code = _each(ctx, lambda i: run_actions.start_now(ctx.registry, i))
    queue.kick(ctx)
    return code


def cmd_rm(ctx: Context) -> int:
    """``backprop rm``."""
    return _each(ctx, lambda i: removal.remove(ctx.registry, i, force=ctx.args.force))


def cmd_resume(ctx: Context) -> int:
    """``backprop resume``."""
    if ctx.args.group:
        return queue.resume_group(ctx)
    if not ctx.args.id:
        raise UsageError("resume needs a run id or --group")
    run_id = ctx.resolve(ctx.args.id)
    attempt = reruns.resume(
        ctx.registry, run_id, timeout_s=time_limit(ctx.args.timeout), dependents=False
    )
    ckpt = reruns.latest_checkpoint(ctx.registry, run_id)
    requeued = []
    if not ctx.args.no_dependents:
        requeued = reruns.requeue_skipped_dependents(ctx.registry, run_id)
    queue.kick(ctx)
    ctx.emit(
        {"id": run_id, "attempt": attempt, "resume_from": ckpt, "requeued": requeued},
        f"resumed run {run_id} as attempt {attempt}"
        + (f" from {ckpt}" if ckpt else " (no checkpoint: from the start)")
        + (f"; queued its skipped dependents {', '.join(requeued)} again" if requeued else ""),
    )
    return EXIT_OK


def cmd_fork(ctx: Context) -> int:
    """``backprop fork``."""
    run_id = ctx.resolve(ctx.args.id)
    try:
        name = parse_name(ctx.args.name)  # the fork dialog's rule
    except RequestError as exc:
        raise UsageError(str(exc)) from None
    spec = reruns.fork(
        ctx.registry,
        run_id,
        ctx.args.args,
        name=name,
        timeout_s=time_limit(ctx.args.timeout),
        config=ctx.config,
        from_checkpoint=not ctx.args.no_checkpoint,
    )
    queue.kick(ctx)
    ckpt = spec.parent.checkpoint if spec.parent else None
    ctx.emit(
        {"id": spec.id, "name": spec.name, "parent": run_id, "checkpoint": ckpt},
        f"forked run {run_id} as run {spec.id} ({spec.name})" + (f" from {ckpt}" if ckpt else ""),
    )
    return EXIT_OK


def cmd_rerun(ctx: Context) -> int:
    """``backprop rerun``."""
    spec = reruns.rerun(ctx.registry, ctx.resolve(ctx.args.id), config=ctx.config)
    queue.kick(ctx)
    ctx.emit({"id": spec.id, "name": spec.name}, f"submitted run {spec.id} ({spec.name})")
    return EXIT_OK
