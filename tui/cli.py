"""The ``backprop`` command line. Every command has ``--json``; errors are one line.

Exit codes: 0 success, 1 failure (the run or the action failed), 2 usage error, 141 when
the reader of our output went away (``backprop ls | head -1``): the status a Unix tool killed
by SIGPIPE reports, with no message. This module never imports textual: only ``backprop tui``
(and ``demo``) load the app.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from runner import provenance
from runner.config import (
    CONFIG_NAME,
    Config,
    ConfigError,
    default_config_text,
    format_duration,
    load_config,
)
from runner.control import bundle, readout, removal, reruns, run_actions
from runner.control.errors import LifecycleError
from runner.model import Status
from runner.notify_rules import run_rules
from runner.privacy import masked_env, tighten_registry
from runner.registry import OUTPUT, Registry, RunNotFound, RunView
from runner.request import (
    RequestError,
    RunRequest,
    parse_name,
    parse_run_request,
    parse_time_limit,
)
from runner.submit_request import submit_request
from runner.textsafe import safe_label, sanitize_line
from tui import cli_conventions, cli_pipeline, queue_cli

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXIT_PIPE = 128 + signal.SIGPIPE  # what `git log | head -1` reports for git under pipefail


class UsageError(Exception):
    """Bad input from the user: exit code 2."""


class Context:
    """What every command needs: the registry, the configuration and the output mode."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.registry = Registry(args.home)
        tighten_registry(self.registry.root)  # a registry made before it was private
        self.json = bool(getattr(args, "json", False))
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        """The configuration (loaded on first use)."""
        if self._config is None:
            self._config = load_config(self.registry.root)
        return self._config

    def resolve(self, ref: str) -> str:
        """A run id from what the user typed."""
        return self.registry.resolve(ref)

    def emit(self, obj: Any, human: str | Callable[[], None]) -> None:
        """Print ``obj`` as JSON in ``--json`` mode, else the human form."""
        if self.json:
            print(json.dumps(obj, indent=2, default=str))
        elif callable(human):
            human()
        elif human:
            print(human)


# --- helpers --------------------------------------------------------------------------------


def _duration(text: str | None) -> float | None:
    """A time limit as :func:`runner.request.parse_time_limit` reads it, as a usage error."""
    try:
        return parse_time_limit(text)
    except RequestError as exc:
        raise UsageError(str(exc)) from None


def _fmt_num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _age(t: float | None) -> str:
    return "-" if t is None else format_duration(max(0.0, time.time() - t)) + " ago"


def _duration_of(view: RunView) -> str:
    d = view.to_json()
    start, end = d.get("started_at"), d.get("ended_at")
    if start is None:
        return "-"
    return format_duration((end or time.time()) - start)


def print_table(views: Sequence[RunView]) -> None:
    """The human ``ls`` table (a GROUP column appears once any run belongs to a group)."""
    docs = [v.to_json() for v in views]
    with_group = any(d.get("group") for d in docs)
    primaries = {str(d.get("primary_metric") or "loss") for d in docs}
    metric = primaries.pop().upper() if len(primaries) == 1 else "METRIC"
    head = ["ID", "NAME", "STATUS", "STEP", metric[:16], "ATT", "TIME", "REASON"]
    if with_group:
        head.insert(2, "GROUP")
    rows = [tuple(head)]
    for v, d in zip(views, docs, strict=True):
        health = ",".join(d.get("health") or [])
        reason = (d.get("reason") or "") + (f" [{health}]" if health else "")
        row = [
            v.id,
            safe_label(v.name, 28),
            v.status.value,
            _fmt_num(d.get("step")),
            _fmt_num(d.get("loss")),
            str(d.get("attempt") or "-"),
            _duration_of(v),
            safe_label(reason, 60),
        ]
        if with_group:
            row.insert(2, safe_label(str(d.get("group") or "-"), 20))
        rows.append(tuple(row))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])


