"""The original app's detection loop, the baseline edge is measured against.

As the original app ran it: one camera after another, its latest frame, full-size BGR
(`to_ndarray(format="bgr24")`), cv2 letterbox resize, batch-1 inference of the original
(frozen-batch) model file in a session with ORT's default options, postprocess, in one thread.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import onnxruntime as ort

from bench.probes import providers
from edge.infer.detector import Detector
from edge.ingest.source import CameraSource


def original_session(model: Path, spinning: bool) -> ort.InferenceSession:
    """As the original app built it: default session options (spinning on), or spinning off."""
    options = ort.SessionOptions()
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(model), options, providers=providers())


def original_loop(
    det: Detector, session: ort.InferenceSession, sources: list[CameraSource],
    stop: threading.Event, done: list[int],
) -> None:  # fmt: skip
    """The original app: cameras in turn, batch 1, full-size BGR, cv2 letterbox, infer."""
    last: dict[str, int] = {}
    name = session.get_inputs()[0].name
    while not stop.is_set():
        fresh = 0
        for source in sources:
            frame = source.latest()
            if frame is None or last.get(source.camera_id) == frame.seq:
                continue
            last[source.camera_id] = frame.seq
            bgr = frame.image.to_ndarray(format="bgr24")
            tensor, letterbox = det.preprocess_bgr(bgr)
            raw = session.run(None, {name: tensor[None]})[0]
            det.postprocess(raw[0], letterbox)
            done[0] += 1
            fresh += 1
        if not fresh:
            time.sleep(0.001)
