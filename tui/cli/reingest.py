"""``backprop reingest ID``: re-read a run's metrics from its ``output.log`` (idempotent)."""

from __future__ import annotations

import json
from typing import Any


def cmd_reingest(ctx: Any) -> int:
    """Continue the run's metric capture where it stopped; print what was added."""
    # Here, not at the top: the parser loads this module for every command, and the metric
    # capture it needs is a third of the CLI's imports (``backprop run`` never uses it).
    from runner.metrics.reingest import ReingestError, reingest

    run_id = ctx.resolve(ctx.args.id)
    try:
        result = reingest(ctx.registry, run_id)
    except ReingestError as exc:
        from runner.control.errors import LifecycleError

        raise LifecycleError(str(exc)) from None
    if ctx.json:
        print(json.dumps(result))
    else:
        print(
            f"run {run_id}: {result['points']} metric records added "
            f"(output.log bytes {result['from_offset']}..{result['to_offset']})"
            + (f"; {result['dropped']} could not be written" if result["dropped"] else "")
        )
    return 0
