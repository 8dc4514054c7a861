"""What is not a metric: the precision rule of capture from training output.

Training output holds much more than metrics, and most of it has numbers in it. A line that is
one of these yields no metric:

- a log-record prefix (``W1202 23:16:16.530000 20880 torch/distributed/run.py:874]``,
  ``[rank0]:``, ``2024-01-01 12:00:01,123 - INFO - name -``): the prefix is cut, and the
  record's message is read only when its level is below a warning;
- another rank's line (``[rank1]: ...``, ``[default1]: ...``): rank 0 speaks for the run;
- a traceback, an exception, and the source lines a traceback echoes;
- a warning (``UserWarning: ...``, a ``WARNING`` or ``ERROR`` record, c10d's
  ``[W socket.cpp:464] ...``);
- a device, distributed or library banner (``GPU available: True (cuda), used: True``,
  ``compute capability: 8.0``, NCCL and CUDA versions, Lightning's parameter summary);
- a download or data-preparation progress bar (``Downloading``, ``Map: 100%|...``, sizes in
  bytes per second), or a validation/test progress bar of Lightning;
- a printed object (``TrainingArguments(`` ... ``)``, a model's repr), and a line that is a
  bare Python call (``print(json.dumps({"loss": 1.0/step}))``).

:func:`message_start` is the stateless part (one line alone); :class:`NoiseFilter` the part
that needs the lines before (a traceback's echoed source line, an argument dump spanning many
lines). Both are pure and cheap: the parser caches :func:`message_start` per line template.
"""

from __future__ import annotations

import re

# "[rank1]:" (torch.distributed's per-rank prefix), "[default1]:" (torchrun --tee).
_RANK_RE = re.compile(r"\[(?:rank|default)(\d+)\]:[ \t]?")
# glog/absl and c10 ("W1202 23:16:16.530000 20880 file.py:874] ", "[W socket.cpp:464] ").
_GLOG_RE = re.compile(
    r"\[?(?P<g>[IWEF])(?:\d{4}[ \t]+\d\d:\d\d:\d\d(?:\.\d+)?[ \t]+\d+[ \t]+|[ \t]+)"
    r"[^\]\s]+:\d+\][ \t]*"
)
# A bracketed time prefix without a level (detectron2: "[12/07 14:41:08 d2.utils.events]: ").
_TIME_BRACKET_RE = re.compile(r"\[[^\]]{0,80}?\d\d:\d\d(?::\d\d)?[^\]]{0,80}\]:?[ \t]*")
_LEVEL_RE = re.compile(r"(?<![A-Za-z])(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)(?![A-Za-z])")
# What may come before a level: times, dates, punctuation and at most one logger name.
_LEVEL_HEAD_RE = re.compile(
    r"[\s\d/:.,T+|()\[\]-]*(?:[A-Za-z_][\w.<>-]*[\s|:\]\[-]+)?[\s\d/:.,T+|()\[\]-]*"
)
# What follows a level: separators and a logger name ("INFO:root:", "INFO - name - ",
# "| INFO | fairseq.trainer | ", "INFO [name] ", "| INFO     | __main__:main:42 - ").
_LEVEL_TAIL_RE = re.compile(
    r"\]?[ \t]*(?:[-|:][ \t]*)?"
    r"(?:[\w.<>]+(?::\w+:\d+)?[ \t]+[-|][ \t]+|[\w.<>-]+:(?=\S)|\[[\w.<>-]+\][ \t]*(?:-[ \t]*)?)?"
)
_LOUD_LEVELS = frozenset({"WARNING", "WARN", "ERROR", "CRITICAL", "FATAL"})

