"""What differs between runs: arguments, configuration, code, and how they ended.

:func:`compare_docs` is pure: it takes each run's spec, provenance and summary as JSON and
returns the differing fields side by side, plus the final and best metrics (always shown).
:func:`compare_runs` reads them from the registry. Environment values are never shown: only
the names of variables that differ.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runner import provenance
from runner.model import ShapeError
from runner.registry import Registry

# Spec fields that always differ or say nothing about how the run was set up.
_SPEC_SKIP = frozenset({"schema", "id", "name", "created_at", "command", "env"})
MISSING = None


@dataclass(frozen=True)
class RunDocs:
    """One run's records as JSON: ``spec.json``, ``provenance.json`` and its listing entry."""

    run_id: str
    spec: Mapping[str, Any]
    provenance: Mapping[str, Any] | None
    view: Mapping[str, Any]


def parse_arguments(command: Sequence[str], script: str | None) -> dict[str, str]:
    """A command's arguments as ``{key: value}``.

    ``--k v``, ``--k=v`` and ``k=v`` give ``k``; a flag without a value gives ``"true"``;
    other words are ``arg1``, ``arg2``... Everything up to the script (the interpreter and
    its options) is left out when the script is known.
    """
    args = list(command)
    if script and script in args:
        args = args[args.index(script) + 1 :]
    elif args:
        args = args[1:]
    out: dict[str, str] = {}
    positional = 0
    i = 0
    while i < len(args):
        tok = args[i]
        if tok.startswith("-") and len(tok) > 1 and not _is_number(tok):
            key, eq, value = tok.lstrip("-").partition("=")
            if eq:
                out[key] = value
            elif i + 1 < len(args) and not (
                args[i + 1].startswith("-") and not _is_number(args[i + 1])
            ):
                out[key] = args[i + 1]
                i += 1
            else:
                out[key] = "true"
        elif "=" in tok and not tok.startswith("="):
            key, _, value = tok.partition("=")
            out[key] = value
        else:
            positional += 1
            out[f"arg{positional}"] = tok
        i += 1
    return out


def _is_number(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def _differing(
    columns: Sequence[Mapping[str, Any]], always: Sequence[str] = ()
) -> dict[str, list[Any]]:
    keys: dict[str, None] = {}
    for col in columns:
        keys.update(dict.fromkeys(col))
    out = {}
    for key in keys:
        values = [col.get(key, MISSING) for col in columns]
        encoded = {json.dumps(v, sort_keys=True, default=str) for v in values}
        if len(encoded) > 1 or key in always:
            out[key] = values
    return out


def _provenance_fields(doc: Mapping[str, Any] | None) -> dict[str, Any]:
    if not doc:
        return {"commit": None, "dirty": None}
    git = doc.get("git") or {}
    fields: dict[str, Any] = {
        "commit": (git.get("commit") or None) if isinstance(git, Mapping) else None,
        "dirty": git.get("dirty") if isinstance(git, Mapping) else None,
    }
    if isinstance(git, Mapping):
        fields["branch"] = git.get("branch")
        fields["diff bytes"] = git.get("diff_bytes")
    py = doc.get("python") or {}
    if isinstance(py, Mapping):
        fields["python"] = py.get("version")
        fields["python executable"] = py.get("executable")
    for name, version in (doc.get("packages") or {}).items():
        fields[name] = version
    host = doc.get("host") or {}
    if isinstance(host, Mapping):
        fields["host"] = host.get("hostname")
    return fields


def _metric_fields(view: Mapping[str, Any]) -> dict[str, Any]:
    primary = str(view.get("primary_metric") or "loss")
    fields: dict[str, Any] = {
        "status": view.get("status"),
        "step": view.get("step"),
        f"final {primary}": view.get("loss"),
        f"best {primary}": view.get("best_loss"),
    }
    for name, value in (view.get("metrics") or {}).items():
        if name != primary:
            fields[f"final {name}"] = value
    return fields


def compare_docs(runs: Sequence[RunDocs]) -> dict[str, Any]:
    """The comparison of ``runs`` (pure; see the module docstring).

    Returns:
        ``{"runs": [...], "arguments": {key: [value per run]}, "config": {...},
        "env": [names], "provenance": {...}, "metrics": {...}}``: every section but
        ``metrics`` lists only what differs, except ``commit`` and ``dirty``, always shown.
    """
    args, configs, envs = [], [], []
    for r in runs:
        script = r.spec.get("script")
        command = [str(c) for c in r.spec.get("command") or []]
        args.append(parse_arguments(command, script if isinstance(script, str) else None))
        flat: dict[str, Any] = {}
        for key, value in r.spec.items():
            if key not in _SPEC_SKIP:
                _flat(key, value, flat)
        if not script and command:
            flat["program"] = command[0]
        configs.append(flat)
        env = r.spec.get("env") or {}
        envs.append(env if isinstance(env, Mapping) else {})
    env_diff = sorted(_differing(envs))
    return {
        "runs": [
            {"id": r.run_id, "name": r.view.get("name"), "status": r.view.get("status")}
            for r in runs
        ],
        "arguments": _differing(args),
        "config": _differing(configs),
        "env": env_diff,
        "provenance": _differing(
            [_provenance_fields(r.provenance) for r in runs], always=("commit", "dirty")
        ),
        "metrics": _differing([_metric_fields(r.view) for r in runs], always=_metric_keys(runs)),
    }


def _metric_keys(runs: Sequence[RunDocs]) -> tuple[str, ...]:
    keys: dict[str, None] = {}
    for r in runs:
        keys.update(dict.fromkeys(_metric_fields(r.view)))
    return tuple(keys)


def seeds_only(docs: Mapping[str, Any]) -> bool:
    """Whether the only differing argument is the seed (a seed group)."""
    return set(docs.get("arguments", {})) == {"seed"}


def compare_runs(registry: Registry, run_ids: Sequence[str]) -> dict[str, Any]:
    """Read the runs' records and compare them (:func:`compare_docs`).

    Raises:
        ValueError: when a run has no readable spec.
    """
    docs = []
    for run_id in run_ids:
        view = registry.load(run_id)
        if view.spec is None:
            raise ValueError(f"run {run_id} has no readable spec ({view.status.value})")
        prov = None
        with contextlib.suppress(OSError, ShapeError):
            prov = provenance.read(registry.run_dir(run_id))
        docs.append(RunDocs(run_id, view.spec.to_json(), prov, view.to_json()))
    return compare_docs(docs)
