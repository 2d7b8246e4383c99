"""Frame timing rules of a source, kept pure so that they can be tested without video.

`FpsCap` thins a camera to the configured frame rate; `RealtimePacer` releases the frames of a
file at the pace they were recorded, so that a file can stand in for a live camera;
`FpsEstimator` measures the rate of a camera that does not advertise one.
"""

from __future__ import annotations

from collections import deque


class FpsCap:
    """Admits at most `fps` frames per second of stream time, evenly spread.

    The schedule advances from the previous due time rather than from the admitted frame, so a
    25 fps camera capped at 12.5 keeps exactly every other frame despite arrival jitter; a slack
    of a quarter interval absorbs that jitter.
    """

    def __init__(self, fps: float) -> None:
        if fps <= 0:
            raise ValueError("fps must be > 0")
        self.interval = 1.0 / fps
        self._next_due: float | None = None

    def admit(self, t: float) -> bool:
        """Whether a frame at time `t` (seconds, stream or monotonic clock) is kept."""
        if self._next_due is None or t < self._next_due - 2 * self.interval:
            # first frame, or time went backwards (a looping file, a camera that restarted)
            self._next_due = t + self.interval
            return True
        if t < self._next_due - self.interval / 4:
            return False
        self._next_due += self.interval
        if self._next_due <= t:  # a gap longer than one interval: restart the schedule here
            self._next_due = t + self.interval
        return True


class RealtimePacer:
    """How long to wait before releasing a frame of presentation time `pts` (seconds).

    The first frame fixes the mapping between stream time and the monotonic clock. A jump back
    in pts (a file that loops) or a frame more than `max_lag_s` late (a slow consumer, a pause)
    re-anchors the mapping instead of rushing to catch up.
    """

    def __init__(self, max_lag_s: float = 1.0) -> None:
        self.max_lag_s = max_lag_s
        self._anchor: tuple[float, float] | None = None  # (monotonic time, pts)
        self._last_pts: float | None = None

    def delay(self, pts: float, now: float) -> float:
        if self._anchor is None or self._last_pts is None or pts < self._last_pts:
            self._anchor = (now, pts)
        self._last_pts = pts
        start, pts0 = self._anchor
        due = start + (pts - pts0)
        if now - due > self.max_lag_s:
            self._anchor = (now, pts)
            return 0.0
        return max(0.0, due - now)

    def reset(self) -> None:
        self._anchor = None
        self._last_pts = None


class FpsEstimator:
    """The frame rate of a stream measured from its timestamps (the rate alerts and the encoder
    need it, and some cameras advertise none).

    The rate is the mean over the last `window` frames; a timestamp that does not move forward (a
    file that loops, a camera that restarted) starts the window again, so the jump never enters
    the mean.
    """

    def __init__(self, window: int = 30) -> None:
        if window < 2:
            raise ValueError("window must be >= 2")
        self._pts: deque[float] = deque(maxlen=window)

    def add(self, pts: float) -> float | None:
        """One frame's presentation time (seconds); the rate once `window` frames are in."""
        window = self._pts
        if window and pts <= window[-1]:
            window.clear()
        window.append(pts)
        if len(window) == window.maxlen and window[-1] > window[0]:
            return (len(window) - 1) / (window[-1] - window[0])
        return None
