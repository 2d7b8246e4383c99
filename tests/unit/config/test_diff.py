"""The difference of two configs as a reload applies it: which cameras start, stop, restart or
only get new lines, and which settings need a restart."""

from __future__ import annotations

from typing import Any

from edge.config import parse_config
from edge.config.diff import ConfigDiff, diff_configs, running_config


def cam(cid: str, **over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"id": cid, "url": f"rtsp://127.0.0.1:8554/{cid}"}
    data.update(over)
    return data


def config(*cameras: dict[str, Any], **sections: Any):
    return parse_config({"cameras": list(cameras), **sections})


LINE = {"name": "gate", "points": [[0, 100], [300, 100]]}


def test_identical_configs_change_nothing() -> None:
    old = config(cam("a", lines=[LINE]), cam("b"))
    new = config(cam("a", lines=[LINE]), cam("b"))
    diff = diff_configs(old, new)
    assert diff == ConfigDiff()
    assert not diff.changes_cameras


def test_added_removed_and_source_changed_cameras() -> None:
    old = config(cam("a"), cam("b"), cam("c"))
    new = config(cam("a"), cam("c", url="rtsp://10.0.0.9/c"), cam("d"))
    diff = diff_configs(old, new)
    assert diff.start == ("d",)
    assert diff.stop == ("b",)
    assert diff.restart == ("c",)
    assert diff.lines == ()
    assert diff.changes_cameras


def test_every_source_setting_restarts_the_camera() -> None:
    old = config(cam("a"))
    for change in ({"fps": 5}, {"width": 640}, {"realtime": False}, {"loop": True},
                   {"url": "rtsp://127.0.0.1:8554/other"}):  # fmt: skip
        diff = diff_configs(old, config(cam("a", **change)))
        assert diff.restart == ("a",), change


def test_lines_or_name_only_swap_in_place() -> None:
    old = config(cam("a", lines=[LINE]), cam("b"))
    moved = {**LINE, "points": [[0, 120], [300, 120]]}
    for new in (
        config(cam("a", lines=[moved]), cam("b")),
        config(cam("a"), cam("b")),
        config(cam("a", lines=[LINE, {**LINE, "name": "second"}]), cam("b")),
        config(cam("a", lines=[{**LINE, "directions": ["north", "south"]}]), cam("b")),
        config(cam("a", lines=[LINE], name="Gate A"), cam("b")),
    ):
        diff = diff_configs(old, new)
        assert (diff.lines, diff.restart, diff.start, diff.stop) == (("a",), (), (), ())


def test_disabling_stops_and_enabling_starts() -> None:
    old = config(cam("a"), cam("b", enabled=False))
    new = config(cam("a", enabled=False), cam("b"))
    diff = diff_configs(old, new)
    assert (diff.start, diff.stop) == (("b",), ("a",))
    # a disabled camera's settings change nothing that runs
    diff = diff_configs(old, config(cam("a"), cam("b", enabled=False, url="rtsp://x/y")))
    assert diff == ConfigDiff()


def test_other_sections_need_a_restart_named_by_their_dotted_keys() -> None:
    old = config(cam("a"))
    new = config(
        cam("a"),
        detector={"conf": 0.4, "classes": ["car"]},
        server={"port": 9000},
        ingest={"processes": 2},
        events={"webhook": {"url": "https://user:s3cret@example.com/hook"}},
    )
    diff = diff_configs(old, new)
    assert set(diff.needs_restart) == {
        "detector.conf", "detector.classes", "server.port", "ingest.processes", "events.webhook",
    }  # fmt: skip
    assert not any("s3cret" in key for key in diff.needs_restart)
    assert not diff.changes_cameras


def test_running_config_takes_new_cameras_and_keeps_the_running_sections() -> None:
    old = config(cam("a"), server={"port": 8080})
    new = config(cam("a"), cam("b"), server={"port": 9000})
    running = running_config(old, new)
    assert [c.id for c in running.cameras] == ["a", "b"]
    assert running.server.port == 8080
    assert diff_configs(running, new).needs_restart == ("server.port",)
    assert diff_configs(running, new).start == ()
