"""Notification rules: which events run which command (pure parsing, no processes).

Rules come from ``backprop.toml`` and from the run itself (``backprop run --notify ...``)::

    [notify]
    on = ["failed", "lost", "nan", "sweep_done"]   # events that run the command
    command = 'ntfy publish my-topic "$BACKPROP_MESSAGE"'
    timeout = "10s"                                 # the hook is killed after this

    [[notify.hooks]]                                # more rules, each with on/command/timeout
    on = ["completed"]
    command = 'mail -s "$BACKPROP_MESSAGE" me@example.org < /dev/null'

A run's own rules (``notify.json`` in its folder, mode 0600: a command may hold a token) add
to the configured ones; a run rule without a command uses the configured command.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.config import Config, ConfigError, parse_duration, register_defaults
from runner.durable import read_json
from runner.provenance import write_private

RULES_FILE = "notify.json"
DEFAULT_TIMEOUT_S = 10.0

END_EVENTS = ("completed", "failed", "stopped", "timeboxed", "lost")
HEALTH_EVENTS = ("nan", "stalled", "diverging", "oom")
EVENTS = (*END_EVENTS, *HEALTH_EVENTS, "sweep_done")
# Shorthands accepted wherever events are listed.
ALIASES: dict[str, tuple[str, ...]] = {
    "done": END_EVENTS,
    "end": END_EVENTS,
    "health": HEALTH_EVENTS,
    "sweep": ("sweep_done",),
    "all": EVENTS,
}

register_defaults(
    "notify",
    [
        ("on", [], 'events that run the command, e.g. ["failed", "lost", "nan", "sweep_done"]'),
        ("command", "", "shell command run with the event as JSON on stdin and in BACKPROP_*"),
        ("timeout", "10s", "the hook (its whole process group) is killed after this long"),
        ("terminal", ["bell", "osc9", "osc777"], "how an open TUI signals a failed or lost run"),
    ],
)


@dataclass(frozen=True)
class Rule:
    """Run ``command`` (with ``/bin/sh -c``) on each of the ``on`` events."""

    on: frozenset[str]
    command: str
    timeout_s: float = DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class RunRules:
    """A run's own rules, as ``backprop run --notify EVENTS --notify-cmd CMD`` gives them."""

    on: tuple[str, ...]
    command: str | None = None
    timeout_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {"on": list(self.on), "command": self.command, "timeout_s": self.timeout_s}


def parse_events(items: str | Iterable[str]) -> tuple[str, ...]:
    """Event names from ``"failed,nan,done"`` (or a list); an ``on=`` prefix is allowed.

    Raises:
        ConfigError: for an unknown name.
    """
    words = items.split(",") if isinstance(items, str) else list(items)
    out: dict[str, None] = {}
    for raw in words:
        if not isinstance(raw, str):
            raise ConfigError(f"notification events are names, not {raw!r}")
        word = raw.strip().lower().removeprefix("on=").replace("-", "_")
        if not word:
            continue
        if word in ALIASES:
            out.update(dict.fromkeys(ALIASES[word]))
        elif word in EVENTS:
            out[word] = None
        else:
            known = ", ".join([*EVENTS, *ALIASES])
            raise ConfigError(f"unknown notification event {word!r} (known: {known})")
    return tuple(out)


def _rule(d: Any, where: str, default_timeout: float) -> Rule | None:
    if not isinstance(d, Mapping):
        raise ConfigError(f"{where} must be a table")
    command = d.get("command") or ""
    if not isinstance(command, str):
        raise ConfigError(f"{where}.command must be a string")
    on = parse_events(d.get("on") or [])
    timeout = d.get("timeout")
    timeout_s = parse_duration(timeout) if timeout is not None else default_timeout
    if not command.strip() or not on:
        return None
    return Rule(frozenset(on), command, timeout_s)


def config_rules(config: Config) -> list[Rule]:
    """The rules of the ``[notify]`` section.

    Raises:
        ConfigError: for a malformed section.
    """
    section = config.section("notify")
    if not section:
        return []
    timeout = section.get("timeout")
    default_timeout = parse_duration(timeout) if timeout is not None else DEFAULT_TIMEOUT_S
    rules = [r for r in [_rule(section, "[notify]", default_timeout)] if r]
    hooks = section.get("hooks") or []
    if not isinstance(hooks, list):
        raise ConfigError("[[notify.hooks]] must be an array of tables")
    for i, hook in enumerate(hooks):
        rule = _rule(hook, f"[[notify.hooks]] #{i + 1}", default_timeout)
        if rule:
            rules.append(rule)
    return rules


def terminal_signals(config: Config) -> tuple[str, ...]:
    """How the TUI signals a failure: any of ``bell``, ``osc9``, ``osc777`` (default: all)."""
    raw = config.section("notify").get("terminal", ["bell", "osc9", "osc777"])
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple):
        return ("bell", "osc9", "osc777")
    return tuple(s.strip() for s in items if isinstance(s, str) and s.strip())


def write_run_rules(run_dir: Path, rules: RunRules) -> None:
    """Write a run's own rules (0600) before its supervisor starts."""
    write_private(run_dir / RULES_FILE, json.dumps(rules.to_json()).encode())


def read_run_rules(run_dir: Path) -> RunRules | None:
    """A run's own rules (``None`` when it has none or the file is unreadable)."""
    try:
        d = read_json(run_dir / RULES_FILE)
        on = parse_events(d.get("on") or [])
        command = d.get("command")
        timeout = d.get("timeout_s")
    except (OSError, ValueError, AttributeError, ConfigError):
        return None
    return RunRules(
        on=on,
        command=command if isinstance(command, str) and command.strip() else None,
        timeout_s=float(timeout) if isinstance(timeout, int | float) else None,
    )


def effective_rules(configured: Sequence[Rule], own: RunRules | None) -> list[Rule]:
    """The configured rules plus the run's own (a run rule without command borrows one)."""
    rules = list(configured)
    if own is None or not own.on:
        return rules
    command = own.command or next((r.command for r in configured), None)
    if command:
        timeout = own.timeout_s
        if timeout is None:
            timeout = next((r.timeout_s for r in configured), DEFAULT_TIMEOUT_S)
        rules.append(Rule(frozenset(own.on), command, timeout))
    return rules


def matching(rules: Iterable[Rule], event: str) -> list[Rule]:
    """The rules that fire on ``event`` (each distinct command once)."""
    seen: set[str] = set()
    out = []
    for rule in rules:
        if event in rule.on and rule.command not in seen:
            seen.add(rule.command)
            out.append(rule)
    return out


def run_rules(on: str | None, command: str | None, timeout: str | None) -> RunRules | None:
    """A run's own rules from ``--notify EVENTS --notify-cmd CMD --notify-timeout T``.

    ``--notify-cmd`` alone means the usual events: ``failed``, ``lost``, the health flags and
    ``sweep_done``.

    Raises:
        ConfigError: for an unknown event or a bad timeout.
    """
    if on is None and command is None:
        return None
    events = parse_events(on) if on is not None else parse_events("failed,lost,health,sweep")
    timeout_s = parse_duration(timeout) if timeout is not None else None
    return RunRules(on=events, command=command, timeout_s=timeout_s)
