# over 400 lines: one concept, the output-line parser (patterns, plan cache, JSON lines)
r"""Metrics from training output, with zero integration: pure parsers that never raise.

Recognised forms, one line at a time:

- Backprop JSON lines ``{"step": 3, "loss": 0.5}`` and ``{"event": "checkpoint_saved", ...}``;
- NetSmith ``METRICS:{...}``;
- ``key: value``, ``key=value`` and quoted dict reprs (HF Trainer ``{'loss': 0.53, ...}``);
- whitespace pairs between delimiters: ``| lr 5.00 | loss 7.63 |``,
  ``iter 100: loss 2.3456, time 12.34ms``, ``epoch 1 | step 20/200``;
- progress counters ``45/100`` (tqdm, Lightning, Keras) and ``200/2983 batches``.

The frameworks' own forms are read too: bare ``step 10 loss 1.0853``; nanoGPT, llm.c; HF
Trainer's dicts with plain (4.x) or quoted (5.x) values; Lightning's bars (``train_loss_step``);
fairseq's ``num_updates``; timm's ``Train: 0 [ 100/1251 ...]``; torchvision references'
``Epoch: [0]  [ 10/5005]``; detectron2's ``iter: 19  total_loss: 2.1`` (a ``total_loss`` is
the loss when there is no plain one); mmengine's ``Epoch(train) [1][ 50/500]``; Keras; and any
of these behind a Python ``logging``, glog or ``[rank0]:`` prefix. What is *not* a metric
(prefixes, other ranks, tracebacks, warnings, banners, download bars) is
:mod:`runner.metrics.capture_noise`'s precision rule.

Keys are normalised by :func:`runner.metrics.metric_names.normalize_key`. :class:`LineSplitter`
(:mod:`runner.metrics.line_split`) turns raw reads into lines and :class:`StepTracker`
(:mod:`runner.metrics.steps`) gives every record a step, inferring one when the line has none.
"""

from __future__ import annotations

import json
import math
import re

from runner.metrics.capture_noise import message_start, strip_rank
from runner.metrics.line_split import MAX_LINE, LineSplitter
from runner.metrics.metric_names import (
    COUNTER_WORDS,
    IGNORED_KEYS,
    QUALIFIERS,
    STEP_WORDS,
    TOTAL_KEYS,
    normalize_key,
)
from runner.metrics.steps import MAX_STEP, ParsedLine, StepTracker
from runner.textsafe import collapse_redraws, strip_escapes

# parse_line's public companions, long imported from here.
__all__ = [
    "COUNTER_WORDS",
    "IGNORED_KEYS",
    "MAX_LINE",
    "STEP_WORDS",
    "TOTAL_KEYS",
    "LineSplitter",
    "ParsedLine",
    "StepTracker",
    "normalize_key",
    "parse_line",
    "to_float",
]

MAX_VALUES = 64

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?i:nan|inf(?:inity)?)(?![A-Za-z])"
_WRAP = r"(?:tensor\(|np\.float\d*\(|float\d*\(|\[)?"
# What may follow a value: a unit, then not a word, a time ("0:01:23"), a version, a date or
# the rest of a number grouped in thousands ("1,000").
_END = r"(?P<{0}>%|[a-zA-Zµ]{{1,3}}(?:/[a-zA-Z]{{1,5}})?)?(?!\w|[:.]\d|-\d|,\d{{3}}(?!\d))"
_KEY = r"[A-Za-z_][\w./-]*"
# Words that never end a key: "Epoch 3 of 10", "Seed set to 42", "Saving 3 files to 2 dirs".
_STOP = (
    r"(?:of|to|in|at|by|for|from|with|and|or|the|a|an|is|are|was|be|on|per|than|into|over"
    r"|after|every|each|as|if|x)"
)
# A key of up to three words written without ":" or "=" ("val loss 0.61", "step 10").
_WORD_KEY = rf"(?:[A-Za-z][\w/-]* ){{0,2}}(?!{_STOP}\b)[A-Za-z][\w/-]*"
# Before a key without ":"/"=": the line's start, a delimiter, or the previous pair's value
# ("step 10 loss 1.0853", "time 12.3ms loss 0.5").
_LEAD = (
    r"(?:^|(?<=[|,;\[\]\t{(])|(?<= - )|(?<=: )|(?<=\d )|(?<=\d[%a-zA-Z] )"
    r"|(?<=\d[a-zA-Z]{2} ))[ \t]*"
)
# ... followed by a delimiter, by an explicit pair ("step 5 loss=0.5") or by another bare pair
# ("step 10 loss 1.0853").
_TAIL = (
    r"(?=[ \t]*(?:$|[|,;\[\]:()}]|-[ \t])|[ \t]+[A-Za-z_][\w./-]*[ \t]*[:=][ \t]*[-+.\dnNiI]"
    rf"|[ \t]+{_WORD_KEY}[ \t]+[-+]?\.?\d)"
)
# Words that may qualify the key of an explicit pair ("val loss: 0.6", "Learning rate: 1e-3").
_QUALIFYING = (
    r"(?i:val|valid|validation|eval|evaluation|test|train|training|average|avg|mean|running"
    r"|smoothed|learning|grad|gradient|global|total|batch|tokens|samples)"
)

