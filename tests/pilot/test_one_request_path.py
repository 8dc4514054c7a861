"""The CLI and the TUI's new-run dialog read a request the same way (issue 13, item 1).

Each row is typed once into the dialog (pilot: fill the inputs, press Enter) and once as
``backprop run`` flags; both must give the same :class:`RunRequest`, or refuse it with the same
one-line reason (the CLI with exit code 2).
"""

from __future__ import annotations

import shlex
from typing import Any

import pytest
from textual.widgets import Input

from runner.request import RequestError, RunRequest, parse_run_request
from tui import cli
from tui.actions import parse_new_run
from tui.cli.conventions import EXIT_USAGE, UsageError
from tui.cli.parser import build_parser
from tui.cli.run import run_request
from tui.screens.form import FormDialog

from .conftest import settle, until

SIZE = (120, 40)
GIB = 1 << 30

# (dialog fields, expected RunRequest or the text of the error)
ROWS: list[tuple[dict[str, str], RunRequest | str]] = [
    (
        {
            "target": "train.py",
            "args": "--lr 3e-4 --batch 64",
            "name": "mnist-a",
            "timeout": "1.5h",
            "gpus": "1",
            "vram": "8G",
        },
        RunRequest(
            "train.py",
            ("--lr", "3e-4", "--batch", "64"),
            name="mnist-a",
            timeout_s=5400.0,
            gpus=1,
            vram_bytes=8 * GIB,
        ),
    ),
    ({"target": "train.py"}, RunRequest("train.py")),
    ({"target": "train.py", "gpus": "0"}, RunRequest("train.py", gpus=0)),
    ({"target": "train.py", "timeout": "none"}, RunRequest("train.py", timeout_s=None)),
    ({"target": "train.py", "timeout": "90s"}, RunRequest("train.py", timeout_s=90.0)),
    ({"target": "train.py", "gpus": "-1"}, "GPUs: must be 0 or more: '-1'"),
    ({"target": "train.py", "gpus": "two"}, "GPUs: not a whole number: 'two'"),
    ({"target": "train.py", "timeout": "0"}, "time limit: duration must be positive: '0'"),
    ({"target": "train.py", "timeout": "soon"}, "time limit: not a duration: 'soon'"),
    ({"target": "train.py", "vram": "8Q"}, "VRAM: not a size: '8Q'"),
    ({"target": "train.py", "name": "000001"}, "run name '000001' looks like a run id"),
    ({"target": "train.py", "name": "a/b"}, "run name 'a/b' may contain only"),
]

FLAGS = {"name": "--name", "timeout": "--timeout", "gpus": "--gpus", "vram": "--vram"}


def _argv(fields: dict[str, str]) -> list[str]:
    argv = ["run"]
    for key, flag in FLAGS.items():
        if fields.get(key):
            argv.append(f"{flag}={fields[key]}")  # `=`: a value like -1 is not read as a flag
    return [*argv, fields["target"], *shlex.split(fields.get("args", ""))]


def _cli(fields: dict[str, str], home: Any, capsys: pytest.CaptureFixture[str]) -> RunRequest | str:
    """What ``backprop run`` makes of the row: its request, or its one-line error (exit 2)."""
    argv = _argv(fields)
    try:
        return run_request(build_parser().parse_args(argv))
    except UsageError as exc:
        message = str(exc)
    capsys.readouterr()
    assert cli.main(["--home", str(home), *argv]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err == f"backprop: error: {message}\n"  # one line, the same words
    return message


async def _dialog(
    app: Any, pilot: Any, fake_actions: Any, fields: dict[str, str]
) -> RunRequest | str:
    """What the new-run dialog makes of the row: the request it submits, or the error it shows."""
    await pilot.press("r")
    await until(pilot, lambda: isinstance(app.screen, FormDialog))
    for key in ("target", "args", "name", "timeout", "gpus", "vram"):
        app.screen.query_one(f"#field-{key}", Input).value = fields.get(key, "")
    app.screen.query_one("#field-target", Input).focus()
    before = len(fake_actions.calls)
    await pilot.press("enter")
    await settle(pilot)
    if isinstance(app.screen, FormDialog):  # refused: the dialog stays open with the reason
        error = str(app.screen.query_one(".dialog-error").render())
        await pilot.press("escape")
        await settle(pilot)
        assert len(fake_actions.calls) == before
        return error
    ((kind, raw),) = fake_actions.calls[before:]
    assert kind == "submit"
    return parse_new_run(raw)  # the first step of LocalActions.submit


def _same(got: RunRequest | str, expected: RunRequest | str) -> bool:
    if isinstance(expected, str):
        return isinstance(got, str) and got.startswith(expected)
    return got == expected


async def test_the_cli_and_the_dialog_read_a_request_alike(make_app, fake_actions, sample, capsys):
    app = make_app()
    tui_results = []
    async with app.run_test(size=SIZE) as pilot:
        for fields, _ in ROWS:
            tui_results.append(await _dialog(app, pilot, fake_actions, fields))
    for (fields, expected), from_tui in zip(ROWS, tui_results, strict=True):
        from_cli = _cli(fields, sample.root, capsys)
        assert from_cli == from_tui, fields
        assert _same(from_cli, expected), (fields, from_cli)


@pytest.mark.parametrize(
    ("flags", "fields", "expected"),
    [
        (
            ["--env", "A=1", "--env", "B=x=y"],
            {"env": ["A=1", "B=x=y"]},
            RunRequest("t.py", env=(("A", "1"), ("B", "x=y"))),
        ),
        (["--env", "NOEQUALS"], {"env": ["NOEQUALS"]}, "env: takes KEY=VALUE: 'NOEQUALS'"),
        (["--env", "=v"], {"env": ["=v"]}, "env: takes KEY=VALUE: '=v'"),
        (
            ["--sweep", "lr=1,2"],
            {"sweeps": ["lr=1,2"]},
            RunRequest("t.py", sweeps=(("lr", ("1", "2")),)),
        ),
        (["--sweep", "lr"], {"sweeps": ["lr"]}, "bad --sweep 'lr': use KEY=V1,V2,..."),
        (["--gpu-ids", "0,2"], {"gpu_ids": "0,2"}, RunRequest("t.py", gpu_ids=(0, 2))),
        (["--gpu-ids=-1"], {"gpu_ids": "-1"}, "GPU ids: must be 0 or more: '-1'"),
        (["--ram", "lots"], {"ram": "lots"}, "RAM: not a size: 'lots'"),
    ],
)
def test_the_fields_only_the_cli_has_follow_the_same_rules(flags, fields, expected, sample, capsys):
    """Env, sweeps, GPU ids, RAM (no dialog field yet): the CLI gives the shared parser's answer."""
    argv = ["run", *flags, "t.py"]
    try:
        from_cli: RunRequest | str = run_request(build_parser().parse_args(argv))
    except UsageError as exc:
        from_cli = str(exc)
        assert cli.main(["--home", str(sample.root), *argv]) == EXIT_USAGE
        assert capsys.readouterr().err == f"backprop: error: {from_cli}\n"
    try:
        direct: RunRequest | str = parse_run_request("t.py", [], **fields)
    except RequestError as exc:
        direct = str(exc)
    assert from_cli == direct
    assert _same(from_cli, expected)
