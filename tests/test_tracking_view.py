"""Experiments are created as training experiments (MLflow 3's experimentKind); the tag and value are the ones
the installed MLflow UI reads. The tag does not make the UI open on the runs table: tests/test_ui.py."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from trickbench import tracking


def test_new_experiments_are_training_experiments(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ids = tracking.ensure_experiments(uri, ["trickbench-acts", "data"])
    assert ids == tracking.ensure_experiments(uri, ["trickbench-acts", "data"])  # found, not created twice
    for name, experiment_id in ids.items():
        experiment = tracking.client(uri).get_experiment(experiment_id)
        assert experiment.name == name
        assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"


def test_an_experiment_made_without_the_kind_gets_it(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    old = tracking.client(uri).create_experiment("trickbench-old")  # as an earlier trickbench made it
    assert "mlflow.experimentKind" not in tracking.client(uri).get_experiment(old).tags
    assert tracking.ensure_experiments(uri, ["trickbench-old"]) == {"trickbench-old": old}
    assert tracking.client(uri).get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"


def test_the_installed_mlflow_ui_knows_the_kind():
    """The UI bundle reads `mlflow.experimentKind` and names this value CUSTOM_MODEL_DEVELOPMENT: an MLflow
    that renamed either would fail here, not silently drop the kind."""
    bundle = Path(importlib.util.find_spec("mlflow").origin).parent / "server" / "js" / "build" / "static" / "js"
    (key, value), = tracking.EXPERIMENT_KIND.items()
    texts = [path.read_text(errors="replace") for path in bundle.glob("*.js")]
    assert any(f'"{key}"' in text for text in texts)
    assert any(f'CUSTOM_MODEL_DEVELOPMENT="{value}"' in text for text in texts)
