"""Where runs run, for the commands: ``ls --backend``, ``show``'s backend lines, ``status``.

What a remote run's folder says about its backend, host, job id and the engine's own view
comes from :func:`runner.backends.where.where`; this module only filters and words it. Local
runs read nothing more than before: their listing entries already say ``backend``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from typing import Any

from runner.backends.where import Where, where
from runner.config import Config
from runner.pipeline import with_dependents
from runner.placement import BACKENDS
from runner.registry import Registry, RunView
from runner.textsafe import safe_label


def add_backend_filter(ls: argparse.ArgumentParser) -> None:
    """``--backend NAME`` for ``backprop ls``."""
    ls.add_argument(
        "--backend",
        choices=BACKENDS,
        help="only runs placed on this backend (local, slurm, ray)",
    )


def filter_backend(views: list[RunView], name: str | None) -> list[RunView]:
    """The runs of backend ``name`` (all of them when ``None``)."""
    return views if not name else [v for v in views if v.backend == name]


def wheres(registry: Registry, views: Iterable[RunView]) -> dict[str, Where]:
    """Where each remote run among ``views`` is (local runs are left out: nothing to read)."""
    return {v.id: where(registry, v.id) for v in views if v.backend != "local"}


def where_doc(registry: Registry, view: RunView) -> dict[str, Any]:
    """``{"where": …}`` for ``show --json`` of a remote run; empty for a local one."""
    if view.backend == "local":
        return {}
    return {"where": where(registry, view.id).to_json(view.status)}


def ls_json(registry: Registry, views: Sequence[RunView], everything: Sequence[RunView]) -> str:
    """``ls --json``: each entry with ``dependents``, and ``where`` for a remote run.

    Every entry already carries ``backend``; the entries of remote runs get a ``where``
    object spliced in (the same as ``show --json``'s), so local entries stay undecoded text.
    """
    found = wheres(registry, views)
    parts = []
    for view, text in zip(views, with_dependents(views, everything), strict=True):
        w = found.get(view.id)
        if w is not None:
            extra = json.dumps(w.to_json(view.status), separators=(",", ":"), default=str)
            text = text[:-1] + ',"where":' + extra + "}"
        parts.append(text)
    return "[" + ",".join(parts) + "]\n"


def backend_cell(view: RunView, w: Where | None) -> str:
    """The ``BACKEND`` column of ``ls``: ``local``, or ``slurm 1234`` with the job id."""
    if w is None or w.is_local:
        return view.backend
    return safe_label(f"{w.backend} {w.handle}".strip(), 40)


def reason_note(view: RunView, w: Where | None) -> str:
    """What ``ls`` adds to a remote run's reason: the engine's view when it disagrees."""
    if w is None or w.is_local:
        return ""
    if w.disagrees(view.status):
        return safe_label(f" [{w.backend} says {w.engine_text()}]", 120)
    queued = w.queue_reason(view.status)
    return safe_label(f" [{w.backend}: {queued}]", 120) if queued else ""


def where_fields(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """``show``'s lines for a remote run (from ``doc["where"]``); none for a local run."""
    w = doc.get("where")
    if not isinstance(w, dict):
        return []
    lines = [("backend", safe_label(str(w.get("backend") or "-"), 20))]
    lines.append(("host", safe_label(str(w.get("host") or "not known yet"), 100)))
    if w.get("submitted_from"):
        lines.append(("submitted", "from " + safe_label(str(w["submitted_from"]), 100)))
    lines.append(("job id", safe_label(str(w.get("handle") or "not submitted yet"), 100)))
    if w.get("engine_state"):
        text = str(w["engine_state"])
        if w.get("engine_reason"):
            text += f" ({w['engine_reason']})"
        if w.get("engine_disagrees"):
            text += f"  [disagrees with ours: {doc.get('status')}]"
        lines.append(("engine says", safe_label(text, 200)))
    else:
        lines.append(("engine says", "not asked yet"))
    return lines


def configured_backends(config: Config, views: Iterable[RunView]) -> list[str]:
    """``local``, the backend ``[backend] name`` in ``backprop.toml`` names, and those runs use."""
    named: set[str] = {"local"}
    section = config.raw.get("backend")
    if isinstance(section, dict) and isinstance(section.get("name"), str):
        named.add(section["name"])
    named.update(v.backend for v in views)
    known = [b for b in BACKENDS if b in named]
    return known + sorted(named - set(BACKENDS))


def reachability(names: Iterable[str]) -> list[dict[str, Any]]:
    """Each backend's reachability from here: ``{"backend", "available", "reachable", "why"}``.

    A backend whose module or engine client is missing is "not available", never a crash;
    neither is an engine whose check fails in an unforeseen way.
    """
    from runner.backends import get_backend

    out = []
    for name in names:
        entry: dict[str, Any] = {"backend": name, "available": True, "reachable": False}
        try:
            ok, why = get_backend(name).reachable()
            entry.update(reachable=bool(ok), why=str(why))
        except ValueError as exc:  # unknown, or its module cannot be imported here
            why = str(exc).removeprefix(f"backend {name!r} is not available here: ")
            entry.update(available=False, why=why)
        except Exception as exc:  # an engine check must not take ``status`` down
            entry.update(why=f"check failed: {type(exc).__name__}: {exc}")
        out.append(entry)
    return out


def render_reachability(entries: Sequence[dict[str, Any]]) -> str:
    """The human lines of :func:`reachability` for ``status``."""
    lines = []
    for e in entries:
        if not e["available"]:
            state = "not available"
        else:
            state = "reachable" if e["reachable"] else "not reachable"
        why = safe_label(str(e.get("why") or ""), 160)
        lines.append(
            f"backend {safe_label(e['backend'], 12):<7} {state}" + (f": {why}" if why else "")
        )
    return "\n".join(lines)
