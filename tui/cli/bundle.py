"""A run as one portable file: ``backprop export`` and ``backprop import``."""

from __future__ import annotations

import sys
from pathlib import Path

from runner.control import bundle
from tui.cli.context import Context
from tui.cli.conventions import EXIT_OK


def cmd_export(ctx: Context) -> int:
    """``backprop export``."""
    run_id = ctx.resolve(ctx.args.id)
    with_env = bool(ctx.args.with_env)
    out = bundle.export_run(ctx.registry, run_id, Path(ctx.args.output), with_env=with_env)
    if not with_env:
        print(
            f"backprop: run {run_id}'s environment was left out of {out} "
            "(it may hold tokens); --with-env includes it",
            file=sys.stderr,
        )
    ctx.emit(
        {"id": run_id, "file": str(out), "env_included": with_env},
        f"exported run {run_id} to {out}",
    )
    return EXIT_OK


def cmd_import(ctx: Context) -> int:
    """``backprop import``."""
    new_id = bundle.import_run(ctx.registry, Path(ctx.args.file))
    ctx.emit({"id": new_id}, f"imported {ctx.args.file} as run {new_id}")
    return EXIT_OK
