"""Camera files: the spec's format, and bad files refused with the file and key named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from camera_scenes import EXAMPLE_CAMERA

from camera.config import CameraConfigError, cameras_from_config, load_camera_file
from camera.registry import with_camera_zones
from roadgraph import DetectorRegistry, synthetic_grid

SPEC_EXAMPLE = """
[camera]
id = "cam-ningbo-0001"
source = "mqtt"
fps = 25
interval_s = 10

[camera.homography]
image = [[102, 388], [530, 380], [452, 166], [214, 170]]
ground = [[0, 0], [14.0, 0], [14.0, 60.0], [0, 60.0]]

[[camera.zones]]
id = "nb-1"
segment_id = "A0A1"
lane = 0
polygon = [[120, 380], [190, 380], [250, 170], [215, 170]]

[[camera.lines]]
id = "nb-stopline"
points = [[100, 300], [560, 300]]
direction = [0, -1]
"""


def test_the_spec_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "cam.toml"
    path.write_text(SPEC_EXAMPLE)
    cam = load_camera_file(path)
    assert cam.id == "cam-ningbo-0001" and cam.source == "mqtt" and cam.fps == 25 and cam.interval_s == 10
    assert cam.homography is not None and len(cam.homography.image) == 4
    assert cam.zones[0].segment_id == "A0A1" and cam.zones[0].lane == 0 and len(cam.zones[0].polygon) == 4
    assert cam.lines[0].direction == (0.0, -1.0)


def test_the_bundled_examples_load() -> None:
    cam = load_camera_file(EXAMPLE_CAMERA)
    assert [z.id for z in cam.zones] == ["lane-0", "lane-1"] and cam.lines[0].id == "count-170"
    others = [load_camera_file(p) for p in sorted(EXAMPLE_CAMERA.parent.glob("*.toml"))]
    assert len(others) >= 2 and all(c.zones for c in others)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('id = "cam-ningbo-0001"', ""), "camera: missing required key id"),
        (("fps = 25", "fps = -3"), "camera.fps: expected a number"),
        (("fps = 25", 'fps = "fast"'), "camera.fps: expected a number"),
        (("interval_s = 10", "interval_s = 10\nzoom = 2"), "unknown key 'zoom'"),
        (
            ("ground = [[0, 0], [14.0, 0], [14.0, 60.0], [0, 60.0]]", "ground = [[0, 0], [14.0, 0]]"),
            "camera.homography.ground: expected at least 4",
        ),
        (("lane = 0", "lane = -1"), "camera.zones[0].lane"),
        (
            ("polygon = [[120, 380], [190, 380], [250, 170], [215, 170]]", "polygon = [[1, 2]]"),
            "camera.zones[0].polygon: expected at least 3",
        ),
        (('segment_id = "A0A1"\n', ""), "camera.zones[0]: missing required key segment_id"),
        (("direction = [0, -1]", "direction = [0, 0]"), "camera.lines[0].direction"),
        (("points = [[100, 300], [560, 300]]", "points = [[100, 300]]"), "camera.lines[0].points"),
        (('id = "nb-stopline"', 'id = "nb-stopline"\ncolour = 3'), "camera.lines[0]: unknown key 'colour'"),
        (("[camera]", "[kamera]"), "unknown section [kamera]"),
        (("fps = 25", "fps = 25 ="), "not valid TOML"),
    ],
)
def test_a_bad_camera_file_names_file_and_key(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in SPEC_EXAMPLE
    path = tmp_path / "bad.toml"
    path.write_text(SPEC_EXAMPLE.replace(old, new, 1))
    with pytest.raises(CameraConfigError) as err:
        load_camera_file(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_config_toml_cameras_and_camera_files(tmp_path: Path) -> None:
    (tmp_path / "cams").mkdir()
    (tmp_path / "cams" / "a.toml").write_text(SPEC_EXAMPLE)
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        '[[cameras]]\nid = "inline-1"\nsource = "clips/x.mp4"\n'
        '[[cameras.zones]]\nid = "z"\nsegment_id = "S"\npolygon = [[0, 0], [10, 0], [10, 10]]\n'
    )
    cams = cameras_from_config(str(cfg), ["cams/a.toml"])
    assert [c.id for c in cams] == ["inline-1", "cam-ningbo-0001"]
    assert cams[0].source == str(tmp_path / "clips" / "x.mp4")  # relative to the config file
    with pytest.raises(CameraConfigError, match="camera id 'cam-ningbo-0001' is also used"):
        cameras_from_config(str(cfg), ["cams/a.toml", "cams/a.toml"])


def test_zones_join_the_registry_as_camera_detectors(tmp_path: Path) -> None:
    net = synthetic_grid(2, 2)
    seg = str(net.segments.segment_id[1])
    path = tmp_path / "cam.toml"
    path.write_text(SPEC_EXAMPLE.replace('"A0A1"', f'"{seg}"'))
    cam = load_camera_file(path)
    reg = with_camera_zones(DetectorRegistry.empty(), net, [cam])
    k = reg.index_of["cam-ningbo-0001:nb-1"]
    assert reg.kind[k] == "camera" and reg.segment_index[k] == 1 and reg.lane[k] == 0
    assert np.isnan(reg.pos_m[k])
    path.write_text(SPEC_EXAMPLE.replace('"A0A1"', '"nowhere"'))
    with pytest.raises(CameraConfigError, match=r"zones\[0\].*segment_id: 'nowhere' is not a segment"):
        with_camera_zones(DetectorRegistry.empty(), net, [load_camera_file(path)])