# One pass per line; each alternative is one form.
_PAIR_RE = re.compile(
    # key: value, key=value, 'key': value, "key": value (two-word keys: "val loss: 0.6")
    # (HF Trainer 5.x quotes its values: 'loss': '4.855')
    rf"(?<![\w./-])['\"]?(?P<k>(?:{_QUALIFYING} )?{_KEY})['\"]?[ \t]*[:=][ \t]*(?P<q>['\"])?"
    rf"{_WRAP}(?P<v>{_NUM})(?:[ \t]*/[ \t]*(?P<tot>\d+))?{_END.format('u')}(?(q)['\"])"
    # key value between delimiters or in a row: "| lr 5.00 |", "iter 100: ...", "step 10 loss 1"
    # ("Epoch [1/10], Step [100/600]" too)
    rf"|{_LEAD}(?P<wk>{_WORD_KEY})[ \t]+\[?"
    rf"(?P<wv>{_NUM})(?:[ \t]*/[ \t]*(?P<wtot>\d+))?{_END.format('wu')}{_TAIL}"
    # counters: "45/100 [", "| 200/2983 batches |", "1875/1875 ━━━"
    rf"|{_LEAD}(?P<cn>\d+)[ \t]*/[ \t]*(?P<ct>\d+)(?:[ \t]+(?P<cw>[A-Za-z]+))?(?=\s|$|[|,;\[\]])"
)
# Splits a line into text and numbers (kept); the text and the numbers' shapes are the line's
# template, whose parse is cached. (Digits inside words, "top5" or "gpu0", stay text.)
_NUM_SPLIT_RE = re.compile(
    r"((?=[-+.\dnNiI])(?<![A-Za-z_])(?:[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
    r"|[-+]?(?i:nan|inf(?:inity)?)(?![A-Za-z])))"
)
# A number's shape: its characters with every digit alike.
_SHAPE = str.maketrans("123456789", "000000000")
_CONTEXT_RE = re.compile(
    r"^\W*(val|valid|validation|validating|eval|evaluation|evaluating|test|testing)\b", re.I
)
# fairseq's "epoch 001 | valid on 'valid' subset | loss 7.9 | ...".
_SUBSET_CONTEXT_RE = re.compile(r"\|[ \t]*(valid|validation|eval|test)[ \t]+on\b", re.I)
# mmengine's "Epoch(train)  [1][ 50/500]" and "Iter(train) [  50/1000]".
_MM_RE = re.compile(
    r"\b(?P<kind>Epoch|Iter)\((?P<phase>train|val|test)\)[ \t]*"
    r"\[[ \t]*(?P<a>\d+)(?:[ \t]*/[ \t]*(?P<at>\d+))?[ \t]*\]"
    r"(?:[ \t]*\[[ \t]*(?P<b>\d+)[ \t]*/[ \t]*(?P<bt>\d+)[ \t]*\])?"
)
# Words before a step key that make it a total ("Total optimization steps = 375").
_TOTAL_WORDS = ("total", "max", "num", "optimization", "number of")
# The loss when a line has no plain one (detectron2, mmdet: "total_loss: 2.1  loss_cls: 0.8").
TOTAL_LOSS_KEYS = ("total_loss", "loss_total", "overall_loss")
_SPECIAL = STEP_WORDS | COUNTER_WORDS | TOTAL_KEYS | {"epoch"}


