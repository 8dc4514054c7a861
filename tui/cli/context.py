"""What every command gets: the :class:`Context` (registry, configuration, ``--json``)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from runner.config import Config, load_config
from runner.privacy import tighten_registry
from runner.registry import Registry
from runner.request import RequestError, parse_time_limit
from tui.cli.conventions import UsageError


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


def time_limit(text: str | None) -> float | None:
    """A time limit as :func:`runner.request.parse_time_limit` reads it, as a usage error."""
    try:
        return parse_time_limit(text)
    except RequestError as exc:
        raise UsageError(str(exc)) from None