def print_details(
    view: RunView,
    events: list[dict[str, Any]],
    doc: dict[str, Any] | None = None,
    extra: Sequence[tuple[str, str]] = (),
) -> None:
    """The human ``show`` page (``extra``: more label/value lines, such as provenance)."""
    d = view.to_json() if doc is None else doc
    fields = [
        ("id", d["id"]),
        ("name", safe_label(str(d["name"]))),
        ("group", d.get("group") or "-"),
        ("status", d["status"]),
        ("reason", safe_label(str(d.get("reason") or "-"))),
        ("attempt", d.get("attempt_text") or d["attempt"]),
        ("command", " ".join(safe_label(c) for c in d.get("command") or [])),
        ("cwd", d.get("cwd")),
        ("step", _fmt_num(d.get("step"))),
        ("loss", f"{_fmt_num(d.get('loss'))} (best {_fmt_num(d.get('best_loss'))})"),
        ("steps/s", _fmt_num(d.get("steps_per_s"))),
        ("progress", _fmt_num(d.get("progress"))),
        ("eta", format_duration(d.get("eta_s"))),
        ("checkpoints", f"{d.get('checkpoints', 0)} (latest {d.get('latest_checkpoint') or '-'})"),
        ("health", ", ".join(d.get("health") or []) or "ok"),
        ("created", _age(d.get("created_at"))),
        ("started", _age(d.get("started_at"))),
        ("ended", _age(d.get("ended_at"))),
        ("duration", _duration_of(view)),
        ("time limit", format_duration(d.get("timeout_s"))),
        ("exit code", _fmt_num(d.get("exit_code"))),
        ("signal", _fmt_num(d.get("signal"))),
        ("pid", _fmt_num(d.get("pid"))),
        ("gpus", ",".join(map(str, d.get("gpus") or [])) or "-"),
    ]
    if d.get("parent"):
        fields.append(("forked from", f"{d['parent']['run_id']} @ {d['parent']['checkpoint']}"))
    fields += cli_pipeline.dependency_fields(d)
    metrics = d.get("metrics") or {}
    if metrics:
        fields.append(("metrics", ", ".join(f"{k}={_fmt_num(v)}" for k, v in metrics.items())))
    fields += [(k, safe_label(v, 200)) for k, v in extra]
    for k, v in fields:
        print(f"{k:>12}  {v}")
    if events:
        print(f"{'events':>12}")
        for e in events[-10:]:
            stamp = time.strftime("%H:%M:%S", time.localtime(float(str(e.get("t", 0)))))
            detail = {k: v for k, v in e.items() if k not in ("t", "event", "attempt")}
            print(
                f"{'':>12}  {stamp} #{e.get('attempt')} {e.get('event')} "
                f"{safe_label(json.dumps(detail, default=str), 100)}"
            )


# --- commands -------------------------------------------------------------------------------


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
        **queue_cli.submit_options(ctx),
        notify=run_rules(a.notify, a.notify_cmd, a.notify_timeout),
        after=cli_pipeline.dependencies(ctx),
    )
    if group is not None:
        queue_cli.kick(ctx)
        ctx.emit(
            {"ids": [s.id for s in specs], "group": group},
            "\n".join(f"submitted run {s.id} ({s.name})" for s in specs),
        )
        return EXIT_OK
    (spec,) = specs
    queue_cli.kick(ctx)
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


def follow(
    registry: Registry,
    run_id: str,
    *,
    stop_on_interrupt: bool,
    out: Any,
    raw: bool = False,
    from_offset: int = 0,
) -> RunView:
    """Stream a run's output until it ends. Ctrl-C: graceful stop, twice: force stop."""
    path = registry.run_dir(run_id) / OUTPUT
    offset = from_offset
    interrupts = 0
    pending = b""

    def on_int(signum: int, frame: Any) -> None:
        nonlocal interrupts
        interrupts += 1
        if not stop_on_interrupt:
            raise KeyboardInterrupt
        with contextlib.suppress(LifecycleError, RunNotFound):
            run_actions.stop(registry, run_id, force=interrupts > 1)
        msg = "force-stopping" if interrupts > 1 else "stopping gracefully (Ctrl-C again to force)"
        print(f"\nbackprop: {msg} run {run_id}", file=sys.stderr, flush=True)

    old = signal.signal(signal.SIGINT, on_int)
    try:
        while True:
            view = registry.load(run_id)
            offset, pending = _pump(path, offset, pending, out, raw)
            if view.status.finished or view.status is Status.CORRUPT:
                offset, pending = _pump(path, offset, pending, out, raw)
                if pending:
                    out.write(_render(pending, raw) + "\n")
                out.flush()
                return view
            time.sleep(0.1)
    finally:
        signal.signal(signal.SIGINT, old)