# --- numbers ---------------------------------------------------------------------------------


def to_float(text: str) -> float | None:
    """A number as written in a log (``0.5``, ``5e-05``, ``nan``, ``-inf``), or ``None``."""
    try:
        return float(text)
    except (ValueError, OverflowError):
        return None


def _as_int(value: float) -> int | None:
    if math.isfinite(value) and value == int(value) and 0 <= value < MAX_STEP:
        return int(value)
    return None


def _positive_int(text: str | None) -> int | None:
    if not text or len(text) > 15 or not text.isdecimal():
        return None
    n = int(text)
    return n if n > 0 else None


# --- one line --------------------------------------------------------------------------------


def parse_line(line: str) -> ParsedLine | None:
    """Parse one line of output. Never raises; ``None`` when the line carries nothing."""
    try:
        return _parse(line)
    except Exception:  # a parser bug must never stop ingestion
        return None


def _parse(line: str) -> ParsedLine | None:
    if len(line) > MAX_LINE:
        line = line[:MAX_LINE]
    if "\x1b" in line or "\x9b" in line:
        line = strip_escapes(line)
    if "\r" in line:
        line = collapse_redraws(line)
    s = line.strip()
    if not s:
        return None
    if s[0] == "[":
        rank, rest = strip_rank(s)
        if rank is not None:
            if rank != 0:
                return None  # another rank's line: rank 0 speaks for the run
            s = rest.strip()
            if not s:
                return None
    if s[0] == "{" and len(s) > 1 and s[1] == '"':
        return _parse_json(s)
    marker = s.find("METRICS:")
    if marker >= 0:
        return _parse_json(s[marker + 8 :].strip())
    parts = _NUM_SPLIT_RE.split(s)
    if len(parts) == 1:
        return None  # no number, no metric
    if len(s) > MAX_TEMPLATE:
        return _apply_spans(s, _pairs_of(s))
    # Training logs repeat a few templates with new numbers: parse each template once. The
    # regular expressions decide from the text and the numbers' shapes, never their digits.
    numbers = parts[1::2]
    template = (tuple(parts[0::2]), "\x00".join(numbers).translate(_SHAPE))
    plan = _plans.get(template)
    if plan is None:
        plan = _make_plan(s, parts)
        if len(_plans) >= MAX_PLANS:
            _plans.clear()
        _plans[template] = plan
    if plan is _UNCACHEABLE:
        return _apply_spans(s, _pairs_of(s))
    return _apply_plan(plan, numbers)


# A pair found in a line: (kind, name, value span, total span, key span). _PAIR is
# "name value[/total]", _COUNTER is "n/total [word]" (the name is then the word after it, or
# ""), and _PLAIN, only in plans, a pair that is just a metric value.
_PAIR, _COUNTER, _PLAIN = 0, 1, 2
_Span = tuple[int, int]
_Pair = tuple[int, str, _Span, _Span | None, _Span]
# The same with spans replaced by the index of the number among the line's numbers (-1: none).
_PlanItem = tuple[int, str, int, int]
_UNCACHEABLE: list[_PlanItem] = []
_plans: dict[tuple[tuple[str, ...], str], list[_PlanItem]] = {}
MAX_PLANS = 1024
MAX_TEMPLATE = 512


def _pairs_of(s: str) -> list[_Pair]:
    """The pairs of a stripped line's message.

    None when the line is noise (a log prefix, a traceback, a warning, a banner...; see
    :mod:`runner.metrics.capture_noise`).
    """
    start = message_start(s)
    if start < 0:
        return []
    if start == 0:
        return _find_pairs(s)
    return [
        (kind, name, _shift(a, start), None if b is None else _shift(b, start), _shift(k, start))
        for kind, name, a, b, k in _find_pairs(s[start:])
    ]


