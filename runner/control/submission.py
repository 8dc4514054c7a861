"""Submitting runs: the command, the captured environment, the spec and the queue entry."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from runner import envnames, notify_rules, provenance
from runner.config import Config
from runner.control.errors import LifecycleError
from runner.model import (
    Dependency,
    Lineage,
    Resources,
    RunSpec,
    validate_name,
    validate_new_name,
)
from runner.notify_rules import RunRules
from runner.placement import Placement
from runner.registry import (
    Registry,
)
from runner.retry import RetryPolicy
from runner.tickets import (
    Queue,
    Ticket,
    enqueue,
    sync_tree,
)

# Variables that describe the submitter's terminal, not the job; never passed to a run.
_TERMINAL_ENV = (
    "TMUX",
    "TMUX_PANE",
    "TERM_SESSION_ID",
    "WINDOWID",
    "DISPLAY",
    "SHLVL",
    "_",
    "OLDPWD",
    "PWD",
    "COLUMNS",
    "LINES",
    "STY",
    "SSH_TTY",
    "SSH_AUTH_SOCK",
)
_RUNTIME_ENV_PREFIX = envnames.PREFIX


def captured_env() -> dict[str, str]:
    """The submitter's environment as a run should see it, now and on every resume."""
    return {
        k: v
        for k, v in os.environ.items()
        if (k not in _TERMINAL_ENV and not k.startswith(_RUNTIME_ENV_PREFIX)) or k == envnames.HOME
    }


def build_command(
    target: str, args: Sequence[str], *, python: str | None, config: Config
) -> tuple[list[str], str | None]:
    """Turn ``SCRIPT.py ARGS`` or ``COMMAND ARGS`` into an argv; return it and the script.

    A ``.py`` file runs with ``--python``, else the configured interpreter, else ``python3``.
    """
    if target.endswith(".py"):
        script = Path(target)
        if not script.is_file():
            raise LifecycleError(f"no such script: {target}")
        interp = python or config.run.python or "python3"
        resolved = shutil.which(interp)
        if resolved is None:
            raise LifecycleError(f"python interpreter not found: {interp}")
        return [resolved, "-u", str(script.resolve()), *args], str(script.resolve())
    if shutil.which(target) is None and not Path(target).exists():
        raise LifecycleError(f"command not found: {target}")
    return [target, *args], None


def default_name(command: Sequence[str], script: str | None) -> str:
    """A readable default name: the script's stem or the command's base name."""
    base = Path(script).stem if script else Path(command[0]).name
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in base).lstrip("._-")
    if cleaned.isdigit():  # `123.py` must not name its run like run id 123
        cleaned = f"run-{cleaned}"
    return (cleaned or "run")[:64]


@dataclass(frozen=True)
class SubmitOptions:
    """Everything the runs of one submission share besides their command and name.

    Written once here, so :func:`submit`, :func:`submit_many` and the record of each run
    never repeat the list. ``env=None`` means the submitter's captured environment,
    ``config=None`` the defaults, ``retry=None`` the configured retry policy. ``after``: the
    runs it waits for (checked by :func:`runner.pipeline.resolve_dependencies`); the
    dispatcher decides when they are met.
    """

    cwd: str | None = None
    timeout_s: float | None = None
    config: Config | None = None
    group: str | None = None
    resources: Resources | None = None
    env: dict[str, str] | None = None
    script: str | None = None
    parent: Lineage | None = None
    resume_from: str | None = None
    start: bool = True
    priority: int = 0
    retry: RetryPolicy | None = None
    fail_fast: bool = False
    notify: RunRules | None = None
    after: Sequence[Dependency] = ()
    checkpoint_globs: Sequence[str] = ()
    placement: Placement | None = None  # where the supervisor runs (None: local)
    # The caller records the provenance itself after starting the runs (record_provenance):
    # git and package metadata cost tens of ms a trainer need not wait for.
    provenance_later: bool = False


def submit(
    registry: Registry,
    command: Sequence[str],
    *,
    name: str,
    options: SubmitOptions | None = None,
) -> RunSpec:
    """Record a new run durably and put it in the queue. Returns the spec.

    The run counts as submitted once ``spec.json`` and its place in the queue are on disk.
    Nothing is started here: the caller asks the dispatcher (``governor.dispatcher.kick``),
    which starts it at once when it fits. ``options.start=False`` records the spec only. The
    run's provenance (git commit, diff, interpreter, host) and its own notification rules are
    written first.
    """
    return submit_many(registry, [(list(command), name)], options)[0]


