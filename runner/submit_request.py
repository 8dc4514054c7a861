"""Submit a checked :class:`~runner.request.RunRequest`: the one call the CLI and the TUI share.

What a request does not say is decided here, once: the time limit falls back to the
configuration's ``[run] timeout``, the name to the script's, a sweep's group to
``<name>-sweep``, and every sweep point becomes one run named ``<name> key=value,...``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from runner.backends.settings import placement_from
from runner.config import Config
from runner.control import submission, sweeps
from runner.control.submission import SubmitOptions
from runner.model import Resources, RunSpec, validate_new_name
from runner.registry import Registry
from runner.request import RunRequest


def submit_request(
    registry: Registry,
    request: RunRequest,
    *,
    config: Config,
    python: str | None = None,
    framework: str = "auto",
    env: Mapping[str, str] | None = None,
    check_env: Callable[[dict[str, str], int | None], None] | None = None,
    **options: Any,
) -> tuple[list[RunSpec], str | None]:
    """Build the command, fill in the defaults and record the run (or the sweep's runs).

    Args:
        registry: where the runs go.
        request: what the user asked for, already checked.
        config: the configuration that gives the defaults.
        python: the interpreter for a ``.py`` script (default: the configured one).
        framework: the framework hint for admission.
        env: the environment the runs see before the request's pairs (default: the captured one).
        check_env: called with the final environment and GPU count before anything is
            recorded, to refuse what the governor could never place.
        **options: fields of :class:`runner.control.submission.SubmitOptions` (priority,
            retry, notify, after).

    Returns:
        The specs submitted and the group of a sweep (``None`` for a single run).

    Raises:
        LifecycleError: no such script or command.
        ConfigError: a backend and options no backend takes (from the request or
            ``[backend]``).
        ValueError: a default name that a new run may not take.
    """
    command, script = submission.build_command(
        request.target, list(request.args), python=python, config=config
    )
    timeout = request.timeout_s if request.timeout_s is not None else config.run.timeout_s
    resources = Resources(
        gpus=request.gpus,
        vram_bytes=request.vram_bytes,
        ram_bytes=request.ram_bytes,
        gpu_ids=request.gpu_ids,
        framework=framework,
    )
    placement = placement_from(
        config,
        backend=request.backend,
        partition=request.partition,
        account=request.account,
        slurm_args=request.slurm_args,
        ray_address=request.ray_address,
    )
    full_env = dict(submission.captured_env() if env is None else env)
    full_env.update(request.env)
    if check_env is not None and placement.is_local:  # an engine places runs itself
        check_env(full_env, request.gpus)
    base = request.name or submission.default_name(command, script)
    validate_new_name(base)
    shared: dict[str, Any] = {
        "timeout_s": timeout,
        "config": config,
        "resources": resources,
        "env": full_env,
        "script": script,
        "checkpoint_globs": request.checkpoint_globs,
        "placement": placement,
        **options,
    }
    if not request.sweeps:
        spec = submission.submit(
            registry, command, name=base, options=SubmitOptions(group=request.group, **shared)
        )
        return [spec], None
    group = request.group or f"{base}-sweep"
    runs = []
    for point in request.sweep_points():
        label = ",".join(f"{k}={v}" for k, v in point)
        args = sweeps.sweep_args(point, request.sweep_template)
        runs.append((command + args, f"{base} {label}"[:128]))
    return submission.submit_many(
        registry, runs, options=SubmitOptions(group=group, **shared)
    ), group
