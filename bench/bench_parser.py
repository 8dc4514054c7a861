"""Throughput of the output parser, in lines per second, on typical training output.

The input is generated from the styles Backprop reads (plain ``key: value``, tables, HF dicts,
tqdm and Lightning bars, nanoGPT, Keras, JSON lines) with changing numbers, mixed with log
lines that carry no metric. Each pass parses every line; passes are repeated (>= 5) and min,
median and max are printed, for ``parse_line`` alone and for the ingestor's whole path
(bytes → lines → noise filter → parse → step). Goal: >= 200,000 lines/s.

    python bench/bench_parser.py [--quick] [--repeats N] [--lines N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.metrics.capture_noise import NoiseFilter  # noqa: E402
from runner.metrics.parsers import LineSplitter, StepTracker, parse_line  # noqa: E402

GOAL = 200_000

STYLES: list[Callable[[random.Random, int], str]] = [
    lambda r, i: (
        f"epoch {i // 500 + 1} | step {i}/100000 | loss: {r.uniform(0, 3):.4f} "
        f"| val loss {r.uniform(0, 3):.4f}"
    ),
    lambda r, i: (
        f"{{'loss': {r.uniform(0, 3):.4f}, 'grad_norm': {r.uniform(0, 9):.3f}, "
        f"'learning_rate': {r.uniform(0, 1e-4):.2e}, 'epoch': {i / 1000:.2f}}}"
    ),
    lambda r, i: (
        f"iter {i}: loss {r.uniform(0, 3):.4f}, time {r.uniform(10, 99):.2f}ms, "
        f"mfu {r.uniform(0, 50):.2f}%"
    ),
    lambda r, i: (
        f"| epoch {i // 2983 + 1:3d} | {i % 2983:5d}/ 2983 batches | lr 20.00 | "
        f"ms/batch {r.uniform(10, 99):5.2f} | loss {r.uniform(4, 8):5.2f} | "
        f"ppl {r.uniform(50, 2999):8.2f}"
    ),
    lambda r, i: (
        f" {i % 100:3d}%|████▌     | {i % 100}/100 [00:05<00:06,  "
        f"{r.uniform(1, 99):.2f}it/s, loss={r.uniform(0, 3):.3f}, acc={r.uniform(0, 1):.3f}]"
    ),
    lambda r, i: (
        f"Epoch {i // 100}:  45%|████▌     | {i % 100}/100 [00:05<00:06, "
        f"8.12it/s, loss={r.uniform(0, 3):.3g}, v_num=0]"
    ),
    lambda r, i: (
        f"{i % 1875}/1875 [==============================] - 3s 1ms/step - "
        f"loss: {r.uniform(0, 3):.4f} - accuracy: {r.uniform(0, 1):.4f}"
    ),
    lambda r, i: f'{{"step": {i}, "loss": {r.uniform(0, 3):.5f}, "lr": 0.0003}}',
    lambda r, i: f"loss: {r.uniform(0, 3):.4f}",
    lambda r, i: f"INFO:trainer:Saving model checkpoint to /tmp/out/checkpoint-{i}",
    lambda r, i: "INFO:torch.distributed:Initializing process group backend nccl",
    lambda r, i: "",
]


def make_lines(n: int, seed: int = 0) -> list[str]:
    r = random.Random(seed)
    return [STYLES[i % len(STYLES)](r, i) for i in range(n)]


def passes(fn: Callable[[], None], n: int, repeats: int) -> list[float]:
    """Lines per second of each pass."""
    fn()  # warm up
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        rates.append(n / (time.perf_counter() - t))
    return rates


def show(label: str, rates: list[float]) -> None:
    print(
        f"  {label:34s} min {min(rates):10,.0f}  median {statistics.median(rates):10,.0f}  "
        f"max {max(rates):10,.0f} lines/s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 lines, 5 repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--lines", type=int, default=None)
    args = parser.parse_args()
    n = args.lines or (20_000 if args.quick else 120_000)
    repeats = max(5, args.repeats or (5 if args.quick else 7))
    lines = make_lines(n)
    data = ("\n".join(lines) + "\n").encode()

    def parse_all() -> None:
        for line in lines:
            parse_line(line)

    def ingest_path() -> None:
        splitter, tracker, noise = LineSplitter(), StepTracker(), NoiseFilter()
        for start in range(0, len(data), 1 << 20):
            for line in splitter.feed(data[start : start + (1 << 20)]):
                if noise.skip(line):
                    continue
                parsed = parse_line(line)
                if parsed is not None and parsed.checkpoint is None:
                    tracker.resolve(parsed)

    print(f"output parser: {n:,} typical lines ({len(STYLES)} styles), {repeats} passes")
    print(f"python {sys.version.split()[0]}")
    whole = passes(parse_all, n, repeats)
    show("parse_line", whole)
    show("bytes -> lines -> parse -> step", passes(ingest_path, n, repeats))
    print("  per style (parse_line):")
    mixed = make_lines(len(STYLES) * 2000, seed=1)
    for k in range(len(STYLES)):
        sample = mixed[k :: len(STYLES)]

        def one(sample: list[str] = sample) -> None:
            for line in sample:
                parse_line(line)

        rates = passes(one, len(sample), 3)
        print(f"    {statistics.median(rates):10,.0f} lines/s  {sample[1][:60]!r}")
    median = statistics.median(whole)
    print(f"  goal: >= {GOAL:,} lines/s: {'meets' if median >= GOAL else 'MISSES'} ({median:,.0f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
