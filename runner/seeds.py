"""Seed groups: runs that differ only in their seed, and their curves aggregated per step.

A run's seed is read from its command (``--seed 3``, ``--seed=3``, ``seed=3``, as
``--sweep seed=0,1,2`` writes it with any template) or, failing that, from a ``seed=3`` word
in its name (a tag). Runs whose commands and folders are otherwise equal form one group.
Everything here is pure: the callers pass specs and curves in.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

SEED_KEYS = frozenset({"seed"})
_NAME_SEED_RE = re.compile(r"(?:^|[\s,])seed=([^\s,]+)")


class SeedCandidate(Protocol):
    """What grouping reads of a run (a :class:`~runner.model.RunSpec` is one)."""

    @property
    def id(self) -> str:
        """The run id."""

    @property
    def name(self) -> str:
        """The display name."""

    @property
    def command(self) -> Sequence[str]:
        """The argv."""

    @property
    def cwd(self) -> str:
        """The working folder."""


@dataclass(frozen=True)
class SeedGroup:
    """Runs equal but for the seed.

    Attributes:
        label: a readable name: the first run's name without its ``seed=`` word.
        run_ids: the members, in the order given.
        seeds: each member's seed, as written.
    """

    label: str
    run_ids: tuple[str, ...]
    seeds: tuple[str, ...]


@dataclass(frozen=True)
class Band:
    """Per-step statistics over a group's curves (steps ascending).

    ``std`` is the sample standard deviation (0 where one run has the step); ``n`` counts the
    runs with a finite value at the step.
    """

    steps: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    lo: tuple[float, ...]
    hi: tuple[float, ...]
    n: tuple[int, ...]


def _key_of(token: str) -> str:
    return token.lstrip("-").lower()


def split_seed(command: Sequence[str]) -> tuple[tuple[str, ...], str | None]:
    """The command without its seed argument, and the seed (``None`` if it has none)."""
    rest: list[str] = []
    seed: str | None = None
    i = 0
    while i < len(command):
        tok = command[i]
        key, eq, value = tok.partition("=")
        if eq and _key_of(key) in SEED_KEYS and seed is None:
            seed = value
        elif (
            tok.startswith("-")
            and _key_of(tok) in SEED_KEYS
            and i + 1 < len(command)
            and seed is None
        ):
            seed = command[i + 1]
            i += 1
        else:
            rest.append(tok)
        i += 1
    return tuple(rest), seed


def seed_of_name(name: str) -> str | None:
    """The seed a run's name carries as a ``seed=N`` word, if any."""
    m = _NAME_SEED_RE.search(name)
    return m.group(1) if m else None


def strip_name_seed(name: str) -> str:
    """``name`` without its ``seed=N`` word."""
    return _NAME_SEED_RE.sub("", name).strip(" ,") or name


def seed_groups(specs: Iterable[SeedCandidate]) -> list[SeedGroup]:
    """Groups of two or more runs that differ only in their seed, in first-member order."""
    groups: dict[tuple[object, ...], list[tuple[SeedCandidate, str]]] = {}
    for spec in specs:
        command, seed = split_seed(spec.command)
        if seed is not None:
            key: tuple[object, ...] = ("cmd", spec.cwd, command)
        else:
            seed = seed_of_name(spec.name)
            if seed is None:
                continue
            key = ("name", spec.cwd, tuple(spec.command), strip_name_seed(spec.name))
        groups.setdefault(key, []).append((spec, seed))
    out = []
    for members in groups.values():
        if len(members) < 2 or len({seed for _, seed in members}) < len(members):
            continue  # one run, or the same seed twice: not a seed group
        out.append(
            SeedGroup(
                label=strip_name_seed(members[0][0].name),
                run_ids=tuple(s.id for s, _ in members),
                seeds=tuple(seed for _, seed in members),
            )
        )
    return out


def aggregate(curves: Sequence[tuple[Sequence[int], Sequence[float]]]) -> Band:
    """Mean, spread and range per step over ``curves`` (each: steps and values).

    A step counts the curves that logged a finite value there; steps no curve has are absent.
    """
    at: dict[int, list[float]] = {}
    for steps, values in curves:
        for s, v in zip(steps, values, strict=False):
            if math.isfinite(v):
                at.setdefault(s, []).append(v)
    steps = sorted(at)
    mean, std, lo, hi, n = [], [], [], [], []
    for s in steps:
        vals = at[s]
        mean.append(statistics.fmean(vals))
        std.append(statistics.stdev(vals) if len(vals) > 1 else 0.0)
        lo.append(min(vals))
        hi.append(max(vals))
        n.append(len(vals))
    return Band(tuple(steps), tuple(mean), tuple(std), tuple(lo), tuple(hi), tuple(n))


def group_of(run_id: str, groups: Iterable[SeedGroup]) -> SeedGroup | None:
    """The seed group ``run_id`` belongs to, if any."""
    return next((g for g in groups if run_id in g.run_ids), None)


def band_summary(band: Band) -> str:
    """A one-line summary of a band's last step: ``loss 0.42 ± 0.03 (n=3)``-style numbers."""
    if not band.steps:
        return "no data"
    return f"{band.mean[-1]:.4g} ± {band.std[-1]:.2g} (n={band.n[-1]}, step {band.steps[-1]})"
