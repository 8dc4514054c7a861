"""``backprop init``: a commented ``backprop.toml`` here (or, instead, the boot unit)."""

from __future__ import annotations

from pathlib import Path

from runner.config import CONFIG_NAME, default_config_text
from runner.control.errors import LifecycleError
from tui.cli import queue
from tui.cli.context import Context
from tui.cli.conventions import EXIT_OK


def cmd_init(ctx: Context) -> int:
    """``backprop init``: write a commented backprop.toml here."""
    import governor.settings  # noqa: F401 - registers the [governor] section's defaults

    if ctx.args.boot_unit:
        return queue.write_boot_unit(ctx)
    path = Path(ctx.args.path or CONFIG_NAME)
    if path.exists() and not ctx.args.force:
        raise LifecycleError(f"{path} exists; use --force to overwrite it")
    path.write_text(default_config_text())
    ctx.emit({"file": str(path)}, f"wrote {path}")
    return EXIT_OK
