"""``CUDA_VISIBLE_DEVICES`` in a run's own environment: the GPUs it may be placed on.

A scheduler (Slurm, a container runtime) or the user may hand a shell a subset of the GPUs
in ``CUDA_VISIBLE_DEVICES``, by index (``0,2``) or by UUID (``GPU-8f6c...``, any unique
prefix, as CUDA accepts). NVML ignores that variable and lists every GPU, so the governor
would otherwise place a run on a GPU its submitter was never given. Here the value the run
was submitted with becomes a restriction on placement, resolved against NVML's GPUs:

* indices are NVML indices (the governor starts trainers with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``,
  the order NVML uses);
* ``GPU-`` UUIDs, whole or a unique prefix, case-insensitive;
* an empty value restricts nothing: it is what a CPU-lane run's trainer sees, and a run
  submitted from inside one must still be placeable;
* MIG devices (``MIG-...``) and anything else are refused with a one-line reason: Backprop
  places whole GPUs only.

The trainer then gets the chosen GPUs as indices, as for every other placement.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from governor.probes import GpuInfo

ENV = "CUDA_VISIBLE_DEVICES"


class VisibleDevicesError(ValueError):
    """A ``CUDA_VISIBLE_DEVICES`` value Backprop cannot honour (one-line message)."""


def restriction(env: Mapping[str, str]) -> str | None:
    """The value that restricts placement, or ``None`` (unset or blank)."""
    value = env.get(ENV)
    if value is None or not value.strip():
        return None
    return value.strip()


def _entries(value: str) -> list[str]:
    return [e.strip() for e in value.split(",") if e.strip()]


def check(value: str) -> None:
    """Refuse what no machine could honour (MIG devices, malformed entries); needs no NVML.

    Raises:
        VisibleDevicesError: with the reason.
    """
    for entry in _entries(value):
        if entry.upper().startswith("MIG-"):
            raise VisibleDevicesError(
                f"{ENV} names a MIG device ({entry}): Backprop places whole GPUs only; "
                "name the GPU itself, or turn the governor off ([governor] enabled = false) "
                "to pass the variable through untouched"
            )
        if entry.isdigit() or (entry.upper().startswith("GPU-") and len(entry) > 4):
            continue
        raise VisibleDevicesError(
            f"{ENV} entry {entry!r} is neither a GPU index nor a GPU UUID (GPU-...); "
            "submit with --gpus 0 for a run that must see no GPU"
        )


def resolve(value: str, gpus: Iterable[GpuInfo]) -> tuple[int, ...]:
    """The NVML indices ``value`` names, in its order, without repeats.

    Raises:
        VisibleDevicesError: a malformed entry, a MIG device, or a GPU this machine lacks.
    """
    check(value)
    known = list(gpus)
    by_index = {g.index: g for g in known}
    chosen: list[int] = []
    for entry in _entries(value):
        if entry.isdigit():
            if int(entry) not in by_index:
                raise VisibleDevicesError(
                    f"{ENV} names GPU {entry}, which this machine does not have ({_here(known)})"
                )
            index = int(entry)
        else:
            matches = [g for g in known if g.uuid.upper().startswith(entry.upper())]
            if not matches:
                raise VisibleDevicesError(
                    f"{ENV} names {entry}, which is not a GPU of this machine ({_here(known)})"
                )
            if len(matches) > 1:
                raise VisibleDevicesError(
                    f"{ENV} entry {entry} matches {len(matches)} GPUs; give more of the UUID"
                )
            index = matches[0].index
        if index not in chosen:
            chosen.append(index)
    return tuple(chosen)


def _here(gpus: list[GpuInfo]) -> str:
    if not gpus:
        return "NVML lists no GPU"
    return "GPUs here: " + ", ".join(f"{g.index} {g.uuid}" for g in gpus)
