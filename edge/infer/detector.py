"""The YOLO vehicle detector: one ONNX Runtime session that every camera's frames go through.

The model's family (YOLOv5, YOLOX, YOLOv8) is read from the graph (`edge.infer.layout`), and
preprocessing follows it unless the config overrides colour order or scale. Frames are letterboxed
at model resolution during PyAV's colour conversion, never via a full-size BGR copy. Which
letterbox, session and layout the model gets is decided once, in `edge.infer.model_open`.

Every run goes one way, `Detector.detect_batch` (prepare → copy into the batch → infer →
postprocess), whoever drives it: the batcher's threads for the service, `detect_stream` (an
ordered pipeline of those batches on a few threads) for `edge detect` and `edge analyze`. The
detector's metrics are recorded there and in `infer` (each ONNX Runtime run's time), nowhere
else; frames inferred, batch sizes and FPS are the batcher's to count.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice

import numpy as np

from edge.config import DetectorConfig
from edge.infer.layout import FAMILY_PREPROCESS, Color
from edge.infer.letterbox import STRIDE, Letterbox, LetterboxSpec, letterbox_bgr, letterbox_frame
from edge.infer.model_check import ModelError, check_classes
from edge.infer.model_open import open_model
from edge.infer.postprocess import PostprocessParams, postprocess, postprocess_batch
from edge.metrics import EdgeMetrics
from edge.types import Detections, Frame

log = logging.getLogger(__name__)

__all__ = ["FAMILY_PREPROCESS", "Detector", "FrozenBatchError"]


class FrozenBatchError(ValueError):
    """A batch of several pictures was given to a model whose batch is frozen at 1."""


def frozen_batch_message(model: object) -> str:
    return (
        f"model {model} has its batch frozen at 1 and cannot run batches; make it dynamic with "
        f"`edge model prepare {model} OUT.onnx`"
    )


class Detector:
    """Loads an ONNX YOLO export and turns frames into `Detections` in source pixels.

    A file that cannot serve (not ONNX, not a YOLO layout, refused by ONNX Runtime, lacking a
    configured class) raises `ModelError`, one line naming the file.
    """

    def __init__(
        self,
        config: DetectorConfig,
        metrics: EdgeMetrics,
        *,
        io_binding: bool | None = None,
    ) -> None:
        """`metrics`: the registry the service exports (no private default: a detector that
        records where nobody reads would hide its batch times). `io_binding`: None follows
        `detector.cuda.io_binding` on CUDA/TensorRT (off on a CPU); True forces it (also on a
        CPU)."""
        self.config = config
        self.metrics = metrics
        opened = open_model(config)
        self.session, self.provider, self.plan = opened.session, opened.provider, opened.plan
        self.layout, self.rect = opened.layout, opened.rect
        self.family = self.layout.family
        self.class_names = list(self.layout.class_names)
        self.input_size = self.layout.input_size or config.input_size
        if self.layout.input_size and self.layout.input_size != config.input_size:
            log.info("model %s fixes its input at %d px", config.model.name, self.input_size)
        self.is_dynamic_batch = not self.layout.frozen_batch
        self.workers = self.plan.workers
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self.max_batch = self.plan.max_batch if self.is_dynamic_batch else 1
        if not self.is_dynamic_batch and self.plan.max_batch > 1:
            log.warning("%s; running one frame at a time", frozen_batch_message(config.model))
        color, unit, center = FAMILY_PREPROCESS[self.family]
        pre = config.preprocess
        self.color: Color = color if pre.color == "auto" else pre.color
        self.unit_scale = unit if pre.scale == "auto" else pre.scale == "unit"
        self.center_pad = center
        self.uint8 = self.layout.uint8_input
        """The graph takes uint8 pictures and casts and scales them itself."""
        self.input_dtype = np.uint8 if self.uint8 else np.float32
        self.letterbox = LetterboxSpec(
            self.input_size, self.color, self.unit_scale, pre.pad_value, center, self.rect,
            self.uint8,
        )  # fmt: skip
        if self.uint8:
            self._check_graph_scale(opened.input_scale)
        self.params = PostprocessParams(
            conf=config.conf, iou=config.iou, max_det=config.max_det,
            allowed=self._class_ids(config.classes),
        )  # fmt: skip
        on_gpu = self.provider in ("cuda", "tensorrt")
        self.io_binding = on_gpu and config.cuda.io_binding if io_binding is None else io_binding
        # On a GPU every batch runs padded to max_batch rows, so the session sees one input shape:
        # on an H200, changing shapes from run to run (rect sizes alternating, or workers' batches
        # of different sizes) cut throughput tenfold or stalled it, most likely because the CUDA
        # provider re-plans its convolutions for each new shape (BENCHMARKS.md, GPU).
        self.pad_to = self.max_batch if on_gpu and self.is_dynamic_batch else 0
        if on_gpu and self.rect:
            log.warning(
                "detector.letterbox: rect on %s: cameras of different shapes make the GPU rebuild "
                "its plans at every change of input size; square is faster there",
                self.provider,
            )
        self.metrics.set_provider(
            self.provider, family=self.family, workers=self.workers, threads=self.plan.threads
        )
        log.info(
            "detector %s: family %s, %d classes, input %d px (%s letterbox), batch %s, %s %s",
            config.model.name, self.family, len(self.class_names), self.input_size,
            "rect" if self.rect else "square",
            f"dynamic (max {self.max_batch})" if self.is_dynamic_batch else "frozen at 1",
            self.color.upper(), "0-1" if self.unit_scale else "0-255",
        )  # fmt: skip
        if self.uint8:
            log.info("detector %s: uint8 input, scaled in the graph", config.model.name)

    def _check_graph_scale(self, baked: str | None) -> None:
        """A uint8 model made by `edge model prepare` scales inside its graph: the configured
        scaling must be the one it does (the host feeds 0-255 as is)."""
        want = "unit" if self.unit_scale else "raw"
        if baked is not None and baked != want:
            raise ModelError(
                self.config.model,
                f"takes uint8 pictures scaled {baked} in its graph, but detector.preprocess.scale "
                f"asks {want}; prepare it again with that scale",
                field="preprocess.scale",
            )

    def _class_ids(self, names: Sequence[str]) -> np.ndarray:
        check_classes(self.config.model, self.class_names, names)
        return np.array([self.class_names.index(n) for n in names], dtype=np.int64)

    # -- stages -------------------------------------------------------------------------------

    def preprocess(self, frame: Frame) -> tuple[np.ndarray, Letterbox]:
        """3×S×S float32 at model resolution (3×H×W with a rect letterbox), resized during the
        colour conversion."""
        return letterbox_frame(frame.image, self.letterbox)

    def preprocess_bgr(self, img: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """`preprocess` for an H×W×3 BGR picture (benchmarks that feed ONNX Runtime directly)."""
        return letterbox_bgr(img, self.letterbox)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """The session's raw output for an N×3×S×S batch (N×3×H×W with a rect letterbox); up to
        `workers` threads may call it at once."""
        s = self.input_size
        if not (batch.ndim == 4 and batch.shape[1] == 3 and self._fits(*batch.shape[2:])):
            want = (
                f"N×3×H×W, H and W multiples of {STRIDE} up to {s}" if self.rect else f"N×3×{s}×{s}"
            )
            raise ValueError(f"batch must be {want}, got {batch.shape}")
        if batch.shape[0] > 1 and not self.is_dynamic_batch:
            raise FrozenBatchError(frozen_batch_message(self.config.model))
        n = batch.shape[0]
        if n < self.pad_to:
            blank = np.zeros((self.pad_to - n, *batch.shape[1:]), batch.dtype)
            batch = np.concatenate([batch, blank])
        batch = np.ascontiguousarray(batch, dtype=self.input_dtype)
        start = time.perf_counter()
        out = self._run_bound(batch) if self.io_binding else self._run_plain(batch)
        self.metrics.batch_inference_seconds.observe(time.perf_counter() - start)
        return out[:n]

    def _fits(self, h: int, w: int) -> bool:
        s = self.input_size
        if not self.rect:
            return h == w == s
        return 0 < h <= s and 0 < w <= s and h % STRIDE == 0 and w % STRIDE == 0

    def infer_groups(
        self, tensors: Sequence[np.ndarray], copied: Callable[[], None] | None = None
    ) -> Iterator[tuple[list[int], np.ndarray]]:
        """(indices, raw output rows) for each group of prepared pictures of one size, which run as
        one batch (with a rect letterbox, cameras of different aspect ratios make different
        sizes). Every picture is copied into its batch first, then `copied()` is called: the
        pictures are free for reuse (a worker's shared slot) while the batches run."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for k, tensor in enumerate(tensors):
            groups.setdefault(tensor.shape, []).append(k)
        batches = []
        for shape, members in groups.items():
            batch = self._batch_buffer(shape, max(len(members), self.pad_to))
            for row, k in enumerate(members):
                batch[row] = tensors[k]
            batches.append((members, batch))
        if copied is not None:
            copied()
        for members, batch in batches:
            yield members, self.infer(batch)[: len(members)]

    def _batch_buffer(self, shape: tuple[int, ...], rows: int) -> np.ndarray:
        """`rows` pictures of `shape`, in a buffer this thread keeps for that shape: a fresh batch
        of a few hundred kilobytes per run costs page faults on every write into it. Rows past
        the pictures (GPU padding) keep whatever they held: each row's output is its own, and
        padded rows' outputs are cut off."""
        buffers: dict[tuple[int, ...], np.ndarray] | None = getattr(self._local, "buffers", None)
        if buffers is None:
            buffers = self._local.buffers = {}
        buf = buffers.get(shape)
        if buf is None or len(buf) < rows:
            buf = buffers[shape] = np.zeros((max(rows, self.max_batch), *shape), self.input_dtype)
        return buf[:rows]

    def infer_each(self, tensors: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The raw output of each prepared picture (see `infer_groups`)."""
        out: list[np.ndarray] = [np.empty(0)] * len(tensors)
        for members, raw in self.infer_groups(tensors):
            for row, k in enumerate(members):
                out[k] = raw[row]
        return out

    def _run_plain(self, batch: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.session.run(
            [self.layout.output_name], {self.layout.input_name: batch}
        )[0]
        return out

    def _run_bound(self, batch: np.ndarray) -> np.ndarray:
        """IOBinding: ORT copies the whole batch to the device once and the output back once, both
        inside its run, which releases the GIL. Device buffers handled from Python instead (a
        device `OrtValue` per batch) were no faster than a plain run on an H200, and reusing them
        (`update_inplace`) hung 3-4 concurrent workers there (BENCHMARKS.md, GPU section)."""
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.layout.input_name, batch)
        binding.bind_output(self.layout.output_name, "cpu")
        self.session.run_with_iobinding(binding)
        out: np.ndarray = binding.copy_outputs_to_cpu()[0]
        return out

    def postprocess(self, raw: np.ndarray, letterbox: Letterbox) -> Detections:
        """One picture's raw output (with or without its batch axis) → Detections."""
        return postprocess(raw, self.family, self.input_size, letterbox, self.params)

    def postprocess_batch(
        self, raw: np.ndarray, letterboxes: Sequence[Letterbox]
    ) -> list[Detections]:
        """The raw output of a batch of same-size pictures → Detections of each, in one pass."""
        return postprocess_batch(raw, self.family, self.input_size, letterboxes, self.params)

    # -- the one execution path --------------------------------------------------------------

    def detect_batch(
        self,
        frames: Sequence[Frame],
        *,
        skip_bad: bool = False,
        copied: Callable[[], None] | None = None,
        count_detections: bool = True,
    ) -> list[Detections | None]:
        """Detections of each of at most `max_batch` frames: each picture prepared and copied
        into the batch, the batch run, its output postprocessed.

        Every run of the detector comes through here (the batcher's threads, `detect_stream`
        for `edge detect` and `edge analyze`), so its per-frame metrics are recorded here alone,
        once the whole batch is done: per camera, the `preprocess` stage (only where the
        picture was letterboxed here: a frame that carries `prepared()` was letterboxed by the
        worker process that sent it, which records it), each frame's share of the batch's
        `inference` and its `postprocess`, and, with `count_detections` (False where whoever
        takes the results counts them), its detections by class. `infer` records each ONNX
        Runtime run. With `skip_bad`, a picture that cannot be prepared (a broken frame) is
        logged and left out alone (its detections are None); else its error propagates.
        `copied()`: see `infer_groups`."""
        tensors, boxes, kept = [], [], []
        pre_s: list[float | None] = [None] * len(frames)
        for i, frame in enumerate(frames):
            prepared = getattr(frame, "prepared", None)
            start = time.perf_counter()
            try:
                tensor, box = self.preprocess(frame) if prepared is None else prepared()
            except Exception:
                if not skip_bad:
                    raise
                log.exception("camera %s: cannot preprocess frame %d", frame.camera_id, frame.seq)
                continue
            if prepared is None:
                pre_s[i] = time.perf_counter() - start
            tensors.append(tensor)
            boxes.append(box)
            kept.append(i)
        dets: list[Detections | None] = [None] * len(frames)
        post_s = [0.0] * len(frames)
        infer_s = 0.0
        start = time.perf_counter()
        for members, raw in self.infer_groups(tensors, copied):
            done = time.perf_counter()
            infer_s += done - start
            found = self.postprocess_batch(raw, [boxes[k] for k in members])
            start = time.perf_counter()
            for k, d in zip(members, found, strict=True):
                dets[kept[k]] = d
                post_s[kept[k]] = (start - done) / len(members)  # each picture's share
        share = infer_s / max(1, len(kept))
        m = self.metrics
        for i in kept:
            cam, found_i = frames[i].camera_id, dets[i]
            seconds = pre_s[i]
            if seconds is not None:
                m.observe_stage(cam, "preprocess", seconds)
            m.observe_stage(cam, "inference", share)
            m.observe_stage(cam, "postprocess", post_s[i])
            if count_detections and found_i is not None:
                m.count_detections(cam, found_i.class_id, self.class_names)
        return dets

    def detect_stream(self, frames: Iterable[Frame]) -> Iterator[tuple[Frame, Detections]]:
        """(frame, detections) for every frame of a stream, in order, none left out (for files:
        `edge detect`, `edge analyze`).

        Batches of `max_batch` frames go through `detect_batch`, `workers` at once on the
        detector's own threads, while the caller's thread reads the next frames (a file's decode
        overlaps the inference) and takes the results; at most `2 × workers` batches are out at
        once, so a fast reader never piles up decoded pictures. A frame that cannot be prepared
        raises (a file's results must be complete)."""
        pool = self._stream_pool()
        out: deque[tuple[list[Frame], Future[list[Detections | None]]]] = deque()
        source = iter(frames)
        try:
            while chunk := list(islice(source, self.max_batch)):
                out.append((chunk, pool.submit(self.detect_batch, chunk)))
                if len(out) >= 2 * self.workers:
                    yield from _in_order(*out.popleft())
            while out:
                yield from _in_order(*out.popleft())
        finally:
            for _, future in out:  # the caller stopped early, or reading or a batch failed
                future.cancel()

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        """Detections of each frame (`detect_stream` over a list)."""
        return [dets for _, dets in self.detect_stream(frames)]

    def _stream_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="edge-detect")
        return self._pool


def _in_order(
    frames: list[Frame], future: Future[list[Detections | None]]
) -> Iterator[tuple[Frame, Detections]]:
    for frame, dets in zip(frames, future.result(), strict=True):
        assert dets is not None  # without skip_bad every picture is prepared or it raised
        yield frame, dets
