"""Notification rules from backprop.toml and from `run --notify`, and the event document."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.config import Config, ConfigError, load_config
from runner.model import ProcessIdentity, RunSpec, RunState, Status
from runner.notify import build_event, hook_env
from runner.notify_rules import (
    END_EVENTS,
    HEALTH_EVENTS,
    Rule,
    RunRules,
    config_rules,
    effective_rules,
    matching,
    parse_events,
    read_run_rules,
    run_rules,
    write_run_rules,
)


def test_event_names_and_aliases() -> None:
    assert parse_events("on=failed,nan") == ("failed", "nan")
    assert parse_events("done") == END_EVENTS
    assert parse_events(["health", "sweep-done"]) == (*HEALTH_EVENTS, "sweep_done")
    with pytest.raises(ConfigError, match="unknown notification event 'explode'"):
        parse_events("failed,explode")


def test_config_rules(tmp_path: Path) -> None:
    (tmp_path / "backprop.toml").write_text(
        '[notify]\non = ["failed", "nan"]\ncommand = "ntfy pub t"\ntimeout = "3s"\n'
        '[[notify.hooks]]\non = ["sweep_done"]\ncommand = "mail me"\n'
    )
    rules = config_rules(load_config(tmp_path, tmp_path))
    assert rules == [
        Rule(frozenset({"failed", "nan"}), "ntfy pub t", 3.0),
        Rule(frozenset({"sweep_done"}), "mail me", 3.0),
    ]
    assert [r.command for r in matching(rules, "nan")] == ["ntfy pub t"]
    assert matching(rules, "completed") == []


def test_a_malformed_section_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError):
        config_rules(Config(raw={"notify": {"on": ["failed"], "command": 3}}))
    with pytest.raises(ConfigError):
        config_rules(Config(raw={"notify": {"hooks": "x"}}))


def test_a_run_rule_borrows_the_configured_command_and_timeout(tmp_path: Path) -> None:
    configured = [Rule(frozenset({"failed"}), "ntfy pub t", 3.0)]
    own = run_rules("nan,done", None, None)
    assert own == RunRules(("nan", *END_EVENTS), None, None)
    rules = effective_rules(configured, own)
    assert rules[-1] == Rule(frozenset({"nan", *END_EVENTS}), "ntfy pub t", 3.0)
    assert effective_rules([], own) == []  # nothing to run
    write_run_rules(tmp_path, RunRules(("nan",), "echo hi", 2.0))
    assert (tmp_path / "notify.json").stat().st_mode & 0o777 == 0o600
    assert read_run_rules(tmp_path) == RunRules(("nan",), "echo hi", 2.0)
    assert run_rules(None, "echo", None).on == ("failed", "lost", *HEALTH_EVENTS, "sweep_done")
    assert run_rules(None, None, None) is None


def test_the_event_document_and_its_environment(tmp_path: Path) -> None:
    spec = RunSpec(id="000042", name="bert", command=("x",), cwd="/w", created_at=0, group="g")
    state = RunState(
        run_id="000042",
        attempt=2,
        status=Status.FAILED,
        updated_at=1.0,
        supervisor=ProcessIdentity(1, 1, "b"),
        reason="exit code 1\x1b[2J",
        exit_code=1,
    )

    class Builder:
        step = 7
        last = float("nan")
        best = 0.5

    event = build_event("failed", spec, state, Builder(), clock=lambda: 5.0)
    assert event["value"] == "nan" and event["best"] == 0.5 and event["step"] == 7
    assert event["message"] == "run 000042 (bert) failed: exit code 1"
    env = hook_env({**event, "run_dir": str(tmp_path)}, tmp_path)
    assert env["BACKPROP_EVENT"] == "failed" and env["BACKPROP_ATTEMPT"] == "2"
    assert env["BACKPROP_GROUP"] == "g" and "\x1b" not in env["BACKPROP_REASON"]
