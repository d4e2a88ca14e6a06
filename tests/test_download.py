"""The official download path (`data: {source: cifar10}` without a local copy), through the real
`trickbench download` CLI against a real HTTP server on 127.0.0.1 serving a small archive in the
official CIFAR-10 python format. Every failure must exit 2 with one line on stderr naming the URL and how
to give a local copy, and leave nothing behind: no temporary file, no file under the real name."""
from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import BIN, tiny_params, write_params
from data_fixtures import build_cifar, hwc
from trickbench.data.prepared import load_prepared

ARCHIVE = "cifar-10-python.tar.gz"
OFFICIAL_BYTES = 170_498_071


class ArchiveHandler(http.server.BaseHTTPRequestHandler):
    """`/<behaviour>/cifar-10-python.tar.gz`: good, truncated (a shorter file, honestly announced),
    corrupt (one byte flipped), dropped (announces the whole file, sends half, closes), anything else 404."""

    body: bytes = b""
    stalled = threading.Event()  # set at teardown: frees a handler that stalls

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        behaviour, _, name = self.path.strip("/").partition("/")
        body = type(self).body
        if name != ARCHIVE or behaviour not in ("good", "truncated", "corrupt", "dropped", "stalled"):
            self.send_error(404, "Not Found")
            return
        if behaviour == "truncated":
            body = body[: len(body) // 2]
        if behaviour == "corrupt":
            body = body[:100] + bytes([body[100] ^ 0xFF]) + body[101:]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if behaviour == "stalled":  # half the body, then silence (until the client gives up)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            type(self).stalled.wait(60)
            return
        if behaviour == "dropped":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> dict:
    """A tiny cifar-10-python.tar.gz: data_batch_1..5, test_batch and batches.meta as Python 2 pickles."""
    root = tmp_path_factory.mktemp("official")
    return build_cifar(root, np.random.default_rng(7), kind="cifar10", n=30)


@pytest.fixture(scope="module")
def server(archive):
    handler = type("Handler", (ArchiveHandler,), {"body": archive["tarball"].read_bytes(), "stalled": threading.Event()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    handler.stalled.set()
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(workdir: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and k != "TRICKBENCH_DATA_MIRROR"}
    clean["PATH"] = f"{BIN}:{clean['PATH']}"
    return subprocess.run([str(BIN / "trickbench"), "--params", "params.yaml", *argv], cwd=workdir,
                          env={**clean, **(env or {})}, capture_output=True, text=True, timeout=120)


def project(tmp_path: Path, options: dict) -> Path:
    params = tiny_params(data={"source": "cifar10", "options": options, "val_fraction": 0.15,
                               "test_fraction": 0.15, "split_seed": 0})
    params["tracking"]["enabled"] = False
    write_params(tmp_path / "params.yaml", params)
    return tmp_path


def raw_files(workdir: Path) -> list[str]:
    raw = workdir / "artifacts"
    return sorted(str(p.relative_to(raw)) for p in raw.rglob("*") if not p.is_dir()) if raw.exists() else []


def one_error_line(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("trickbench download: error: ") and "Traceback" not in done.stderr
    return lines[0]


def test_good_download_then_prepare(tmp_path, server, archive):
    workdir = project(tmp_path, {"mirror": f"{server}/good/", "md5": archive["tar_md5"]})
    done = run(workdir, "download")
    assert done.returncode == 0, done.stderr
    assert raw_files(workdir) == [f"raw/{ARCHIVE}", "raw/download.json"]
    target = workdir / "artifacts" / "raw" / ARCHIVE
    assert target.read_bytes() == archive["tarball"].read_bytes()
    record = json.loads((workdir / "artifacts" / "raw" / "download.json").read_text())
    (entry,) = record["files"]
    assert f"downloaded from {server}/good/{ARCHIVE}" in entry["check"] and entry["bytes"] == target.stat().st_size
    done = run(workdir, "prepare", "--no-progress")
    assert done.returncode == 0, done.stderr
    prepared = load_prepared(workdir / "artifacts" / "data" / "prepared.npz")
    expected = archive["expected"]
    np.testing.assert_array_equal(prepared.images["test"], hwc(expected["test"][0]))  # the source's test split
    np.testing.assert_array_equal(prepared.labels["test"], expected["test"][1])
    manifest = json.loads((workdir / "artifacts" / "data" / "manifest.json").read_text())
    assert manifest["sizes"]["test"] == 30 and manifest["sizes"]["train"] + manifest["sizes"]["val"] == 150
    assert manifest["class_names"] == expected["class_names"]


@pytest.mark.parametrize("behaviour, message", [
    ("truncated", r"MD5 [0-9a-f]{32} of the \d+ bytes received does not match the expected"),
    ("corrupt", r"MD5 [0-9a-f]{32} of the \d+ bytes received does not match the expected"),
    ("dropped", r"connection closed after \d+ of \d+ bytes \(truncated\)"),
    ("missing", r"HTTP 404 Not Found"),
])
def test_failed_download_leaves_nothing(tmp_path, server, archive, behaviour, message):
    import re

    url = f"{server}/{behaviour}/{ARCHIVE}"
    workdir = project(tmp_path, {"mirror": f"{server}/{behaviour}", "md5": archive["tar_md5"]})
    done = run(workdir, "download")
    assert done.returncode == 2, done.stderr
    line = one_error_line(done)
    assert re.search(rf"download failed: {re.escape(url)}: {message}", line), line
    assert "data.options.archive" in line and "data.options.root" in line
    assert raw_files(workdir) == []


def test_unreachable_server_says_network_unreachable(tmp_path, archive):
    url = f"http://127.0.0.1:{closed_port()}"
    workdir = project(tmp_path, {"mirror": url, "md5": archive["tar_md5"]})
    done = run(workdir, "download")
    assert done.returncode == 2
    line = one_error_line(done)
    assert f"network unreachable: cannot fetch {url}/{ARCHIVE} (connection refused)" in line
    assert "without network, set data.options.archive to a local copy of cifar-10-python.tar.gz" in line
    assert "data.options.root" in line
    assert raw_files(workdir) == []


def test_unknown_host_says_network_unreachable(tmp_path):
    """Name resolution fails, as for the official host on a machine without network (the official URL
    itself is not tried: with a network, that would download 163 MiB)."""
    workdir = project(tmp_path, {})
    done = run(workdir, "download", env={"TRICKBENCH_DATA_MIRROR": "http://no-such-host.invalid/kriz"})
    assert done.returncode == 2
    line = one_error_line(done)
    assert "network unreachable: cannot fetch http://no-such-host.invalid/kriz/cifar-10-python.tar.gz " \
           "(name resolution failed" in line
    assert raw_files(workdir) == []


def test_mirror_from_the_environment_keeps_the_official_size_and_md5(tmp_path, server, archive):
    workdir = project(tmp_path, {})
    done = run(workdir, "download", env={"TRICKBENCH_DATA_MIRROR": f"{server}/good"})
    assert done.returncode == 2
    line = one_error_line(done)
    size = archive["tarball"].stat().st_size
    assert f"{server}/good/{ARCHIVE}: the server announces {size} bytes, expected exactly {OFFICIAL_BYTES}" in line
    assert raw_files(workdir) == []
    done = run(workdir, "download", env={"TRICKBENCH_DATA_MIRROR": "ftp://example.org/"})
    assert done.returncode == 2
    assert "$TRICKBENCH_DATA_MIRROR: expected an http:// or https:// base URL, got 'ftp://example.org/'" in \
        one_error_line(done)


def test_existing_file_is_verified_not_trusted(tmp_path, server, archive):
    """The old failure mode: a 0-byte file under the real name. It is checked, found wrong, and replaced
    by a fresh download; a verified file is used as is, without the network."""
    workdir = project(tmp_path, {"mirror": f"{server}/good", "md5": archive["tar_md5"]})
    target = workdir / "artifacts" / "raw" / ARCHIVE
    target.parent.mkdir(parents=True)
    target.write_bytes(b"")
    done = run(workdir, "download")
    assert done.returncode == 0, done.stderr
    assert "MD5 d41d8cd98f00b204e9800998ecf8427e does not match data.options.md5" in done.stderr
    assert "downloading it again" in done.stderr
    assert target.read_bytes() == archive["tarball"].read_bytes()
    # verified and kept: the server is no longer needed
    project(tmp_path, {"mirror": f"http://127.0.0.1:{closed_port()}", "md5": archive["tar_md5"]})
    done = run(workdir, "download")
    assert done.returncode == 0 and "fetching" not in done.stdout, done.stderr
    # a bad file and no server: the network error, the bad file left as it was, no temporary file
    target.write_bytes(b"garbage")
    done = run(workdir, "download")
    assert done.returncode == 2
    assert "network unreachable" in done.stderr.strip().splitlines()[-1]
    assert raw_files(workdir) == [f"raw/{ARCHIVE}", "raw/download.json"] and target.read_bytes() == b"garbage"


def test_prepare_never_downloads(tmp_path, server, archive):
    workdir = project(tmp_path, {"mirror": f"{server}/good", "md5": archive["tar_md5"]})
    (workdir / "artifacts" / "raw").mkdir(parents=True)
    (workdir / "artifacts" / "raw" / "download.json").write_text("{}")
    done = run(workdir, "prepare", "--no-progress")
    assert done.returncode == 2
    assert f"artifacts/raw/{ARCHIVE}: not found; run the download stage first" in done.stderr
    assert raw_files(workdir) == ["raw/download.json"]


def test_stopped_download_leaves_nothing(tmp_path, server, archive):
    """Snakemake and SLURM stop a job with SIGTERM: the partial temporary file goes with it."""
    import signal
    import time

    workdir = project(tmp_path, {"mirror": f"{server}/stalled", "md5": archive["tar_md5"]})
    clean = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    process = subprocess.Popen([str(BIN / "trickbench"), "--params", "params.yaml", "download"], cwd=workdir,
                               env={**clean, "PATH": f"{BIN}:{clean['PATH']}"}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    raw = workdir / "artifacts" / "raw"
    deadline = time.monotonic() + 60
    while not any(p.stat().st_size > 0 for p in raw.glob(f".{ARCHIVE}.*.part")) if raw.exists() else True:
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM and "Traceback" not in stderr, stderr
    assert raw_files(workdir) == []
