"""What one line of output says, and the step each record gets (inferred when it has none)."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_STEP = 2**53


@dataclass(slots=True)
class ParsedLine:
    """What one line of output says (every field optional).

    Attributes:
        values: metric values by normalised name (non-finite values kept as ``nan``/``inf``).
        step: an explicit step (``step 20``, ``iter 100``, ``"step": 3``).
        step_total: its total when written ``step 20/200`` or given as ``total_steps``.
        epoch: an integer epoch (``Epoch 1/10``, ``epoch 3``).
        epoch_total: the number of epochs when written ``Epoch 1/10``.
        counter: a progress counter within an epoch (``45/100``, ``200/2983 batches``).
        counter_total: its total.
        checkpoint: the path of a checkpoint announced by a JSON event line.
    """

    values: dict[str, float] = field(default_factory=dict)
    step: int | None = None
    step_total: int | None = None
    epoch: int | None = None
    epoch_total: int | None = None
    counter: int | None = None
    counter_total: int | None = None
    checkpoint: str | None = None

    def empty(self) -> bool:
        """Whether the line said nothing usable."""
        return (
            not self.values
            and self.step is None
            and self.epoch is None
            and self.counter is None
            and self.checkpoint is None
            and self.step_total is None
        )


class StepTracker:
    """Gives each parsed record a step, inferring one when the line has none (per attempt).

    An explicit step wins. A progress counter within an epoch becomes a global step
    (``(epoch - first_epoch) * per_epoch + n``; counters that restart without an epoch
    label add the previous total). A line without either continues from the last step: it
    takes the next step if it carries the training metric, else it joins the last step.

    Args:
        last_step: the step reached before this attempt (a resume continues from it).
        epoch_base: 0 or 1, the first epoch's number if a previous attempt learned it.
        primary: the training metric whose presence makes a stepless line a new step.
    """

    def __init__(
        self, last_step: int | None = None, epoch_base: int | None = None, primary: str = "loss"
    ) -> None:
        self.last_step = last_step
        self.epoch_base = epoch_base
        self.primary = primary
        self.total: int | None = None
        self._explicit = False
        self._epoch: int | None = None
        self._epoch_total: int | None = None
        self._counter_offset = 0
        self._last_counter: tuple[int, int] | None = None

    def resolve(self, parsed: ParsedLine) -> int:
        """The step of ``parsed``; updates :attr:`last_step` and :attr:`total`."""
        if parsed.epoch is not None:
            if self.epoch_base is None:
                self.epoch_base = 0 if parsed.epoch == 0 else 1
            self._epoch = parsed.epoch
            if parsed.epoch_total:
                self._epoch_total = parsed.epoch_total
        if parsed.step is not None:
            step = parsed.step
            self._explicit = True
            if parsed.step_total:
                self.total = parsed.step_total
        elif parsed.counter is not None and parsed.counter_total:
            step = self._from_counter(parsed.counter, parsed.counter_total)
            self._explicit = True
        else:
            if parsed.step_total:
                self.total = parsed.step_total
            last = self.last_step
            if last is None:
                step = 0 if self._explicit else 1
            elif self._explicit or self.primary not in parsed.values:
                step = last
            else:
                step = last + 1
        self.last_step = step
        return step

    def _from_counter(self, n: int, total: int) -> int:
        if self._epoch is not None:
            if self._epoch_total:
                self.total = self._epoch_total * total
            return max(self._epoch - (self.epoch_base or 0), 0) * total + n
        last = self._last_counter
        if last is not None and total != last[1] and last[0] < last[1]:
            # Another bar inside an unfinished one (HF Trainer's evaluation bar inside its
            # training bar): its counter is not a training step.
            return self.last_step if self.last_step is not None else last[0]
        if last is not None and n < last[0] and total == last[1]:
            self._counter_offset += last[1]  # a new bar: the counter started again
        self._last_counter = (n, total)
        return self._counter_offset + n
