"""Put the figures of a GPU check into BENCHMARKS.md (and bench/gpu_check.md, its source).

After `bash bench/gpu_check.sh OUTDIR` ran on a GPU machine, with its files back here:

    python bench/gpu_publish.py OUTDIR

replaces the "Pending" paragraph of the "GPU check" section (or the figures an earlier check
put there) with that check's verdict, GPU, headlines and section 5 tables. Refuses a check
that ran on the fake NVML, and one whose verdict is not PASS unless ``--even-if-failed``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import gpu_poll  # noqa: E402

MARK = "**Pending**"
MEASURED = "**Measured**"
SECTION = "## GPU check"


class PublishError(Exception):
    """The output folder cannot be published (one-line reason)."""


def figures_block(out_dir: Path, *, even_if_failed: bool = False) -> str:
    """The markdown that replaces the pending paragraph, from a check's output folder."""
    try:
        summary = (out_dir / "summary.txt").read_text().splitlines()
        figures = (out_dir / "figures.md").read_text()
    except OSError as exc:
        raise PublishError(f"not a complete gpu_check output folder: {exc}") from None
    verdict = summary[0] if summary else ""
    if "[fake NVML" in verdict:
        raise PublishError("this check ran on the fake NVML: its figures are not GPU figures")
    if not verdict.startswith("GPU CHECK: PASS") and not even_if_failed:
        raise PublishError(f"the check did not pass ({verdict[:200]}); see --even-if-failed")
    gpu = next((ln for ln in summary if ln.startswith("index, name")), None)
    rows = summary[summary.index(gpu) + 1 :] if gpu else []
    listed = figures.split("## Headlines", 1)[-1].split("\n## ", 1)[0]
    heads = [ln for ln in listed.splitlines() if ln.startswith("- ")]
    if "\n## 5. " not in figures:
        raise PublishError("figures.md holds no section 5")
    body = figures.split("\n## 5. ", 1)[1].split("\n", 1)[1]
    body = body.split("\n## ", 1)[0]  # up to the next section, if any
    intro = (gpu_poll.__doc__ or "").split("\n\n", 1)[-1].strip()
    body = body.replace(intro, "")  # the section's own prose: gpu_check.md says it already
    generated = figures.split("\n", 3)[2] if figures.startswith("# Benchmarks") else ""
    generated = generated.split(". Everything below", 1)[0].rstrip(".") + "." if generated else ""
    lines = [
        f"{MEASURED} by `bash bench/gpu_check.sh`; verdict: `{verdict}`.",
        "",
        *([f"GPU (nvidia-smi): {rows[0]}", ""] if rows else []),
        *([generated, ""] if generated else []),
        *heads,
        "",
        body.strip(),
        "",
    ]
    return "\n".join(lines)


def replace_figures(text: str, block: str) -> str:
    """``text`` (gpu_check.md) with its pending paragraph or earlier figures replaced."""
    for mark in (MARK, MEASURED):
        if mark in text:
            return text[: text.index(mark)] + block
    raise PublishError(f"no {MARK!r} or {MEASURED!r} paragraph to replace")


def publish(out_dir: Path, source: Path, benchmarks: Path, *, even_if_failed: bool) -> None:
    """Rewrite ``source`` (bench/gpu_check.md) and the same section of ``benchmarks``."""
    block = figures_block(out_dir, even_if_failed=even_if_failed)
    section = replace_figures(source.read_text(), block)
    text = benchmarks.read_text()
    if SECTION not in text:
        raise PublishError(f"{benchmarks} has no {SECTION!r} section")
    start = text.index(SECTION)
    rest = text[start:].split("\n## ", 1)
    after = "\n## " + rest[1] if len(rest) > 1 else ""
    source.write_text(section)
    benchmarks.write_text(text[:start] + section + after)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir", type=Path, help="the folder bench/gpu_check.sh wrote")
    p.add_argument("--even-if-failed", action="store_true", help="publish a failed check too")
    p.add_argument("--source", type=Path, default=ROOT / "bench" / "gpu_check.md")
    p.add_argument("--benchmarks", type=Path, default=ROOT / "BENCHMARKS.md")
    a = p.parse_args(argv)
    try:
        publish(a.out_dir, a.source, a.benchmarks, even_if_failed=a.even_if_failed)
    except PublishError as exc:
        print(f"gpu_publish: {exc}", file=sys.stderr)
        return 1
    print(f"gpu_publish: wrote the figures into {a.source} and {a.benchmarks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
