"""Terminal alerts while the TUI is open: a bell and a desktop notification when a run fails.

The desktop notification is an OSC 9 (iTerm2, WezTerm, Windows Terminal, kitty, foot...) and
an OSC 777 (VTE terminals, rxvt-unicode) escape sequence; both travel through SSH. Inside
tmux they are wrapped in tmux's passthrough (``set -g allow-passthrough on`` lets them out).
The hooks of ``[notify]`` fire from the supervisors whether the TUI is open or not; this is
only the open TUI's own signal.

The sequences go out through the Textual driver's public ``write`` (as ``App.bell`` does);
the app learns its driver from :func:`driver_class`, a subclass of the platform's driver
made by the public ``App.get_driver_class`` hook.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.model import Status
from runner.textsafe import safe_label

ALERT_ON = frozenset({Status.FAILED, Status.LOST})
DEFAULT_SIGNALS = ("bell", "osc9", "osc777")


@dataclass(frozen=True)
class Alert:
    """One run that failed (or was lost) while the TUI watched."""

    run_id: str
    name: str
    status: Status
    reason: str

    @property
    def text(self) -> str:
        """The notification's body (one line, no control characters)."""
        body = f"run {self.run_id} ({self.name}) {self.status.value}"
        if self.reason:
            body += f": {self.reason}"
        return safe_label(body, 200).replace(";", ",")


def new_failures(
    before: Mapping[str, Status] | None, runs: Iterable[Any]
) -> tuple[dict[str, Status], list[Alert]]:
    """Runs that turned failed or lost since ``before`` (``None``: the first look, no alerts).

    ``runs`` are rows with ``id``, ``name``, ``status`` and ``reason``.
    """
    now: dict[str, Status] = {}
    alerts = []
    for row in runs:
        now[row.id] = row.status
        if before is None or row.status not in ALERT_ON:
            continue
        old = before.get(row.id)
        if old is not None and old not in ALERT_ON and not old.finished:
            alerts.append(Alert(row.id, row.name, row.status, getattr(row, "reason", "") or ""))
    return now, alerts


def sequences(alert: Alert, signals: Iterable[str], *, tmux: bool) -> str:
    """The escape sequences for ``alert`` (OSC 9 / OSC 777), wrapped for tmux if asked."""
    out = []
    text = alert.text
    if "osc9" in signals:
        out.append(f"\x1b]9;Backprop: {text}\x07")
    if "osc777" in signals:
        out.append(f"\x1b]777;notify;Backprop;{text}\x07")
    if tmux:  # tmux passthrough: DCS tmux; with every ESC inside doubled
        out = [f"\x1bPtmux;{seq.replace(chr(27), chr(27) * 2)}\x1b\\" for seq in out]
    return "".join(out)


class FailureAlerts:
    """Watches snapshots and signals failures through ``write`` and ``bell``.

    Args:
        bell: rings the terminal bell (``App.bell``).
        signals: which of ``bell``, ``osc9``, ``osc777`` to use.
        tmux: wrap the sequences in tmux's passthrough (default: when ``$TMUX`` is set).
    """

    def __init__(
        self,
        bell: Callable[[], None],
        signals: Iterable[str] = DEFAULT_SIGNALS,
        *,
        tmux: bool | None = None,
    ) -> None:
        self.bell = bell
        self.signals = tuple(signals)
        self.tmux = bool(os.environ.get("TMUX")) if tmux is None else tmux
        self.write: Callable[[str], None] | None = None
        self._before: dict[str, Status] | None = None
        self.sent: list[Alert] = []

    def check(self, runs: Iterable[Any]) -> list[Alert]:
        """Compare with the last snapshot; signal each new failure. Returns them."""
        self._before, alerts = new_failures(self._before, runs)
        for alert in alerts:
            self.sent.append(alert)
            if "bell" in self.signals:
                self.bell()
            seq = sequences(alert, self.signals, tmux=self.tmux)
            if seq and self.write is not None:
                self.write(seq)
        return alerts


_driver_classes: dict[type, type] = {}


def driver_class(base: type) -> type:
    """``base`` (a Textual driver class) that tells its app it exists: ``app.driver_ready``."""
    if base not in _driver_classes:

        class AlertingDriver(base):  # type: ignore[valid-type,misc]
            def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
                super().__init__(app, *args, **kwargs)
                ready = getattr(app, "driver_ready", None)
                if callable(ready):
                    ready(self)

        AlertingDriver.__name__ = f"Alerting{base.__name__}"
        _driver_classes[base] = AlertingDriver
    return _driver_classes[base]
