"""promql against a real Prometheus (Debian's ``prometheus``) on loopback, scraping an
exporter this test serves: 15 series of a gauge with known values."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.engine.tools import registries
from services.engine.tools.registries import Status, ToolContext, ToolSettings
from tests.support.ports import free_port

pytestmark = pytest.mark.prometheus
METRICS = "".join(f'pf_test_cpu_ratio{{pod="pod-{i:02d}"}} {i / 100}\n' for i in range(15)).encode()


class _Exporter(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(METRICS)))
        self.end_headers()
        self.wfile.write(METRICS)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed; .ci/run installs it")
        pytest.skip("prometheus is not installed (apt-get install prometheus; .ci/run does it)")
    exporter = ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    folder = tmp_path_factory.mktemp("prometheus")
    config = folder / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: exporter\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter.server_address[1]}']}}]\n"
    )
    port = free_port()
    log = (folder / "log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                answer = httpx.get(
                    f"{url}/api/v1/query", params={"query": "count(pf_test_cpu_ratio)"}
                ).json()
                if answer["data"]["result"] and answer["data"]["result"][0]["value"][1] == "15":
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail(
                    "Prometheus did not come up: " + Path(folder / "log").read_text()[-2000:]
                )
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
        exporter.shutdown()
        exporter.server_close()


def promql(url: str, **arguments: Any) -> registries.ToolResult:
    ctx = ToolContext(settings=ToolSettings(prometheus_url=url, promql_max_series=10))
    try:
        return registries.default_registry.get("promql").invoke(arguments, ctx)
    finally:
        ctx.close()


def test_an_instant_query_returns_the_top_series_first(prometheus: str) -> None:
    result = promql(prometheus, query="pf_test_cpu_ratio")
    assert result.status is Status.OK
    lines = result.text.splitlines()
    assert lines[0].startswith('{__name__="pf_test_cpu_ratio",instance=')
    assert 'pod="pod-14"' in lines[0]
    assert "value=0.14" in lines[0]
    assert lines[-1] == "[5 lower series not shown]"
    assert len(result.data["series"]) == 10


def test_a_range_query_reports_latest_and_peak(prometheus: str) -> None:
    result = promql(prometheus, query='pf_test_cpu_ratio{pod="pod-03"}', range="5m", step="1s")
    assert result.status is Status.OK
    assert "value=0.03 peak=0.03" in result.text


def test_a_bad_query_comes_back_as_error_with_prometheus_reason(prometheus: str) -> None:
    result = promql(prometheus, query="sum(rate(")
    assert result.status is Status.ERROR
    assert "bad_data" in result.text
    assert promql(prometheus, query="x" * 3000).status is Status.ERROR
    assert promql(prometheus, query="up", range="1y").status is Status.ERROR


def test_no_match_is_empty_and_an_unreachable_prometheus_is_an_error(prometheus: str) -> None:
    assert promql(prometheus, query="pf_no_such_metric").status is Status.EMPTY
    down = promql(f"http://127.0.0.1:{free_port()}", query="up")
    assert down.status is Status.ERROR
    assert down.unreachable
