"""NVIDIA GPU memory and utilisation as a Prometheus collector, read through NVML on each scrape.

The service must run the same on a CPU-only box: without nvidia-ml-py, without a driver or without
a GPU, `register_gpu_collector` returns None and no `edge_gpu_*` series exist. A GPU that starts
failing mid-run (driver reset, Xid) makes a scrape skip that GPU, never fail the scrape.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any, cast

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

GPU_METRIC_NAMES = (
    "edge_gpu_memory_used_bytes",
    "edge_gpu_memory_total_bytes",
    "edge_gpu_process_memory_used_bytes",
    "edge_gpu_utilization_ratio",
    "edge_gpu_memory_utilization_ratio",
)


def _load_nvml() -> ModuleType | None:
    """pynvml initialised, or None when the library, the driver or a GPU is missing."""
    try:
        import pynvml
    except ImportError:
        log.debug("nvidia-ml-py not installed: no GPU metrics")
        return None
    try:
        pynvml.nvmlInit()
        count = int(pynvml.nvmlDeviceGetCount())
    except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...
        log.info("no NVIDIA GPU metrics: %s", exc)
        return None
    if count == 0:
        pynvml.nvmlShutdown()
        log.info("no NVIDIA GPU metrics: NVML sees no GPU")
        return None
    return cast("ModuleType", pynvml)


class GpuCollector(Collector):
    """Reads every GPU NVML sees at scrape time; label `gpu` is the NVML index (bounded)."""

    def __init__(self, nvml: ModuleType, pid: int | None = None) -> None:
        self._nvml = nvml
        self._pid = os.getpid() if pid is None else pid
        self._lock = threading.Lock()

    def describe(self) -> list[Any]:
        # Registration must not touch the driver; names are fixed, so nothing to check for clashes.
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["gpu", "model"]
        used = GaugeMetricFamily(
            "edge_gpu_memory_used_bytes", "GPU memory in use (all processes).", labels=labels
        )
        total = GaugeMetricFamily("edge_gpu_memory_total_bytes", "GPU memory size.", labels=labels)
        mine = GaugeMetricFamily(
            "edge_gpu_process_memory_used_bytes",
            "GPU memory used by this edge process.",
            labels=labels,
        )
        util = GaugeMetricFamily(
            "edge_gpu_utilization_ratio",
            "Fraction of the last sample period the GPU was busy (0-1).",
            labels=labels,
        )
        mem_util = GaugeMetricFamily(
            "edge_gpu_memory_utilization_ratio",
            "Fraction of the last sample period GPU memory was read or written (0-1).",
            labels=labels,
        )
        with self._lock:
            for index, values in self._read_all():
                key = [str(index), values["model"]]
                used.add_metric(key, values["used"])
                total.add_metric(key, values["total"])
                mine.add_metric(key, values["mine"])
                util.add_metric(key, values["util"])
                mem_util.add_metric(key, values["mem_util"])
        yield from (used, total, mine, util, mem_util)

    def _read_all(self) -> Iterator[tuple[int, dict[str, Any]]]:
        nv = self._nvml
        try:
            count = int(nv.nvmlDeviceGetCount())
        except Exception as exc:
            log.warning("NVML device count failed: %s", exc)
            return
        for index in range(count):
            try:
                yield index, self._read_one(index)
            except Exception as exc:
                log.warning("NVML read of GPU %d failed: %s", index, exc)

    def _read_one(self, index: int) -> dict[str, Any]:
        nv = self._nvml
        handle = nv.nvmlDeviceGetHandleByIndex(index)
        name = nv.nvmlDeviceGetName(handle)
        memory = nv.nvmlDeviceGetMemoryInfo(handle)
        rates = nv.nvmlDeviceGetUtilizationRates(handle)
        mine = 0.0
        try:
            for proc in nv.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid == self._pid and proc.usedGpuMemory is not None:
                    mine += float(proc.usedGpuMemory)
        except Exception as exc:  # not supported on some boards/containers
            log.debug("NVML process list of GPU %d unavailable: %s", index, exc)
        return {
            "model": name.decode() if isinstance(name, bytes) else str(name),
            "used": float(memory.used),
            "total": float(memory.total),
            "mine": mine,
            "util": float(rates.gpu) / 100.0,
            "mem_util": float(rates.memory) / 100.0,
        }


def register_gpu_collector(registry: CollectorRegistry) -> GpuCollector | None:
    """Add GPU metrics to `registry` when an NVIDIA GPU is usable; else None and no series."""
    nvml = _load_nvml()
    if nvml is None:
        return None
    collector = GpuCollector(nvml)
    registry.register(collector)
    return collector
