r"""``backprop inspect FILE``: what a checkpoint holds, read without running any of its code.

PyTorch files are loaded with ``torch.load(path, map_location="cpu", weights_only=True)``,
which refuses pickled Python objects; such a file is reported, never loaded unsafely.
``.safetensors`` files are read from their JSON header alone (no torch needed). torch is
imported only here, and only when a PyTorch file is inspected.

Every name and text a checkpoint holds is untrusted: the summary passes each key, module
name, dtype and string value through :func:`runner.textsafe.safe_label` (the sanitiser of
``backprop logs``), so a key such as ``'step\x1b]0;T\x07'`` cannot retitle, clear or write the
clipboard of the terminal that inspects it.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.textsafe import safe_label

MODEL_KEYS = ("model", "state_dict", "model_state_dict", "model_state", "module", "net", "ema")
OPTIMIZER_KEYS = ("optimizer", "optimizer_state_dict", "optim", "opt", "optimizer_state")
MAX_ENTRIES = 10_000
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
_SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}


class CheckpointError(Exception):
    """A file that cannot be summarised safely; the message is one line for the user."""


def summarize(path: Path | str) -> dict[str, Any]:
    """A JSON-able summary of a checkpoint file.

    Returns:
        ``{"path", "format", "size_bytes", "tensors", "parameters", "dtypes", "modules":
        [{"name", "tensors", "parameters", "entries": [{"name", "shape", "dtype"}]}],
        "entries": {top-level scalars such as step and epoch}, "optimizer": {...} | None}``.
        ``modules`` groups the model's tensors by prefix (``encoder.layer.0``).

    Raises:
        CheckpointError: missing, not a checkpoint, needs unsafe loading, or no PyTorch.
    """
    try:
        result = _summarize(Path(path))
    except CheckpointError as exc:
        raise CheckpointError(safe_label(str(exc), 400)) from None
    cleaned: dict[str, Any] = _clean(result)
    return cleaned


def _clean(value: Any) -> Any:
    """``value`` with every string in it (mapping keys too) made safe for a terminal."""
    if isinstance(value, str):
        return safe_label(value, 400)
    if isinstance(value, Mapping):
        return {_clean(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _summarize(p: Path) -> dict[str, Any]:
    if not p.exists():
        raise CheckpointError(f"{p}: no such file")
    if not p.is_file():
        raise CheckpointError(f"{p}: not a file")
    size = p.stat().st_size
    if p.suffix == ".safetensors":
        found, meta = _read_safetensors(p)
        return _build(p, "safetensors", size, found, {"metadata": meta} if meta else {}, None)
    obj = _torch_load(p)
    if _is_tensor(obj):
        return _build(p, "tensor", size, [("", _shape(obj), _dtype(obj))], {}, None)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{p}: holds a {type(obj).__name__}, not a checkpoint")
    model = _model_part(obj)
    tensors: list[tuple[str, tuple[int, ...], str]] = []
    _collect(model, "", tensors)
    entries: dict[str, Any] = {}
    optimizer = None
    for key, value in obj.items():
        nested = _is_tensor(value) or isinstance(value, Mapping)
        if value is model or (model is obj and nested and not _scalar_map(value)):
            continue  # collected above
        if key in OPTIMIZER_KEYS and isinstance(value, Mapping):
            optimizer = _optimizer_summary(value)
        elif _is_scalar(value):
            entries[str(key)] = _jsonable(value)
        elif _scalar_map(value):
            entries[str(key)] = {str(k): _jsonable(v) for k, v in list(value.items())[:50]}
        elif nested:
            _collect(value, f"{key}.", tensors)
        elif isinstance(value, list | tuple) and all(_is_scalar(v) for v in value[:50]):
            entries[str(key)] = [_jsonable(v) for v in value[:50]]
    fmt = "state_dict" if model is obj else "checkpoint"
    return _build(p, fmt, size, tensors, entries, optimizer)


def _scalar_map(value: Any) -> bool:
    return isinstance(value, Mapping) and all(_is_scalar(v) for v in value.values())


def _shape(t: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in t.shape)


def _torch_load(p: Path) -> Any:
    try:
        import torch
    except ImportError:
        raise CheckpointError("backprop inspect needs PyTorch: pip install torch") from None
    import pickle

    kind = _container(p)
    if kind is None:
        raise CheckpointError(f"{p}: not a PyTorch checkpoint (neither a zip archive nor a pickle)")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = str(exc)
        # Only a pickle that names a Python global holds objects; random bytes after a pickle
        # opcode fail as "Unsupported operand" and are simply not a checkpoint.
        if "GLOBAL" in detail or "Unsupported global" in detail:
            raise CheckpointError(
                f"{p}: refuses safe loading: it holds pickled Python objects"
                f"{_unsafe_detail(detail)}; backprop inspect never loads such files unsafely"
            ) from None
        m = re.search(r"Unsupported operand \d+", detail)
        why = m.group(0) if m else "damaged pickle"
        raise CheckpointError(f"{p}: not a PyTorch checkpoint ({why})") from None
    except Exception as exc:  # torch raises many kinds for files that are not checkpoints
        reason = _first_line(str(exc)) if isinstance(exc, RuntimeError | OSError) else ""
        raise CheckpointError(
            f"{p}: not a PyTorch checkpoint ({reason or type(exc).__name__})"
        ) from None


_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80


def _container(p: Path) -> str | None:
    """``"zip"`` or ``"pickle"`` by the first bytes (what torch.save writes), else ``None``."""
    try:
        with open(p, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise CheckpointError(f"{p}: unreadable ({exc.strerror})") from None
    if head == _ZIP_MAGIC:
        return "zip"
    if len(head) >= 2 and head[0] == _PICKLE_PROTO and 2 <= head[1] <= 5:
        return "pickle"
    return None


def _unsafe_detail(message: str) -> str:
    m = re.search(r"GLOBAL ([\w.]+)", message)
    return f" ({m.group(1)})" if m else ""


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:160] if text.strip() else ""


def _is_tensor(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "numel")


def _is_scalar(x: Any) -> bool:
    return x is None or isinstance(x, bool | int | float | str)


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, str):
        return x[:200]
    return x


def _dtype(t: Any) -> str:
    return str(t.dtype).removeprefix("torch.")


def _model_part(obj: Mapping[Any, Any]) -> Mapping[Any, Any]:
    """The model's state dict inside a checkpoint, or the object itself when it is one."""
    for key in MODEL_KEYS:
        value = obj.get(key)
        if isinstance(value, Mapping) and any(_is_tensor(v) for v in value.values()):
            return value
    return obj


