"""Command-line conventions, in process: --version, exit codes in every --help, completion
scripts, and the ``ls`` filters."""

from __future__ import annotations

import argparse
import os
import threading
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from runner import identity
from runner.durable import write_json
from runner.model import RunSpec, RunState, Status
from runner.registry import STATE, Registry
from tui import cli
from tui.cli.completion import attach_completers, complete_runs, completion_script
from tui.cli.conventions import EXIT_CODES
from tui.cli.parser import build_parser
from tui.cli.pipeline import RunWaiter, filter_runs, parse_since


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"backprop {version('backprop')}"


def test_every_help_documents_its_exit_codes() -> None:
    commands = subcommands_of(build_parser())
    assert {"wait", "completion"} <= set(commands)
    assert set(EXIT_CODES) <= set(commands)  # no stale entries
    for name, parser in commands.items():
        assert "exit status: 0 " in parser.format_help(), name
    assert "124" in commands["wait"].format_help()
    assert "124" in build_parser().format_help()


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_are_generated_for_backprop(shell: str) -> None:
    script = completion_script(shell)
    assert "backprop" in script and "_ARGCOMPLETE" in script


def test_run_arguments_complete_ids_and_names(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    for name in ("train", "eval"):
        run_id = reg.allocate_id()
        reg.create(RunSpec(id=run_id, name=name, command=("true",), cwd="/", created_at=1.0))
    parser = build_parser()
    attach_completers(parser)
    stop = subcommands_of(parser)["stop"]
    ids = next(a for a in stop._actions if a.dest == "ids")
    assert ids.completer is complete_runs  # type: ignore[attr-defined]
    args = argparse.Namespace(home=str(tmp_path))
    assert complete_runs("0", args) == ["000002", "000001"]
    assert complete_runs("2", args) == ["000002"]
    assert complete_runs("ev", args) == ["eval"]


def subcommands_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_since_takes_durations_and_dates() -> None:
    now = 1_800_000_000.0
    assert parse_since("2h", now) == now - 7200
    assert parse_since("2026-12-01", now) == time.mktime((2026, 12, 1, 0, 0, 0, 0, 0, -1))
    with pytest.raises(ValueError, match="--since"):
        parse_since("last tuesday", now)


def test_ls_filters_name_since_and_limit(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    now = time.time()
    for name, age in (("train-a", 7200), ("eval-a", 60), ("train-b", 30)):
        run_id = reg.allocate_id()
        spec = RunSpec(id=run_id, name=name, command=("true",), cwd="/", created_at=now - age)
        reg.create(spec)
    views = reg.list_runs()

    def names(**kw: object) -> list[str]:
        args = argparse.Namespace(**{"limit": None, "name_pattern": None, "since": None, **kw})
        return [v.name for v in filter_runs(views, args)]

    assert names(limit=2) == ["train-b", "eval-a"]
    assert names(name_pattern="train*") == ["train-b", "train-a"]
    assert names(name_pattern="val") == ["eval-a"]  # no wildcard: a substring
    assert names(since="1h") == ["train-b", "eval-a"]
    assert names(since="1h", name_pattern="train*", limit=5) == ["train-b"]
    with pytest.raises(ValueError):
        names(limit=-1)


def test_wait_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = str(tmp_path)
    assert cli.main(["--home", home, "wait"]) == 2
    assert cli.main(["--home", home, "wait", "7"]) == 2
    assert cli.main(["--home", home, "wait", "--group", "none"]) == 2
    assert cli.main(["--home", home, "wait", "--all-queued"]) == 0  # nothing left to wait for
    errors = capsys.readouterr().err.splitlines()
    assert errors == [
        "backprop: error: wait needs run ids, --group G or --all-queued",
        "backprop: error: no run with id 7",
        "backprop: error: no runs in group none",
    ]


def test_waiter_wakes_on_the_state_file_not_the_fallback_poll(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    me = identity.identity_of(os.getpid())
    assert me is not None
    for name in ("done", "busy"):
        run_id = reg.allocate_id()
        reg.create(RunSpec(id=run_id, name=name, command=("true",), cwd="/", created_at=1.0))
    write_json(
        reg.run_dir("000001") / STATE,
        RunState("000001", 1, Status.COMPLETED, time.time(), me, reason="exit 0").to_json(),
    )
    running = RunState("000002", 1, Status.RUNNING, time.time(), me)
    write_json(reg.run_dir("000002") / STATE, running.to_json())
    ended: list[dict[str, object]] = []
    waiter = RunWaiter(reg, ["000001", "000002"], ended.append, fallback_s=60.0)
    assert waiter.wait(0.3) == ["000002"]  # timed out, well before the fallback poll
    assert [e["id"] for e in ended] == ["000001"]

    failed = RunState("000002", 1, Status.FAILED, time.time(), me, reason="exit 3")
    timer = threading.Timer(0.5, write_json, (reg.run_dir("000002") / STATE, failed.to_json()))
    timer.start()
    t0 = time.monotonic()
    assert waiter.wait(30) == []
    assert time.monotonic() - t0 < 10  # the file event woke it, not the 60 s poll
    assert ended[-1]["status"] == "failed" and ended[-1]["reason"] == "exit 3"


def test_config_after_applies_unless_overridden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BACKPROP_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # ./backprop.toml is looked for first
    from runner.model import Dependency
    from tui.cli.context import Context
    from tui.cli.pipeline import dependencies

    reg = Registry(tmp_path)
    for name in ("prepare", "other"):
        run_id = reg.allocate_id()
        reg.create(RunSpec(id=run_id, name=name, command=("true",), cwd="/", created_at=1.0))
    (tmp_path / "backprop.toml").write_text('[run]\nafter = ["prepare"]\n')

    def deps(*flags: str) -> tuple[Dependency, ...]:
        args = build_parser().parse_args(["--home", str(tmp_path), "run", *flags, "x.py"])
        return dependencies(Context(args))

    assert deps() == (Dependency("000001"),)
    assert deps("--after-any", "other") == (Dependency("000002", "any"),)
    assert deps("--no-after") == ()
    with pytest.raises(ValueError, match="--no-after"):
        deps("--no-after", "--after", "2")
