"""``[governor]`` settings: defaults documented by ``backprop init``, validation, overrides."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from governor.settings import GovernorSettings
from runner.config import Config, ConfigError, default_config_text

GIB = 1 << 30


def test_init_documents_every_key_and_its_defaults_read_back_as_the_defaults() -> None:
    import governor.settings as gs

    text = default_config_text()
    section = tomllib.loads(text)["governor"]
    assert set(section) == gs.KNOWN_KEYS
    assert GovernorSettings.from_dict(section) == GovernorSettings()
    assert GovernorSettings.from_config(Config()) == GovernorSettings()


def test_values_are_parsed() -> None:
    s = GovernorSettings.from_config(
        Config(
            raw={
                "governor": {
                    "max_parallel": 2,
                    "max_parallel_per_group": 1,
                    "bucket_capacity": 8,
                    "bucket_rate": 0,
                    "min_free_ram": "4G",
                    "vram_margin": "1GiB",
                    "default_vram": "6G",
                    "max_temperature": 80,
                    "pause_temperature": 90.5,
                    "exclude_gpus": [1, "GPU-abc"],
                    "keep_free_gpus": 1,
                    "settle": "90s",
                    "poll_interval": "250ms",
                    "backfill": True,
                    "backfill_max_wait": "1h",
                    "max_load": 1.5,
                    "default_gpus": 2,
                    "learn_vram": False,
                    "enabled": True,
                    "max_runs_per_gpu": 3,
                    "sample_interval": "10s",
                }
            }
        )
    )
    assert (s.max_parallel, s.max_parallel_per_group, s.bucket_capacity) == (2, 1, 8)
    assert (s.min_free_ram, s.vram_margin, s.default_vram) == (4 * GIB, GIB, 6 * GIB)
    assert s.default_vram_fraction is None
    assert (s.settle_s, s.poll_interval_s, s.backfill_max_wait_s) == (90.0, 0.25, 3600.0)
    assert s.exclude_gpus == (1, "GPU-abc") and s.pause_temperature == 90.5
    assert s.is_excluded(1, "GPU-x") and s.is_excluded(0, "GPU-abc")
    assert not s.is_excluded(0, "GPU-x")
    assert GovernorSettings.from_dict({"default_vram": "25%"}).default_vram_fraction == 0.25


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"max_paralel": 2}, "unknown keys: max_paralel"),
        ({"max_parallel": -1}, "max_parallel must be a whole number"),
        ({"max_parallel": "2"}, "max_parallel must be a whole number"),
        ({"max_parallel": True}, "max_parallel must be a whole number"),
        ({"bucket_rate": -1}, "bucket_rate must be a number"),
        ({"min_free_ram": "lots"}, "min_free_ram: not a size"),
        ({"settle": "soon"}, "settle: not a duration"),
        ({"default_vram": "150%"}, "default_vram"),
        ({"default_vram": "x%"}, "default_vram"),
        ({"exclude_gpus": "0"}, "exclude_gpus must be a list"),
        ({"exclude_gpus": [-1]}, "exclude_gpus must be a list"),
        ({"backfill": "yes"}, "backfill must be true or false"),
    ],
)
def test_bad_values_name_the_key(table: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match="governor") as info:
        GovernorSettings.from_dict(table)
    assert words in str(info.value)


def test_status_json_of_settings_is_plain() -> None:
    import json

    out = GovernorSettings(exclude_gpus=(0, "GPU-a")).to_json()
    assert json.loads(json.dumps(out))["exclude_gpus"] == [0, "GPU-a"]
