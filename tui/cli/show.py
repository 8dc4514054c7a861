"""Reading runs: ``backprop ls``, ``show`` and ``inspect`` (a checkpoint, safely)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from runner import provenance
from runner.control import readout
from runner.control.errors import LifecycleError
from runner.privacy import masked_env
from tui.cli import backends, pipeline, queue
from tui.cli.context import Context
from tui.cli.conventions import EXIT_OK
from tui.cli.render import print_details, print_env, print_table


def cmd_ls(ctx: Context) -> int:
    """``backprop ls``."""
    queue.ensure(ctx)
    everything = views = ctx.registry.list_runs()
    if ctx.args.status:
        wanted = set(ctx.args.status.split(","))
        views = [v for v in views if v.status.value in wanted]
    if ctx.args.group:
        views = [v for v in views if v.to_json().get("group") == ctx.args.group]
    views = backends.filter_backend(views, ctx.args.backend)
    views = pipeline.filter_runs(views, ctx.args)
    if ctx.json:
        sys.stdout.write(backends.ls_json(ctx.registry, views, everything))
    elif not views:
        print(f"no runs in {ctx.registry.root}")
    else:
        print_table(views, backends.wheres(ctx.registry, views))
    return EXIT_OK


def cmd_show(ctx: Context) -> int:
    """``backprop show`` (environment values masked unless ``--show-env``)."""
    queue.ensure(ctx)
    run_id = ctx.resolve(ctx.args.id)
    view = ctx.registry.load(run_id)
    events = readout.events(ctx.registry, run_id)
    doc = pipeline.show_doc(ctx.registry, view)
    doc.update(backends.where_doc(ctx.registry, view))
    prov = provenance.read(ctx.registry.run_dir(run_id))
    env = masked_env(view.spec.env if view.spec else {}, show=ctx.args.show_env)
    if ctx.json:
        doc = {**doc, "env": env, "provenance": prov, "events": events}
        print(json.dumps(doc, indent=2, default=str))
    else:
        print_details(view, events, doc, provenance.describe(prov))
        print_env(env, shown=ctx.args.show_env)
    return EXIT_OK


def cmd_inspect(ctx: Context) -> int:
    """``backprop inspect``: a safe summary of a checkpoint file."""
    from runner.checkpoints.inspection import CheckpointError, render_summary, summarize

    try:
        summary = summarize(Path(ctx.args.file))
    except CheckpointError as exc:
        raise LifecycleError(str(exc)) from None
    ctx.emit(summary, lambda: print(render_summary(summary)))
    return EXIT_OK
