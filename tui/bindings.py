"""The TUI's actions, named once: their keys, palette titles, footer hints and help lines.

:data:`ActionName` is the one spelling of every action; the key bindings, the command
palette, the footer and the help screen are all built from :data:`COMMANDS`, and mypy checks
every other mention against the Literal. Each name ``x`` is carried out by the app's
``action_x`` method (Textual's convention; a test checks that every name has one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from textual.binding import Binding

ActionName = Literal[
    "new_run",
    "stop",
    "force_stop",
    "resume",
    "pause",
    "fork",
    "rerun",
    "compare",
    "grid",
    "follow_all",
    "pick_metrics",
    "filter",
    "single",
    "help",
    "quit",
    "focus_tree",
]


@dataclass(frozen=True)
class Command:
    """One user action: its key, its name in the palette, and whether it changes anything."""

    action: ActionName
    key: str
    title: str
    help: str
    changes: bool = False


COMMANDS = (
    Command("new_run", "r", "New run", "Start a run: script or command, limits, GPUs", True),
    Command("stop", "s", "Stop run", "Stop the run gracefully (asks first)", True),
    Command("force_stop", "S", "Force-stop run", "Kill the run at once (asks first)", True),
    Command("resume", "u", "Resume run", "New attempt from the latest checkpoint", True),
    Command("pause", "p", "Pause/continue run", "Pause a running run or continue it", True),
    Command("fork", "f", "Fork run", "New run from the checkpoint, changed arguments", True),
    Command("rerun", "R", "Run again", "Run the selected run's command again", True),
    Command("compare", "c", "Compare runs", "Overlay the loss curves of runs marked with Space"),
    Command("grid", "g", "Grid of outputs", "Several running runs' output side by side"),
    Command("follow_all", "a", "Follow all output", "Every running run's new output, interleaved"),
    Command("pick_metrics", "m", "Pick metrics", "Choose the metrics the plot shows"),
    Command("filter", "/", "Filter runs", "Show only runs matching a name, id or status"),
    Command("single", "escape", "Back to the run", "The selected run's output and plot"),
    Command("help", "?", "Help", "Every key"),
    Command("quit", "q", "Quit", "Close the TUI; runs keep running"),
)
CHANGING: frozenset[str] = frozenset(c.action for c in COMMANDS if c.changes)
KEY_NAMES = {"/": "slash", "?": "question_mark"}
QUIT_NOTE = "q quits the TUI only: every run keeps running under its own supervisor."

# The footer's order and its short labels (the rest follow in table order).
HINT_ORDER: tuple[ActionName, ...] = (
    "help",
    "quit",
    "new_run",
    "stop",
    "pause",
    "resume",
    "fork",
    "compare",
)
HINT_HIDDEN: tuple[ActionName, ...] = ("single", "force_stop")
HINT_LABELS: dict[ActionName, str] = {
    "help": "help",
    "quit": "quit",
    "new_run": "new",
    "follow_all": "all",
    "pick_metrics": "metrics",
    "rerun": "rerun",
}


def _binding(key: str, action: ActionName, title: str, *, priority: bool = False) -> Binding:
    return Binding(key, action, title, show=False, priority=priority)


BINDINGS = [
    *(
        _binding(KEY_NAMES.get(c.key, c.key), c.action, c.title)
        for c in COMMANDS
        if c.action != "quit"
    ),
    _binding("q", "quit", "Quit"),
    _binding("ctrl+q", "quit", "Quit", priority=True),
    _binding("enter", "focus_tree", "Focus runs"),
]


def allowed(readonly: bool) -> tuple[Command, ...]:
    """The commands that work here: a read-only TUI changes nothing."""
    return tuple(c for c in COMMANDS if not (readonly and c.changes))


def key_label(command: Command) -> str:
    """The key as the palette and the help screen name it."""
    return "Esc" if command.key == "escape" else command.key


def hints(readonly: bool) -> str:
    """The key hints for the footer (only the keys that work here)."""
    keys = allowed(readonly)
    shown = [c for name in HINT_ORDER for c in keys if c.action == name]
    shown += [c for c in keys if c not in shown and c.action not in HINT_HIDDEN]
    text = "  ".join(f"{c.key} {HINT_LABELS.get(c.action, c.action)}" for c in shown)
    return ("read-only  " if readonly else "") + text


def help_keys(readonly: bool) -> list[tuple[str, str]]:
    """The help screen's lines: the tree's own keys, then every command that works here."""
    keys = [
        ("↑ ↓ PgUp PgDn", "move in the run list"),
        ("Enter  → ←", "expand / collapse a run's details or a group"),
        ("Space", "mark a run (for compare and grid)"),
        ("Tab", "next pane"),
    ]
    keys += [(key_label(c), c.help) for c in allowed(readonly)]
    keys.append(("Ctrl+P", "command palette: every action by name"))
    return keys
