"""Capture on real printed forms: every metric line read right, every other line silent."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.metrics.capture_noise import NoiseFilter
from runner.metrics.parsers import StepTracker, parse_line
from tests.unit.capture_corpus import METRIC_LINES, NON_METRIC_BLOCKS, NON_METRIC_LINES


def test_the_corpus_is_as_large_as_promised() -> None:
    assert len(METRIC_LINES) >= 25 and len(NON_METRIC_LINES) >= 50


@pytest.mark.parametrize(
    ("line", "step", "loss"), [c[1:] for c in METRIC_LINES], ids=[c[0] for c in METRIC_LINES]
)
def test_metric_lines_give_their_step_and_loss(line: str, step: int | None, loss: float) -> None:
    for _ in range(2):  # the second parse comes from the template cache
        assert not NoiseFilter().skip(line)
        parsed = parse_line(line)
        assert parsed is not None, line
        assert parsed.values.get("loss") == pytest.approx(loss), parsed
        if step is None:
            assert parsed.step is None and parsed.counter is None, parsed
        else:
            assert StepTracker().resolve(parsed) == step, parsed


@pytest.mark.parametrize(
    "line", [c[1] for c in NON_METRIC_LINES], ids=[c[0] for c in NON_METRIC_LINES]
)
def test_non_metric_lines_yield_nothing(line: str) -> None:
    for _ in range(2):
        assert parse_line(line) is None


@pytest.mark.parametrize(
    "lines", [c[1] for c in NON_METRIC_BLOCKS], ids=[c[0] for c in NON_METRIC_BLOCKS]
)
def test_non_metric_blocks_yield_nothing_read_in_order(lines: list[str]) -> None:
    noise = NoiseFilter()
    found = [ln for ln in lines if not noise.skip(ln) and parse_line(ln) is not None]
    assert found == []
    # ... and the filter lets the training output that follows through again.
    assert not noise.skip("step 10 loss 1.0853")


def test_hf_banner_keeps_its_total_steps() -> None:
    noise = NoiseFilter()
    assert noise.skip("***** Running training *****")
    assert noise.skip("  Num Epochs = 3")
    line = "  Total optimization steps = 375"
    assert not noise.skip(line)
    parsed = parse_line(line)
    assert parsed is not None and parsed.step is None and parsed.step_total == 375


def test_progress_bars_after_a_traceback_or_a_warning_are_read() -> None:
    noise = NoiseFilter()
    for line in NON_METRIC_BLOCKS[0][1] + ["/tmp/t.py:3: UserWarning: slow"]:
        assert noise.skip(line) or parse_line(line) is None
    bar = " 25%|██▌       | 4/16 [00:01<00:03,  3.50it/s, loss=0.5]"
    assert not noise.skip(bar)
    parsed = parse_line(bar)
    assert parsed is not None and parsed.counter == 4 and parsed.values == {"loss": 0.5}


def test_an_unclosed_printed_object_does_not_hide_the_run_forever() -> None:
    noise = NoiseFilter()
    assert noise.skip("Config(")
    for _ in range(5000):
        noise.skip("x=1,")
    assert not noise.skip("step 10 loss 1.0")


@settings(max_examples=300, deadline=None)
@given(
    blocks=st.lists(st.sampled_from([c[1] for c in NON_METRIC_BLOCKS]), max_size=4),
    metrics=st.lists(st.sampled_from([c[1] for c in METRIC_LINES]), min_size=1, max_size=4),
)
def test_metric_lines_between_noise_blocks_are_all_read(
    blocks: list[list[str]], metrics: list[str]
) -> None:
    """Noise blocks interleaved with metric lines: each metric line is read, nothing else."""
    noise = NoiseFilter()
    read = []
    for i, line in enumerate(metrics):
        for block_line in blocks[i] if i < len(blocks) else []:
            if not noise.skip(block_line):
                assert parse_line(block_line) is None, block_line
        if not noise.skip(line) and parse_line(line) is not None:
            read.append(line)
    # A metric line right after a traceback's exception line could be a multi-line message
    # only when indented; corpus metric lines that start with spaces are allowed to be held.
    assert [m for m in metrics if not m.startswith(" ")] == [r for r in read if r[:1] != " "]


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=40),
            st.sampled_from([ln for _, block in NON_METRIC_BLOCKS for ln in block]),
            st.sampled_from(["[rank0]: ", "[rank1]:", "(", ")", "*****", "  ", "\t", "Warning:"]),
        ),
        max_size=30,
    )
)
def test_the_noise_filter_never_raises(lines: list[str]) -> None:
    noise = NoiseFilter()
    for line in lines:
        assert noise.skip(line) in (True, False)