# Noise at the start of a message.
_NOISE_START_RE = re.compile(
    r"Traceback \(most recent call last\)|File \"[^\"]*\", line \d+"
    r"|During handling of the above exception|The above exception was the direct cause"
    # an exception line: "KeyboardInterrupt", "torch.OutOfMemoryError: ...", "SystemExit: 1"
    r"|(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Interrupt|Exit|Warning|Failure)(?::|$)"
    r"|warnings\.warn\("
    r"|[GTHI]PU available:|MPS available:|LOCAL_RANK:|Initializing distributed:"
    r"|All distributed processes registered|(?:Global )?[Ss]eed set to"
    r"|You are using a CUDA device|Missing logger folder|Using (?:16|32|64|bf16)"
    r"|(?:Downloading|Fetching|Extracting|Uploading|Unpacking|Loading checkpoint shards"
    r"|Generating \w+ split|Resolving data files|Computing checksums|Tokeniz|Running tokenizer"
    r"|Saving the dataset|Collecting|Installing|Successfully installed|Requirement already)"
    r"|(?:Map|Filter)(?: \(num_proc=\d+\))?:"
    r"|(?:Sanity Checking|Validation|Validating|Testing|Test|Predicting|Prediction)"
    r"(?: DataLoader \d+)?:[ \t]*(?:\d+%)?\|"
    # A bare call, an assignment from one, or a module's repr line: "(fc): Linear(...)".
    r"|(?:\([\w.-]+\):[ \t]*)?(?:[A-Za-z_][\w.]*[ \t]*=[ \t]*)?[A-Za-z_][\w.]*\(.*\)[,;]?[ \t]*$"
)
# Noise anywhere in a message.
_NOISE_ANY_RE = re.compile(
    r"\b(?:[A-Z]\w*)?Warning\b|compute[ _]capability|cuda capability|CUDA_VISIBLE_DEVICES"
    r"|\bNCCL\b|cuDNN|\bCUDA (?:[Vv]ersion|runtime|driver)|Driver Version|DeviceProperties"
    r"|total_memory=|multi_processor_count|socket\.cpp|\bc10d\b|\berrno\b|GLOBAL_RANK|WORLD_SIZE"
    r"|MASTER_(?:ADDR|PORT)|process group|(?:Trainable|Non-trainable|Total) params"
    r"|Total estimated model params|parameter tensors|number of parameters"
    r"|Modules in (?:train|eval) mode|`Trainer\.\w+` stopped"
    r"|\d[kKMGT]?i?B/s\b|\d(?:\.\d+)?[kMGT]i?B?/\d+(?:\.\d+)?[kMGT]i?B?\b|\b(?:files|examples|ba)/s\b"
)


def message_start(s: str) -> int:
    """Where the message of a stripped output line begins, or ``-1`` when the line is noise.

    A log prefix is skipped (a warning's or an error's record is noise as a whole); what
    remains is checked against the precision rule (see the module's docstring).
    """
    pos = 0
    if s[:1] == "[":
        m = _RANK_RE.match(s)
        if m is not None:
            if int(m.group(1)) != 0:
                return -1  # another rank: rank 0 speaks for the run
            pos = m.end()
    m = _GLOG_RE.match(s, pos)
    if m is not None:
        if m.group("g") != "I":
            return -1
        pos = m.end()
    elif s[pos : pos + 1] == "[":
        m = _TIME_BRACKET_RE.match(s, pos)
        if m is not None:
            pos = m.end()
    lv = _LEVEL_RE.search(s, pos, pos + 100)
    if lv is not None and _LEVEL_HEAD_RE.fullmatch(s, pos, lv.start()):
        if lv.group(1) in _LOUD_LEVELS:
            return -1
        tail = _LEVEL_TAIL_RE.match(s, lv.end())
        pos = tail.end() if tail is not None else lv.end()
    if _NOISE_START_RE.match(s, pos) or _NOISE_ANY_RE.search(s, pos):
        return -1
    return pos


def strip_rank(line: str) -> tuple[int | None, str]:
    """The rank of a ``[rankN]:``-prefixed line (``None`` without one) and the rest of it."""
    if line[:1] != "[":
        return None, line
    m = _RANK_RE.match(line)
    if m is None:
        return None, line
    return int(m.group(1)), line[m.end() :]


