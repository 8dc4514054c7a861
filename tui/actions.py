"""What the TUI can do to runs: a small protocol over :mod:`runner.control`.

The app only talks to a :class:`RunActions`; :class:`LocalActions` is the real one, tests pass
a recorder. Every method returns a one-line description of what was done, or raises
:class:`ActionError` with a one-line reason. Calls may block (a resume waits for its
supervisor), so the app makes them from a worker thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Protocol

from governor import dispatcher as dispatch
from runner.config import Config, ConfigError, load_config
from runner.control import reruns, run_actions
from runner.control.errors import LifecycleError
from runner.registry import Registry, RunNotFound
from runner.request import RunRequest, parse_run_request
from runner.submit_request import submit_request
from tui.messages import NewRunRequest


class ActionError(Exception):
    """An action was refused or failed; the message is one line, fit for a notification."""


class RunActions(Protocol):
    """The changes the TUI can ask for."""

    def submit(self, request: NewRunRequest) -> str:
        """Start a new run."""

    def stop(self, run_id: str, *, force: bool = False) -> str:
        """Stop a run gracefully, or at once with ``force``."""

    def pause(self, run_id: str) -> str:
        """Pause a running run."""

    def cont(self, run_id: str) -> str:
        """Continue a paused run."""

    def resume(self, run_id: str, *, timeout_s: float | None = None) -> str:
        """Start the next attempt of a finished run."""

    def fork(
        self,
        run_id: str,
        changes: Sequence[str],
        *,
        name: str | None = None,
        timeout_s: float | None = None,
    ) -> str:
        """A new run from a run's checkpoint with changed arguments."""

    def rerun(self, run_id: str) -> str:
        """Run a run's command again as a new run."""


def parse_new_run(request: NewRunRequest) -> RunRequest:
    """Check what the new-run dialog collected, with the CLI's rules and messages.

    Raises:
        ValueError: (a :class:`runner.request.RequestError`) with a one-line message.
    """
    return parse_run_request(
        request.target,
        request.args,
        name=request.name,
        timeout=request.timeout,
        gpus=request.gpus,
        vram=request.vram,
    )


@contextlib.contextmanager
def _one_line() -> Iterator[None]:
    """Turn what the runner raises into an :class:`ActionError`."""
    try:
        yield
    except RunNotFound as exc:
        raise ActionError(str(exc.args[0]) if exc.args else "no such run") from None
    except (LifecycleError, ConfigError, ValueError, OSError) as exc:
        raise ActionError(str(exc)) from None


class LocalActions:
    """The real actions: :mod:`runner.control` on this machine's registry."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        """The configuration that applies (loaded on first use)."""
        if self._config is None:
            with _one_line():
                self._config = load_config(self.registry.root)
        return self._config

    def submit(self, request: NewRunRequest) -> str:
        with _one_line():
            specs, _ = submit_request(self.registry, parse_new_run(request), config=self.config)
            dispatch.kick(self.registry)
        (spec,) = specs  # the dialog has no sweep field
        return f"submitted run {spec.id} ({spec.name})"

    def stop(self, run_id: str, *, force: bool = False) -> str:
        with _one_line():
            return run_actions.stop(self.registry, run_id, force=force)

    def pause(self, run_id: str) -> str:
        with _one_line():
            return run_actions.pause(self.registry, run_id)

    def cont(self, run_id: str) -> str:
        with _one_line():
            return run_actions.cont(self.registry, run_id)

    def resume(self, run_id: str, *, timeout_s: float | None = None) -> str:
        with _one_line():
            attempt = reruns.resume(self.registry, run_id, timeout_s=timeout_s)
            dispatch.kick(self.registry)
        return f"resumed run {run_id} as attempt {attempt}"

    def fork(
        self,
        run_id: str,
        changes: Sequence[str],
        *,
        name: str | None = None,
        timeout_s: float | None = None,
    ) -> str:
        with _one_line():
            spec = reruns.fork(
                self.registry,
                run_id,
                list(changes),
                name=name,
                timeout_s=timeout_s,
                config=self.config,
            )
            dispatch.kick(self.registry)
        return f"forked run {run_id} as run {spec.id} ({spec.name})"

    def rerun(self, run_id: str) -> str:
        with _one_line():
            spec = reruns.rerun(self.registry, run_id, config=self.config)
            dispatch.kick(self.registry)
        return f"submitted run {spec.id} ({spec.name})"
