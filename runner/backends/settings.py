"""Where runs go by default: the ``[backend]`` section of ``backprop.toml``, and the flags.

``backprop run --backend slurm --partition P --account A --slurm-arg=--qos=high`` (or
``--backend ray --ray-address URL``) overrides, key by key, what ``[backend]`` says::

    [backend]
    name = "slurm"           # local (default), slurm or ray
    partition = "gpu"
    account = "lab"
    slurm_args = ["--qos=high"]
    ray_address = ""

A Slurm key with a Ray backend (or the reverse) is an error, named in one line; so is a key
this section does not know.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runner.config import Config, ConfigError, register_defaults
from runner.placement import Placement, PlacementError

SECTION = "backend"
_KEYS = ("name", "partition", "account", "slurm_args", "ray_address")

register_defaults(
    SECTION,
    [
        ("name", "local", "where runs' supervisors run: local, slurm or ray"),
        ("partition", "", "Slurm partition (sbatch --partition)"),
        ("account", "", "Slurm account (sbatch --account)"),
        ("slurm_args", [], 'more sbatch options, one each: ["--qos=high"]'),
        ("ray_address", "", "Ray cluster address (http://head:8265)"),
    ],
)


def placement_from(
    config: Config,
    *,
    backend: str | None = None,
    partition: str | None = None,
    account: str | None = None,
    slurm_args: Sequence[str] | None = None,
    ray_address: str | None = None,
) -> Placement:
    """The placement of new runs: the flags given, else ``[backend]``, else local.

    Raises :class:`ConfigError` (one line) for a bad section or a combination no backend
    takes. The file's options apply to the backend they belong to only (``--backend local``
    with a ``partition`` in the file is local); a flag for another backend is an error.
    """
    raw = config.section(SECTION)
    unknown = set(raw) - set(_KEYS)
    if unknown:
        raise ConfigError(f"[{SECTION}] has unknown keys: {', '.join(sorted(unknown))}")
    name = backend or _text(raw, "name") or "local"
    slurm, ray = name == "slurm", name == "ray"  # the file's options of the chosen backend
    try:
        return Placement(
            backend=name,
            partition=partition or (_text(raw, "partition") if slurm else None),
            account=account or (_text(raw, "account") if slurm else None),
            extra_args=tuple(slurm_args or (_list(raw, "slurm_args") if slurm else ())),
            address=ray_address or (_text(raw, "ray_address") if ray else None),
        )
    except PlacementError as exc:
        raise ConfigError(str(exc)) from None


def _text(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"[{SECTION}] {key} must be a string")
    return value


def _list(raw: dict[str, Any], key: str) -> list[str]:
    value = raw.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"[{SECTION}] {key} must be a list of strings")
    return list(value)
