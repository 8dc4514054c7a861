"""What the dispatcher keeps an eye on for a running GPU run: its VRAM peak and GPU heat.

While a run placed on GPUs runs, the dispatcher samples NVML every ``sample_interval``
(:meth:`governor.dispatcher.Dispatcher.watch_gpus`; it stays alive while a GPU run runs):

* the run's peak VRAM per GPU (the processes of its process group), learned at release;
* with ``pause_temperature`` set, the temperature of its GPUs: at or above it the run is
  paused (``runner.control.run_actions.pause``, the same request a user makes); once every
  GPU of the run is below ``max_temperature`` again, a run this watch paused is continued. A run the
  user paused is never continued by the watch; one the user continues while still hot is
  left running until its GPUs have cooled and heat up again.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from governor.probes import GpuSnapshot
from governor.reservations import usage_by_run


class RunWatch:
    """Samples one run's GPUs; :meth:`sample` does one step (the thread repeats it).

    Args:
        run_id: the run watched.
        gpus: the GPU indices it was placed on.
        probe: returns a GPU snapshot (with processes mapped to runs).
        interval_s: seconds between samples in the thread.
        pause_temperature: pause at or above this (0: never pause).
        resume_temperature: continue a paused run once all its GPUs are below this.
        pause: asks for the run to be paused, with the reason its status will show.
        cont: asks for the run to be continued.
    """

    def __init__(
        self,
        run_id: str,
        gpus: tuple[int, ...],
        probe: Callable[[], GpuSnapshot],
        *,
        interval_s: float,
        pause_temperature: float,
        resume_temperature: float,
        pause: Callable[[str, str], object],
        cont: Callable[[str], object],
    ) -> None:
        self.run_id = run_id
        self.gpus = gpus
        self.probe = probe
        self.interval_s = interval_s
        self.pause_temperature = pause_temperature
        self.resume_temperature = resume_temperature
        self._pause = pause
        self._cont = cont
        self.peak_vram = 0
        self.paused_by_heat = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        """Take one sample: update the peak, pause or continue on temperature."""
        snap = self.probe()
        used = usage_by_run(snap.gpus)
        for idx in self.gpus:
            self.peak_vram = max(self.peak_vram, used.get((self.run_id, idx), 0))
        if self.pause_temperature <= 0:
            return
        temps = [g.temperature for g in snap.gpus if g.index in self.gpus]
        known = [t for t in temps if t is not None]
        if not known:
            return
        if not self.paused_by_heat and max(known) >= self.pause_temperature:
            reason = (
                f"paused by the governor: GPU at {max(known):.0f}°C "
                f"(pause_temperature {self.pause_temperature:.0f}°C)"
            )
            with contextlib.suppress(Exception):  # e.g. the run is paused already or ended
                self._pause(self.run_id, reason)
                self.paused_by_heat = True
        elif self.paused_by_heat and max(known) < self.resume_temperature:
            with contextlib.suppress(Exception):
                self._cont(self.run_id)
            self.paused_by_heat = False

    def start(self) -> None:
        """Sample in a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(
            target=self._loop, name=f"backprop-watch-{self.run_id}", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            with contextlib.suppress(Exception):  # a probe failure must not end the watch
                self.sample()

    def stop(self) -> None:
        """End the thread (waits briefly for it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