def _collect(obj: Any, prefix: str, out: list[tuple[str, tuple[int, ...], str]]) -> None:
    if len(out) >= MAX_ENTRIES:
        return
    if _is_tensor(obj):
        out.append((prefix.rstrip("."), _shape(obj), _dtype(obj)))
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            if _is_tensor(value) or isinstance(value, Mapping):
                _collect(value, f"{prefix}{key}.", out)


def _optimizer_summary(opt: Mapping[Any, Any]) -> dict[str, Any]:
    groups = opt.get("param_groups")
    state = opt.get("state")
    summary: dict[str, Any] = {
        "param_groups": len(groups) if isinstance(groups, list) else None,
        "state_entries": len(state) if isinstance(state, Mapping) else None,
    }
    if isinstance(groups, list):
        hyper: dict[str, Any] = {}
        for group in groups[:8]:
            if isinstance(group, Mapping):
                for k, v in group.items():
                    if k == "params" or v is None or v is False:
                        continue
                    if _is_scalar(v):
                        hyper.setdefault(str(k), _jsonable(v))
                    elif isinstance(v, list | tuple) and all(_is_scalar(x) for x in v[:8]):
                        hyper.setdefault(str(k), [_jsonable(x) for x in v[:8]])
        summary["hyperparameters"] = hyper
    if isinstance(state, Mapping):
        kinds: set[str] = set()
        for entry in list(state.values())[:8]:
            if isinstance(entry, Mapping):
                kinds.update(str(k) for k in entry)
        summary["state_keys"] = sorted(kinds)
    return summary