def _pump(path: Path, offset: int, pending: bytes, out: Any, raw: bool) -> tuple[int, bytes]:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return offset, pending
    if size < offset:  # compacted by the output cap: continue from its new end
        offset = size
    if size == offset:
        return offset, pending
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(min(size - offset, 8 * 1024 * 1024))
    offset += len(data)
    data = pending + data
    cut = data.rfind(b"\n")
    if cut < 0:
        return offset, data[-65536:]
    for line in data[:cut].split(b"\n"):
        out.write(_render(line, raw) + "\n")
    out.flush()
    return offset, data[cut + 1 :]


def _render(line: bytes, raw: bool) -> str:
    text = line.decode("utf-8", "replace")
    return text if raw else sanitize_line(text, keep_colour=sys.stdout.isatty())


def cmd_ls(ctx: Context) -> int:
    """``backprop ls``."""
    queue_cli.ensure(ctx)
    everything = views = ctx.registry.list_runs()
    if ctx.args.status:
        wanted = set(ctx.args.status.split(","))
        views = [v for v in views if v.status.value in wanted]
    if ctx.args.group:
        views = [v for v in views if v.to_json().get("group") == ctx.args.group]
    views = cli_pipeline.filter_runs(views, ctx.args)
    if ctx.json:
        sys.stdout.write(cli_pipeline.ls_json(views, everything))
    elif not views:
        print(f"no runs in {ctx.registry.root}")
    else:
        print_table(views)
    return EXIT_OK


def cmd_show(ctx: Context) -> int:
    """``backprop show`` (environment values masked unless ``--show-env``)."""
    queue_cli.ensure(ctx)
    run_id = ctx.resolve(ctx.args.id)
    view = ctx.registry.load(run_id)
    events = readout.events(ctx.registry, run_id)
    doc = cli_pipeline.show_doc(ctx.registry, view)
    prov = provenance.read(ctx.registry.run_dir(run_id))
    env = masked_env(view.spec.env if view.spec else {}, show=ctx.args.show_env)
    if ctx.json:
        doc = {**doc, "env": env, "provenance": prov, "events": events}
        print(json.dumps(doc, indent=2, default=str))
    else:
        print_details(view, events, doc, provenance.describe(prov))
        _print_env(env, shown=ctx.args.show_env)
    return EXIT_OK


def _print_env(env: dict[str, str], *, shown: bool) -> None:
    if not shown:
        print(f"{'env':>12}  {len(env)} variables, values hidden (--show-env shows them)")
        return
    print(f"{'env':>12}")
    for k, v in env.items():
        print(f"{'':>12}  {safe_label(k, 80)}={safe_label(v, 200)}")


def cmd_logs(ctx: Context) -> int:
    """``backprop logs``."""
    run_id = ctx.resolve(ctx.args.id)
    path = ctx.registry.run_dir(run_id) / OUTPUT
    start = 0
    if ctx.args.tail is not None:
        start = _tail_offset(path, ctx.args.tail)
    if ctx.args.follow:
        try:
            follow(
                ctx.registry,
                run_id,
                stop_on_interrupt=False,
                out=sys.stdout,
                raw=ctx.args.raw,
                from_offset=start,
            )
        except KeyboardInterrupt:
            pass
        return EXIT_OK
    _, pending = _pump(path, start, b"", sys.stdout, ctx.args.raw)
    if pending:
        print(_render(pending, ctx.args.raw))
    return EXIT_OK


def _tail_offset(path: Path, lines: int) -> int:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    with open(path, "rb") as f:
        pos, found = size, 0
        while pos > 0 and found <= lines:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            block = f.read(step)
            found += block.count(b"\n")
        if found <= lines:
            return 0
        f.seek(pos)
        block = f.read(size - pos)
        idx = len(block)
        for _ in range(lines + 1):
            idx = block.rfind(b"\n", 0, idx)
        return pos + idx + 1


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
    queue_cli.expand_stop(ctx)
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
    queue_cli.kick(ctx)
    return code


def cmd_rm(ctx: Context) -> int:
    """``backprop rm``."""
    return _each(ctx, lambda i: removal.remove(ctx.registry, i, force=ctx.args.force))


