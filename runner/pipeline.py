"""Runs that wait for runs: checking dependencies at submit, placeholders, dependents.

A run's dependencies are part of its spec (``RunSpec.after``), written once at submit. This
module holds what the launcher, the supervisor and the listings need around them:

- :func:`resolve_dependencies` turns ``--after`` / ``--after-any`` references into
  :class:`~runner.model.Dependency` records, refusing unknown runs and cycles;
- ``{after.checkpoint}``, ``{after.run_dir}`` and ``{after.id}`` in a dependent's arguments
  (``{after[1].checkpoint}`` for the second dependency) are checked at submit
  (:func:`check_placeholders`) and filled in when it starts (:func:`substitute`) from the
  ``BACKPROP_AFTER_*`` variables the dependency gate computes (:func:`placeholder_env`);
- :func:`dependents_of` and :func:`with_dependents` find the runs that wait for a run.

Whether a dependent may start is decided elsewhere, by the pure
:func:`governor.dependencies.decide`.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence

from runner import envnames
from runner.model import MAX_DEPENDENCIES, Dependency, ShapeError
from runner.registry import SPEC, Registry, RunNotFound, RunView

PLACEHOLDER_RE = re.compile(r"\{after(?:\[(\d+)\])?\.([a-z_]+)\}")
PLACEHOLDER_FIELDS = ("checkpoint", "run_dir", "id")
# Variables a dependent's trainer gets: BACKPROP_AFTER_<FIELD> for the first dependency and
# BACKPROP_AFTER_<i>_<FIELD> for each (0-based).
ENV_PREFIX = envnames.AFTER_PREFIX
# How many dependency links a cycle check follows before it gives up looking further.
MAX_WALK = 10_000
# A spec is small; a dependency is listed within its first this many bytes.
MAX_SPEC_BYTES = 1024 * 1024


class DependencyError(ValueError):
    """A dependency that cannot be accepted (unknown run, cycle, bad placeholder)."""


def resolve_dependencies(
    registry: Registry, after: Sequence[str], after_any: Sequence[str] = ()
) -> tuple[Dependency, ...]:
    """Turn what the user typed (ids, short ids or unique names) into dependencies.

    Each argument may hold several references separated by commas. A run named twice keeps
    its first kind. The new run does not exist yet, so it can never be among them.

    Raises:
        DependencyError: an unknown or ambiguous run, too many, or one in a cycle.
    """
    deps: list[Dependency] = []
    seen: set[str] = set()
    for kind, refs in (("ok", after), ("any", after_any)):
        flag = "--after" if kind == "ok" else "--after-any"
        for group in refs:
            for ref in (r.strip() for r in group.split(",")):
                if not ref:
                    raise DependencyError(f"{flag} needs run ids, e.g. {flag} 12,13")
                try:
                    run_id = registry.resolve(ref)
                except RunNotFound as exc:
                    raise DependencyError(f"{flag}: {exc.args[0]}") from None
                if run_id not in seen:
                    seen.add(run_id)
                    deps.append(Dependency(run_id, kind))
    if len(deps) > MAX_DEPENDENCIES:
        raise DependencyError(f"at most {MAX_DEPENDENCIES} dependencies per run")
    for dep in deps:
        try:
            registry.read_spec(dep.run_id)
        except (FileNotFoundError, ShapeError, OSError):
            raise DependencyError(
                f"run {dep.run_id} has no readable spec (being created or corrupt)"
            ) from None
    check_acyclic(registry, deps)
    return tuple(deps)


def check_acyclic(registry: Registry, deps: Iterable[Dependency]) -> None:
    """Refuse dependencies that lead into a cycle (such a run could never start).

    Specs are never rewritten and a new run can only name runs that exist, so a cycle can
    only come from edited or foreign files; following them costs one spec read per run.

    Raises:
        DependencyError: naming the cycle, e.g. ``000003 -> 000004 -> 000003``.
    """
    done: set[str] = set()
    walked = 0

    def visit(run_id: str, path: list[str]) -> None:
        nonlocal walked
        if run_id in path:
            cycle = [*path[path.index(run_id) :], run_id]
            raise DependencyError(f"dependency cycle: {' -> '.join(cycle)}")
        if run_id in done or walked >= MAX_WALK:
            return
        walked += 1
        try:
            spec = registry.read_spec(run_id)
        except (FileNotFoundError, ShapeError, OSError, ValueError):
            done.add(run_id)
            return
        for dep in spec.after:
            visit(dep.run_id, [*path, run_id])
        done.add(run_id)

    for dep in deps:
        visit(dep.run_id, [])


def check_placeholders(command: Sequence[str], n_deps: int) -> None:
    """Refuse ``{after...}`` placeholders that could never be filled in.

    Raises:
        DependencyError: an unknown field, an index past the dependencies, or none at all.
    """
    for arg in command:
        for m in PLACEHOLDER_RE.finditer(arg):
            index, name = int(m.group(1) or 0), m.group(2)
            if name not in PLACEHOLDER_FIELDS:
                fields = ", ".join(PLACEHOLDER_FIELDS)
                raise DependencyError(f"unknown placeholder {m.group(0)} (use one of {fields})")
            if index >= n_deps:
                have = (
                    f"only {n_deps} dependenc{'y' if n_deps == 1 else 'ies'}"
                    if n_deps
                    else "no --after"
                )
                raise DependencyError(f"placeholder {m.group(0)} but the run has {have}")
        rest = PLACEHOLDER_RE.sub("", arg)
        if "{after." in rest or "{after[" in rest:
            raise DependencyError(
                f"malformed placeholder in {arg!r}: use {{after.checkpoint}} or "
                "{after[1].run_dir}"
            )


def needed(command: Sequence[str]) -> set[tuple[int, str]]:
    """The ``(dependency index, field)`` pairs the command's placeholders use."""
    return {
        (int(m.group(1) or 0), m.group(2)) for arg in command for m in PLACEHOLDER_RE.finditer(arg)
    }


