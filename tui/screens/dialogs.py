"""The dialogs built on :class:`~tui.screens.form.FormDialog`: new run, resume, fork, filter."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.request import RequestError, parse_name, parse_time_limit
from tui.actions import parse_new_run
from tui.messages import NewRunRequest
from tui.screens.form import Field, FormDialog

NEW_RUN_FIELDS = ("target", "args", "name", "timeout", "gpus", "vram")


def new_run_dialog(last: Mapping[str, Any]) -> FormDialog[NewRunRequest]:
    """Ask for a new run, prefilled with the values used last time."""

    def parse(values: dict[str, str]) -> NewRunRequest:
        request = NewRunRequest(**{k: values.get(k, "") for k in NEW_RUN_FIELDS})
        parse_new_run(request)  # the CLI's checks: raises RequestError naming the field
        return request

    def v(key: str) -> str:
        value = last.get(key, "")
        return value if isinstance(value, str) else ""

    fields = [
        Field("target", "Script/command", v("target"), "train.py or any command"),
        Field("args", "Arguments", v("args"), "--lr 3e-4 --batch 64"),
        Field("name", "Name", v("name"), "default: the script's name"),
        Field("timeout", "Time limit", v("timeout"), "e.g. 30m, 2h; empty: none"),
        Field("gpus", "GPUs", v("gpus"), "how many; 0: CPU only"),
        Field("vram", "VRAM per GPU", v("vram"), "e.g. 8G"),
    ]
    return FormDialog("New run", fields, parse, id="new-run")


@dataclass(frozen=True)
class ResumeAnswer:
    """The time limit chosen for the new attempt (``None``: no limit)."""

    timeout_s: float | None


def limit_text(seconds: float | None) -> str:
    """A time limit as the user would type it (``2h``, ``30m``, ``90s``; empty for none)."""
    if not seconds:
        return ""
    s = int(round(seconds))
    if s % 3600 == 0:
        return f"{s // 3600}h"
    if s % 60 == 0:
        return f"{s // 60}m"
    return f"{s}s"


def resume_dialog(name: str, previous_s: float | None) -> FormDialog[ResumeAnswer]:
    """Ask for the time limit of the next attempt (the previous limit is offered)."""

    def parse(values: dict[str, str]) -> ResumeAnswer:
        return ResumeAnswer(parse_time_limit(values["timeout"]))

    value = limit_text(previous_s)
    fields = [Field("timeout", "Time limit", value, "e.g. 30m, 2h; empty: none")]
    return FormDialog(f"Resume {name} from its latest checkpoint", fields, parse, id="resume")


@dataclass(frozen=True)
class ForkAnswer:
    """Changed arguments, name and time limit for a fork."""

    changes: tuple[str, ...]
    name: str | None
    timeout_s: float | None


def fork_dialog(name: str) -> FormDialog[ForkAnswer]:
    """Ask which arguments a fork changes (``--lr 1e-4``), its name and time limit."""

    def parse(values: dict[str, str]) -> ForkAnswer:
        try:
            changes = tuple(shlex.split(values["changes"]))
        except ValueError as exc:
            raise RequestError(f"arguments: {exc}") from None
        new_name = parse_name(values["name"])
        return ForkAnswer(changes, new_name, parse_time_limit(values["timeout"]))

    fields = [
        Field("changes", "Changed args", "", "--lr 1e-4 (others kept)"),
        Field("name", "Name", "", f"default: {name}-fork"),
        Field("timeout", "Time limit", "", "empty: as the parent"),
    ]
    return FormDialog(f"Fork {name} from its latest checkpoint", fields, parse, id="fork")


def filter_dialog(current: str, on_change: Callable[[str], None]) -> FormDialog[str]:
    """Filter the tree as you type; Enter keeps the filter, Esc puts the old one back."""
    fields = [Field("text", "Filter", current, "name, id, group, status:failed or backend:slurm")]
    return FormDialog(
        "Filter runs",
        fields,
        lambda values: values["text"].strip(),
        note="Enter: keep   Esc: undo   (empty: show all)",
        on_change=lambda values: on_change(values["text"].strip()),
        id="filter",
    )
