"""``backprop.toml``: where it is found, what it may say, and the defaults when it is silent.

Lookup order: ``$BACKPROP_CONFIG`` if set, else ``./backprop.toml``, else
``$BACKPROP_HOME/backprop.toml``. Every section is optional. The ``[governor]`` section is read
by :mod:`governor.settings`; this module only hands it over.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import envnames

CONFIG_NAME = "backprop.toml"

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h|hr|d)?\s*$", re.I)
_DURATION_UNITS = {
    None: 1.0,
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "d": 86400.0,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.I)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


class ConfigError(ValueError):
    """``backprop.toml`` or a command-line value could not be understood."""


def parse_duration(text: str | float | int) -> float:
    """Parse ``90s``, ``10m``, ``2h``, ``1.5h``, ``500ms`` or a bare number of seconds.

    Raises:
        ConfigError: for anything else, or a duration that is not positive.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        m = _DURATION_RE.match(str(text))
        if not m:
            raise ConfigError(f"not a duration: {text!r} (use e.g. 90s, 10m, 2h)")
        unit = m.group(2).lower() if m.group(2) else None
        seconds = float(m.group(1)) * _DURATION_UNITS[unit]
    if not seconds > 0:
        raise ConfigError(f"duration must be positive: {text!r}")
    return seconds


def parse_size(text: str | int) -> int:
    """Parse ``512M``, ``8GiB``, ``8G``, ``1.5g`` or a bare number of bytes (binary units).

    Raises:
        ConfigError: for anything else.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ConfigError(f"size must not be negative: {text}")
        return text
    m = _SIZE_RE.match(str(text))
    if not m:
        raise ConfigError(f"not a size: {text!r} (use e.g. 512M, 8G, 8GiB)")
    unit = (m.group(2) or "").lower()[:1]
    return int(float(m.group(1)) * _SIZE_UNITS[unit])


def format_duration(seconds: float | None) -> str:
    """Format seconds as ``1h02m``, ``3m05s`` or ``42s`` (``-`` for ``None``)."""
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def format_size(n: int | float | None) -> str:
    """Format bytes with binary units (``1.5 GiB``)."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


@dataclass(frozen=True)
class RunDefaults:
    """Defaults for new runs (the ``[run]`` section)."""

    python: str | None = None
    grace_int_s: float = 30.0
    grace_term_s: float = 10.0
    output_cap_bytes: int = 256 * 1024 * 1024
    resume_args: tuple[str, ...] = ()
    primary_metric: str = "loss"
    timeout_s: float | None = None
    stall_factor: float = 10.0
    stall_after_s: float = 60.0
    after: tuple[str, ...] = ()
    after_any: tuple[str, ...] = ()
    checkpoint_globs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    """The whole configuration: typed run defaults plus the raw sections for other layers."""

    run: RunDefaults = field(default_factory=RunDefaults)
    raw: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def section(self, name: str) -> dict[str, Any]:
        """Return a raw section (empty when absent)."""
        value = self.raw.get(name, {})
        return value if isinstance(value, dict) else {}


def find_config(home: Path, cwd: Path | None = None) -> Path | None:
    """Return the configuration file that applies, if any (see the module docstring)."""
    explicit = os.environ.get(envnames.CONFIG)
    if explicit:
        return Path(explicit)
    for candidate in ((cwd or Path.cwd()) / CONFIG_NAME, home / CONFIG_NAME):
        if candidate.is_file():
            return candidate
    return None


