"""The dependency gate: the dispatcher's first question about a queued run.

:func:`governor.admit_round.open_gate` asks :func:`dependency_gate` for every queued run
with dependencies, once per admission round. It reads their states and asks the pure
:func:`governor.dependencies.decide`; only once they are met does the run go on to the
governor's policy, so a waiting dependent holds no process, no lease and no token and never
blocks the runs behind it. While it waits its ticket says why ("waiting for 000123
(running)"); a dependency that can no longer be met ends it as ``skipped``, never started
(its own dependents follow in a later round: a skipped run fails their condition too).

Once admitted, the dependencies' run folders and latest checkpoints travel in the ticket's
environment (``BACKPROP_AFTER_CHECKPOINT``, ``BACKPROP_AFTER_RUN_DIR``, ...), from which the
supervisor fills in ``{after.checkpoint}``-style placeholders.
"""

from __future__ import annotations

import contextlib

from governor.admit_round import Gate
from governor.dependencies import DependencyState, Never, Ready, decide
from runner.model import RunSpec, Status
from runner.pipeline import needed, placeholder_env
from runner.registry import Registry, RunNotFound
from runner.tickets import Ticket


def dependency_states(registry: Registry, spec: RunSpec) -> dict[str, DependencyState]:
    """The reconciled state of each of ``spec``'s dependencies (a missing run is absent)."""
    states: dict[str, DependencyState] = {}
    for dep in spec.after:
        with contextlib.suppress(RunNotFound, ValueError, OSError):
            view = registry.load(dep.run_id)
            states[dep.run_id] = DependencyState(view.status, view.reason)
    return states


def dependency_values(registry: Registry, spec: RunSpec) -> list[dict[str, str | None]]:
    """What ``{after[i].*}`` stands for now: each dependency's id, folder and checkpoint."""
    from runner.control.reruns import latest_checkpoint  # only when a dependent is about to start

    return [
        {
            "id": dep.run_id,
            "run_dir": str(registry.run_dir(dep.run_id)),
            "checkpoint": latest_checkpoint(registry, dep.run_id),
        }
        for dep in spec.after
    ]


def dependency_gate(registry: Registry, spec: RunSpec, ticket: Ticket) -> Gate:
    """Wait for the dependencies, end the run if they fail, else let it go on to admission.

    A run the user started by hand (``backprop start``: ``ticket.forced``) goes past its
    dependencies; its placeholders then take what the dependencies hold at that moment.
    """
    if not spec.after:
        return Gate("start")
    decision = decide(spec.after, dependency_states(registry, spec))
    if isinstance(decision, Never):
        return Gate("cancel", decision.reason, Status.SKIPPED)
    if not isinstance(decision, Ready) and not ticket.forced:
        return Gate("wait", decision.reason)
    values = dependency_values(registry, spec)
    for index, name in sorted(needed(spec.command)):
        if index < len(values) and values[index].get(name) is None:
            dep = values[index]["id"]
            placeholder = "{after" + (f"[{index}]" if index else "") + f".{name}}}"
            return Gate("cancel", f"dependency {dep} left no {name} for {placeholder}")
    return Gate("start", env=placeholder_env(values))
