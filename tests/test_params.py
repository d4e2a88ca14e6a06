"""params.yaml validation: one schema, defaults filled, one clear error naming the key."""
from __future__ import annotations

import subprocess

import pytest
import yaml

from conftest import BIN, REPO, tiny_params, write_params
from trickbench.grid import expand_grid, point_id
from trickbench.params import ParamsError, load_params, validate


def test_default_params_are_valid_and_defaults_are_filled():
    params = load_params(REPO / "params.yaml")
    assert params["train"]["eval_batch_size"] == 1024  # not in the file: a schema default
    assert params["ensemble"]["metric"] == "val_loss"
    assert len(expand_grid(params)) == 4 * 2 * 2 * 2


@pytest.mark.parametrize("mutate, culprit", [
    (lambda p: p["train"].update(activation="relu_typo"), "train.activation"),
    (lambda p: p["studies"]["acts"]["axes"].update(activation=["relu", "relu_typo"]), "studies.acts.axes.activation"),
    (lambda p: p["train"].update(epochs="ten"), "train.epochs"),
    (lambda p: p["train"].update(lr=-0.1), "train.lr"),
    (lambda p: p["train"].update(batch_size=0), "train.batch_size"),
    (lambda p: p["train"].update(learning_rate=0.1), "learning_rate"),
    (lambda p: p.update(extra={}), "extra"),
    (lambda p: p["data"].update(source="mnist"), "data.source"),
    (lambda p: p["train"].update(regularizers=["l2", "l3"]), "train.regularizers.1"),
    (lambda p: p["studies"]["acts"]["axes"].update(lr=[]), "studies.acts.axes.lr"),
    (lambda p: p["studies"]["acts"]["axes"].update(speed=[1]), "speed"),
    (lambda p: p.update(studies={}), "studies"),
    (lambda p: p["studies"]["acts"].update(axes=[{"seed": [0]}, {"seed": [0]}]), "duplicate grid point"),
    (lambda p: p["ensemble"].update(metric="test_error"), "ensemble.metric"),
    (lambda p: p["train"].update(device="tpu"), "train.device"),
])
def test_bad_params_name_the_culprit(mutate, culprit):
    params = tiny_params()
    mutate(params)
    with pytest.raises(ParamsError) as error:
        validate(params, "p.yaml")
    message = str(error.value)
    assert culprit in message and message.startswith("p.yaml")
    assert "\n" not in message


def test_unknown_component_error_lists_valid_names():
    params = tiny_params()
    params["train"]["activation"] = "relu_typo"
    with pytest.raises(ParamsError, match="relu_typo.*leaky_relu_a5.5.*prelu"):
        validate(params)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  source: digits\n train: [\n")
    with pytest.raises(ParamsError, match=r"bad.yaml: not valid YAML \(line 3"):
        load_params(bad)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ParamsError, match="empty"):
        load_params(tmp_path / "empty.yaml")


def test_cli_bad_params_exit_code_and_no_outputs(tmp_path):
    params = tiny_params(paths={"artifacts": str(tmp_path / "art"), "results": str(tmp_path / "res")})
    params["train"]["activation"] = "relu_typo"
    path = write_params(tmp_path / "params.yaml", params)
    for command in (["download"], ["train", "--study", "acts", "--point", "x"], ["report"], ["grid"]):
        done = subprocess.run([BIN / "trickbench", "--params", path, *command], capture_output=True, text=True)
        assert done.returncode == 2, done.stderr
        assert "train.activation" in done.stderr and "relu_typo" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "art").exists() and not (tmp_path / "res").exists()


def test_point_ids_are_readable_and_stable():
    assert point_id({"activation": "leaky_relu_a5.5", "regularizers": [], "seed": 3}) == \
        "activation-leaky_relu_a5.5__regularizers-none__seed-3"
    assert point_id({"regularizers": ["l2", "max_norm"], "lr": 0.1}) == "regularizers-l2+max_norm__lr-0.1"


def test_union_of_blocks_is_not_a_full_product():
    params = tiny_params()
    params["studies"] = {"mixed": {"axes": [
        {"activation": ["relu", "prelu"], "seed": [0]},
        {"initializer": ["zeros"], "activation": ["sigmoid"]},
    ]}}
    points = expand_grid(validate(params))
    assert [p.point_id for p in points] == [
        "activation-relu__seed-0", "activation-prelu__seed-0", "initializer-zeros__activation-sigmoid"]
    assert points[2].config["initializer"] == "zeros" and points[0].config["initializer"] == "he_normal"


def test_study_base_overrides_train():
    params = tiny_params()
    params["studies"]["acts"]["base"] = {"epochs": 7}
    assert all(p.config["epochs"] == 7 for p in expand_grid(validate(params)))
    params["studies"]["acts"]["base"] = {"epochs": -1}
    with pytest.raises(ParamsError, match="studies.acts.base.epochs"):
        validate(params)