def cmd_resume(ctx: Context) -> int:
    """``backprop resume``."""
    if ctx.args.group:
        return queue_cli.resume_group(ctx)
    if not ctx.args.id:
        raise UsageError("resume needs a run id or --group")
    run_id = ctx.resolve(ctx.args.id)
    attempt = reruns.resume(
        ctx.registry, run_id, timeout_s=_duration(ctx.args.timeout), dependents=False
    )
    ckpt = reruns.latest_checkpoint(ctx.registry, run_id)
    requeued = []
    if not ctx.args.no_dependents:
        requeued = reruns.requeue_skipped_dependents(ctx.registry, run_id)
    queue_cli.kick(ctx)
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
        timeout_s=_duration(ctx.args.timeout),
        config=ctx.config,
        from_checkpoint=not ctx.args.no_checkpoint,
    )
    queue_cli.kick(ctx)
    ckpt = spec.parent.checkpoint if spec.parent else None
    ctx.emit(
        {"id": spec.id, "name": spec.name, "parent": run_id, "checkpoint": ckpt},
        f"forked run {run_id} as run {spec.id} ({spec.name})" + (f" from {ckpt}" if ckpt else ""),
    )
    return EXIT_OK


def cmd_rerun(ctx: Context) -> int:
    """``backprop rerun``."""
    spec = reruns.rerun(ctx.registry, ctx.resolve(ctx.args.id), config=ctx.config)
    queue_cli.kick(ctx)
    ctx.emit({"id": spec.id, "name": spec.name}, f"submitted run {spec.id} ({spec.name})")
    return EXIT_OK


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


def cmd_init(ctx: Context) -> int:
    """``backprop init``: write a commented backprop.toml here."""
    import governor.settings  # noqa: F401 - registers the [governor] section's defaults

    if ctx.args.boot_unit:
        return queue_cli.write_boot_unit(ctx)
    path = Path(ctx.args.path or CONFIG_NAME)
    if path.exists() and not ctx.args.force:
        raise LifecycleError(f"{path} exists; use --force to overwrite it")
    path.write_text(default_config_text())
    ctx.emit({"file": str(path)}, f"wrote {path}")
    return EXIT_OK


def cmd_status(ctx: Context) -> int:
    """``backprop status``: the machine, the GPUs, the bucket and the queue."""
    from governor.status import render_status, status_report

    queue_cli.ensure(ctx)
    report = status_report(ctx.registry, ctx.config)
    ctx.emit(report, lambda: print(render_status(report)))
    return EXIT_OK


def cmd_inspect(ctx: Context) -> int:
    """``backprop inspect``: a safe summary of a checkpoint file."""
    from runner.inspect_checkpoint import CheckpointError, render_summary, summarize

    try:
        summary = summarize(Path(ctx.args.file))
    except CheckpointError as exc:
        raise LifecycleError(str(exc)) from None
    ctx.emit(summary, lambda: print(render_summary(summary)))
    return EXIT_OK


def cmd_tui(ctx: Context) -> int:
    """``backprop tui`` (and ``backprop`` alone)."""
    from tui.app import run_app

    queue_cli.ensure(ctx)
    return run_app(ctx.registry, readonly=getattr(ctx.args, "readonly", False))


def cmd_demo(ctx: Context) -> int:
    """``backprop demo``: real concurrent runs in a demo registry, shown in the TUI."""
    from tui.demo import run_demo

    return run_demo(ctx.args)