_NONE, _TRACE, _AFTER_EXC, _REPR, _WARN_ECHO, _BANNER = range(6)
_OPENING_ENDS = ("(", "*", " ", "\t")  # a printed object's or a banner's first line ends so
_BANNER_RE = re.compile(r"\*{3,}[ \t].*[ \t]\*{3,}$")
_REPR_OPEN_RE = re.compile(r"[A-Za-z_][\w.]*\($")
MAX_BLOCK = 2000  # a block never hides more lines than this (an unclosed repr, say)


class NoiseFilter:
    """The precision rule for what spans lines: tracebacks, printed objects, warnings, banners.

    Feed it every line of output in order; :meth:`skip` says which ones are part of a block
    that yields no metric:

    - a traceback from ``Traceback (most recent call last):`` to its exception line, with the
      source lines it echoes (``print(json.dumps({"loss": 1.0/step}))``) and the indented
      lines right after the exception (a multi-line message);
    - a printed object from a line ending in ``Name(`` to the line that closes it
      (``TrainingArguments(`` ... ``)``, a model's repr);
    - the source line Python echoes under a warning (``  warnings.warn(...``);
    - a banner block such as Hugging Face's ``***** Running training *****`` and its
      ``  Num examples = 1,000`` lines (its ``Total optimization steps`` line is kept: it gives
      the total), and its ``***** train metrics *****`` digest.

    Lines are judged after a ``[rankN]:`` prefix is removed, so each rank's traceback is
    recognised even when ranks interleave.
    """

    def __init__(self) -> None:
        self._mode = _NONE
        self._left = 0
        self._depth = 0

    def skip(self, line: str) -> bool:
        """Whether ``line`` belongs to a block that yields no metric (updates the state)."""
        if self._mode == _NONE and line[:1] != "[":  # the common case, kept cheap
            if "Traceback" in line or "Warning:" in line or line[-1:] in _OPENING_ENDS:
                return self._opens(line)
            return False
        if line[:1] == "[":
            line = strip_rank(line)[1]
        mode = self._mode
        if mode != _NONE:
            self._left -= 1
            if self._left <= 0:
                self._mode = mode = _NONE
        if mode == _TRACE:
            if not line or line[0] in " \t" or line.startswith(("During handling", "The above")):
                return True
            self._enter(_AFTER_EXC)  # the exception line ends the traceback
            return True
        if mode in (_AFTER_EXC, _WARN_ECHO):
            self._mode = _NONE
            # A multi-line message is indented by a tab or four spaces, an echoed warning
            # source line by two; a progress bar (" 25%|██▌ | 4/16") never belongs to either.
            indent = ("\t", "    ") if mode == _AFTER_EXC else ("\t", "  ")
            if line.startswith(indent) and line.strip() and "%|" not in line:
                if mode == _AFTER_EXC:
                    self._enter(_AFTER_EXC)
                return True
        elif mode == _REPR:
            self._depth += line.count("(") - line.count(")")
            if self._depth <= 0:
                self._mode = _NONE
            return True
        elif mode == _BANNER:
            if line[:1] in (" ", "\t") and " = " in line:
                return "Total optimization steps" not in line
            self._mode = _NONE
        return self._opens(line)

    def _enter(self, mode: int) -> None:
        self._mode, self._left = mode, MAX_BLOCK

    def _opens(self, line: str) -> bool:
        """Whether ``line`` starts a block (and is part of it)."""
        if "Traceback" in line and (
            "Traceback (most recent call last)" in line or "Exception Group Traceback" in line
        ):
            self._enter(_TRACE)
            return True
        if "Warning:" in line:
            self._enter(_WARN_ECHO)
            return True
        last = line[-1:]
        if last not in ("(", "*", " ", "\t"):
            return False  # the common case, decided without copying the line
        s = line.strip()
        if not s:
            return False
        last = s[-1]
        if last == "(" and _REPR_OPEN_RE.search(s):
            self._enter(_REPR)
            self._depth = s.count("(") - s.count(")")
            return True
        if last == "*" and s[0] == "*" and _BANNER_RE.match(s):
            self._enter(_BANNER)
            return True
        return False
