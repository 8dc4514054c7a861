"""Output parsers: every supported form, hostile bytes, step inference, and never raising."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.metrics import parsers
from runner.metrics.parsers import (
    MAX_LINE,
    LineSplitter,
    ParsedLine,
    StepTracker,
    normalize_key,
    parse_line,
)

NAN = float("nan")

# (line as captured, expected values, expected extras: step/step_total/epoch/counter/...)
CASES: list[tuple[str, str, dict[str, float], dict[str, object]]] = [
    ("backprop json", '{"step": 3, "loss": 0.5}', {"loss": 0.5}, {"step": 3}),
    (
        "backprop json nested",
        '{"step": 7, "train": {"loss": 0.25}, "val": {"loss": 0.5}, "note": "x"}',
        {"loss": 0.25, "val_loss": 0.5},
        {"step": 7},
    ),
    ("json nan string", '{"step": 4, "loss": "nan"}', {"loss": NAN}, {"step": 4}),
    ("json NaN token", '{"step": 5, "loss": NaN}', {"loss": NAN}, {"step": 5}),
    (
        "netsmith",
        'METRICS:{"epoch": 2, "loss": 0.31, "accuracy": 0.91}',
        {"epoch": 2.0, "loss": 0.31, "accuracy": 0.91},
        {"epoch": 2},
    ),
    ("plain colon", "loss: 0.5", {"loss": 0.5}, {}),
    ("plain equals", "loss=0.53", {"loss": 0.53}, {}),
    ("key=value pairs", "step=100 loss=0.5 lr=1e-3", {"loss": 0.5, "lr": 0.001}, {"step": 100}),
    (
        "word-language-model batch line",
        "| epoch   1 |   200/ 2983 batches | lr 20.00 | ms/batch 30.12 | loss  7.63 | ppl  2062.59",
        {"epoch": 1.0, "lr": 20.0, "ms_batch": 30.12, "loss": 7.63, "ppl": 2062.59},
        {"epoch": 1, "counter": 200, "counter_total": 2983, "step": None},
    ),
    (
        "word-language-model epoch end",
        "| end of epoch   1 | time: 25.33s | valid loss  5.58 | valid ppl   265.26",
        {"epoch": 1.0, "time": 25.33, "val_loss": 5.58, "val_ppl": 265.26},
        {"epoch": 1},
    ),
    (
        "word-language-model test",
        "| End of training | test loss  5.43 | test ppl   229.40",
        {"test_loss": 5.43, "test_ppl": 229.4},
        {},
    ),
    (
        "hf trainer log",
        "{'loss': 0.5321, 'grad_norm': 1.234, 'learning_rate': 4.5e-05, 'epoch': 0.4}",
        {"loss": 0.5321, "grad_norm": 1.234, "learning_rate": 4.5e-05, "epoch": 0.4},
        {"epoch": None},
    ),
    (
        "hf trainer eval",
        "{'eval_loss': 0.41, 'eval_runtime': 1.2, 'eval_samples_per_second': 100.0, 'epoch': 1.0}",
        {"eval_loss": 0.41, "eval_runtime": 1.2, "eval_samples_per_second": 100.0, "epoch": 1.0},
        {"epoch": None},  # HF's epoch is a fraction of training, not an epoch label
    ),
    (
        "hf trainer summary keeps train_loss apart",
        "{'train_runtime': 10.5, 'train_samples_per_second': 3.2, 'train_loss': 0.45, "
        "'epoch': 3.0}",
        {"train_loss": 0.45, "epoch": 3.0},
        {},
    ),
    (
        "tqdm postfix",
        " 45%|████▌     | 45/100 [00:05<00:06,  8.12it/s, loss=0.53, acc=0.9]",
        {"loss": 0.53, "acc": 0.9},
        {"counter": 45, "counter_total": 100},
    ),
    (
        "lightning progress",
        "Epoch 0:  45%|████▌     | 45/100 [00:05<00:06,  8.12it/s, loss=0.53, v_num=0, "
        "val_loss=0.6]",
        {"loss": 0.53, "val_loss": 0.6, "epoch": 0.0},
        {"epoch": 0, "counter": 45, "counter_total": 100},
    ),
    (
        "lightning train_loss is the loss",
        "Epoch 3: 100%|██████████| 50/50 [00:02<00:00, 21.37it/s, v_num=1, train_loss=0.212]",
        {"loss": 0.212},
        {"epoch": 3, "counter": 50},
    ),
    (
        "nanogpt iter",
        "iter 100: loss 2.3456, time 12.34ms, mfu 1.23%",
        {"loss": 2.3456, "time": 12.34, "mfu": 1.23},
        {"step": 100},
    ),
    (
        "nanogpt eval",
        "step 2000: train loss 1.7626, val loss 1.8856",
        {"loss": 1.7626, "val_loss": 1.8856},
        {"step": 2000},
    ),
    ("keras epoch header", "Epoch 1/10", {"epoch": 1.0}, {"epoch": 1, "epoch_total": 10}),
    (
        "keras 2 epoch line",
        "1875/1875 [==============================] - 3s 1ms/step - loss: 0.5000 - "
        "accuracy: 0.9000 - val_loss: 0.4000 - val_accuracy: 0.9100",
        {"loss": 0.5, "accuracy": 0.9, "val_loss": 0.4, "val_accuracy": 0.91},
        {"counter": 1875, "counter_total": 1875},
    ),
    (
        "keras 3 progress",
        "1875/1875 ━━━━━━━━━━━━━━━━━━━━ 3s 1ms/step - accuracy: 0.8765 - loss: 0.4321",
        {"accuracy": 0.8765, "loss": 0.4321},
        {"counter": 1875},
    ),
    (
        "plain example line",
        "epoch 1 | step 20/200 | loss: 0.5321 | val loss 0.61",
        {"epoch": 1.0, "loss": 0.5321, "val_loss": 0.61},
        {"step": 20, "step_total": 200, "epoch": 1},
    ),
    (
        "pytorch mnist train",
        "Train Epoch: 1 [640/60000 (1%)]\tLoss: 0.512345",
        {"loss": 0.512345, "epoch": 1.0},
        {"epoch": 1, "counter": 640},
    ),
    (
        "pytorch mnist test",
        "Test set: Average loss: 0.0500, Accuracy: 9836/10000 (98%)",
        {"test_loss": 0.05},
        {},
    ),
    ("validation context", "Validation: loss=0.5 acc=0.9", {"val_loss": 0.5, "val_acc": 0.9}, {}),
    ("eval_loss stays", "eval_loss = 0.33", {"eval_loss": 0.33}, {}),
    ("validation_loss", "validation_loss: 0.7", {"val_loss": 0.7}, {}),
    ("nan", "loss: nan", {"loss": NAN}, {}),
    ("inf", "step 5 loss=inf", {"loss": math.inf}, {"step": 5}),
    ("negative inf", "loss: -inf", {"loss": -math.inf}, {}),
    (
        "ansi colours",
        "\x1b[32mloss: 0.25\x1b[0m \x1b[1mlr\x1b[0m=0.1",
        {"loss": 0.25, "lr": 0.1},
        {},
    ),
    ("carriage return redraw", "loss: 0.9\rloss: 0.8\rloss: 0.7", {"loss": 0.7}, {}),
    ("python logging prefix", "INFO:root:loss: 0.5", {"loss": 0.5}, {}),
    ("timestamped", "2024-01-01 12:00:01 INFO loss=0.5 step=10", {"loss": 0.5}, {"step": 10}),
    (
        "tensor repr",
        "loss: tensor(0.5321, grad_fn=<NllLossBackward0>)",
        {"loss": 0.5321},
        {},
    ),
    ("learning rate", "Learning rate: 0.001", {"learning_rate": 0.001}, {}),
    ("global step", "global step: 10, loss 0.4", {"loss": 0.4}, {"step": 10}),
]

NOTHING = [
    "",
    "   ",
    "Downloading 3 files",
    "ETA: 0:01:23 version: 1.2.3 date: 2024-01-01",
    "Saving checkpoint to /tmp/x at step 5",
    "Saving model checkpoint to /tmp/output/checkpoint-500",
    "The loss is 0.5.",
    "INFO:torch.distributed:Initializing process group",
    "Traceback (most recent call last):",
    '{"event": "started"}',
    "[1, 2, 3]",
    "{not json",
]


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b)


@pytest.mark.parametrize(
    ("line", "values", "extra"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_formats(line: str, values: dict[str, float], extra: dict[str, object]) -> None:
    for _ in range(2):  # the second parse comes from the template cache
        parsed = parse_line(line)
        assert parsed is not None
        for name, expected in values.items():
            assert name in parsed.values, (name, parsed.values)
            assert _same(parsed.values[name], expected), (name, parsed.values[name])
        assert "loss" not in parsed.values or "loss" in values, "val/test/HF-summary became loss"
        for attr, expected in extra.items():
            assert getattr(parsed, attr) == expected, (attr, parsed)


@pytest.mark.parametrize("line", NOTHING)
def test_lines_without_metrics(line: str) -> None:
    assert parse_line(line) is None


def test_checkpoint_event() -> None:
    parsed = parse_line('{"event": "checkpoint_saved", "path": "/runs/1/ckpt-5.pt", "step": 5}')
    assert parsed is not None
    assert parsed.checkpoint == "/runs/1/ckpt-5.pt" and parsed.step == 5 and not parsed.values


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("loss", "loss"),
        ("Train Loss", "loss"),
        ("train_loss", "loss"),
        ("training/loss", "loss"),
        ("val loss", "val_loss"),
        ("valid loss", "val_loss"),
        ("Validation Loss", "val_loss"),
        ("val/loss", "val_loss"),
        ("test loss", "test_loss"),
        ("eval_loss", "eval_loss"),
        ("ms/batch", "ms_batch"),
        ("end of epoch", "epoch"),
        ("Average loss", "loss"),
    ],
)
def test_normalize_key(raw: str, name: str) -> None:
    assert normalize_key(raw) == name


def test_val_and_test_loss_never_overwrite_the_training_loss() -> None:
    tracker = StepTracker()
    loss = {}
    for line in ["step 1 loss: 0.9", "step 1 val loss: 5.0", "step 1 | test loss 7", "eval_loss=6"]:
        parsed = parse_line(line)
        assert parsed is not None
        tracker.resolve(parsed)
        loss.update(parsed.values)
    assert loss == {"loss": 0.9, "val_loss": 5.0, "test_loss": 7.0, "eval_loss": 6.0}


def test_template_cache_gives_the_same_answer_as_a_fresh_parse() -> None:
    rng = random.Random(1)
    templates = [
        c[1]
        for c in CASES
        if not c[1].startswith(("{", "METRICS")) and not {"\x1b", "\r"} & set(c[1])
    ] + [
        "layer.0.grad: 0.5 top5: 0.9",
        "gpu0 mem 12.5 | loss 0.3",
        "loss: 5-3",
        "x: 1e5/10 | 7/8 |",
    ]
    for template in templates:
        for _ in range(20):
            parts = parsers._NUM_SPLIT_RE.split(template)
            for i in range(1, len(parts), 2):
                parts[i] = rng.choice(
                    [str(rng.randint(0, 10**6)), f"{rng.uniform(-5, 5):.4f}", "nan", "1e-05"]
                )
            line = "".join(parts)
            fresh = parsers._apply_spans(line, parsers._pairs_of(line))
            assert repr(parse_line(line)) == repr(fresh), line  # repr: nan == nan


# --- bytes into lines ----------------------------------------------------------------------------


def test_split_lines_across_reads() -> None:
    s = LineSplitter()
    assert s.feed(b"step 1 lo") == []
    assert s.feed(b"ss: 0.5\nstep 2 loss: 0.") == ["step 1 loss: 0.5"]
    assert s.feed(b"4\n") == ["step 2 loss: 0.4"]
    assert s.feed(b"tail without newline") == []
    assert s.flush() == ["tail without newline"]
    assert s.flush() == []


def test_crlf_and_carriage_return_redraws_are_lines() -> None:
    s = LineSplitter()
    lines = s.feed(b" 10%|#  | 10/100 [loss=0.9]\r 20%|##  | 20/100 [loss=0.8]\r\nend\r\n")
    assert [ln for ln in lines if ln] == [
        " 10%|#  | 10/100 [loss=0.9]",
        " 20%|##  | 20/100 [loss=0.8]",
        "end",
    ]
    parsed = [parse_line(ln) for ln in lines if ln]
    assert parsed[1] is not None and parsed[1].counter == 20 and parsed[1].values["loss"] == 0.8


def test_invalid_utf8_and_a_multibyte_char_split_across_reads() -> None:
    s = LineSplitter()
    euro = "€".encode()
    assert s.feed(b"\xff\xfe loss: 0.5 " + euro[:1]) == []
    lines = s.feed(euro[1:] + b"\n")
    assert lines == ["\ufffd\ufffd loss: 0.5 €"]
    parsed = parse_line(lines[0])
    assert parsed is not None and parsed.values == {"loss": 0.5}


def test_a_100_mb_line_without_newline_keeps_the_buffer_bounded() -> None:
    s = LineSplitter()
    chunk = b"x" * (1 << 20)
    peak = 0
    for _ in range(100):
        assert s.feed(chunk) == []
        peak = max(peak, s.pending_bytes)
    assert peak <= MAX_LINE
    lines = s.feed(b"\nloss: 0.25\n")
    assert len(lines) == 2 and len(lines[0]) <= MAX_LINE and lines[1] == "loss: 0.25"
    assert s.pending_bytes == 0
    # A complete giant line inside one read is cut as well.
    lines = s.feed(b"y" * (4 * MAX_LINE) + b"\nstep 3 loss: 1\n")
    assert len(lines[0]) == MAX_LINE and lines[1] == "step 3 loss: 1"


def test_parse_caps_a_huge_line() -> None:
    parsed = parse_line("loss: 0.5 " + "y" * (10 * MAX_LINE) + " lr: 0.1")
    assert parsed is not None and parsed.values == {"loss": 0.5}


# --- steps -------------------------------------------------------------------------------------


def _steps(lines: list[str], tracker: StepTracker | None = None) -> list[int]:
    tracker = tracker or StepTracker()
    out = []
    for line in lines:
        parsed = parse_line(line)
        assert parsed is not None, line
        out.append(tracker.resolve(parsed))
    return out


def test_explicit_steps_win() -> None:
    assert _steps(["step 10 loss: 1", "step 20 loss: 0.5"]) == [10, 20]


def test_inferred_steps_count_lines_with_the_training_loss() -> None:
    lines = ["loss: 0.9", "loss: 0.8", "val loss: 0.85", "loss: 0.7"]
    assert _steps(lines) == [1, 2, 2, 3]


def test_stepless_eval_lines_join_the_last_explicit_step() -> None:
    tracker = StepTracker()
    assert _steps(["step 100 loss: 1.0", "loss: 0.9", "val loss: 0.8"], tracker) == [100, 100, 100]


def test_batch_counter_within_epochs_becomes_a_global_step() -> None:
    lines = [
        "| epoch   1 |   200/ 2983 batches | lr 20.00 | loss  7.63",
        "| epoch   1 |   400/ 2983 batches | lr 20.00 | loss  6.90",
        "| epoch   2 |   200/ 2983 batches | lr 20.00 | loss  5.50",
    ]
    assert _steps(lines) == [200, 400, 2983 + 200]


def test_keras_epoch_header_then_counter() -> None:
    tracker = StepTracker()
    lines = [
        "Epoch 1/10",
        "100/100 [==============================] - 1s 5ms/step - loss: 0.9",
        "Epoch 2/10",
        "50/100 [==============>...............] - ETA: 0s - loss: 0.7",
    ]
    steps = _steps(lines, tracker)
    assert steps[1] == 100 and steps[3] == 150
    assert tracker.total == 1000


def test_lightning_epochs_start_at_zero() -> None:
    lines = [
        "Epoch 0:  50%|█████     | 50/100 [00:01<00:01, loss=0.9]",
        "Epoch 1:  10%|█         | 10/100 [00:00<00:01, loss=0.5]",
    ]
    assert _steps(lines) == [50, 110]


def test_tqdm_counter_restarting_without_epoch_label_keeps_increasing() -> None:
    lines = [" 90%|█| 90/100 [loss=0.5]", " 10%|█| 10/100 [loss=0.4]", " 20%|█| 20/100 [loss=0.3]"]
    assert _steps(lines) == [90, 110, 120]


def test_step_total_is_remembered() -> None:
    tracker = StepTracker()
    _steps(["epoch 1 | step 20/200 | loss: 0.5"], tracker)
    assert tracker.total == 200


def test_a_resumed_attempt_continues_inferred_steps() -> None:
    assert _steps(["loss: 0.5", "loss: 0.4"], StepTracker(last_step=57)) == [58, 59]


# --- never raises ------------------------------------------------------------------------------

FRAGMENTS = [
    "loss",
    "val loss",
    "step",
    "epoch",
    "batch",
    "Epoch",
    ":",
    "=",
    " ",
    "|",
    ",",
    " - ",
    "[",
    "]",
    "{",
    "}",
    "'",
    '"',
    "/",
    "\r",
    "\x1b[31m",
    "\x1b]0;t\x07",
    "nan",
    "-inf",
    "inf",
    "1e999",
    "0.5",
    "-3",
    "1234567890123456789012",
    "45/100",
    "200/ 2983 batches",
    "METRICS:",
    '{"step":',
    '{"event": "checkpoint_saved", "path": ',
    "tensor(",
    "%",
    "ms",
    "train_runtime",
    "Test set:",
    "\x00",
    "\ufffd",
    "€",
]

log_like = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8), st.integers().map(str)),
    max_size=24,
).map("".join)


@settings(max_examples=10_000, deadline=None)
@given(line=st.one_of(log_like, st.text(max_size=200)))
def test_parsers_never_raise(line: str) -> None:
    parsed = parsers._parse(line)  # the unguarded parser: it must not need the guard
    assert parsed is None or isinstance(parsed, ParsedLine)
    if parsed is not None:
        StepTracker().resolve(parsed)
        assert all(isinstance(v, float) for v in parsed.values.values())


number = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda x: f"{x:g}"),
    st.sampled_from(["nan", "-inf", "Infinity", "1e-05", ".5", "5.", "+3", "007"]),
)


@settings(max_examples=3000, deadline=None)
@given(line=log_like, data=st.data())
def test_the_template_cache_is_sound(line: str, data: st.DataObject) -> None:
    """A line parsed after another with the same template gets the same answer as alone."""
    parsers._parse(line)  # fills the cache with this template's plan
    parts = parsers._NUM_SPLIT_RE.split(line)
    for i in range(1, len(parts), 2):
        parts[i] = data.draw(number)
    other = "".join(parts)
    cached = parsers._parse(other)
    parsers._plans.clear()
    assert repr(cached) == repr(parsers._parse(other)), other


@settings(max_examples=500, deadline=None)
@given(chunks=st.lists(st.binary(max_size=300), max_size=20))
def test_splitter_never_raises_and_loses_nothing_short(chunks: list[bytes]) -> None:
    s = LineSplitter(max_line=64)
    lines = []
    for chunk in chunks:
        lines += s.feed(chunk)
        assert s.pending_bytes <= 64
    lines += s.flush()
    for line in lines:
        assert len(line) <= 64
        parse_line(line)
    data = b"".join(chunks).replace(b"\r", b"\n")
    if all(len(part) <= 16 for part in data.split(b"\n")):
        expected = data.decode("utf-8", "replace").split("\n")
        if expected and expected[-1] == "":
            expected.pop()
        assert lines == expected


def test_names_with_control_characters_are_dropped() -> None:
    parsed = parse_line('{"step": 1, "lo\\u001b[2Jss": 0.5, "ok": 1}')
    assert parsed is not None and parsed.values == {"ok": 1.0}