# --- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    p = argparse.ArgumentParser(
        prog="backprop",
        description="Launch, supervise and monitor training runs from the terminal.",
        epilog=cli_conventions.exit_epilog(None),
    )
    p.add_argument(
        "--home", default=None, help="registry folder (default $BACKPROP_HOME or ~/.backprop)"
    )
    p.add_argument(
        "--version", action=cli_conventions.VersionAction, help="print the version and exit"
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def cmd(
        name: str, fn: Callable[[Context], int], help_: str, json_flag: bool = True
    ) -> argparse.ArgumentParser:
        sp = sub.add_parser(
            name, help=help_, description=help_, epilog=cli_conventions.exit_epilog(name)
        )
        sp.set_defaults(func=fn)
        if json_flag:
            sp.add_argument("--json", action="store_true", help="machine-readable output")
        return sp

    r = cmd("run", cmd_run, "start a run: SCRIPT.py or any COMMAND, with its arguments")
    r.add_argument("--name", help="display name (default: the script's name)")
    r.add_argument("--timeout", help="time limit, e.g. 90s, 10m, 2h (ends 'timeboxed')")
    r.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="stream the output until the run ends; Ctrl-C stops it gracefully",
    )
    r.add_argument("--python", help="interpreter for SCRIPT.py")
    r.add_argument("--group", help="group name (sweeps get one automatically)")
    r.add_argument(
        "--sweep",
        action="append",
        metavar="KEY=V1,V2",
        help="one run per combination of values, passed as --KEY VALUE",
    )
    r.add_argument(
        "--sweep-template",
        metavar="TEMPLATE",
        help="how a sweep value is passed, e.g. '{key}={value}' or '--{key}={value}'",
    )
    r.add_argument("--gpus", help="GPUs needed (0: CPU-only)")
    r.add_argument("--gpu-ids", help="pin to these GPU indices, e.g. 0,2")
    r.add_argument("--vram", help="VRAM needed per GPU, e.g. 8G")
    r.add_argument("--ram", help="host RAM needed, e.g. 16G")
    r.add_argument(
        "--framework", default="auto", choices=["auto", "pytorch", "tensorflow", "jax", "none"]
    )
    r.add_argument("--env", action="append", metavar="KEY=VALUE", help="extra environment")
    queue_cli.add_run_options(r)
    r.add_argument(
        "--notify",
        metavar="EVENTS",
        help="run the hook on these events, e.g. failed,nan,done (see [notify] in backprop.toml)",
    )
    r.add_argument("--notify-cmd", metavar="CMD", help="hook: shell command, event JSON on stdin")
    r.add_argument("--notify-timeout", metavar="T", help="kill the hook after T (default 10s)")
    cli_pipeline.add_dependency_options(r)
    r.add_argument(
        "--checkpoint-glob",
        action="append",
        metavar="GLOB",
        help="also count files matching GLOB (relative to the cwd) as checkpoints",
    )
    r.add_argument("target", metavar="SCRIPT.py|COMMAND")
    r.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")

    ls = cmd("ls", cmd_ls, "list runs, newest first")
    ls.add_argument("--status", help="only these statuses, e.g. running,queued")
    ls.add_argument("--group", help="only this group")
    cli_pipeline.add_ls_filters(ls)
    cli_pipeline.add_wait_arguments(
        cmd("wait", cli_pipeline.cmd_wait, "block until runs end; one line per run as it ends")
    )

    sh = cmd("show", cmd_show, "show one run in detail")
    sh.add_argument("id")
    sh.add_argument(
        "--show-env", action="store_true", help="print the run's environment values (secrets!)"
    )
    lg = cmd("logs", cmd_logs, "print a run's output", json_flag=False)
    lg.add_argument("id")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing until it ends")
    lg.add_argument("-n", "--tail", type=int, metavar="N", help="only the last N lines")
    lg.add_argument("--raw", action="store_true", help="do not neutralise escape sequences")

    st = cmd("stop", cmd_stop, "stop runs gracefully (SIGINT, then SIGTERM, then SIGKILL)")
    st.add_argument("ids", nargs="*", metavar="ID")
    st.add_argument("--force", action="store_true", help="SIGKILL the whole run at once")
    st.add_argument("--group", help="every active run of this group (a sweep), queued ones too")
    cmd("pause", cmd_pause, "pause runs (SIGSTOP)").add_argument("ids", nargs="+", metavar="ID")
    cmd("continue", cmd_continue, "continue paused runs (SIGCONT)").add_argument(
        "ids", nargs="+", metavar="ID"
    )
    cmd("start", cmd_start, "start queued runs now, ignoring the governor's limits").add_argument(
        "ids", nargs="+", metavar="ID"
    )
    rs = cmd("resume", cmd_resume, "start a new attempt of a run from its latest checkpoint")
    rs.add_argument("id", nargs="?")
    rs.add_argument("--timeout", help="time limit for the new attempt")
    rs.add_argument("--group", help="every run of this group (a sweep) that did not complete")
    rs.add_argument(
        "--no-dependents",
        action="store_true",
        help="leave the runs skipped because this one failed as they are (default: queue "
        "them again, to wait for this attempt)",
    )
    fk = cmd("fork", cmd_fork, "new run from another run's checkpoint with changed arguments")
    fk.add_argument("--name")
    fk.add_argument("--timeout")
    fk.add_argument("--no-checkpoint", action="store_true", help="start from scratch")
    fk.add_argument("id")
    fk.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")
    cmd("rerun", cmd_rerun, "run a run's command again as a new run").add_argument("id")
    rm = cmd("rm", cmd_rm, "delete finished runs (refuses a run with a live process)")
    rm.add_argument("ids", nargs="+", metavar="ID")
    rm.add_argument("--force", action="store_true", help="force-stop what still runs, then delete")
    from tui.cmd_reingest import cmd_reingest

    cmd("reingest", cmd_reingest, "re-read a run's metrics from its output.log").add_argument("id")
    ex = cmd("export", cmd_export, "write a run as a portable .tar.gz bundle")
    ex.add_argument("id")
    ex.add_argument("-o", "--output", required=True)
    ex.add_argument(
        "--with-env", action="store_true", help="include the run's environment (tokens, keys)"
    )
    cmd("import", cmd_import, "add a bundle made by export as a new run").add_argument("file")
    it = cmd("init", cmd_init, "write a commented backprop.toml in this folder")
    it.add_argument("--force", action="store_true")
    it.add_argument("--path", help=argparse.SUPPRESS)
    it.add_argument(
        "--boot-unit",
        action="store_true",
        help="instead: write a systemd --user unit that drains the queue after boot",
    )
    cmd("status", cmd_status, "host, GPUs, admission bucket, queue and dispatcher")
    queue_cli.add_commands(cmd)
    cmd("inspect", cmd_inspect, "summarise a checkpoint safely (weights_only)").add_argument("file")
    tu = cmd("tui", cmd_tui, "open the terminal UI", json_flag=False)
    tu.add_argument("--readonly", action="store_true", help="hide every action that changes runs")
    dm = cmd(
        "demo", cmd_demo, "run the examples concurrently and open the TUI on them", json_flag=False
    )
    dm.add_argument("--no-tui", action="store_true", help="launch the runs and list them")
    from tui import cli_compare, cli_export  # here: they import this module's helpers

    cli_export.register(cmd)
    cli_compare.register(cmd)
    cmd(
        "completion",
        cli_conventions.cmd_completion,
        "print the shell completion script, e.g. backprop completion bash > "
        "~/.local/share/bash-completion/completions/backprop",
        json_flag=False,
    ).add_argument("shell", choices=cli_conventions.SHELLS)
    return p


