"""``backprop run``: its options, the validated request, submission and ``--follow``.

Every option of ``run`` is added here (:func:`add_run_arguments`), together with those the
queue and pipelines contribute; :func:`run_request` is the one request path the TUI's
dialog shares.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from runner.config import ConfigError
from runner.control import submission
from runner.model import Status
from runner.notify_rules import run_rules
from runner.request import RequestError, RunRequest, parse_run_request
from runner.submit_request import submit_request
from runner.textsafe import safe_label
from tui.cli import pipeline, queue
from tui.cli.backend_options import add_backend_options
from tui.cli.context import Context
from tui.cli.conventions import EXIT_FAIL, EXIT_OK, UsageError
from tui.cli.logs import follow

_SEPARATOR = "\x00--"  # a bare "--" after `run`, kept from argparse (which would drop it)


def _protect_run_separator(argv: list[str]) -> list[str]:
    if "run" not in argv or "--" not in argv[argv.index("run") :]:
        return argv
    at = argv.index("--", argv.index("run"))
    return [*argv[:at], _SEPARATOR, *argv[at + 1 :]]


def _split_sweep_options(args: Sequence[str]) -> tuple[list[str], list[str], str | None]:
    """Take ``--sweep`` / ``--sweep-template`` written after the script out of its arguments.

    ``backprop run train.py --sweep lr=1e-3,3e-4`` reads naturally, so these two options are
    recognised anywhere; everything after a bare ``--`` goes to the script untouched.
    """
    rest: list[str] = []
    sweeps: list[str] = []
    template: str | None = None
    i = 0
    while i < len(args):
        tok = args[i]
        if tok in ("--", _SEPARATOR):
            rest.extend(args[i + 1 :])
            break
        name, eq, value = tok.partition("=")
        if name in ("--sweep", "--sweep-template"):
            if not eq:
                if i + 1 >= len(args):
                    raise UsageError(f"{name} needs a value")
                value = args[i + 1]
                i += 1
            if name == "--sweep":
                sweeps.append(value)
            else:
                template = value
        else:
            rest.append(tok)
        i += 1
    return rest, sweeps, template


def _check_visible_devices(env: dict[str, str], gpus: int | None, cfg: Any) -> None:
    """Refuse at once a ``CUDA_VISIBLE_DEVICES`` the governor could never place (MIG, junk)."""
    from governor import visible
    from governor.settings import GovernorSettings

    value = visible.restriction(env)
    if value is None or gpus == 0:
        return
    try:
        if not GovernorSettings.from_config(cfg).enabled:
            return  # no governor: the variable reaches the trainer untouched
    except ConfigError:
        pass  # the supervisor reports the section and uses the defaults (governor on)
    try:
        visible.check(value)
    except visible.VisibleDevicesError as exc:
        raise UsageError(str(exc)) from None


def run_request(args: argparse.Namespace) -> RunRequest:
    """The validated request of ``backprop run`` (the same function the TUI's dialog uses).

    Raises:
        UsageError: one line, for anything :func:`runner.request.parse_run_request` refuses.
    """
    target, raw_args = args.target, list(args.args)
    if target == _SEPARATOR:  # `backprop run -- SCRIPT ARGS`: nothing after -- is ours
        if not raw_args:
            raise UsageError("run needs a SCRIPT.py or COMMAND after --")
        target, raw_args = raw_args[0], [_SEPARATOR, *raw_args[1:]]
    script_args, swept, template = _split_sweep_options(raw_args)
    try:
        return parse_run_request(
            target,
            script_args,
            name=args.name,
            group=args.group,
            timeout=args.timeout,
            gpus=args.gpus,
            gpu_ids=args.gpu_ids,
            vram=args.vram,
            ram=args.ram,
            env=args.env or (),
            sweeps=[*(args.sweep or ()), *swept],
            sweep_template=template or args.sweep_template,
            checkpoint_globs=args.checkpoint_glob or (),
            backend=args.backend,
            partition=args.partition,
            account=args.account,
            slurm_args=args.slurm_arg or (),
            ray_address=args.ray_address,
        )
    except RequestError as exc:
        raise UsageError(str(exc)) from None


def cmd_run(ctx: Context) -> int:
    """``backprop run``."""
    a = ctx.args
    cfg = ctx.config
    req = run_request(a)
    specs, group = submit_request(
        ctx.registry,
        req,
        config=cfg,
        python=a.python,
        framework=a.framework,
        check_env=lambda env, gpus: _check_visible_devices(env, gpus, cfg),
        **queue.submit_options(ctx),
        notify=run_rules(a.notify, a.notify_cmd, a.notify_timeout),
        after=pipeline.dependencies(ctx),
        provenance_later=True,
    )
    queue.kick(ctx)  # what fits starts now; the provenance is written while it starts
    submission.record_provenance(ctx.registry, specs)
    if group is not None:
        ctx.emit(
            {"ids": [s.id for s in specs], "group": group},
            "\n".join(f"submitted run {s.id} ({s.name})" for s in specs),
        )
        return EXIT_OK
    (spec,) = specs
    if not a.follow:
        ctx.emit({"id": spec.id, "name": spec.name}, f"submitted run {spec.id} ({spec.name})")
        return EXIT_OK
    if ctx.json:
        print(json.dumps({"id": spec.id, "name": spec.name}), flush=True)
    else:
        print(f"run {spec.id} ({spec.name}) submitted; Ctrl-C stops it gracefully", flush=True)
    view = follow(
        ctx.registry, spec.id, stop_on_interrupt=True, out=sys.stderr if ctx.json else sys.stdout
    )
    if not ctx.json:
        print(f"run {spec.id} {view.status.value}: {safe_label(view.reason)}")
    return EXIT_OK if view.status is Status.COMPLETED else EXIT_FAIL


def add_run_arguments(run: argparse.ArgumentParser) -> None:
    """Every option of ``backprop run`` (the queue's and the pipeline's included)."""
    run.add_argument("--name", help="display name (default: the script's name)")
    run.add_argument("--timeout", help="time limit, e.g. 90s, 10m, 2h (ends 'timeboxed')")
    run.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="stream the output until the run ends; Ctrl-C stops it gracefully",
    )
    run.add_argument("--python", help="interpreter for SCRIPT.py")
    run.add_argument("--group", help="group name (sweeps get one automatically)")
    run.add_argument(
        "--sweep",
        action="append",
        metavar="KEY=V1,V2",
        help="one run per combination of values, passed as --KEY VALUE",
    )
    run.add_argument(
        "--sweep-template",
        metavar="TEMPLATE",
        help="how a sweep value is passed, e.g. '{key}={value}' or '--{key}={value}'",
    )
    run.add_argument("--gpus", help="GPUs needed (0: CPU-only)")
    run.add_argument("--gpu-ids", help="pin to these GPU indices, e.g. 0,2")
    run.add_argument("--vram", help="VRAM needed per GPU, e.g. 8G")
    run.add_argument("--ram", help="host RAM needed, e.g. 16G")
    run.add_argument(
        "--framework", default="auto", choices=["auto", "pytorch", "tensorflow", "jax", "none"]
    )
    run.add_argument("--env", action="append", metavar="KEY=VALUE", help="extra environment")
    add_backend_options(run)
    queue.add_run_options(run)
    run.add_argument(
        "--notify",
        metavar="EVENTS",
        help="run the hook on these events, e.g. failed,nan,done (see [notify] in backprop.toml)",
    )
    run.add_argument("--notify-cmd", metavar="CMD", help="hook: shell command, event JSON on stdin")
    run.add_argument("--notify-timeout", metavar="T", help="kill the hook after T (default 10s)")
    pipeline.add_dependency_options(run)
    run.add_argument(
        "--checkpoint-glob",
        action="append",
        metavar="GLOB",
        help="also count files matching GLOB (relative to the cwd) as checkpoints",
    )
    run.add_argument("target", metavar="SCRIPT.py|COMMAND")
    run.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")
