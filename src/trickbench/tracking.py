"""MLflow, and the only module that imports it.

The default store is an SQLite file in the project (`mlflow.db`, artifacts in `mlartifacts/`), both
git-ignored; `$MLFLOW_TRACKING_URI` or params `tracking.uri` point every job at a tracking server
instead (needed on a cluster: SQLite on a network file system is unsafe). The store and the
experiments are created once, by the `tracking` stage, before train jobs fan out: several processes
opening a fresh SQLite store at once race on its schema migration.
"""
from __future__ import annotations

import os
import random
import time
import warnings
from pathlib import Path
from typing import Any, Callable, TypeVar

from trickbench.errors import TrackingError

T = TypeVar("T")

DATA_EXPERIMENT = "data"


def tracking_uri(params: dict[str, Any]) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI") or params["tracking"]["uri"]
    if uri:
        return uri
    return f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def artifact_root(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside a local store; a server chooses its own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    return None


def experiment_name(params: dict[str, Any], study: str) -> str:
    return f"{params['tracking']['experiment_prefix']}-{study}"


def retry(action: Callable[[], T], attempts: int | None = None) -> T:
    """Retry on SQLite's 'database is locked' (and transient server errors) with jittered backoff;
    $TRICKBENCH_TRACKING_ATTEMPTS (default 12, about 40 s in all) bounds how long a dead server is waited for."""
    attempts = attempts or int(os.environ.get("TRICKBENCH_TRACKING_ATTEMPTS", "12"))
    for attempt in range(attempts):
        try:
            return action()
        except Exception as error:  # mlflow wraps sqlalchemy's OperationalError in several types
            text = str(error).lower()
            # "unique constraint": two jobs registered the same dataset at once; the retry links the existing row
            transient = any(sign in text for sign in ("locked", "busy", "connection", "timed out", "unique constraint failed"))
            if not transient or attempt == attempts - 1:
                raise
            time.sleep(min(0.2 * 2 ** attempt, 5.0) * (0.5 + random.random()))
    raise AssertionError("unreachable")


def client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


# the experiment's kind as MLflow 3's UI names it (ExperimentKind): a training experiment. In MLflow 3.17.2
# it does not make the UI open on the runs table (a browser shows the GenAI overview at #/experiments/<id>:
# tests/test_ui.py), so `trickbench ui` prints the /runs URLs
KIND_TAG, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"
EXPERIMENT_KIND = {KIND_TAG: TRAINING_KIND}


def ensure_experiments(uri: str, names: list[str]) -> dict[str, str]:
    mlflow_client = client(uri)
    location = artifact_root(uri)
    ids = {}
    for name in names:
        found = retry(lambda: mlflow_client.get_experiment_by_name(name))
        if found is None:
            try:
                ids[name] = retry(lambda: mlflow_client.create_experiment(name, artifact_location=location,
                                                                          tags=EXPERIMENT_KIND))
            except Exception:  # another process created it in between
                ids[name] = retry(lambda: mlflow_client.get_experiment_by_name(name)).experiment_id
        else:
            ids[name] = found.experiment_id
            if found.tags.get(KIND_TAG) is None:  # made before trickbench set the kind: a training experiment too
                retry(lambda: mlflow_client.set_experiment_tag(found.experiment_id, KIND_TAG, TRAINING_KIND))
    return ids


def find_experiments(uri: str, names: list[str]) -> dict[str, str | None]:
    """The id of each named experiment in the store, None where it does not exist (nothing is created)."""
    mlflow_client = client(uri)
    found = {name: retry(lambda: mlflow_client.get_experiment_by_name(name)) for name in names}
    return {name: experiment.experiment_id if experiment else None for name, experiment in found.items()}



# the tracking stores the pinned MLflow (3.17) opens: SQLite, a tracking server, a database server whose
# SQLAlchemy driver is installed, Databricks with credentials. Not the file store (`file:`, a plain path):
# MLflow 3.13+ refuses it unless MLFLOW_ALLOW_FILE_STORE is set, and it is in maintenance mode.
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")
ACCEPTED_URIS = ("sqlite:///<path>, http(s)://<host>:<port> of an MLflow server, postgresql://, mysql:// or "
                 "mssql:// (with its driver installed), databricks (with credentials), or null for the "
                 "project's mlflow.db")


def _scheme(uri: str) -> str:
    """`sqlite`, `http`, `postgresql+psycopg2`...; `databricks` also bare; "" for a plain path (the file store)."""
    if ":" in uri:
        return uri.split(":", 1)[0].lower()
    return uri.lower() if uri.lower() == "databricks" else ""


def uri_scheme_problem(uri: str) -> str | None:
    """Why MLflow cannot use `uri` whatever the machine (a static check, also run by `trickbench validate`)."""
    scheme = _scheme(uri)
    if scheme == "file" or (not scheme and uri):
        return ("the file store (file:, a plain path) is refused by MLflow since 3.13 unless "
                "MLFLOW_ALLOW_FILE_STORE is set, and no longer maintained; use sqlite:///<path>/mlflow.db")
    if scheme == "sqlite" and not uri.startswith("sqlite:///"):
        return "expected sqlite:///<path> (three slashes, then the database file)"
    if scheme in ("sqlite", "http", "https", "databricks") or scheme.split("+")[0] in DATABASE_SCHEMES:
        return None
    return f"is not a tracking URI MLflow can use here; expected {ACCEPTED_URIS}"


def _database_driver_problem(uri: str) -> str | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(uri).get_dialect().import_dbapi()
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        return f"not a database URL SQLAlchemy can read ({error})"
    except ImportError as error:
        return (f"its database driver is not installed ({error.name or error}); add it to requirements.lock, "
                "or use sqlite:/// or an MLflow server")
    return None


def _databricks_problem(uri: str) -> str | None:
    """Credentials as the Databricks SDK finds them: the environment, or a profile of ~/.databrickscfg."""
    if os.environ.get("DATABRICKS_HOST") and any(os.environ.get(name) for name in (
            "DATABRICKS_TOKEN", "DATABRICKS_CLIENT_SECRET", "DATABRICKS_PASSWORD", "ARM_CLIENT_SECRET")):
        return None
    profile = uri.partition("://")[2].split(":")[0] or os.environ.get("DATABRICKS_CONFIG_PROFILE") or "DEFAULT"
    config = Path(os.environ.get("DATABRICKS_CONFIG_FILE") or Path.home() / ".databrickscfg")
    try:
        if config.is_file() and f"[{profile}]" in config.read_text(errors="replace")[:1_000_000]:
            return None
    except OSError:
        pass
    return (f"no Databricks credentials: set DATABRICKS_HOST and DATABRICKS_TOKEN, or a [{profile}] profile in "
            f"{config}; or set tracking.uri to sqlite:///<path> or an MLflow server")


def is_sqlite(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(16) == b"SQLite format 3\x00"


def uri_source(params: dict[str, Any]) -> str:
    return "$MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "tracking.uri"


def check_store(params: dict[str, Any], timeout: float = 10.0) -> None:
    """Fail in one line, before any output is written, if the store of `params` cannot be used."""
    if not params["tracking"]["enabled"]:
        return
    uri, source = tracking_uri(params), uri_source(params)
    scheme = _scheme(uri)
    problem = uri_scheme_problem(uri)
    if problem is None and scheme.split("+")[0] in DATABASE_SCHEMES:
        problem = _database_driver_problem(uri)
    elif problem is None and scheme == "databricks":
        problem = _databricks_problem(uri)
    if problem is not None:
        raise TrackingError(f"{source}: {uri!r}: {problem}")
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.parent.is_dir():
            raise TrackingError(f"{source}: {uri}: the folder {path.parent} does not exist")
        if path.exists() and (not path.is_file() or path.stat().st_size and not is_sqlite(path)):
            raise TrackingError(f"{source}: {uri}: {path} exists and is not an SQLite database")
        if not os.access(path.parent, os.W_OK):
            raise TrackingError(f"{source}: {uri}: the folder {path.parent} is not writable")
    elif uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as answer:
                answer.read(64)
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise TrackingError(f"{source}: {uri}: no MLflow server answers ({reason}); start one "
                                "(`mlflow server --host 127.0.0.1 --port 5000`) or unset it for the local store") from None


STORE_FAILURE_SIGNS = ("connection", "refused", "max retries", "timed out", "timeout", "unreachable",
                       "database is locked", "502", "503", "504")


def is_store_failure(error: BaseException) -> bool:
    """Whether `error` (or what caused it) is the tracking store not answering, rather than a bug."""
    seen: BaseException | None = error
    while seen is not None:
        module = type(seen).__module__
        if isinstance(seen, (ConnectionError, TimeoutError)) or (
                module.startswith(("mlflow", "requests", "urllib3", "sqlalchemy"))
                and any(sign in str(seen).lower() for sign in STORE_FAILURE_SIGNS)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _flatten(prefix: str, value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        flat: dict[str, str] = {}
        for key, inner in value.items():
            flat.update(_flatten(f"{prefix}.{key}" if prefix else str(key), inner))
        return flat
    return {prefix: str(value)[:6000]}


class Run:
    """One MLflow run; implements the training loop's Tracker interface."""

    def __init__(self, uri: str, experiment: str, run_name: str, tags: dict[str, str],
                 params: dict[str, Any] | None = None, run_id: str | None = None):
        from mlflow.entities import Param

        self.uri = uri
        self.client = client(uri)
        experiment_id = ensure_experiments(uri, [experiment])[experiment]
        identity = tags.get(IDENTITY_TAG)
        if identity is not None:  # one run per identity: earlier attempts (killed, or redone) go to the trash
            for earlier in runs_with_identity(self.client, experiment_id, identity):
                if earlier.info.run_id != run_id:
                    retry(lambda: self.client.delete_run(earlier.info.run_id))
        if run_id is not None and self._exists(run_id):
            self.run_id = run_id
            retry(lambda: self.client.update_run(run_id, status="RUNNING"))
        else:
            self.run_id = retry(lambda: self.client.create_run(experiment_id, run_name=run_name, tags=tags)).info.run_id
            if params:
                items = [Param(k, v) for k, v in _flatten("", params).items()]
                for start in range(0, len(items), 100):
                    retry(lambda: self.client.log_batch(self.run_id, params=items[start:start + 100]))
        self.set_tags(tags)

    def _exists(self, run_id: str) -> bool:
        try:
            self.client.get_run(run_id)
            return True
        except Exception:
            return False

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        retry(lambda: self.client.log_batch(self.run_id, metrics=batch))

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        retry(lambda: self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()]))

    def log_artifact(self, path: str | Path, directory: str | None = None) -> None:
        retry(lambda: self.client.log_artifact(self.run_id, str(path), directory))

    def log_figure(self, figure: Any, name: str) -> None:
        retry(lambda: self.client.log_figure(self.run_id, figure, name))

    def log_dataset(self, name: str, digest: str, source: str, arrays: dict[str, Any], context: str) -> None:
        """Record the prepared data as the run's dataset input, with our own full-content digest."""
        import mlflow.data
        from mlflow.entities import DatasetInput, InputTag

        with warnings.catch_warnings():  # a local path matches two equivalent source types; either is right
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_numpy(arrays["features"], targets=arrays["targets"], source=source,
                                             name=name, digest=digest[:36])
        entity = DatasetInput(dataset=dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])
        retry(lambda: self.client.log_inputs(self.run_id, datasets=[entity]))

    def end(self, status: str = "FINISHED") -> None:
        retry(lambda: self.client.set_terminated(self.run_id, status=status))

    def flush(self) -> None:
        """Every call has returned once stored: nothing to wait for."""


IDENTITY_TAG = "trickbench.identity"


def runs_with_identity(mlflow_client: Any, experiment_id: str, identity: str) -> list[Any]:
    """The active runs of an experiment made for the same work (same stage, params and inputs)."""
    return retry(lambda: mlflow_client.search_runs(
        [experiment_id], filter_string=f"tags.`{IDENTITY_TAG}` = '{identity}'", max_results=1000))


def finished_run(params: dict[str, Any], experiment: str, identity: str) -> str | None:
    """The id of a FINISHED run of this identity, if the store has one (the work was logged already)."""
    uri = tracking_uri(params)
    mlflow_client = client(uri)
    found = retry(lambda: mlflow_client.get_experiment_by_name(experiment))
    if found is None:
        return None
    done = [r for r in runs_with_identity(mlflow_client, found.experiment_id, identity) if r.info.status == "FINISHED"]
    return done[0].info.run_id if done else None


class NoRun:
    """Tracking switched off (`tracking.enabled: false`), or the work was logged already (`run_id` set)."""

    def __init__(self, run_id: str | None = None):
        self.run_id = run_id

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def log_artifact(self, path: str | Path, directory: str | None = None) -> None: ...
    def log_figure(self, figure: Any, name: str) -> None: ...
    def log_dataset(self, *args: Any, **kwargs: Any) -> None: ...
    def end(self, status: str = "FINISHED") -> None: ...
    def flush(self) -> None: ...


class BackgroundRun:
    """A Run behind a queue: one worker thread creates the run (importing mlflow and creating it take seconds,
    overlapping the job's own start-up) and then makes every call in call order, so the training loop never
    waits on the store (an SQLite `log_batch` takes 20-30 ms, a server more).

    `log_metrics`, `set_tags` and `log_dataset` only queue. `flush` waits until everything queued is stored
    and re-raises the first error of the worker; the loop flushes before each checkpoint and at the end, so
    a checkpoint never claims epochs the store lacks (a dying server loses nothing: the rerun resumes from
    the checkpoint and logs what is missing). The calls after training (`log_artifact`, `log_figure`, `end`)
    flush too. `run_id` waits only for the run's creation.
    """

    def __init__(self, create: Callable[[], Run]):
        from concurrent.futures import ThreadPoolExecutor

        self._worker = ThreadPoolExecutor(1, thread_name_prefix="trickbench-mlflow")
        self._run = self._worker.submit(create)
        self._pending = [self._run]

    def _call(self, method: str, *args: Any, wait: bool = True) -> None:
        # done calls are dropped, failed ones kept for the next flush to raise
        self._pending = [f for f in self._pending if not f.done() or f.exception() is not None]
        self._pending.append(self._worker.submit(lambda: getattr(self._run.result(), method)(*args)))
        if wait:
            self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    @property
    def run_id(self) -> str:
        return self._run.result().run_id

    @property
    def uri(self) -> str:
        return self._run.result().uri

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._call("log_metrics", dict(metrics), step, wait=False)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._call("set_tags", dict(tags), wait=False)

    def log_artifact(self, path: str | Path, directory: str | None = None) -> None:
        self._call("log_artifact", path, directory)

    def log_figure(self, figure: Any, name: str) -> None:
        self._call("log_figure", figure, name)

    def log_dataset(self, name: str, digest: str, source: str, arrays: dict[str, Any], context: str) -> None:
        self._call("log_dataset", name, digest, source, arrays, context, wait=False)

    def end(self, status: str = "FINISHED") -> None:
        try:
            self._call("end", status)
        finally:
            self._worker.shutdown(wait=True)


# Create train runs on a worker thread (benchmarks/pipeline_overhead.py measures both ways);
# TRICKBENCH_TRACKING_BACKGROUND=0 creates them in the calling thread, before training starts.
BACKGROUND = os.environ.get("TRICKBENCH_TRACKING_BACKGROUND", "1") != "0"


def open_run(params: dict[str, Any], experiment: str, run_name: str, tags: dict[str, str],
             run_params: dict[str, Any] | None = None, run_id: str | None = None,
             background: bool = False, identity: str | None = None,
             reuse_finished: bool = False) -> Run | BackgroundRun | NoRun:
    """The run of a stage; `background=True` (train jobs) returns at once, see BackgroundRun.

    `identity` (a digest of the stage, its params, its inputs and the absolute path of its outputs: two
    checkouts logging to one server are two pieces of work) keeps one run per piece of work: other
    runs of the same identity are moved to MLflow's trash when this one opens, and with `reuse_finished`
    a FINISHED one is kept instead and nothing is logged again (the same data prepared by Snakemake and
    then by DVC is one run)."""
    if not params["tracking"]["enabled"]:
        return NoRun()
    uri = tracking_uri(params)
    if identity is not None:
        tags = {**tags, IDENTITY_TAG: identity}
        if reuse_finished and (done := finished_run(params, experiment, identity)) is not None:
            return NoRun(done)

    def create() -> Run:
        from trickbench.provenance import git_commit

        commit = git_commit()
        base_tags = {"trickbench.git_commit": commit, "mlflow.source.git.commit": commit.removesuffix("-dirty")}
        return Run(uri, experiment, run_name, {**base_tags, **tags}, run_params, run_id)

    return BackgroundRun(create) if background and BACKGROUND else create()


def tag_run(uri: str, run_id: str, tags: dict[str, str]) -> None:
    """Add tags to an existing run, finished or not (trickbench.versions: the dvc.lock entry of its stage)."""
    from mlflow.entities import RunTag

    mlflow_client = client(uri)
    retry(lambda: mlflow_client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()]))


def metric_history(uri: str, run_id: str, key: str) -> list[Any]:
    return client(uri).get_metric_history(run_id, key)
