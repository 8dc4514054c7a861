"""The argument parser of every ``backprop`` command, assembled from the command modules."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from tui.cli import (
    backends,
    bundle,
    compare,
    completion,
    control,
    conventions,
    export,
    init,
    logs,
    pipeline,
    queue,
    reingest,
    run,
    show,
    status,
    ui,
)
from tui.cli.context import Context


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    p = argparse.ArgumentParser(
        prog="backprop",
        description="Launch, supervise and monitor training runs from the terminal.",
        epilog=conventions.exit_epilog(None),
    )
    p.add_argument(
        "--home", default=None, help="registry folder (default $BACKPROP_HOME or ~/.backprop)"
    )
    p.add_argument("--version", action=conventions.VersionAction, help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def cmd(
        name: str, fn: Callable[[Context], int], help_: str, json_flag: bool = True
    ) -> argparse.ArgumentParser:
        sp = sub.add_parser(
            name, help=help_, description=help_, epilog=conventions.exit_epilog(name)
        )
        sp.set_defaults(func=fn)
        if json_flag:
            sp.add_argument("--json", action="store_true", help="machine-readable output")
        return sp

    run.add_run_arguments(
        cmd("run", run.cmd_run, "start a run: SCRIPT.py or any COMMAND, with its arguments")
    )

    ls = cmd("ls", show.cmd_ls, "list runs, newest first")
    ls.add_argument("--status", help="only these statuses, e.g. running,queued")
    ls.add_argument("--group", help="only this group")
    pipeline.add_ls_filters(ls)
    backends.add_backend_filter(ls)
    pipeline.add_wait_arguments(
        cmd("wait", pipeline.cmd_wait, "block until runs end; one line per run as it ends")
    )

    sh = cmd("show", show.cmd_show, "show one run in detail")
    sh.add_argument("id")
    sh.add_argument(
        "--show-env", action="store_true", help="print the run's environment values (secrets!)"
    )
    lg = cmd("logs", logs.cmd_logs, "print a run's output", json_flag=False)
    lg.add_argument("id")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing until it ends")
    lg.add_argument("-n", "--tail", type=int, metavar="N", help="only the last N lines")
    lg.add_argument("--raw", action="store_true", help="do not neutralise escape sequences")

    st = cmd("stop", control.cmd_stop, "stop runs gracefully (SIGINT, then SIGTERM, then SIGKILL)")
    st.add_argument("ids", nargs="*", metavar="ID")
    st.add_argument("--force", action="store_true", help="SIGKILL the whole run at once")
    st.add_argument("--group", help="every active run of this group (a sweep), queued ones too")
    cmd("pause", control.cmd_pause, "pause runs (SIGSTOP)").add_argument(
        "ids", nargs="+", metavar="ID"
    )
    cmd("continue", control.cmd_continue, "continue paused runs (SIGCONT)").add_argument(
        "ids", nargs="+", metavar="ID"
    )
    cmd(
        "start", control.cmd_start, "start queued runs now, ignoring the governor's limits"
    ).add_argument("ids", nargs="+", metavar="ID")
    rs = cmd(
        "resume", control.cmd_resume, "start a new attempt of a run from its latest checkpoint"
    )
    rs.add_argument("id", nargs="?")
    rs.add_argument("--timeout", help="time limit for the new attempt")
    rs.add_argument("--group", help="every run of this group (a sweep) that did not complete")
    rs.add_argument(
        "--no-dependents",
        action="store_true",
        help="leave the runs skipped because this one failed as they are (default: queue "
        "them again, to wait for this attempt)",
    )
    fk = cmd(
        "fork", control.cmd_fork, "new run from another run's checkpoint with changed arguments"
    )
    fk.add_argument("--name")
    fk.add_argument("--timeout")
    fk.add_argument("--no-checkpoint", action="store_true", help="start from scratch")
    fk.add_argument("id")
    fk.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")
    cmd("rerun", control.cmd_rerun, "run a run's command again as a new run").add_argument("id")
    rm = cmd("rm", control.cmd_rm, "delete finished runs (refuses a run with a live process)")
    rm.add_argument("ids", nargs="+", metavar="ID")
    rm.add_argument("--force", action="store_true", help="force-stop what still runs, then delete")
    cmd(
        "reingest", reingest.cmd_reingest, "re-read a run's metrics from its output.log"
    ).add_argument("id")
    ex = cmd("export", bundle.cmd_export, "write a run as a portable .tar.gz bundle")
    ex.add_argument("id")
    ex.add_argument("-o", "--output", required=True)
    ex.add_argument(
        "--with-env", action="store_true", help="include the run's environment (tokens, keys)"
    )
    cmd("import", bundle.cmd_import, "add a bundle made by export as a new run").add_argument(
        "file"
    )
    it = cmd("init", init.cmd_init, "write a commented backprop.toml in this folder")
    it.add_argument("--force", action="store_true")
    it.add_argument("--path", help=argparse.SUPPRESS)
    it.add_argument(
        "--boot-unit",
        action="store_true",
        help="instead: write a systemd --user unit that drains the queue after boot",
    )
    cmd("status", status.cmd_status, "host, GPUs, admission bucket, queue and dispatcher")
    queue.add_commands(cmd)
    cmd("inspect", show.cmd_inspect, "summarise a checkpoint safely (weights_only)").add_argument(
        "file"
    )
    tu = cmd("tui", ui.cmd_tui, "open the terminal UI", json_flag=False)
    tu.add_argument("--readonly", action="store_true", help="hide every action that changes runs")
    dm = cmd(
        "demo",
        ui.cmd_demo,
        "run the examples concurrently and open the TUI on them",
        json_flag=False,
    )
    dm.add_argument("--no-tui", action="store_true", help="launch the runs and list them")
    export.register(cmd)
    compare.register(cmd)
    cmd(
        "completion",
        completion.cmd_completion,
        "print the shell completion script, e.g. backprop completion bash > "
        "~/.local/share/bash-completion/completions/backprop",
        json_flag=False,
    ).add_argument("shell", choices=completion.SHELLS)
    return p
