# over 400 lines: one class, the ingest loop (its helpers are in the modules beside it)
"""Turning a run's output and reports into its metric history, as they are written.

The supervisor owns one :class:`Ingestor` per attempt and calls :meth:`Ingestor.poll` about
ten times a second. It reads ``output.log`` and ``report.jsonl`` incrementally by byte offset,
appends normalised records to ``metrics.jsonl`` (it is that file's only writer) and rewrites
``summary.json`` at most a few times a second. An idle poll costs one ``stat`` per file.

Once a report record arrives in an attempt, metric values parsed from the output of that
attempt are ignored (the script reports them itself); checkpoint announcements and
out-of-memory text are still taken from the output.

Besides the keys listing reads, ``summary.json`` holds ``"ingest"``: the byte offsets reached
in ``output.log`` and ``report.jsonl`` and whether the attempt ended (``final``), so the next
attempt starts reading where this one stopped, and the first epoch's number (0 or 1) so
inferred steps continue. A resumed attempt replays ``metrics.jsonl`` once to rebuild the
digest (the best value of steps it repeats must go).

Each batch appended to ``metrics.jsonl`` ends with an offsets record (``{"a": 1, "ingest":
{"o": ..., "r": ...}}``, skipped by every reader of points) in the same write, so whoever
continues this attempt's ingestion (a supervisor that re-adopts the run, ``backprop
reingest``) knows exactly which output was turned into metrics: none is lost or read twice.
A batch that cannot be written (full disk, read-only registry) stays in memory and is
retried; past :data:`MAX_PENDING_BYTES`, or at the end of the attempt, its lines are counted
as dropped (they stay in ``output.log`` for ``backprop reingest``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from runner.checkpoints.found import CheckpointFinder, Found, found_record
from runner.durable import dump_json, write_json
from runner.metrics.batch_writer import BatchWriter
from runner.metrics.capture_noise import NoiseFilter
from runner.metrics.checkpoint_count import FolderCount
from runner.metrics.health import (
    OOM,
    STALL_FACTOR,
    STALL_FLOOR_S,
    STALLED,
    find_oom,
    is_stalled,
    last_exception,
    oom_kill_count,
    order_flags,
)
from runner.metrics.history import (
    CheckpointEvent,
    Point,
    decode_record,
    encode_point,
    event_record,
    iter_records,
)
from runner.metrics.ingest_start import previous_summary, start_offset
from runner.metrics.parsers import LineSplitter, ParsedLine, StepTracker, parse_line
from runner.metrics.report_lines import parse_report
from runner.metrics.summary import SummaryBuilder
from runner.model import RunSpec
from runner.registry import CHECKPOINTS, METRICS, OUTPUT, REPORT, SUMMARY
from runner.tail import LineTail
from runner.textsafe import safe_label

READ_PER_POLL = 4 * 1024 * 1024
FINAL_READ = 64 * 1024  # a read past the size last seen (the final drain)
SUMMARY_INTERVAL_S = 0.3
MAX_HINT = 200
MAX_REPORT_LINE = 1 << 20  # a longer report record is not one the helper wrote


class Ingestor:
    """Incremental capture of one attempt's metrics.

    Args:
        run_dir: the run's folder.
        spec: the run's spec (primary metric, working directory).
        attempt: the attempt number (a resumed attempt continues the step count).
        clock: wall time.
        oom_kills: reads the cgroup's OOM-kill counter (``None``: unknown).
        stall_factor: how many usual intervals without a metric count as stalled.
        stall_floor_s: the least silence that counts as stalled.
        resume_at: continue this attempt from these ``output.log`` and ``report.jsonl``
            offsets (a re-adopted run, ``reingest``); its history is replayed first.
        skip_through_step: with ``resume_at``: points whose step is not past this one until
            the first that is (they may be in the history already) are not written again.
    """

    def __init__(
        self,
        run_dir: Path,
        spec: RunSpec,
        attempt: int,
        *,
        clock: Callable[[], float] = time.time,
        oom_kills: Callable[[], int | None] = oom_kill_count,
        stall_factor: float = STALL_FACTOR,
        stall_floor_s: float = STALL_FLOOR_S,
        resume_at: tuple[int, int] | None = None,
        skip_through_step: int | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.spec = spec
        self.attempt = attempt
        self.clock = clock
        self.stall_factor = stall_factor
        self.stall_floor_s = stall_floor_s
        self.primary = spec.primary_metric or "loss"
        self._oom_kills = oom_kills
        self._oom_kills_at_start = _safe_count(oom_kills)
        previous = previous_summary(self.run_dir) if attempt > 1 else {}
        state = previous.get("ingest")
        if not isinstance(state, dict):
            state = {}
        self._out_off = start_offset(run_dir, OUTPUT, state, "output_offset") if attempt > 1 else 0
        rep_off = start_offset(run_dir, REPORT, state, "report_offset") if attempt > 1 else 0
        base = state.get("epoch_base")
        self.tracker = StepTracker(
            epoch_base=base if base in (0, 1) else None, primary=self.primary
        )
        self.builder = SummaryBuilder(self.primary)
        self._replay_pending = attempt > 1
        if resume_at is not None:
            self._out_off, rep_off = resume_at
            self._replay_pending = True
        self._skip_through = skip_through_step
        self._splitter = LineSplitter()
        self._noise = NoiseFilter()
        # report.jsonl is only appended to; shrunk by someone else: continue from its end
        self._report = LineTail(
            self.run_dir / REPORT,
            rep_off,
            max_line=MAX_REPORT_LINE,
            over_long="drop",
            rewrite="end",
        )
        self._batch = BatchWriter(self.run_dir)
        self._out_fd: int | None = None
        self._report_mode = False
        self._announced: deque[str] = deque(maxlen=64)
        self._oom: str | None = None
        self._kernel_oom = False
        self._exception: str | None = None
        self._last_arrival: float | None = None
        self._gaps: deque[float] = deque(maxlen=32)
        self._flags: list[str] = []
        self._dirty = False
        self._last_write = 0.0
        self._ckpt = FolderCount(self.run_dir / CHECKPOINTS)
        self._errors: set[str] = set()
        self._paused_at: float | None = None
        self._found = CheckpointFinder.for_run(self.run_dir, spec, since=clock())

    # --- start-up ---------------------------------------------------------------------------

    def _replay(self) -> None:
        """Rebuild the summary state from the history of earlier attempts (once)."""
        self._replay_pending = False
        for obj in iter_records(self.run_dir / METRICS, 0, self._appender_size()):
            rec = decode_record(obj)
            if rec is not None:
                self.builder.add(rec)
                if isinstance(rec, CheckpointEvent):
                    self._found.remember(rec.path)
        self.tracker.last_step = self.builder.step

    def _appender_size(self) -> int:
        try:
            return os.stat(self.run_dir / METRICS).st_size
        except OSError:
            return 0

    # --- the supervisor's calls -------------------------------------------------------------

    def poll(self, *, final: bool = False) -> None:
        """Consume whatever was written since the last call (everything when ``final``).

        Never raises: metrics must not bring the supervisor (and the run) down. A failure
        (a full disk, say) is written once to the supervisor's stderr and polling goes on.
        """
        try:
            self._poll(final)
        except Exception as exc:
            self._batch.drop_pending()
            kind = type(exc).__name__
            if kind not in self._errors:
                self._errors.add(kind)
                with contextlib.suppress(OSError, ValueError):  # stderr may be on a full disk
                    print(f"backprop: metrics ingestion: {kind}: {exc}", file=sys.stderr)
                    sys.stderr.flush()

    def _poll(self, final: bool) -> None:
        now = self.clock()
        if self._replay_pending:
            self._replay()
            self._dirty = True
        arrived = self._read_report(final, now)
        arrived |= self._read_output(final, now)
        for found in self._found.poll(now, final=final):
            self._record_found(found)
        if self._batch.records:
            self._append()
        if arrived:
            if self._last_arrival is not None and now > self._last_arrival:
                self._gaps.append(now - self._last_arrival)
            self._last_arrival = now
        if self._ckpt.scan(now, force=final):
            self._dirty = True
        if final:
            count = _safe_count(self._oom_kills)
            start = self._oom_kills_at_start
            self._kernel_oom = count is not None and start is not None and count > start
        flags = self._health(now, final)
        if flags != self._flags:
            self._flags = flags
            self._dirty = True
        if final or (self._dirty and now - self._last_write >= SUMMARY_INTERVAL_S):
            self._write_summary(now, final)

    def set_paused(self, paused: bool) -> None:
        """The run was paused (or continued): silence while paused is not a stall."""
        now = self.clock()
        if paused and self._paused_at is None:
            self._paused_at = now
        elif not paused and self._paused_at is not None:
            if self._last_arrival is not None:
                self._last_arrival += now - self._paused_at
            self._paused_at = None

    def output_rewritten(self, new_size: int) -> None:
        """``output.log`` was compacted to ``new_size`` bytes, all of them already consumed."""
        self._out_off = new_size
        self._batch.records.append(b"")  # the next batch records the new offset (even if empty)

    def write_error(self) -> str | None:
        """The first write error of ``metrics.jsonl`` (``None`` if every write succeeded)."""
        return self._batch.error

    @property
    def dropped(self) -> int:
        """Metric lines that could not be written in this attempt (so far)."""
        return self._batch.dropped

    def settle(self) -> int:
        """At the attempt's end: write what is pending if possible, else count it as dropped.

        Returns:
            How many metric lines were dropped in this attempt.
        """
        if self._batch.records:
            self._append()
        if self._batch.records:
            self._batch.drop_pending()
        return self.dropped

    def _append(self) -> None:
        """Append the pending records plus the offsets record in one write (all or nothing)."""
        marker = dump_json(
            {
                "a": self.attempt,
                "ingest": {
                    "o": self._out_off - self._splitter.pending_bytes,
                    "r": self._report.offset,
                },
            }
        )
        if self._batch.append(marker):
            self._dirty = True

    @property
    def health_flags(self) -> list[str]:
        """The health flags as of the last poll (``nan``, ``stalled``, ...)."""
        return self._flags

    def failure_hint(self) -> str | None:
        """A reason seen in the output that explains a failure (out of memory first)."""
        if self._oom:
            return f"out of memory ({self._oom})"
        if self._kernel_oom:
            return "out of memory (killed by the kernel's OOM killer)"
        if self._exception:
            return self._exception
        if self.builder.flags()[:1] == ["nan"]:
            return f"{self.primary} became non-finite at step {self.builder.step}"
        return None

    def close(self) -> None:
        """Release files (idempotent)."""
        self._batch.close()
        if self._out_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._out_fd)
        self._out_fd = None

    # --- reading ----------------------------------------------------------------------------

    def _read_chunk(
        self, name: str, fd: int | None, offset: int, size: int
    ) -> tuple[int | None, bytes]:
        """Open lazily and read what is there from ``offset`` (the file is ``size`` long).

        Asking for exactly that (bounded) matters: ``pread`` allocates what it is asked
        for, and a 4 MiB buffer per poll left the supervisor's heap megabytes larger.
        """
        if fd is None:
            try:
                fd = os.open(self.run_dir / name, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None, b""
        try:
            want = size - offset if size > offset else FINAL_READ
            return fd, os.pread(fd, min(want, READ_PER_POLL), offset)
        except OSError:
            return fd, b""

    def _read_output(self, final: bool, now: float) -> bool:
        try:
            size = os.stat(self.run_dir / OUTPUT).st_size
        except OSError:
            size = -1
        if 0 <= size < self._out_off:
            self._out_off = size  # shrunk by someone else: continue from its end
        arrived = False
        if size > self._out_off or final:
            while True:
                self._out_fd, data = self._read_chunk(OUTPUT, self._out_fd, self._out_off, size)
                self._out_off += len(data)
                arrived |= self._take_output(self._splitter.feed(data), now)
                if not final or not data:
                    break
            if final:
                arrived |= self._take_output(self._splitter.flush(), now)
        return arrived

    def _take_output(self, lines: list[str], now: float) -> bool:
        if not lines:
            return False
        text = "\n".join(lines)
        if self._oom is None:
            self._oom = find_oom(text)
        exc = last_exception(text)
        if exc:
            self._exception = safe_label(exc, MAX_HINT)
        arrived = False
        skip = self._noise.skip
        for line in lines:
            self._found.hint(line, self.tracker.last_step)
            # Another reader of output lines (paths named in the output, say) goes here,
            # beside parse_line, on the lines the noise filter lets through.
            if skip(line):
                continue  # a traceback, a printed object, a banner block (capture_noise)
            parsed = parse_line(line)
            if parsed is None:
                continue
            if parsed.checkpoint is not None:
                self._announce(parsed, now)
                continue
            if self._report_mode:
                continue
            step = self.tracker.resolve(parsed)
            self.builder.total_steps = self.tracker.total or self.builder.total_steps
            if parsed.values and not self._already_recorded(step):
                self._add_point(Point(self.attempt, step, now, parsed.values))
                arrived = True
        return arrived

    def _announce(self, parsed: ParsedLine, now: float) -> None:
        path = parsed.checkpoint
        assert path is not None
        if not os.path.isabs(path):
            path = os.path.normpath(os.path.join(self.spec.cwd, path))
        if path in self._announced:
            return
        self._announced.append(path)
        self._found.remember(path)
        step = parsed.step if parsed.step is not None else self.tracker.last_step
        event = CheckpointEvent(self.attempt, step, now, path)
        self.builder.add(event)
        self._batch.records.append(
            dump_json(event_record(event.attempt, event.step, event.t, event.path))
        )
        self._ckpt.rescan_soon()

    def _record_found(self, found: Found) -> None:
        """A checkpoint the script saved by itself: the same record as an announced one."""
        step = found.step if found.step is not None else self.tracker.last_step
        self._announced.append(found.path)
        self.builder.add(CheckpointEvent(self.attempt, step, found.mtime, found.path))
        self._batch.records.append(found_record(self.attempt, step, found))
        self._dirty = True

    def _read_report(self, final: bool, now: float) -> bool:
        arrived = False
        for line in self._report.read(None if final else READ_PER_POLL):
            if line:
                arrived |= self._take_report(line, now)
        return arrived

    def _take_report(self, line: bytes, now: float) -> bool:
        got = parse_report(line)
        if got is None:
            return False
        parsed, t = got
        self._report_mode = True
        resolved = self.tracker.resolve(parsed)
        if parsed.step_total:
            self.tracker.total = parsed.step_total
        self.builder.total_steps = self.tracker.total or self.builder.total_steps
        if not parsed.values or self._already_recorded(resolved):
            return False
        self._add_point(Point(self.attempt, resolved, now if t is None else t, parsed.values))
        return True

    def _already_recorded(self, step: int) -> bool:
        """Whether a continued ingestion is still at points the history already has."""
        if self._skip_through is None:
            return False
        if step <= self._skip_through:
            return True
        self._skip_through = None
        return False

    def _add_point(self, point: Point) -> None:
        self.builder.add(point)
        self._batch.records.append(encode_point(point.attempt, point.step, point.t, point.values))

    # --- checkpoints, health, summary ------------------------------------------------------

    def _latest_checkpoint(self) -> str | None:
        """The last announced checkpoint, while it exists.

        Never a guess from the folder: this summary stops changing when its supervisor dies,
        and a resume must then find the newest file itself
        (``runner.control.reruns.latest_checkpoint``).
        """
        announced = self.builder.latest_announced
        return announced if announced and os.path.exists(announced) else None

    def _health(self, now: float, final: bool) -> list[str]:
        flags = set(self.builder.flags())
        if self._oom or self._kernel_oom:
            flags.add(OOM)
        if (
            not final
            and self._paused_at is None
            and is_stalled(
                now,
                self._last_arrival,
                self._gaps,
                factor=self.stall_factor,
                floor_s=self.stall_floor_s,
            )
        ):
            flags.add(STALLED)
        return order_flags(flags)

    def _write_summary(self, now: float, final: bool) -> None:
        summary = self.builder.to_json(
            now=now,
            attempt=self.attempt,
            checkpoints=self._ckpt.count + self._found.count_outside(self.run_dir / CHECKPOINTS),
            latest_checkpoint=self._latest_checkpoint(),
            health=self._flags,
            running=not final,
        )
        summary["ingest"] = {
            "output_offset": self._out_off,
            "report_offset": self._report.offset,
            "epoch_base": self.tracker.epoch_base,
            "final": final,
            "dropped": self.dropped,
        }
        summary["recent_checkpoints"] = self._found.live()[-16:]
        with contextlib.suppress(OSError):
            write_json(self.run_dir / SUMMARY, summary, durable=False)
            self._last_write = now
            self._dirty = False


def _safe_count(read: Callable[[], int | None]) -> int | None:
    try:
        return read()
    except Exception:
        return None
