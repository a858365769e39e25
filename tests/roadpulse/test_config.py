"""config.toml validation: every mistake names the key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from roadpulse.config import SCHEMA, ConfigError, load_config, reference_markdown

REPO = Path(__file__).resolve().parents[2]


def test_shipped_config_is_valid_and_lists_every_key() -> None:
    settings = load_config(REPO / "config.toml")
    text = (REPO / "config.toml").read_text()
    for section, keys in SCHEMA.items():
        assert f"[{section}]" in text
        for key, decl in keys.items():
            assert f"\n{key} = " in text, f"config.toml does not document {section}.{key}"
            assert settings[section][key] == decl.default, (
                f"config.toml {section}.{key} differs from the default"
            )


def test_defaults_without_a_file() -> None:
    settings = load_config(None)
    assert settings["mqtt"]["port"] == 1883
    assert settings["engine"]["tick_s"] == 60


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[mqtt]\nport = 'x'\n", "mqtt.port: expected int, got str 'x'"),
        ("[mqtt]\nport = 70000\n", "mqtt.port: 70000 outside 1..65535"),
        ("[mqtt]\nhots = 'a'\n", "unknown key mqtt.hots"),
        ("[mqttt]\nhost = 'a'\n", "unknown section [mqttt]"),
        ("[engine]\ntick_s = true\n", "engine.tick_s: expected int or float, got bool True"),
        ("[publish]\nsnapshot = 1\n", "publish.snapshot: expected bool, got int 1"),
        ("[mqtt]\nprefix = 'traffic'\n", "mqtt.prefix must end with '/'"),
        ("[api]\nlisten = 'localhost'\n", "api.listen: expected HOST:PORT"),
        (
            "[[districts]]\nname = 'a'\npolygon = [[0, 0], [1, 1]]\n",
            "districts[0].polygon: expected at least 3",
        ),
        ("[mqtt\n", "not valid TOML"),
    ],
)
def test_bad_config_names_key_and_expectation(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


def test_overrides_are_validated() -> None:
    assert load_config(None, overrides={"engine.tick_s": 30})["engine"]["tick_s"] == 30
    with pytest.raises(ConfigError, match=r"engine\.tick_s"):
        load_config(None, overrides={"engine.tick_s": 0})


def test_districts_parsed(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text("[[districts]]\nname = 'centro'\npolygon = [[0, 0], [1, 0], [1, 1]]\n")
    settings = load_config(path)
    assert settings.districts[0].name == "centro"
    assert settings.districts[0].polygon[1] == (1.0, 0.0)


def test_reference_lists_every_key() -> None:
    ref = reference_markdown()
    for section, keys in SCHEMA.items():
        for key in keys:
            assert f"`{section}.{key}`" in ref
