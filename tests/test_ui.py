"""`trickbench ui` for real: a tiny pipeline logs two studies to an SQLite store, `trickbench ui` serves it
with `mlflow ui` on 127.0.0.1, and Debian's chromium (headless; tests/browser/install-chromium.sh installs
it with apt-get, as tests/slurm/start.sh installs SLURM) opens every printed URL: the runs table lists
every grid point of its study by run name. The experiment's own URL, without /runs, shows MLflow 3.17's
GenAI overview instead (what docs/tracking.md says). Marker `browser`: deselect with -m "not browser"."""
from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, REPO, free_port, mlflow_server, tiny_params, write_params

pytestmark = pytest.mark.slow  # a tiny pipeline first (about a minute)
INSTALL = REPO / "tests" / "browser" / "install-chromium.sh"
STUDIES = {"acts": {"axes": {"activation": ["relu", "rrelu"], "seed": [0, 1]}},
           "rates": {"axes": {"lr": [0.01, 0.05]}}}


def env_for(project: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "TRICKBENCH_ALLOW_OUTSIDE"}
    return {**env, "PATH": f"{BIN}:{os.environ['PATH']}",
            "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}", **extra}


def trickbench(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "trickbench"), *args], cwd=project, env=env or env_for(project),
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def chromium() -> str:
    done = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, timeout=900)
    if done.returncode in (2, 3):
        pytest.skip(f"no chromium and it cannot be installed here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """Two studies trained and logged by the real stages (2 epochs of a width-4 CNN on the digits)."""
    root = tmp_path_factory.mktemp("ui")
    params = tiny_params()
    params["studies"] = STUDIES
    write_params(root / "params.yaml", params)
    for stage in (["tracking"], ["download"], ["prepare", "--no-progress"], ["stats"],
                  *(["train-study", "--study", study] for study in STUDIES)):
        done = trickbench(root, *stage)
        assert done.returncode == 0, done.stderr[-3000:]
    return root


def grid_points(project: Path) -> dict[str, set[str]]:
    points: dict[str, set[str]] = {}
    for line in trickbench(project, "grid").stdout.split():
        study, point = line.split("/", 1)
        points.setdefault(study, set()).add(point)
    return points


def start_ui(project: Path, port: int) -> tuple[subprocess.Popen, dict[str, str]]:
    """`trickbench ui`, and the runs URL it prints for each study (read from its stdout as it runs)."""
    ui = subprocess.Popen([str(BIN / "trickbench"), "ui", "--port", str(port)], cwd=project, env=env_for(project),
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    urls: dict[str, str] = {}
    for line in ui.stdout:
        found = re.match(r"\s+(\S+): (http://\S+)$", line)
        if found:
            urls[found.group(1)] = found.group(2)
        if len(urls) == len(STUDIES):
            return ui, urls
    pytest.fail(f"trickbench ui exited ({ui.wait()}) before printing a URL per study: {urls}")


def dom(chromium: str, url: str, profile: Path) -> str:
    """The page as the browser rendered it once the UI's JavaScript had run (virtual time, not a sleep)."""
    done = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                           "--window-size=1400,900", "--virtual-time-budget=20000", "--dump-dom", url],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.browser
def test_every_printed_url_shows_the_runs_table_of_its_study(project, chromium, tmp_path):
    points = grid_points(project)
    assert set(points) == set(STUDIES) and sum(map(len, points.values())) == 6
    port = free_port()
    ui, urls = start_ui(project, port)
    try:
        assert set(urls) == set(STUDIES)
        for study, url in urls.items():
            assert url.startswith(f"http://127.0.0.1:{port}/#/experiments/") and url.endswith("/runs")
            page = dom(chromium, url, tmp_path / "profile")
            assert "Training runs" in page
            assert points[study] <= set(re.findall(r"[\w.+=-]+", page)), (study, points[study])
            # the other study's runs are not in this table
            other = set().union(*(p for s, p in points.items() if s != study))
            assert not other & set(re.findall(r"[\w.+=-]+", page))
            # without /runs MLflow 3.17 opens its GenAI overview, which lists no run
            overview = dom(chromium, url.removesuffix("/runs"), tmp_path / "profile")
            assert "Overview" in overview and not points[study] & set(re.findall(r"[\w.+=-]+", overview))
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        code = ui.wait(timeout=60)
    assert code == 0
    free = subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"], capture_output=True)
    assert free.returncode != 0, "the MLflow UI still answers after trickbench ui was stopped"


def test_with_a_tracking_server_it_prints_the_servers_urls_and_starts_nothing(project, tmp_path):
    with mlflow_server(tmp_path / "server") as (uri, _):
        env = env_for(project, MLFLOW_TRACKING_URI=uri)
        assert trickbench(project, "tracking", env=env).returncode == 0  # the experiments, on the server
        done = trickbench(project, "ui", "--port", str(free_port()), env=env)
    assert done.returncode == 0, done.stderr
    assert uri in done.stdout.splitlines()[0]
    for study in STUDIES:
        assert re.search(rf"^  {study}: {re.escape(uri)}/#/experiments/\d+/runs$", done.stdout, re.M), done.stdout


@pytest.mark.parametrize("case", ["no store", "port taken"])
def test_bad_input_is_one_line_and_exit_2(project, tmp_path, case):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        if case == "no store":
            env = env_for(project, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'absent.db'}")
            done = trickbench(project, "ui", "--port", str(free_port()), env=env)
            culprit = "absent.db: no MLflow store there yet"
        else:
            done = trickbench(project, "ui", "--port", str(taken.getsockname()[1]))
            culprit = f"--port {taken.getsockname()[1]}: 127.0.0.1:{taken.getsockname()[1]} is taken"
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and culprit in done.stderr, done.stderr
    assert not (tmp_path / "absent.db").exists()
