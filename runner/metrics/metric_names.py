"""Metric names as Backprop keeps them: how a key as written becomes a canonical name.

``train loss`` is ``loss`` (the training loss); ``val loss``/``valid loss``/``validation_loss``
are ``val_loss``; ``test loss`` is ``test_loss``; ``eval_loss`` stays; Lightning's
``train_loss_step`` is ``loss``. Counters (``step``, ``iter``, ``num_updates``, ``epoch``,
``batch``) and totals (``total_steps``, ``max_iters``) are named here too.
"""

from __future__ import annotations

import re

MAX_KEY = 64
_SPLIT_KEY_RE = re.compile(r"[\s_./-]+")

STEP_WORDS = frozenset(
    {
        "step",
        "steps",
        "global_step",
        "iter",
        "iters",
        "iteration",
        "iterations",
        "update",
        "updates",
        "num_updates",
    }
)
COUNTER_WORDS = frozenset({"batch", "batches"})
TOTAL_KEYS = frozenset({"total_steps", "max_steps", "num_steps", "max_iters", "total_iters"})
# Never metrics: progress-bar furniture, and what device, process and error lines name
# ("cuda:0", "errno: 98", 'line 13', "got signal: 2", "local_rank: 0").
IGNORED_KEYS = frozenset(
    {"v_num", "eta", "it", "s", "ms", "t", "time_stamp", "timestamp", "pid"}
    | {"cuda", "mps", "xpu", "errno", "line", "signal", "exitcode", "local_rank", "rank"}
    | {"world_size", "seed", "port"}
)
QUALIFIERS = {
    "val": "val",
    "valid": "val",
    "validation": "val",
    "validating": "val",
    "dev": "val",
    "eval": "eval",
    "evaluation": "eval",
    "evaluating": "eval",
    "test": "test",
    "testing": "test",
}
DROPPED = frozenset({"train", "training", "trn", "avg", "average", "mean", "running", "smoothed"})


_key_cache: dict[tuple[str, str], str] = {}


def normalize_key(raw: str, context: str = "") -> str:
    """The canonical metric name for a key as written.

    ``Train Loss`` → ``loss``; ``valid loss``/``val/loss``/``validation_loss`` → ``val_loss``;
    ``Test loss`` → ``test_loss``; ``eval_loss`` → ``eval_loss``; ``ms/batch`` → ``ms_batch``.
    ``context`` is a qualifier (``val``, ``eval``, ``test``) that the line as a whole carries
    (``Test set: Average loss: 0.05``); it applies to keys that have none of their own.
    Returns ``""`` for a key that cannot be a metric name.
    """
    memo = (raw, context)
    hit = _key_cache.get(memo)
    if hit is not None:
        return hit
    tokens = [t for t in _SPLIT_KEY_RE.split(raw.lower()) if t]
    qualifier = ""
    while len(tokens) > 1:
        head = tokens[0]
        if head in QUALIFIERS:
            qualifier = QUALIFIERS[head]
            tokens.pop(0)
        elif head in DROPPED:
            tokens.pop(0)
        else:
            break
    if len(tokens) > 1 and tokens[-1] in ("epoch", "step", "iter", "iteration"):
        if " " in raw.strip():
            tokens = tokens[-1:]  # "end of epoch 1", "global step"
        elif tokens[-1] == "step" and tokens[-2] not in ("global", "num", "total", "max"):
            tokens.pop()  # Lightning's "train_loss_step": the step's loss
    name = "_".join(tokens)
    if name in ("epoch", "step", "iter", "iteration", "global_step"):
        qualifier = ""  # counters are never val/test metrics
    elif not qualifier and context and name not in STEP_WORDS and name not in COUNTER_WORDS:
        qualifier = context
    if qualifier:
        name = f"{qualifier}_{name}"
    if len(name) > MAX_KEY or not name.isprintable():
        name = ""  # too long, or control characters (a key from a JSON line can hold anything)
    if len(_key_cache) > 4096:
        _key_cache.clear()
    _key_cache[memo] = name
    return name