def _shift(span: _Span, by: int) -> _Span:
    return (span[0] + by, span[1] + by) if span != (0, 0) else span


def _find_pairs(s: str) -> list[_Pair]:
    pairs: list[_Pair] = []
    ctx_match = _CONTEXT_RE.match(s)
    context = QUALIFIERS[ctx_match.group(1).lower()] if ctx_match else ""
    if not context and " on " in s:
        sub = _SUBSET_CONTEXT_RE.search(s)
        context = QUALIFIERS[sub.group(1).lower()] if sub else ""
    pos = 0
    if "(train)" in s or "(val)" in s or "(test)" in s:
        mm = _MM_RE.search(s)
        if mm is not None:
            pos = mm.end()
            context = _mm_pairs(mm, pairs)
    hf_summary = "train_runtime" in s
    hf_dict = s.startswith("{'")  # HF Trainer: its "epoch" is a fraction, not a label
    for m in _PAIR_RE.finditer(s, pos):
        key = m.group("k")
        if key is not None:
            v, tot = "v", "tot"
        else:
            key = m.group("wk")
            if key is None:
                if context:
                    continue  # a validation/test progress counter is not a training step
                word = (m.group("cw") or "").lower()
                pairs.append((_COUNTER, word, m.span("cn"), m.span("ct"), (0, 0)))
                continue
            v, tot = "wv", "wtot"
        name = normalize_key(key, context)
        if not name or name in IGNORED_KEYS:
            continue
        k = "k" if v == "v" else "wk"
        kind = _PAIR
        if hf_summary and key[:6].lower() == "train_" and key.isidentifier():
            name = key.lower()  # HF's end-of-training digest: "train_loss" is no step's loss
        elif name in STEP_WORDS and k == "k" and s[: m.start(k)].rstrip()[-1:].isalpha():
            if not s[: m.start(k)].rstrip().lower().endswith(_TOTAL_WORDS):
                continue  # a setting: "Gradient Accumulation steps = 1", "warmup steps: 100"
            name = "total_steps"  # "Total optimization steps = 375"
        elif name == "train" and v == "v":
            name = "epoch"  # timm: "Train: 3 [ 100/1251 ...]"
        elif name == "epoch" and hf_dict:
            kind = _PLAIN
        pairs.append((kind, name, m.span(v), m.span(tot) if m.group(tot) else None, m.span(k)))
        if len(pairs) >= MAX_VALUES:
            break
    return pairs


def _mm_pairs(mm: re.Match[str], pairs: list[_Pair]) -> str:
    """The pairs of mmengine's ``Epoch(train) [1][ 50/500]``; returns the line's context."""
    phase = mm.group("phase")
    if phase != "train":
        return "val" if phase == "val" else "test"
    key = mm.span("kind")
    if mm.group("kind") == "Iter":
        if mm.group("at"):
            pairs.append((_COUNTER, "iter", mm.span("a"), mm.span("at"), (0, 0)))
        else:
            pairs.append((_PAIR, "step", mm.span("a"), None, key))
        return ""
    pairs.append((_PAIR, "epoch", mm.span("a"), None, key))
    if mm.group("b"):
        pairs.append((_COUNTER, "", mm.span("b"), mm.span("bt"), (0, 0)))
    return ""


def _make_plan(s: str, parts: list[str]) -> list[_PlanItem]:
    index: dict[_Span, int] = {}
    pos = 0
    for i, text in enumerate(parts):
        if i % 2:
            index[(pos, pos + len(text))] = i // 2
        pos += len(text)
    plan: list[_PlanItem] = []
    for kind, name, span, total, key in _pairs_of(s):
        a = index.get(span)
        b = index.get(total) if total is not None else -1
        if a is None or b is None or any(key[0] < end and start < key[1] for start, end in index):
            # The number split disagrees with the pair, or a key holds a number ("layer.0"):
            # the name depends on the digits, so this template is parsed every time.
            return _UNCACHEABLE
        if kind == _PAIR and b < 0 and name not in _SPECIAL:
            kind = _PLAIN
        plan.append((kind, name, a, b))
    names = {item[1] for item in plan}
    if "loss" not in names:  # what _finish does, decided once per template
        for alias in TOTAL_LOSS_KEYS:
            if alias in names:
                plan = [(k, "loss" if n == alias else n, i, j) for k, n, i, j in plan]
                break
    return plan


