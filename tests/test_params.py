"""params.yaml validation: one schema, defaults filled, one clear error naming the key."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

import trickbench
from conftest import BIN, REPO, tiny_params, write_params
from trickbench.grid import expand_grid, point_id
from trickbench.params import (
    MAX_ALIASES, MAX_PARAMS_BYTES, ParamsError, load_params, merge_overrides, read_params_file, typed_overrides,
    validate,
)


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


@pytest.mark.parametrize("value, kind", [([1, 2], "a list"), ("text", "a string"), (3, "an integer")])
def test_params_that_are_not_a_mapping_fail_the_schema_at_the_top_level(value, kind):
    with pytest.raises(ParamsError, match=rf"^p\.yaml: <top level>: .* is {kind}; expected a mapping$"):
        validate(value, "p.yaml")


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


# ---------------------------------------------------------------------------------------------------
# one rule for every number; reading limits; overrides; output folders (what a user sees of each is
# swept in tests/test_bad_input.py)
# ---------------------------------------------------------------------------------------------------
def _number_nodes(node, where=""):
    if isinstance(node, dict):
        kinds = node.get("type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if {"integer", "number"} & set(kinds):
            yield where, node
        for key, value in node.items():
            yield from _number_nodes(value, f"{where}.{key}" if where else key)


def test_every_number_in_the_schema_has_both_bounds():
    from trickbench.params import raw_schema

    nodes = list(_number_nodes(raw_schema()))
    assert len(nodes) >= 35  # the walk finds them (38 today)
    unbounded = [where for where, node in nodes
                 if not ({"minimum", "exclusiveMinimum"} & set(node) and {"maximum", "exclusiveMaximum"} & set(node))]
    assert unbounded == []


def test_the_schema_ships_inside_the_package_and_workflow_links_to_it():
    from trickbench.params import SCHEMA_PATH

    assert SCHEMA_PATH.parent.parent == Path(trickbench.__file__).parent
    link = REPO / "workflow" / "schemas" / "params.schema.yaml"
    assert link.is_symlink() and link.resolve() == SCHEMA_PATH.resolve()
    assert 'schemas/*.yaml' in (REPO / "pyproject.toml").read_text()


@pytest.mark.parametrize("value, culprit", [
    (16.0, "16.0 is a number; expected an integer"), (True, "True is a boolean; expected an integer"),
    (float("nan"), "not a finite number"), (float("inf"), "not a finite number"), (5000, "maximum of 4096"),
])
def test_integers_are_ints_finite_and_bounded(value, culprit):
    params = tiny_params()
    params["train"]["width"] = value
    with pytest.raises(ParamsError, match="train.width: .*" + re.escape(culprit)):
        validate(params, "p.yaml")


def test_numbers_nested_in_lists_must_be_finite():
    params = tiny_params()
    params["report"]["metrics"] = ["val_error", float("-inf")]
    with pytest.raises(ParamsError, match=r"report\.metrics\.1: -inf is not a finite number"):
        validate(params, "p.yaml")


def _write(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_aliases_up_to_the_limit_and_merge_keys_are_accepted(tmp_path):
    base = yaml.safe_dump(tiny_params(), sort_keys=False).replace("train:\n", "train: &train\n", 1)
    assert load_params(_write(tmp_path, base))["train"]["width"] == 4  # an anchor alone is fine
    at_limit = read_params_file(_write(tmp_path, "a: &a x\nb: [" + ", ".join(["*a"] * MAX_ALIASES) + "]\n"))
    assert at_limit["b"] == ["x"] * MAX_ALIASES
    over = base + f"notes: [{', '.join(['*train'] * (MAX_ALIASES + 1))}]\n"
    with pytest.raises(ParamsError, match=f"more than {MAX_ALIASES} YAML aliases"):
        read_params_file(_write(tmp_path, over))
    merged = read_params_file(_write(tmp_path, "a: &a {x: 1, y: 2}\nb:\n  <<: *a\n  y: 3\n"))
    assert merged["b"] == {"x": 1, "y": 3}  # a merge key's values may be overridden: not a duplicate


def test_duplicate_keys_name_the_key_and_both_lines(tmp_path):
    path = _write(tmp_path, "data: {source: digits}\ntrain:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n")
    with pytest.raises(ParamsError, match=r"p\.yaml: line 5: key 'lr' given twice in one mapping \(first on line 3\)"):
        read_params_file(path)


def test_the_size_limit_is_checked_before_parsing(tmp_path):
    path = _write(tmp_path, "a: 1\n" + "#" * MAX_PARAMS_BYTES)
    with pytest.raises(ParamsError, match=f"at most {MAX_PARAMS_BYTES:,} bytes"):
        read_params_file(path)
    assert read_params_file(_write(tmp_path, "a: 1\n" + "#" * (MAX_PARAMS_BYTES - 10))) == {"a": 1}


def test_typed_overrides_read_strings_as_params_yaml_would():
    # what Snakemake's parse_config gives for --config train='{"epochs": 3, ...}' (YAML BaseLoader: strings)
    given = {"train": {"epochs": "3", "lr": "0.1", "nesterov": "true", "finetune_from": "null",
                       "activation": "relu", "device": "cuda:0", "augmentations": ["flip", "crop"]},
             "ensemble": {"top_k": 2}, "note": "2020-01-01"}
    assert typed_overrides(given) == {
        "train": {"epochs": 3, "lr": 0.1, "nesterov": True, "finetune_from": None, "activation": "relu",
                  "device": "cuda:0", "augmentations": ["flip", "crop"]},
        "ensemble": {"top_k": 2}, "note": "2020-01-01"}


def test_overrides_deep_merge_like_snakemake_and_leave_the_file_alone(tmp_path):
    params = tiny_params()
    params["train"]["augmentations"] = ["flip", "crop"]
    path = write_params(tmp_path / "params.yaml", params)
    before = path.read_text()
    merged = load_params(path, {"train": {"epochs": 3, "augmentations": ["flip"]}, "ensemble": {"top_k": 2}})
    assert merged["train"]["epochs"] == 3 and merged["train"]["width"] == 4  # merged, not replaced
    assert merged["train"]["augmentations"] == ["flip"]  # a list is replaced, as Snakemake does
    assert merged["ensemble"]["top_k"] == 2 and path.read_text() == before
    assert all(p.config["epochs"] == 3 for p in expand_grid(merged))
    assert merge_overrides({"a": {"b": 1}}, {"a": 2}) == {"a": 2}
    with pytest.raises(ParamsError, match=r"params\.yaml with --config train: train\.epochs: -5 is less than"):
        load_params(path, {"train": {"epochs": -5}})


@pytest.fixture
def strict_paths(monkeypatch):
    monkeypatch.delenv("TRICKBENCH_ALLOW_OUTSIDE", raising=False)


def _with_paths(artifacts, results="results"):
    params = tiny_params()
    params["paths"] = {"artifacts": artifacts, "results": results}
    return params


def test_output_folders_inside_the_project_are_accepted(tmp_path, strict_paths):
    project = tmp_path / "project"
    project.mkdir()
    for artifacts, results in [("artifacts", "results"), ("out/a", "out/b"), (str(project / "x"), "y"),
                               ("./artifacts/../art", "results")]:
        assert validate(_with_paths(artifacts, results), project=project)["paths"]["artifacts"] == artifacts


@pytest.mark.parametrize("artifacts, results, allow, culprit", [
    ("../outside", "results", False, "outside the project"),
    ("../outside", "results", True, None),
    ("/etc", "results", True, "system folder"),
    ("/var", "results", True, "system folder"),
    ("/var/tmp/trickbench-x", "results", True, None),
    ("/sys/x", "results", True, "system folder"),
    ("link", "results", False, "outside the project"),  # a symlink inside the project pointing out
    ("link", "results", True, None),
    ("art", "art/res", False, "paths.results .* is inside paths.artifacts"),
    ("a", "./a", False, "same folder"),
    ("..", "results", True, "project directory"),
])
def test_output_folder_rules(tmp_path, monkeypatch, artifacts, results, allow, culprit):
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (project / "link").symlink_to(tmp_path / "elsewhere")
    if allow:
        monkeypatch.setenv("TRICKBENCH_ALLOW_OUTSIDE", "1")
    else:
        monkeypatch.delenv("TRICKBENCH_ALLOW_OUTSIDE", raising=False)
    params = _with_paths(artifacts, results)
    if culprit is None:
        validate(params, project=project)
    else:
        with pytest.raises(ParamsError, match=culprit):
            validate(params, "p.yaml", project=project)


def test_cross_field_rules():
    params = tiny_params()
    params["report"]["paper_table"]["baseline"] = "elu"
    with pytest.raises(ParamsError, match=r"report\.paper_table\.baseline: 'elu' is not an activation of study 'acts'"):
        validate(params)
    params["studies"] = {"seeds": {"axes": {"seed": [0, 1]}}}  # no activation axis: no paper table, no rule
    validate(params)
    params = tiny_params()
    params["data"].update(val_fraction=0.6, test_fraction=0.4)
    with pytest.raises(ParamsError, match=r"0\.6 \+ 0\.4 = 1; expected less than 1"):
        validate(params)
    params = tiny_params()
    params["train"]["input_size"] = 8  # digits are 8x8: the whole image is allowed
    validate(params)