def _read_safetensors(p: Path) -> tuple[list[tuple[str, tuple[int, ...], str]], dict[str, Any]]:
    try:
        with open(p, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                raise CheckpointError(f"{p}: not a safetensors file (too short)")
            (length,) = struct.unpack("<Q", head)
            if length > min(MAX_SAFETENSORS_HEADER, os.fstat(f.fileno()).st_size):
                raise CheckpointError(f"{p}: not a safetensors file (bad header length)")
            header = json.loads(f.read(length))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{p}: not a safetensors file ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{p}: not a safetensors file (header is not an object)")
    meta = header.pop("__metadata__", None)
    tensors = []
    for name, info in header.items():
        if not isinstance(info, dict) or not isinstance(info.get("shape"), list):
            raise CheckpointError(f"{p}: not a safetensors file (bad entry {name!r})")
        dtype = str(info.get("dtype"))
        tensors.append(
            (
                str(name),
                tuple(int(d) for d in info["shape"]),
                _SAFETENSORS_DTYPES.get(dtype, dtype.lower()),
            )
        )
    return tensors[:MAX_ENTRIES], meta if isinstance(meta, dict) else {}


def _build(
    p: Path,
    fmt: str,
    size: int,
    tensors: list[tuple[str, tuple[int, ...], str]],
    entries: dict[str, Any],
    optimizer: dict[str, Any] | None,
) -> dict[str, Any]:
    modules: dict[str, dict[str, Any]] = {}
    dtypes: dict[str, int] = {}
    total = 0
    for name, shape, dtype in tensors:
        count = math.prod(shape)
        total += count
        dtypes[dtype] = dtypes.get(dtype, 0) + count
        prefix, _, leaf = name.rpartition(".")
        group = modules.setdefault(
            prefix, {"name": prefix, "tensors": 0, "parameters": 0, "entries": []}
        )
        group["tensors"] += 1
        group["parameters"] += count
        group["entries"].append({"name": leaf or name, "shape": list(shape), "dtype": dtype})
    return {
        "path": str(p),
        "format": fmt,
        "size_bytes": size,
        "tensors": len(tensors),
        "parameters": total,
        "dtypes": dtypes,
        "modules": list(modules.values()),
        "entries": entries,
        "optimizer": optimizer,
    }


def render_summary(summary: Mapping[str, Any], max_modules: int = 60) -> str:
    """The human form of :func:`summarize`'s result (every text in it made terminal-safe)."""
    summary = _clean(summary)
    lines = [
        f"{summary['path']}  ({summary['format']}, {_size(summary['size_bytes'])})",
        f"  {summary['tensors']} tensors, {_count(summary['parameters'])} parameters"
        + (
            "  [" + ", ".join(f"{k} {_count(v)}" for k, v in summary["dtypes"].items()) + "]"
            if summary["dtypes"]
            else ""
        ),
    ]
    entries = summary.get("entries") or {}
    if entries:
        lines.append("  entries:")
        for key, value in entries.items():
            lines.append(f"    {key} = {_short(value)}")
    opt = summary.get("optimizer")
    if opt:
        hyper = opt.get("hyperparameters") or {}
        desc = ", ".join(f"{k}={_short(v)}" for k, v in list(hyper.items())[:8])
        lines.append(
            f"  optimizer: {opt.get('param_groups')} param group(s), "
            f"{opt.get('state_entries')} state entries"
            + (f" ({', '.join(opt.get('state_keys') or [])})" if opt.get("state_keys") else "")
            + (f"; {desc}" if desc else "")
        )
    modules = summary.get("modules") or []
    if modules:
        lines.append("  modules:")
        width = min(max((len(m["name"] or "(top)") for m in modules), default=0), 48)
        for m in modules[:max_modules]:
            shapes = ", ".join(
                f"{e['name']} {'x'.join(map(str, e['shape'])) or 'scalar'} {e['dtype']}"
                for e in m["entries"][:4]
            )
            more = f", +{len(m['entries']) - 4}" if len(m["entries"]) > 4 else ""
            lines.append(
                f"    {(m['name'] or '(top)')[:48]:<{width}}  {_count(m['parameters']):>8}  "
                f"{shapes}{more}"
            )
        if len(modules) > max_modules:
            lines.append(f"    ... {len(modules) - max_modules} more modules")
    return "\n".join(lines)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def _size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
