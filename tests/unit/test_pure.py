"""Table-driven tests of the pure decisions: reconcile, exit classification, parsing."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from runner.config import ConfigError, format_duration, parse_duration, parse_size
from runner.control.errors import LifecycleError
from runner.control.reruns import merge_args
from runner.control.submission import SubmitOptions
from runner.control.sweeps import sweep_args, sweep_points
from runner.model import ProcessIdentity, RunState, Status
from runner.registry import STARTUP_GRACE_S, reconcile
from runner.supervisor.exits import classify
from runner.textsafe import sanitize_line

BOOT = "boot-a"
SUP = ProcessIdentity(100, 5, BOOT)
TRAINER = ProcessIdentity(101, 6, BOOT)


def state(
    status: Status,
    sup: ProcessIdentity = SUP,
    trainer: ProcessIdentity | None = TRAINER,
    reason: str = "r",
) -> RunState:
    return RunState(
        run_id="000001",
        attempt=1,
        status=status,
        updated_at=0.0,
        supervisor=sup,
        trainer=trainer,
        reason=reason,
    )


@pytest.mark.parametrize(
    ("st", "alive", "locked", "age", "expected", "why"),
    [
        (None, set(), False, 1.0, Status.STARTING, "submitted"),
        (None, set(), True, 999.0, Status.STARTING, "supervisor starting"),
        (None, set(), False, STARTUP_GRACE_S + 1, Status.LOST, "supervisor never started"),
        (state(Status.RUNNING), {SUP, TRAINER}, True, 5, Status.RUNNING, "r"),
        (state(Status.QUEUED), {SUP}, True, 5, Status.QUEUED, "r"),
        (state(Status.PAUSED), {SUP, TRAINER}, True, 5, Status.PAUSED, "r"),
        (state(Status.RUNNING), {TRAINER}, False, 5, Status.LOST, "trainer pid 101"),
        (state(Status.RUNNING), set(), False, 5, Status.LOST, "without recording an exit"),
        (
            state(Status.RUNNING, sup=ProcessIdentity(100, 5, "boot-b")),
            {SUP},
            True,
            5,
            Status.LOST,
            "host rebooted",
        ),
        (state(Status.COMPLETED, reason="exit 0"), set(), False, 5, Status.COMPLETED, "exit 0"),
        (state(Status.FAILED, reason="exit 3"), {SUP}, False, 5, Status.FAILED, "exit 3"),
        (state(Status.STOPPED), set(), False, 5, Status.STOPPED, "r"),
        (state(Status.TIMEBOXED), set(), False, 5, Status.TIMEBOXED, "r"),
    ],
)
def test_reconcile(st, alive, locked, age, expected, why) -> None:  # type: ignore[no-untyped-def]
    status, reason = reconcile(
        st,
        created_at=0.0,
        now=age,
        current_boot=BOOT,
        alive=lambda ident: ident in alive,
        supervisor_locked=lambda: locked,
    )
    assert status is expected
    assert why in reason


@pytest.mark.parametrize(
    ("code", "kind", "phase", "hint", "status", "text"),
    [
        (0, None, 0, None, Status.COMPLETED, "exit 0"),
        (3, None, 0, None, Status.FAILED, "exit 3"),
        (-signal.SIGSEGV, None, 0, None, Status.FAILED, "killed by SIGSEGV"),
        (-signal.SIGKILL, None, 0, None, Status.FAILED, "out-of-memory killer"),
        (1, None, 0, "out of memory (CUDA)", Status.FAILED, "out of memory (CUDA); exit 1"),
        (0, "stop", 1, None, Status.STOPPED, "stopped by user; exit 0"),
        (-signal.SIGINT, "stop", 1, None, Status.STOPPED, "killed by SIGINT"),
        (-signal.SIGKILL, "stop", 3, None, Status.STOPPED, "stopped (forced: SIGKILL)"),
        (-signal.SIGKILL, "kill", 3, None, Status.STOPPED, "stopped (forced: SIGKILL)"),
        (1, "stop", 2, None, Status.STOPPED, "stopped by user; exit 1 after SIGTERM"),
        (0, "timeout", 1, None, Status.TIMEBOXED, "time limit reached; exit 0"),
        (
            -signal.SIGTERM,
            "timeout",
            2,
            None,
            Status.TIMEBOXED,
            "time limit reached (forced: SIGTERM)",
        ),
    ],
)
def test_classify(code, kind, phase, hint, status, text) -> None:  # type: ignore[no-untyped-def]
    got, reason = classify(code, kind, phase, hint)
    assert got is status and text in reason
    assert "SIGKILL after SIGKILL" not in reason and "SIGTERM after SIGTERM" not in reason


def test_labels_are_cut_at_a_word_with_an_ellipsis() -> None:
    from runner.textsafe import clip, safe_label

    reason = "stopped by user (forced: SIGKILL); the trainer ignored SIGINT and SIGTERM for 20 s"
    label = safe_label(reason, 60)
    assert label == "stopped by user (forced: SIGKILL); the trainer ignored…"
    assert len(label) <= 60 and "more characters" not in label
    assert clip("x" * 100, 10) == "x" * 9 + "…"  # one long word: cut inside it
    assert clip("short", 10) == "short"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("10m", 600),
        ("2h", 7200),
        ("1.5h", 5400),
        ("500ms", 0.5),
        ("45", 45),
        ("1d", 86400),
        (" 3 min ", 180),
        (30, 30),
    ],
)
def test_durations(text, seconds) -> None:  # type: ignore[no-untyped-def]
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["soon", "-5s", "0", "10 parsecs", "", "1e3s"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "n"),
    [
        ("512M", 512 * 2**20),
        ("8G", 8 * 2**30),
        ("8GiB", 8 * 2**30),
        ("1.5g", int(1.5 * 2**30)),
        ("64K", 65536),
        ("100", 100),
        ("2TB", 2 * 2**40),
    ],
)
def test_sizes(text: str, n: int) -> None:
    assert parse_size(text) == n


def test_format_duration() -> None:
    assert [format_duration(x) for x in (5, 65, 3725, None)] == ["5s", "1m05s", "1h02m", "-"]


@pytest.mark.parametrize(
    ("cmd", "changes", "out"),
    [
        (["p", "t.py", "--lr", "0.1"], ["--lr", "0.01"], ["p", "t.py", "--lr", "0.01"]),
        (["p", "t.py", "--lr=0.1"], ["--lr", "0.01"], ["p", "t.py", "--lr=0.01"]),
        (["p", "t.py"], ["--lr=0.01"], ["p", "t.py", "--lr=0.01"]),
        (
            ["p", "t.py", "--lr", "1"],
            ["--bs", "8", "--amp"],
            ["p", "t.py", "--lr", "1", "--bs", "8", "--amp"],
        ),
        (["p", "t.py", "--amp"], ["--amp"], ["p", "t.py", "--amp"]),
    ],
)
def test_merge_args(cmd, changes, out) -> None:  # type: ignore[no-untyped-def]
    assert merge_args(cmd, changes) == out


def test_sweeps() -> None:
    points = sweep_points(["lr=1e-3,3e-4", "batch=32,64"])
    assert len(points) == 4
    assert sweep_args(points[0]) == ["--lr", "1e-3", "--batch", "32"]
    assert sweep_args(points[3], "{key}={value}") == ["lr=3e-4", "batch=64"]
    for bad in (["lr"], ["=1,2"], ["lr="]):
        with pytest.raises(LifecycleError):
            sweep_points(bad)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("plain", "plain"),
        ("\x1b[31mred\x1b[0m", "red"),
        ("a\x1b]0;title\x07b", "ab"),
        ("a\x1b]52;c;cm0=\x1b\\b", "ab"),
        ("10%|##  \r50%|#####", "50%|#####"),
        ("bell\x07 nul\x00", "bell? nul?"),
        ("\x1b[2J\x1b[Hclear", "clear"),
        ("tab\there", "tab    here"),
    ],
)
def test_sanitize(raw: str, clean: str) -> None:
    assert sanitize_line(raw) == clean


def test_sanitize_keeps_only_colour_when_asked() -> None:
    out = sanitize_line("\x1b[1;32mok\x1b[0m \x1b[2Jx\x1b]0;t\x07", keep_colour=True)
    assert out == "\x1b[1;32mok\x1b[0m x"
    long = sanitize_line("y" * 10_000)
    assert len(long) < 4200 and long.endswith("more characters]")


def test_sweep_options_after_the_script_are_backprops_and_dash_dash_passes_through() -> None:
    from tui.cli.run import _SEPARATOR, _protect_run_separator, _split_sweep_options

    rest, sweeps, template = _split_sweep_options(
        ["--epochs", "3", "--sweep", "lr=1,2", "--sweep=batch=8", "--sweep-template={key}={value}"]
    )
    assert rest == ["--epochs", "3"]
    assert sweeps == ["lr=1,2", "batch=8"]
    assert template == "{key}={value}"
    argv = _protect_run_separator(["--home", "h", "run", "t.py", "--", "--sweep", "x"])
    assert argv == ["--home", "h", "run", "t.py", _SEPARATOR, "--sweep", "x"]
    assert _split_sweep_options(argv[4:]) == (["--sweep", "x"], [], None)
    assert _protect_run_separator(["ls", "--", "x"]) == ["ls", "--", "x"]


def test_stall_settings_reach_the_run_spec(tmp_path: Path) -> None:
    from runner.config import load_config
    from runner.control import submission
    from runner.registry import Registry

    (tmp_path / "backprop.toml").write_text('[run]\nstall_factor = 4\nstall_after = "2m"\n')
    config = load_config(tmp_path, cwd=tmp_path)
    assert (config.run.stall_factor, config.run.stall_after_s) == (4.0, 120.0)
    reg = Registry(tmp_path)
    reg.ensure()
    spec = submission.submit(
        reg, ["true"], name="t", options=SubmitOptions(timeout_s=None, config=config, start=False)
    )
    assert reg.read_spec(spec.id).stall_factor == 4.0
    assert reg.read_spec(spec.id).stall_after_s == 120.0
    for bad in ("stall_factor = 1", 'stall_factor = "x"', 'stall_after = "soon"'):
        (tmp_path / "backprop.toml").write_text(f"[run]\n{bad}\n")
        with pytest.raises(ConfigError):
            load_config(tmp_path, cwd=tmp_path)


def test_ls_cuts_a_long_reason_at_a_word(capsys: pytest.CaptureFixture[str]) -> None:
    """``ls`` showed "… [6 more characters]" at the end of a long reason."""
    from runner.registry import RunView
    from tui.cli.render import print_table

    reason = "stopped by user (forced: SIGKILL); the trainer ignored SIGINT and SIGTERM for 20 s"
    print_table([RunView("000001", Status.STOPPED, reason)])
    row = capsys.readouterr().out.splitlines()[1]
    assert row.endswith("stopped by user (forced: SIGKILL); the trainer ignored…")
    assert "more characters" not in row