def load_config(home: Path, cwd: Path | None = None) -> Config:
    """Load and validate the configuration that applies.

    Raises:
        ConfigError: with the file and the problem, in one line.
    """
    path = find_config(home, cwd)
    if path is None:
        return Config()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        return Config(run=_run_defaults(raw.get("run", {})), raw=raw, path=path)
    except (ConfigError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _run_defaults(d: Any) -> RunDefaults:
    if not isinstance(d, dict):
        raise ConfigError("[run] must be a table")
    known = {
        "python",
        "grace_int",
        "grace_term",
        "output_cap",
        "resume_args",
        "primary_metric",
        "timeout",
        "stall_factor",
        "stall_after",
        "after",
        "after_any",
        "checkpoint_glob",
    }
    unknown = set(d) - known
    if unknown:
        raise ConfigError(f"[run] has unknown keys: {', '.join(sorted(unknown))}")
    resume_args = d.get("resume_args", [])
    if not isinstance(resume_args, list) or not all(isinstance(a, str) for a in resume_args):
        raise ConfigError("[run] resume_args must be a list of strings")
    python = d.get("python")
    if python is not None and not isinstance(python, str):
        raise ConfigError("[run] python must be a string")
    metric = d.get("primary_metric", "loss")
    if not isinstance(metric, str) or not metric:
        raise ConfigError("[run] primary_metric must be a non-empty string")
    timeout = d.get("timeout")
    stall_factor = d.get("stall_factor", 10.0)
    if isinstance(stall_factor, bool) or not isinstance(stall_factor, (int, float)):
        raise ConfigError("[run] stall_factor must be a number")
    if not stall_factor > 1:
        raise ConfigError("[run] stall_factor must be greater than 1")
    after = {key: _run_refs(d, key) for key in ("after", "after_any")}
    globs = d.get("checkpoint_glob", [])
    if isinstance(globs, str):
        globs = [globs]
    if not isinstance(globs, list) or not all(isinstance(g, str) and g.strip() for g in globs):
        raise ConfigError("[run] checkpoint_glob must be a glob or a list of globs")
    from runner.checkpoints.forms import glob_error

    for g in globs:
        problem = glob_error(g)
        if problem:
            raise ConfigError(f"[run] checkpoint_glob: {problem}")
    return RunDefaults(
        after=after["after"],
        after_any=after["after_any"],
        python=python,
        grace_int_s=parse_duration(d.get("grace_int", 30)),
        grace_term_s=parse_duration(d.get("grace_term", 10)),
        output_cap_bytes=parse_size(d.get("output_cap", "256M")),
        resume_args=tuple(resume_args),
        primary_metric=metric,
        timeout_s=parse_duration(timeout) if timeout is not None else None,
        stall_factor=float(stall_factor),
        stall_after_s=parse_duration(d.get("stall_after", 60)),
        checkpoint_globs=tuple(globs),
    )


def _run_refs(d: dict[str, Any], key: str) -> tuple[str, ...]:
    """``[run] after`` / ``after_any``: run ids or names, as a list or one string."""
    value = d.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"[run] {key} must be a list of run ids or names")
    return tuple(value)


# Each entry: section, key, default, comment. Sections owned by other layers append theirs
# through register_defaults() so `backprop init` documents every setting in one file.
_DOCUMENTED: list[tuple[str, str, Any, str]] = [
    ("run", "python", "python3", "interpreter for SCRIPT.py runs (else --python, else python3)"),
    ("run", "grace_int", "30s", "after SIGINT, wait this long before SIGTERM"),
    ("run", "grace_term", "10s", "after SIGTERM, wait this long before SIGKILL"),
    ("run", "output_cap", "256M", "cap on output.log; beyond it the head and latest tail are kept"),
    ("run", "resume_args", [], 'extra arguments on resume, e.g. ["--resume", "{checkpoint}"]'),
    ("run", "primary_metric", "loss", "the metric shown as 'loss' in ls, show and the TUI"),
    ("run", "stall_factor", 10.0, "flag 'stalled' after this many usual step intervals of silence"),
    ("run", "stall_after", "60s", "... but never before this much silence"),
    ("run", "after", [], "runs every `backprop run` waits for (ids or names; --after overrides)"),
    (
        "run",
        "after_any",
        [],
        "runs every `backprop run` waits to end, however (--after-any overrides)",
    ),
    (
        "run",
        "checkpoint_glob",
        [],
        'checkpoints Backprop would not recognise, relative to the cwd, e.g. ["out/*.npz"]',
    ),
]


def register_defaults(section: str, entries: list[tuple[str, Any, str]]) -> None:
    """Add a section's documented defaults to what ``backprop init`` writes."""
    for key, default, comment in entries:
        if not any(s == section and k == key for s, k, _, _ in _DOCUMENTED):
            _DOCUMENTED.append((section, key, default, comment))


def default_config_text() -> str:
    """The commented ``backprop.toml`` that ``backprop init`` writes."""
    import tomli_w  # only when writing a config: supervisors never load it

    lines = [
        "# Backprop configuration. Every key is optional; the values below are the defaults.",
        "# Durations: 90s, 10m, 2h. Sizes: 512M, 8G.",
        "",
    ]
    sections: dict[str, list[tuple[str, Any, str]]] = {}
    for section, key, default, comment in _DOCUMENTED:
        sections.setdefault(section, []).append((key, default, comment))
    for section, entries in sections.items():
        lines.append(f"[{section}]")
        for key, default, comment in entries:
            lines.append(f"# {comment}")
            lines.append(tomli_w.dumps({key: default}).strip())
        lines.append("")
    return "\n".join(lines)
