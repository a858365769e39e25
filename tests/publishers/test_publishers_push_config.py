"""[closures] and [[push]] in config.toml, and their registration as live components."""

from __future__ import annotations

from pathlib import Path

import pytest

from publishers.closures_component import ClosuresComponent
from publishers.push_component import PushComponent
from roadpulse.components import build_components
from roadpulse.config import ConfigError, load_config

GOOD = """
[closures]
store = "/tmp/closures.sqlite"

[[push]]
name = "amap"
kind = "amap"
url = "https://push.example.invalid/traffic"
key = "k"
key_env = "AMAP_PRIVATE"
attempts = 5
max_backoff_s = 60

[[push]]
name = "waze-feed"
kind = "waze_xml"
url = "http://127.0.0.1:9/feed"
every_s = 30
utc_offset_h = 8
"""


def test_push_endpoints_are_parsed(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(GOOD)
    settings = load_config(path)
    assert settings["closures"]["store"] == "/tmp/closures.sqlite"
    amap, waze = settings.push
    assert (amap.name, amap.kind, amap.attempts, amap.max_backoff_s, amap.key_env) == (
        "amap",
        "amap",
        5,
        60,
        "AMAP_PRIVATE",
    )
    assert (waze.kind, waze.every_s, waze.utc_offset_h, waze.attempts) == ("waze_xml", 30, 8, 10)
    components = build_components(settings)
    # The book exists before the push outboxes that read it (the HTTP service may come earlier:
    # it looks shared objects up at request time).
    first_closures = next(i for i, c in enumerate(components) if isinstance(c, ClosuresComponent))
    first_push = next(i for i, c in enumerate(components) if isinstance(c, PushComponent))
    assert first_closures < first_push
    assert [c.name for c in components if isinstance(c, PushComponent)] == ["push:amap", "push:waze-feed"]


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ('name = "a"\nkind = "bing"\nurl = "http://x"', "push[0].kind: expected one of amap"),
        ('name = "a"\nkind = "webhook"\nurl = "ftp://x"', "push[0].url: expected an http"),
        ('name = "a"\nkind = "webhook"\nurl = "http://x"\nretries = 3', "push[0]: unknown key 'retries'"),
        (
            'name = "a"\nkind = "webhook"\nurl = "http://x"\nattempts = 0',
            "push[0].attempts: 0 outside 1..1000",
        ),
        ('name = "a"\nkind = "webhook"\nurl = "http://x"\nattempts = "5"', "push[0].attempts: expected int"),
        ('name = "a"\nkind = "amap"\nurl = "http://x"', "push[0].key_env: an amap endpoint needs"),
        ('kind = "webhook"\nurl = "http://x"', "push[0].name: expected a non-empty string"),
        ('name = "a b"\nkind = "webhook"\nurl = "http://x"', "push[0].name: 'a b' must be unique"),
    ],
)
def test_bad_push_tables_name_the_key(tmp_path: Path, entry: str, words: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[[push]]\n{entry}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert words in str(err.value) and str(path) in str(err.value)


def test_closures_section_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[closures]\ncheck_every_s = 0\n")
    with pytest.raises(ConfigError, match=r"closures\.check_every_s: 0 outside"):
        load_config(path)
