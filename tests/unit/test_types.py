from __future__ import annotations

import itertools
import pickle
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import av
import numpy as np
import pytest

from edge.assets import asset
from edge.infer.letterbox import LetterboxSpec, letterbox_frame
from edge.types import Detections, Frame


def make_frame(fmt: str) -> Frame:
    y, x = np.mgrid[0:48, 0:64]
    bgr = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.uint8)  # smooth: 4:2:0-safe
    image = av.VideoFrame.from_ndarray(bgr, format="bgr24").reformat(format=fmt)
    return Frame("cam", 7, 1.5, 123.25, image)


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.mark.parametrize("fmt", ["yuv420p", "nv12", "rgb24", "yuv444p"])
def test_frame_pickles_with_its_picture(fmt: str) -> None:
    frame = make_frame(fmt)
    back = pickle.loads(pickle.dumps(frame))
    assert (back.camera_id, back.seq, back.pts, back.received_at) == ("cam", 7, 1.5, 123.25)
    assert (back.width, back.height) == (64, 48)
    # same pixels for formats that travel as they are; yuv444p travels as 4:2:0
    tolerance = 0.0 if fmt != "yuv444p" else 3.0
    assert mean_abs(back.to_bgr(), frame.to_bgr()) <= tolerance


def _boxes_and_mean(frame: Frame) -> float:
    return float(frame.to_bgr(32, 24).mean())


def test_frame_crosses_a_process_boundary() -> None:
    frame = make_frame("yuv420p")
    with ProcessPoolExecutor(1) as pool:
        assert pool.submit(_boxes_and_mean, frame).result(timeout=60) == pytest.approx(
            float(frame.to_bgr(32, 24).mean())
        )


@pytest.mark.parametrize("n", [0, 3])
def test_detections_validate_shapes(n: int) -> None:
    d = Detections(np.zeros((n, 4), np.float32), np.zeros(n, np.float32), np.zeros(n, np.int64))
    assert len(d) == n
    with pytest.raises(ValueError, match="score"):
        Detections(np.zeros((n, 4), np.float32), np.zeros(n + 1, np.float32), np.zeros(n))
    with pytest.raises(ValueError, match="xyxy"):
        Detections(np.zeros((n, 5), np.float32), np.zeros(n, np.float32), np.zeros(n))


def test_one_picture_converted_from_two_threads_at_once() -> None:
    """The inference workers, the plate reader and the publisher may convert the same decoded
    frame at the same moment at different sizes; PyAV's own per-frame converter deadlocks then."""
    with av.open(str(asset("video", "traffic_highway_overpass.mp4"))) as container:
        images = itertools.islice(container.decode(video=0), 3)
        frames = [Frame("cam", i, None, 0.0, im) for i, im in enumerate(images)]
    shapes: list[set[tuple[int, ...]]] = [set(), set()]

    def model_input(i: int) -> None:  # as an inference worker does
        shapes[0].add(letterbox_frame(frames[i % 3].image, LetterboxSpec(416))[0].shape)

    def viewer(i: int) -> None:  # as the publisher does
        shapes[1].add(frames[i % 3].to_bgr(640, 360).shape)

    def loop(convert: Callable[[int], None]) -> None:
        for i in range(3000):
            convert(i)

    threads = [threading.Thread(target=loop, args=(f,), daemon=True) for f in (model_input, viewer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "conversions deadlocked"
    assert shapes == [{(3, 416, 416)}, {(360, 640, 3)}]