def submit_many(
    registry: Registry,
    runs: Sequence[tuple[Sequence[str], str]],
    options: SubmitOptions | None = None,
) -> list[RunSpec]:
    """Submit ``(command, name)`` runs sharing everything else, made durable in one flush.

    A 1,000-run sweep writes its specs and queue entries without an ``fsync`` each, then
    syncs the file system once before returning: durable before acknowledged, at the cost
    of one flush.
    """
    opts = options or SubmitOptions()
    config = opts.config or Config()
    policy = opts.retry if opts.retry is not None else RetryPolicy.from_config(config)
    if opts.group is not None:
        validate_name(opts.group)
    for command, name in runs:
        validate_new_name(name)
        if not command:
            raise LifecycleError("nothing to run")
        if opts.after or any("{after" in a for a in command):
            from runner.pipeline import check_placeholders

            check_placeholders(command, len(opts.after))  # DependencyError: a ValueError (usage)
    queue = Queue(registry.root)
    base_env = captured_env() if opts.env is None else opts.env
    # Each run's record sees the filled-in config, environment and retry policy.
    filled = replace(opts, config=config, env=base_env, retry=policy)
    specs: list[RunSpec] = []
    prov: tuple[dict[str, Any], bytes] | None = None
    if not opts.provenance_later:
        prov = _collect(runs[0][0], opts)
    ids = registry.allocate_ids(len(runs))
    with queue.locked():
        for run_id, (command, name) in zip(ids, runs, strict=True):
            specs.append(_record(registry, queue, run_id, list(command), name, filled, prov=prov))
    sync_tree(registry.root)
    if opts.start:
        queue.poke()
    return specs


def _collect(command: Sequence[str], opts: SubmitOptions) -> tuple[dict[str, Any], bytes] | None:
    """The provenance of a submission; ``None`` when it cannot be had.

    Once for a whole sweep: its runs share the code, the interpreter and the host.
    """
    with contextlib.suppress(Exception):  # provenance is a record, never a reason not to run
        return provenance.collect(Path(opts.cwd or os.getcwd()).resolve(), command, opts.script)
    return None


def record_provenance(registry: Registry, specs: Sequence[RunSpec]) -> None:
    """Write the provenance of runs submitted with ``provenance_later`` (after their start).

    The submitting command is still the only writer of ``provenance.json``; the state of the
    code it records is that of a few milliseconds later. Not synced: a record, not a run's
    truth (a crash right after loses it, as a crash before the submission would).
    """
    if not specs:
        return
    first = specs[0]
    prov = _collect(first.command, SubmitOptions(cwd=first.cwd, script=first.script))
    if prov is None:
        return
    for spec in specs:
        with contextlib.suppress(Exception):  # provenance is a record, never a reason not to run
            provenance.write(registry.run_dir(spec.id), *prov)


def _record(
    registry: Registry,
    queue: Queue,
    run_id: str,
    command: list[str],
    name: str,
    opts: SubmitOptions,
    *,
    prov: tuple[dict[str, Any], bytes] | None,
) -> RunSpec:
    """Write one run's spec and, with ``start``, its place in the queue (lock held; no sync).

    ``opts`` comes filled in by :func:`submit_many` (config, environment and retry policy set).
    """
    config = opts.config or Config()
    policy = opts.retry if opts.retry is not None else RetryPolicy.from_config(config)
    spec = RunSpec(
        id=run_id,
        name=name,
        command=tuple(command),
        cwd=str(Path(opts.cwd or os.getcwd()).resolve()),
        created_at=time.time(),
        timeout_s=opts.timeout_s,
        env=opts.env or {},
        group=opts.group,
        grace_int_s=config.run.grace_int_s,
        grace_term_s=config.run.grace_term_s,
        output_cap_bytes=config.run.output_cap_bytes,
        resume_args=config.run.resume_args,
        parent=opts.parent,
        resources=opts.resources or Resources(),
        script=opts.script,
        primary_metric=config.run.primary_metric,
        stall_factor=config.run.stall_factor,
        stall_after_s=config.run.stall_after_s,
        after=tuple(opts.after),
        checkpoint_globs=tuple(
            dict.fromkeys((*config.run.checkpoint_globs, *opts.checkpoint_globs))
        ),
        placement=opts.placement or Placement(),
    )
    folder = registry.create(spec, durable=False)
    if prov is not None:
        with contextlib.suppress(Exception):  # provenance is a record, never a reason not to run
            provenance.write(folder, *prov)
    if opts.notify is not None:
        notify_rules.write_run_rules(folder, opts.notify)
    if opts.start:
        ticket = Ticket(
            run_id=run_id,
            attempt=1,
            queued_at=spec.created_at,
            priority=opts.priority,
            timeout_s=opts.timeout_s,
            resume_from=opts.resume_from,
            policy=policy.to_json() if policy.retries else {},
            retry={"of": 1 + policy.retries} if policy.retries else {},
            fail_fast=opts.fail_fast,
        )
        enqueue(queue, ticket, durable=False, lock=False)
    return spec