def env_key(index: int | None, name: str) -> str:
    """The variable holding one placeholder value (``index`` ``None``: the first dependency)."""
    middle = "" if index is None else f"{index}_"
    return f"{ENV_PREFIX}{middle}{name.upper()}"


def placeholder_env(values: Sequence[dict[str, str | None]]) -> dict[str, str]:
    """``BACKPROP_AFTER_*`` variables for the dependencies' values, in order (``None`` left out)."""
    env: dict[str, str] = {}
    for i, fields in enumerate(values):
        for name, value in fields.items():
            if value is None:
                continue
            env[env_key(i, name)] = value
            if i == 0:
                env[env_key(None, name)] = value
    return env


def substitute(command: Sequence[str], env: dict[str, str]) -> list[str]:
    """The command with each ``{after...}`` placeholder replaced from ``env`` (pure).

    A value the gate could not find (only when a run was started by hand past its
    dependencies) becomes an empty string.
    """

    def value(m: re.Match[str]) -> str:
        return env.get(env_key(int(m.group(1) or 0), m.group(2)), "")

    return [PLACEHOLDER_RE.sub(value, arg) if "{after" in arg else arg for arg in command]


def dependents_of(registry: Registry, run_id: str) -> list[str]:
    """The runs whose spec names ``run_id`` as a dependency (always newer runs), oldest first."""
    ids = registry.ids()
    try:
        start = ids.index(run_id) + 1
    except ValueError:
        return []
    found = []
    quoted = f'"{run_id}"'.encode()
    for other in ids[start:]:
        with contextlib.suppress(FileNotFoundError, ShapeError, OSError, ValueError):
            # Most specs never mention the id: only those that do are parsed.
            with open(registry.run_dir(other) / SPEC, "rb") as f:
                if quoted not in f.read(MAX_SPEC_BYTES):
                    continue
            if any(d.run_id == run_id for d in registry.read_spec(other).after):
                found.append(other)
    return found


def _after_ids(view: RunView) -> list[str]:
    """The dependency ids of a listed run (decoding a cached entry only when it has some)."""
    if view.raw is not None:
        if '"after":[{' not in view.raw:
            return []
        after = view.to_json().get("after") or []
    else:
        after = [d.to_json() for d in view.spec.after] if view.spec else []
    return [str(d.get("id")) for d in after if isinstance(d, dict)]


def with_dependents(
    views: Sequence[RunView], everything: Sequence[RunView] | None = None
) -> Iterator[str]:
    """Each view's compact JSON with a ``dependents`` list added (for ``ls --json``).

    Dependents are looked for among ``everything`` (default: ``views``). Cached entries are
    passed through as text with the list spliced in, so listing 10,000 runs decodes only
    those that take part in a pipeline.
    """
    dependents: dict[str, list[str]] = {}
    for view in views if everything is None else everything:
        for dep in _after_ids(view):
            dependents.setdefault(dep, []).append(view.id)
    for view in views:
        text = view.to_json_text()
        mine = dependents.get(view.id)
        if mine is None:
            yield text[:-1] + ',"dependents":[]}'
        else:
            mine.sort(key=lambda i: (len(i), i))
            yield text[:-1] + ',"dependents":' + json.dumps(mine, separators=(",", ":")) + "}"
