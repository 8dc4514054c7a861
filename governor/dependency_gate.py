"""The dependency gate: the first question of admission, asked before the governor's.

:func:`governor.hook.build_hook` wraps every supervisor's hook (the governor's, or admit-all
when the governor is off) in a :class:`DependencyGate`. For a run with dependencies it reads
their states, asks the pure :func:`governor.dependencies.decide`, and only once they are met
hands the request on to the governor, so a waiting dependent never takes a place in the
governor's queue or a token. While it waits, the answer names the dependencies in
``Admission.wait_for``: the supervisor sleeps until one of their supervisors exits (their
lock is released) or a slow re-check falls due, never in a tight poll. A dependency that can
no longer be met ends the run as ``skipped`` (``Admission.final``).

Once admitted, the dependencies' run folders and latest checkpoints travel in the trainer's
environment (``BACKPROP_AFTER_CHECKPOINT``, ``BACKPROP_AFTER_RUN_DIR``, ...), from which the
supervisor fills in ``{after.checkpoint}``-style placeholders.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

from governor.dependencies import DependencyState, Never, Ready, decide
from runner.admission import Admission, AdmissionHook
from runner.model import RunSpec, Status
from runner.pipeline import needed, placeholder_env
from runner.registry import Registry, RunNotFound

# While a dependency runs, its end wakes the dependent at once (its supervisor's lock is
# released); the answer is re-checked this often anyway, which keeps "waiting for 000123
# (queued)" current when the dependency starts, at the cost of reading two small files.
RECHECK_S = 5.0


def dependency_states(registry: Registry, spec: RunSpec) -> dict[str, DependencyState]:
    """The reconciled state of each of ``spec``'s dependencies (a missing run is absent)."""
    states: dict[str, DependencyState] = {}
    for dep in spec.after:
        with contextlib.suppress(RunNotFound, ValueError):
            view = registry.load(dep.run_id)
            states[dep.run_id] = DependencyState(view.status, view.reason)
    return states


def dependency_values(registry: Registry, spec: RunSpec) -> list[dict[str, str | None]]:
    """What ``{after[i].*}`` stands for now: each dependency's id, folder and checkpoint."""
    from runner.lifecycle import latest_checkpoint  # only when a dependent is about to start

    return [
        {
            "id": dep.run_id,
            "run_dir": str(registry.run_dir(dep.run_id)),
            "checkpoint": latest_checkpoint(registry, dep.run_id),
        }
        for dep in spec.after
    ]


class DependencyGate:
    """An admission hook that checks dependencies first, then asks ``inner``.

    Args:
        inner: the hook that decides resources (the governor's, or admit-all).
        registry: where the dependencies' records are read.
        recheck_s: the slow re-check while waiting (see :data:`RECHECK_S`).
    """

    def __init__(
        self, inner: AdmissionHook, registry: Registry, *, recheck_s: float = RECHECK_S
    ) -> None:
        self.inner = inner
        self.registry = registry
        self.recheck_s = recheck_s

    def request(self, spec: RunSpec, run_dir: Path, attempt: int, *, force: bool) -> Admission:
        """Wait for the dependencies, end the run if they fail, else ask the governor.

        ``force`` (``backprop start``) starts a waiting dependent past its dependencies too;
        its placeholders then take what the dependencies hold at that moment.
        """
        if not spec.after:
            return self.inner.request(spec, run_dir, attempt, force=force)
        decision = decide(spec.after, dependency_states(self.registry, spec))
        if isinstance(decision, Never):
            return Admission(admitted=False, reason=decision.reason, final=Status.SKIPPED)
        if not isinstance(decision, Ready) and not force:
            return Admission(
                admitted=False,
                reason=decision.reason,
                retry_after_s=self.recheck_s,
                wait_for=decision.waiting_for,
            )
        values = dependency_values(self.registry, spec)
        for index, name in sorted(needed(spec.command)):
            if index < len(values) and values[index].get(name) is None:
                dep = values[index]["id"]
                placeholder = "{after" + (f"[{index}]" if index else "") + f".{name}}}"
                return Admission(
                    admitted=False,
                    reason=f"dependency {dep} left no {name} for {placeholder}",
                    final=Status.FAILED,
                )
        admission = self.inner.request(spec, run_dir, attempt, force=force)
        if not admission.admitted:
            return admission
        return replace(admission, env={**placeholder_env(values), **admission.env})

    def started(self, spec: RunSpec, run_dir: Path, trainer_pid: int) -> None:
        """Passed on to the governor."""
        self.inner.started(spec, run_dir, trainer_pid)

    def release(self, spec: RunSpec, run_dir: Path) -> None:
        """Passed on to the governor."""
        self.inner.release(spec, run_dir)
