"""Where a run's supervisor runs: the backend and its options, as written in ``spec.json``.

A spec without ``placement`` (every spec written before backends existed) is local. The
options are the backend's own words, checked for shape here and for meaning by the backend:
``partition``/``account``/``extra_args`` for Slurm, ``address`` for Ray.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

BACKENDS = ("local", "slurm", "ray")
_OPTION = re.compile(r"^[A-Za-z0-9_.:@/+,=-]{1,200}$")
MAX_EXTRA_ARGS = 32


class PlacementError(ValueError):
    """A placement that cannot be used (unknown backend, malformed option)."""


@dataclass(frozen=True)
class Placement:
    """The backend that runs a run's supervisor, and that backend's options.

    Attributes:
        backend: ``local`` (default), ``slurm`` or ``ray``.
        partition: Slurm partition (``--partition``).
        account: Slurm account (``--account``).
        extra_args: further ``sbatch`` arguments, each one argument (``--qos=high``).
        address: Ray cluster address (``ray://…`` or ``http://127.0.0.1:8265``).
    """

    backend: str = "local"
    partition: str | None = None
    account: str | None = None
    extra_args: tuple[str, ...] = ()
    address: str | None = None

    def __post_init__(self) -> None:
        """Refuse what no backend could use, so a bad spec fails at submit, not in a job."""
        if self.backend not in BACKENDS:
            raise PlacementError(f"unknown backend {self.backend!r} (known: {', '.join(BACKENDS)})")
        for label, value in (("partition", self.partition), ("account", self.account)):
            if value is not None and not _OPTION.match(value):
                raise PlacementError(f"{label} {value!r} has characters Slurm does not take")
        if len(self.extra_args) > MAX_EXTRA_ARGS:
            raise PlacementError(f"at most {MAX_EXTRA_ARGS} extra backend arguments")
        for arg in self.extra_args:
            if not arg.startswith("-") or "\n" in arg or len(arg) > 400:
                raise PlacementError(f"backend argument {arg!r} must be one option like --qos=high")
        if self.address is not None and ("\n" in self.address or len(self.address) > 400):
            raise PlacementError("malformed backend address")
        if self.backend != "slurm" and (self.partition or self.account or self.extra_args):
            raise PlacementError("--partition, --account and --slurm-arg need --backend slurm")
        if self.backend != "ray" and self.address:
            raise PlacementError("--ray-address needs --backend ray")

    @property
    def is_local(self) -> bool:
        """True for the default backend (a supervisor process on this machine)."""
        return self.backend == "local"

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "backend": self.backend,
            "partition": self.partition,
            "account": self.account,
            "extra_args": list(self.extra_args),
            "address": self.address,
        }

    @classmethod
    def from_json(cls, d: Any) -> Placement:
        """Parse the JSON form strictly (``None``: local); raise :class:`PlacementError`."""
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise PlacementError("placement is not an object")
        strs: dict[str, str | None] = {}
        for key in ("partition", "account", "address"):
            v = d.get(key)
            if v is not None and not isinstance(v, str):
                raise PlacementError(f"placement {key} is not a string")
            strs[key] = v
        backend = d.get("backend", "local")
        extra = d.get("extra_args") or []
        if not isinstance(backend, str) or not isinstance(extra, list):
            raise PlacementError("malformed placement")
        if not all(isinstance(a, str) for a in extra):
            raise PlacementError("placement extra_args must be strings")
        return cls(
            backend=backend,
            partition=strs["partition"],
            account=strs["account"],
            extra_args=tuple(extra),
            address=strs["address"],
        )
