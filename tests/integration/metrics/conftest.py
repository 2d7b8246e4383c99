"""A real Prometheus (Debian's /usr/bin/prometheus) on loopback, the PromQL we ship, and a real
WebRTC viewer (aiortc) for the service's video stages.

The expressions come from the files users import (the Grafana dashboard, the alert rules), never
from a copy in the tests, so a panel or rule that stops matching the metrics fails here.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.publish.viewer_client import ThreadedViewer as Viewer
from edge.testing import free_port, wait_for

REPO = Path(__file__).resolve().parents[3]
DASHBOARD = REPO / "deploy" / "grafana" / "edge-dashboard.json"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
PROM_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
K8S_DIR = REPO / "deploy" / "k8s"

# What Grafana puts in place of its variables: all cameras, a rate window of a few 1 s scrapes.
GRAFANA_VARS = {"$camera": ".*", "$__rate_interval": "10s", "$__range": "1m", "$__interval": "1s"}
_COMPARISON = re.compile(
    r"^(?P<left>.*?)\s*(?:==|!=|>=|<=|>|<)\s*(?:bool\s+)?[-+0-9.eE]+\s*$", re.S
)


def binary(name: str) -> str:
    path = shutil.which(name) or f"/usr/bin/{name}"
    assert Path(path).is_file(), f"{name} not installed: .ci/run installs Debian's prometheus"
    return path


class Prometheus:
    """One Prometheus server process with its own TSDB in a temporary folder."""

    def __init__(self, workdir: Path, scrape_targets: list[str], rule_files: list[Path]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        config = {
            "global": {
                "scrape_interval": "1s",
                "evaluation_interval": "1s",
                "scrape_timeout": "1s",
            },
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [
                {"job_name": "edge", "static_configs": [{"targets": scrape_targets}]}
            ],
        }
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    binary("prometheus"),
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._ready, timeout=60, interval=0.1)
        return self

    def _ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log()
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                return resp.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def api(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:  # 400/422: the PromQL itself is wrong
            body = json.load(exc)
        assert body.get("status") == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        assert data["resultType"] == "vector", f"{expr}: {data['resultType']}"
        return list(data["result"])

    def samples(
        self, expr: str, window_s: float, at: float, label: str = "camera"
    ) -> dict[str, list[tuple[float, float]]]:
        """Raw scraped (timestamp, value) of `expr[window]` per value of `label`, oldest first."""
        data = self.api("query", query=f"{expr}[{int(window_s * 1000)}ms]", time=f"{at:.3f}")
        assert data["resultType"] == "matrix", data
        return {
            s["metric"].get(label, ""): [(float(t), float(v)) for t, v in s["values"]]
            for s in data["result"]
        }

    def by_label(self, expr: str, label: str, at: float | None = None) -> dict[str, float]:
        return {s["metric"].get(label, ""): float(s["value"][1]) for s in self.query(expr, at)}

    def rules(self) -> list[dict[str, Any]]:
        return [r for g in self.api("rules")["groups"] for r in g["rules"]]

    def wait_for_data(self, expr: str, timeout: float) -> list[dict[str, Any]]:
        """Poll until `expr` returns at least one series (the first sample takes ~5 s to land)."""
        found: list[list[dict[str, Any]]] = []

        def has_data() -> bool:
            found[:] = [self.query(expr)]
            return bool(found[0])

        try:
            wait_for(has_data, timeout=timeout, interval=0.25)
        except TimeoutError:
            raise AssertionError(f"no data for {expr} in {timeout} s\n{self.log()}") from None
        return found[0]

    @staticmethod
    def finite(result: list[dict[str, Any]]) -> list[float]:
        """The finite values of an instant vector (histogram_quantile of no events gives NaN)."""
        values = [float(s["value"][1]) for s in result]
        return [v for v in values if math.isfinite(v)]


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    started: list[Prometheus] = []

    def start(targets: list[str], rule_files: list[Path] | None = None) -> Prometheus:
        workdir = tmp_path / f"prometheus-{len(started)}"
        workdir.mkdir()
        prom = Prometheus(workdir, targets, rule_files if rule_files is not None else [ALERTS])
        started.append(prom)
        return prom.start()

    yield start
    for prom in started:
        prom.stop()


@dataclass
class ShippedPromQL:
    """Every expression a user gets: dashboard targets, recording rules, alert rules."""

    dashboard: list[tuple[str, str]] = field(default_factory=list)  # (panel title, expr)
    recording: list[tuple[str, str]] = field(default_factory=list)  # (record name, expr)
    alerts: list[tuple[str, str]] = field(default_factory=list)  # (alert name, expr)

    def alert_series(self) -> list[tuple[str, str]]:
        """Each alert's expression without its threshold: the series the alert compares."""
        out = []
        for name, expr in self.alerts:
            m = _COMPARISON.match(expr.strip())
            assert m, f"alert {name}: expression is not '<series> <op> <number>': {expr}"
            out.append((name, m.group("left")))
        return out


def grafana_expand(expr: str) -> str:
    for var, value in sorted(GRAFANA_VARS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


@pytest.fixture(scope="session")
def shipped_promql() -> ShippedPromQL:
    out = ShippedPromQL()
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            out.dashboard.append((panel["title"], grafana_expand(target["expr"])))
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                out.recording.append((rule["record"], rule["expr"]))
            else:
                out.alerts.append((rule["alert"], rule["expr"]))
    assert out.dashboard and out.recording and out.alerts
    return out


@pytest.fixture
def start_viewer() -> Iterator[Callable[[str, str], Viewer]]:
    started: list[Viewer] = []

    def start(base_url: str, camera: str) -> Viewer:
        started.append(Viewer(base_url, camera))
        return started[-1]

    yield start
    for viewer in started:
        viewer.stop()
