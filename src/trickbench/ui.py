"""`trickbench ui`: the MLflow UI on the project's store, and the URL of every study's runs table.

MLflow 3.17's UI opens `#/experiments/<id>` on its GenAI *Overview* page (traces, latency, token usage),
although trickbench tags its experiments as training experiments; the runs table is at
`#/experiments/<id>/runs`. Both were seen in headless Chromium (tests/test_ui.py opens the printed URLs).
A local store (SQLite) gets its own `mlflow ui` on 127.0.0.1; a tracking server (`http(s)://`) is already
a UI, so only its URLs are printed.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

from trickbench import tracking
from trickbench.errors import TrackingError

HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0  # mlflow ui migrates a new store's schema before it answers


def runs_url(base_url: str, experiment_id: str) -> str:
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs"


def study_urls(params: dict[str, Any], uri: str, base_url: str) -> dict[str, str | None]:
    """Each study's runs-table URL; None for a study with no experiment in the store yet."""
    names = {study: tracking.experiment_name(params, study) for study in params["studies"]}
    ids = tracking.find_experiments(uri, list(names.values()))
    return {study: runs_url(base_url, ids[name]) if ids[name] else None for study, name in names.items()}


def url_lines(urls: dict[str, str | None]) -> list[str]:
    return [f"  {study}: {url or 'no runs yet (run the pipeline first)'}" for study, url in urls.items()]


def check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError as error:
            raise TrackingError(f"--port {port}: {HOST}:{port} is taken ({error.strerror}); expected a free port")


def start_mlflow_ui(uri: str, port: int) -> subprocess.Popen:
    """`mlflow ui` in its own process group (its workers outlive a SIGTERM to the main process)."""
    mlflow = Path(sys.executable).with_name("mlflow")
    # the job runner's seven background processes serve MLflow's GenAI jobs, which trickbench never starts
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    # its messages go to stderr, so stdout holds only the URLs
    return subprocess.Popen([str(mlflow), "ui", "--backend-store-uri", uri, "--host", HOST, "--port", str(port)],
                            env=env, start_new_session=True, stdin=subprocess.DEVNULL, stdout=sys.stderr)


def wait_until_healthy(server: subprocess.Popen, base_url: str, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise TrackingError(f"mlflow ui on {base_url}: exited with code {server.returncode} before it answered "
                                "(its messages are above)")
        try:
            with urllib.request.urlopen(f"{base_url}/health", timeout=2) as answer:
                answer.read(16)
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise TrackingError(f"mlflow ui on {base_url}: no answer within {timeout:.0f} s")


def stop(server: subprocess.Popen) -> None:
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def ui(params: dict[str, Any], port: int, say: Callable[[str], None]) -> None:
    """Print every study's runs URL; for a local store, serve the UI until interrupted (Ctrl-C, SIGTERM)."""
    tracking.check_store({**params, "tracking": {**params["tracking"], "enabled": True}})
    uri = tracking.tracking_uri(params)
    if uri.startswith(("http://", "https://")):
        say(f"MLflow tracking server {uri} (tracking.uri or $MLFLOW_TRACKING_URI): open it in a browser; runs tables:")
        for line in url_lines(study_urls(params, uri, uri)):
            say(line)
        return
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise TrackingError(f"{tracking.uri_source(params)}: {uri}: no MLflow store there yet; expected the store "
                            "of a run (`make run` first)")
    check_port_free(port)
    base_url = f"http://{HOST}:{port}"
    urls = study_urls(params, uri, base_url)
    # SIGTERM ends the wait below as Ctrl-C does, so the server's process group is stopped either way
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = start_mlflow_ui(uri, port)
    try:
        wait_until_healthy(server, base_url)
        say(f"MLflow UI on {uri}: {base_url} (Ctrl-C stops it); runs tables:")
        for line in url_lines(urls):
            say(line)
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop(server)
