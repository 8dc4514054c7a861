"""``backprop run``'s options that say where a run goes: ``--backend`` and its own options.

They override ``[backend]`` in ``backprop.toml`` key by key
(:func:`runner.backends.settings.placement_from`). An ``sbatch`` option starts with ``-``, so
``--slurm-arg`` takes it after ``=``: ``--slurm-arg=--qos=high``.
"""

from __future__ import annotations

import argparse

from runner.placement import BACKENDS


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--backend``, ``--partition``, ``--account``, ``--slurm-arg``, ``--ray-address``."""
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="where the run's supervisor runs (default: [backend] name, else local)",
    )
    parser.add_argument("--partition", help="Slurm partition (--backend slurm)")
    parser.add_argument("--account", help="Slurm account (--backend slurm)")
    parser.add_argument(
        "--slurm-arg",
        action="append",
        metavar="=OPTION",
        help="one more sbatch option, written --slurm-arg=--qos=high (repeatable)",
    )
    parser.add_argument(
        "--ray-address",
        metavar="URL",
        help="Ray cluster, e.g. http://127.0.0.1:8265 (--backend ray)",
    )
