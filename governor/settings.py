"""The ``[governor]`` section of ``backprop.toml``: every limit and default of admission.

Importing this module registers the section's documented defaults, so ``backprop init``
writes them. Per-run requests (``--gpus``, ``--gpu-ids``, ``--vram``, ``--ram``,
``--framework``) override the defaults for one run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.config import Config, ConfigError, parse_duration, parse_size, register_defaults

_ENTRIES: list[tuple[str, Any, str]] = [
    ("enabled", True, "false admits every run at once (no limits, no placement)"),
    ("max_parallel", 0, "runs at once on this machine, all lanes (0: no limit)"),
    ("max_parallel_per_group", 0, "runs at once per group, e.g. per sweep (0: no limit)"),
    ("max_runs_per_gpu", 0, "Backprop runs sharing one GPU (0: no limit)"),
    ("bucket_capacity", 8, "admission token bucket: burst size (one token per admission)"),
    ("bucket_rate", 1.0, "admission token bucket: tokens added per second (0: none)"),
    ("min_free_ram", "1G", "host RAM that must stay available after an admission"),
    ("max_load", 0.0, "no admission while the 1-minute load per CPU exceeds this (0: off)"),
    ("vram_margin", "512M", "free VRAM a GPU must keep beyond what a run asks for"),
    (
        "default_vram",
        "50%",
        "VRAM assumed per GPU for a run that asks none and has no learned peak (size or %)",
    ),
    ("default_gpus", 1, "GPUs for a run without --gpus when the machine has GPUs"),
    ("learn_vram", True, "use the peak VRAM of earlier runs of the same command"),
    ("max_temperature", 85.0, "no admission on a GPU at or above this temperature (C)"),
    (
        "pause_temperature",
        0.0,
        "pause runs on a GPU at or above this, continue below the max_temperature (0: off)",
    ),
    ("exclude_gpus", [], "GPU indices or UUIDs Backprop never uses (shared machines)"),
    ("keep_free_gpus", 0, "GPUs Backprop leaves free of its runs for other users"),
    ("settle", "2m", "the part of a run's VRAM reservation not yet in use is held this long"),
    ("poll_interval", "1s", "how often a queued run asks again"),
    ("backfill", False, "let a later run start while an earlier one cannot (else strict FIFO)"),
    ("backfill_max_wait", "30m", "with backfill: an earlier run waiting this long blocks it"),
    ("sample_interval", "5s", "how often a running GPU run samples its VRAM and temperature"),
    ("dispatcher_idle", "30s", "the dispatcher exits after the queue has been empty this long"),
    (
        "shared_dir",
        "",
        "a governor folder shared by this machine's users, e.g. /var/lib/backprop (group "
        "2770); empty: private. $BACKPROP_GOVERNOR_DIR overrides",
    ),
]
register_defaults("governor", _ENTRIES)

KNOWN_KEYS = frozenset(k for k, _, _ in _ENTRIES)


@dataclass(frozen=True)
class GovernorSettings:
    """Typed ``[governor]`` settings (see ``backprop init`` for what each means).

    ``default_vram`` is either bytes (``default_vram_fraction`` is then ``None``) or a fraction
    of each GPU's total memory.
    """

    enabled: bool = True
    max_parallel: int = 0
    max_parallel_per_group: int = 0
    max_runs_per_gpu: int = 0
    bucket_capacity: int = 8
    bucket_rate: float = 1.0
    min_free_ram: int = 1 << 30
    max_load: float = 0.0
    vram_margin: int = 512 << 20
    default_vram: int = 0
    default_vram_fraction: float | None = 0.5
    default_gpus: int = 1
    learn_vram: bool = True
    max_temperature: float = 85.0
    pause_temperature: float = 0.0
    exclude_gpus: tuple[int | str, ...] = ()
    keep_free_gpus: int = 0
    settle_s: float = 120.0
    poll_interval_s: float = 1.0
    backfill: bool = False
    backfill_max_wait_s: float = 1800.0
    sample_interval_s: float = 5.0
    dispatcher_idle_s: float = 30.0
    shared_dir: str = ""

    @classmethod
    def from_config(cls, config: Config) -> GovernorSettings:
        """Read and validate ``[governor]``.

        Raises:
            ConfigError: naming the key and the problem.
        """
        return cls.from_dict(config.section("governor"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GovernorSettings:
        """Validate a ``[governor]`` table (raises :class:`ConfigError`)."""
        unknown = set(d) - KNOWN_KEYS
        if unknown:
            raise ConfigError(f"[governor] has unknown keys: {', '.join(sorted(unknown))}")
        dflt = cls()
        vram_bytes, vram_fraction = _vram_default(d.get("default_vram", "50%"))
        return cls(
            enabled=_bool(d, "enabled", dflt.enabled),
            max_parallel=_count(d, "max_parallel", dflt.max_parallel),
            max_parallel_per_group=_count(d, "max_parallel_per_group", 0),
            max_runs_per_gpu=_count(d, "max_runs_per_gpu", 0),
            bucket_capacity=max(1, _count(d, "bucket_capacity", dflt.bucket_capacity)),
            bucket_rate=_number(d, "bucket_rate", dflt.bucket_rate),
            min_free_ram=_size(d, "min_free_ram", dflt.min_free_ram),
            max_load=_number(d, "max_load", dflt.max_load),
            vram_margin=_size(d, "vram_margin", dflt.vram_margin),
            default_vram=vram_bytes,
            default_vram_fraction=vram_fraction,
            default_gpus=_count(d, "default_gpus", dflt.default_gpus),
            learn_vram=_bool(d, "learn_vram", dflt.learn_vram),
            max_temperature=_number(d, "max_temperature", dflt.max_temperature),
            pause_temperature=_number(d, "pause_temperature", dflt.pause_temperature),
            exclude_gpus=_gpu_list(d.get("exclude_gpus", [])),
            keep_free_gpus=_count(d, "keep_free_gpus", 0),
            settle_s=_duration(d, "settle", dflt.settle_s),
            poll_interval_s=_duration(d, "poll_interval", dflt.poll_interval_s),
            backfill=_bool(d, "backfill", dflt.backfill),
            backfill_max_wait_s=_duration(d, "backfill_max_wait", dflt.backfill_max_wait_s),
            sample_interval_s=_duration(d, "sample_interval", dflt.sample_interval_s),
            dispatcher_idle_s=_duration(d, "dispatcher_idle", dflt.dispatcher_idle_s),
            shared_dir=_text(d, "shared_dir"),
        )

    def is_excluded(self, index: int, uuid: str) -> bool:
        """Whether a GPU is excluded by index or UUID."""
        return any(e == index or (isinstance(e, str) and e == uuid) for e in self.exclude_gpus)

    def to_json(self) -> dict[str, Any]:
        """The settings as ``backprop status --json`` shows them."""
        from dataclasses import asdict

        out = asdict(self)
        out["exclude_gpus"] = list(self.exclude_gpus)
        return out


def _bool(d: dict[str, Any], key: str, default: bool) -> bool:
    value = d.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"[governor] {key} must be true or false")
    return value


def _text(d: dict[str, Any], key: str) -> str:
    value = d.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"[governor] {key} must be a string (a folder path)")
    return value


def _count(d: dict[str, Any], key: str, default: int) -> int:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"[governor] {key} must be a whole number >= 0")
    return value


def _number(d: dict[str, Any], key: str, default: float) -> float:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"[governor] {key} must be a number >= 0")
    return float(value)


def _size(d: dict[str, Any], key: str, default: int) -> int:
    try:
        return parse_size(d.get(key, default))
    except ConfigError as exc:
        raise ConfigError(f"[governor] {key}: {exc}") from None


def _duration(d: dict[str, Any], key: str, default: float) -> float:
    try:
        return parse_duration(d.get(key, default))
    except ConfigError as exc:
        raise ConfigError(f"[governor] {key}: {exc}") from None


def _vram_default(value: Any) -> tuple[int, float | None]:
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            pct = float(value.strip()[:-1])
        except ValueError:
            raise ConfigError(f"[governor] default_vram: not a percentage: {value!r}") from None
        if not 0 < pct <= 100:
            raise ConfigError("[governor] default_vram: a percentage must be in (0, 100]")
        return 0, pct / 100.0
    try:
        return parse_size(value), None
    except ConfigError as exc:
        raise ConfigError(f"[governor] default_vram: {exc}") from None


def _gpu_list(value: Any) -> tuple[int | str, ...]:
    if not isinstance(value, list) or not all(
        (isinstance(v, int) and not isinstance(v, bool) and v >= 0) or isinstance(v, str)
        for v in value
    ):
        raise ConfigError("[governor] exclude_gpus must be a list of GPU indices or UUIDs")
    return tuple(value)
