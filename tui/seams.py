"""The private APIs of dependencies this project relies on, each behind one function.

Nothing else in the project may touch a ``_private`` name of a third-party package
(``tests/e2e/test_static_checks.py`` scans for it). Each seam here has a test in
``tests/unit/test_seams.py`` that exercises it for real, so an upgrade that moves or changes
one fails there, loudly, rather than in the TUI at a user's desk. The other sanctioned seam
is :class:`tui.widgets.output_pane.OutputLog`, which overrides Textual ``Log`` internals.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from textual_plotext.plot import Plot

WatchResult = set[tuple[int, str]] | Literal["signal", "stop", "timeout"]


class StopEvent(Protocol):
    """What the watcher polls to return early (a ``threading.Event``)."""

    def is_set(self) -> bool: ...


class FileWatcher:
    """A non-recursive inotify watch on ``paths`` whose every wait has its own timeout.

    This is the engine under ``watchfiles.watch`` (``RustNotify``): unlike the public
    generator, each wait can have its own timeout and step, which lets the producer's thread
    sleep until something is due. Raises ``FileNotFoundError`` when a path is missing and
    ``ImportError`` when watchfiles no longer offers this engine.
    """

    def __init__(self, paths: list[str]) -> None:
        from watchfiles._rust_notify import RustNotify

        self._notify = RustNotify(
            paths,  # watch_paths
            False,  # debug
            False,  # force_polling
            300,  # poll_delay_ms (only when polling)
            False,  # recursive: the producer names each folder it wants
            False,  # ignore_permission_denied
        )

    def wait(
        self, debounce_ms: int, step_ms: int, timeout_ms: int, stop: StopEvent | None
    ) -> WatchResult:
        """Wait up to ``timeout_ms`` (0: forever) for changes, grouped over ``debounce_ms``.

        Returns the set of ``(change, path)`` pairs, or ``"stop"`` when ``stop`` was set,
        ``"timeout"``, or ``"signal"``.
        """
        result: WatchResult = self._notify.watch(debounce_ms, step_ms, timeout_ms, stop)
        return result

    def close(self) -> None:
        """Stop the watching thread."""
        self._notify.close()

    def __enter__(self) -> FileWatcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def register_plot_theme(name: str, surface: tuple[int, int, int], fg: tuple[int, int, int]) -> None:
    """Give plotext a full-colour theme ``name`` on ``surface`` with ``fg`` text.

    plotext has no public way to add a theme; textual-plotext adds its own the same way.
    """
    from plotext._dict import themes
    from textual_plotext.plot import _rgbify_theme, _sequence

    if name not in themes:
        sequence: list[Any] = list(_sequence)
        themes[name] = _rgbify_theme(surface, surface, fg, "default", sequence)


def set_plot_size(plot: Plot, width: int, height: int) -> None:
    """Size ``plot`` to the widget, as ``PlotextPlot.render`` does (textual-plotext issue #5)."""
    plot.plotsize(width, height)
    plot._set_size(width, height)
