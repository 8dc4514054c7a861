"""The footer: GPUs, host, queue and the keys.

Each GPU gets a line with its utilisation, VRAM, temperature and our runs on it. The footer
draws from the snapshot it is given; when nothing it shows changed, it does not redraw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.style import Style
from rich.text import Text
from textual.app import RenderResult
from textual.widget import Widget

from governor.probes import GpuInfo, GpuSnapshot, HostInfo
from runner.model import Status
from tui.feed.snapshot import RunRow
from tui.widgets.format import fit_items, truncate

GIB = 1024**3


def gpu_runs(gpu: GpuInfo, runs: Sequence[RunRow]) -> list[str]:
    """Names of our runs on ``gpu``: placed there by the governor, or seen by NVML."""
    seen = {p.run_id for p in gpu.processes if p.run_id}
    return [
        r.name
        for r in runs
        if (r.id in seen) or (r.status in (Status.RUNNING, Status.PAUSED) and gpu.index in r.gpus)
    ]


def _bar(fraction: float, width: int) -> str:
    filled = max(0, min(width, round(fraction * width)))
    return "█" * filled + "░" * (width - filled)


HOT_C = 80.0


def gpu_line(
    gpu: GpuInfo, runs: Sequence[RunRow], width: int, styles: Mapping[str, Style] | None = None
) -> Text:
    """One GPU in one line, fitted to ``width``."""
    st = styles or {}
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"GPU{gpu.index} ", style=st.get("label"))
    util = gpu.utilization
    if util is not None:
        text.append(_bar(util / 100, 5), style=st.get("bar"))
        text.append(f"{util:4.0f}% ")
    else:
        text.append("     ---% ")
    vram = gpu.memory_used / max(1, gpu.memory_total)
    text.append(
        f"{gpu.memory_used / GIB:4.1f}/{gpu.memory_total / GIB:.0f}G ",
        style=st.get("hot") if vram > 0.95 else None,
    )
    if gpu.temperature is not None:
        hot = gpu.temperature >= HOT_C
        text.append(f"{gpu.temperature:.0f}°C ", style=st.get("hot") if hot else None)
    names = gpu_runs(gpu, runs)
    if names:
        room = max(4, width - text.cell_len)
        text.append(truncate(", ".join(names), room), style=st.get("runs"))
    text.truncate(width, overflow="ellipsis")
    return text


def host_line(
    host: HostInfo | None,
    queued: int,
    hints: str,
    width: int,
    styles: Mapping[str, Style] | None = None,
) -> Text:
    """The host, the queue and the key hints, fitted to ``width`` (hints give way first)."""
    st = styles or {}
    text = Text(no_wrap=True, overflow="ellipsis")
    if host is not None:
        used = (host.ram_total - host.ram_available) / GIB
        text.append("CPU", style=st.get("label"))
        text.append(f" {host.cpu_percent:3.0f}% ")
        text.append("RAM", style=st.get("label"))
        text.append(f" {used:.1f}/{host.ram_total / GIB:.0f}G ")
    text.append("queue", style=st.get("label"))
    text.append(f" {queued}", style=st.get("hot") if queued else None)
    room = width - text.cell_len - 3
    if hints and room > 8:
        text.append(" │ ", style=st.get("muted"))
        text.append(fit_items(hints, room), style=st.get("keys"))
    text.truncate(width, overflow="ellipsis")
    return text


def gpu_names(gpu: GpuSnapshot) -> str:
    """What each GPU is, for the footer's tooltip (the line itself has no room for names)."""
    if not gpu.gpus:
        return f"GPU: n/a ({gpu.error or 'no GPU found'})"
    return "\n".join(f"GPU{g.index}: {g.name} ({g.uuid}, bus {g.pci_bus_id})" for g in gpu.gpus)


class GpuFooter(Widget):
    """GPUs, host, queue and key hints, docked at the bottom."""

    COMPONENT_CLASSES = {
        "gpufooter--label",
        "gpufooter--bar",
        "gpufooter--hot",
        "gpufooter--runs",
        "gpufooter--muted",
        "gpufooter--keys",
    }

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.gpu = GpuSnapshot(error="probing")
        self.host: HostInfo | None = None
        self.runs: tuple[RunRow, ...] = ()
        self.hints = ""
        self._key: object = None

    def update_data(
        self, gpu: GpuSnapshot, host: HostInfo | None, runs: tuple[RunRow, ...], hints: str
    ) -> None:
        """Take new data; redraw only if what the footer shows changed."""
        on_gpu = tuple(
            (r.id, r.name, r.gpus) for r in runs if r.status in (Status.RUNNING, Status.PAUSED)
        )
        queued = sum(1 for r in runs if r.status is Status.QUEUED)
        host_key = (
            None
            if host is None
            else (round(host.cpu_percent), round((host.ram_total - host.ram_available) / GIB, 1))
        )
        key = (gpu, host_key, on_gpu, queued, hints)
        self.gpu, self.host, self.runs, self.hints = gpu, host, runs, hints
        if key != self._key:
            lines_before = self._line_count()
            self._key = key
            self.tooltip = gpu_names(gpu)
            self.refresh(layout=self._line_count() != lines_before)

    def _line_count(self) -> int:
        return max(1, len(self.gpu.gpus)) + 1

    def render(self) -> RenderResult:
        width = max(20, self.size.width)
        styles = {
            name: self.get_component_rich_style(f"gpufooter--{name}", partial=True)
            for name in ("label", "bar", "hot", "runs", "muted", "keys")
        }
        lines: list[Text] = []
        if self.gpu.gpus:
            lines.extend(gpu_line(g, self.runs, width, styles) for g in self.gpu.gpus)
        else:
            reason = self.gpu.error or "no GPU found"
            lines.append(Text(truncate(f"GPU: n/a ({reason})", width), style=styles["muted"]))
        queued = sum(1 for r in self.runs if r.status is Status.QUEUED)
        lines.append(host_line(self.host, queued, self.hints, width, styles))
        return Text("\n").join(lines)