_SEPARATOR = "\x00--"  # a bare "--" after `run`, kept from argparse (which would drop it)


def _protect_run_separator(argv: list[str]) -> list[str]:
    if "run" not in argv or "--" not in argv[argv.index("run") :]:
        return argv
    at = argv.index("--", argv.index("run"))
    return [*argv[:at], _SEPARATOR, *argv[at + 1 :]]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``backprop`` console script."""
    parser = build_parser()
    cli_conventions.autocomplete(parser)  # only when the shell's completion script asks
    argv = _protect_run_separator(list(sys.argv[1:] if argv is None else argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.command is None:
        if sys.stdout.isatty() and sys.stdin.isatty() and _tui_available():
            args = parser.parse_args(["tui"] if args.home is None else ["--home", args.home, "tui"])
        else:
            parser.print_help()
            return EXIT_OK
    try:
        ctx = Context(args)
        code = int(args.func(ctx))
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit flush
        return code
    except BrokenPipeError:
        return _reader_gone()
    except UsageError as exc:
        print(f"backprop: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ConfigError, ValueError) as exc:
        print(f"backprop: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (LifecycleError, RunNotFound, OSError) as exc:
        msg = str(exc) if not isinstance(exc, RunNotFound) else str(exc.args[0])
        print(f"backprop: error: {msg}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130


def _reader_gone() -> int:
    """The reader of stdout left: exit quietly, as Unix tools do on SIGPIPE.

    stdout is pointed at /dev/null first, so the interpreter's final flush of what is still
    buffered cannot raise (and print) a second BrokenPipeError.
    """
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return EXIT_PIPE


def _tui_available() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("tui.app") is not None
    except ImportError:  # pragma: no cover
        return False


if __name__ == "__main__":
    sys.exit(main())