def _apply_plan(plan: list[_PlanItem], numbers: list[str]) -> ParsedLine | None:
    out = ParsedLine()
    values = out.values
    for kind, name, a, b in plan:
        if kind == _PLAIN:
            values[name] = float(numbers[a])  # a number token is always a float literal
        elif kind == _COUNTER:
            _counter(out, numbers[a], numbers[b], name)
        else:
            _assign(out, name, float(numbers[a]), _positive_int(numbers[b]) if b >= 0 else None)
    return None if out.empty() else out


def _apply_spans(s: str, pairs: list[_Pair]) -> ParsedLine | None:
    out = ParsedLine()
    for kind, name, (a0, a1), total, _ in pairs:
        tot = s[total[0] : total[1]] if total is not None else None
        if kind == _COUNTER:
            _counter(out, s[a0:a1], tot or "0", name)
            continue
        value = to_float(s[a0:a1])
        if value is None:
            continue
        if kind == _PLAIN:
            out.values[name] = value
        else:
            _assign(out, name, value, _positive_int(tot))
    return _finish(out)


def _finish(out: ParsedLine) -> ParsedLine | None:
    values = out.values
    if "loss" not in values:
        for key in TOTAL_LOSS_KEYS:
            if key in values:
                values["loss"] = values.pop(key)  # the loss when there is no plain one
                break
    return None if out.empty() else out


def _counter(out: ParsedLine, n: str, total: str, word: str) -> None:
    if len(n) > 15 or len(total) > 15 or not n.isdecimal() or not total.isdecimal():
        return
    value, tot = int(n), int(total)
    if tot <= 0 or value > tot:
        return
    if word in STEP_WORDS or word == "it":
        if out.step is None:
            out.step, out.step_total = value, tot
    elif out.counter is None:
        out.counter, out.counter_total = value, tot


def _assign(out: ParsedLine, name: str, value: float, total: int | None) -> None:
    if name in STEP_WORDS:
        step = _as_int(value)
        if step is not None and out.step is None:
            out.step = step
            out.step_total = total or out.step_total
        return
    if name in COUNTER_WORDS:
        n = _as_int(value)
        if n is not None and out.counter is None:
            out.counter, out.counter_total = n, total
        return
    if name in TOTAL_KEYS:
        n = _as_int(value)
        if n:
            out.step_total = n
        return
    if name == "epoch":
        e = _as_int(value)
        if e is not None and out.epoch is None:
            out.epoch, out.epoch_total = e, total
    out.values[name] = value


def _parse_json(text: str) -> ParsedLine | None:
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    out = ParsedLine()
    event = obj.get("event")
    if event is not None:
        path = obj.get("path")
        if event in ("checkpoint_saved", "checkpoint") and isinstance(path, str) and path:
            out.checkpoint = path[:4096]
            step = obj.get("step")
            if isinstance(step, int | float) and not isinstance(step, bool):
                out.step = _as_int(float(step))
            return out
        return None
    _flatten(out, obj, "", 0)
    return _finish(out)


def _flatten(out: ParsedLine, obj: dict[object, object], prefix: str, depth: int) -> None:
    for key, raw in obj.items():
        if len(out.values) >= MAX_VALUES:
            return
        if not isinstance(key, str):
            continue
        if isinstance(raw, dict):
            if depth < 2:
                _flatten(out, raw, f"{prefix}{key}/", depth + 1)
            continue
        if isinstance(raw, bool):
            continue
        if isinstance(raw, int | float):
            value = float(raw)
        elif isinstance(raw, str) and len(raw) < 12:
            v = to_float(raw)
            if v is None or math.isfinite(v):
                continue  # only "nan"/"inf" spelt as strings count
            value = v
        else:
            continue
        name = normalize_key(prefix + key)
        if name and name not in IGNORED_KEYS:
            _assign(out, name, value, None)
