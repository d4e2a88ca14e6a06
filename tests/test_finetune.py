"""Fine-tuning end to end (the seed's four cases: train a linear classifier on the pre-trained features,
fine-tune the top layers, or everything): a run on the 10 digit classes, then runs that start from its
model.pt on a 5-class relabelling of the digits."""
from __future__ import annotations

import signal

import pytest
import torch
import yaml

from conftest import REPO_PARAMS, digits, digits_stats, train_config
from trickbench.cli import main
from trickbench.errors import DataError
from trickbench.data.prepared import Prepared
from trickbench.grid import expand_grid
from trickbench.nn.models import apply_finetune
from trickbench.train.finetune import frozen_blocks, load_finetune
from trickbench.train.loop import TrainResult, build_network, parameter_groups, train
from trickbench.train.regularizers import penalized_weights, regularization

# the architecture both runs share: PReLU slopes and batch norm give the backbone parameters of every
# kind and running statistics
ARCHITECTURE = dict(activation="prelu", regularizers=["batch_norm"], width=4)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[str, dict[str, torch.Tensor]]:
    """model.pt of a 10-class digits run, written as the train stage writes it."""
    result = train(train_config(**ARCHITECTURE, epochs=2), digits(), digits_stats(), config_digest="source")
    path = tmp_path_factory.mktemp("source") / "model.pt"
    torch.save(result.model_state, path)
    return str(path), torch.load(path, weights_only=True)


def five_classes() -> Prepared:
    """The digits relabelled to 5 classes (d mod 5): another task with another class count."""
    base = digits()
    return Prepared(base.images, {split: labels % 5 for split, labels in base.labels.items()},
                    [f"{d} or {d + 5}" for d in range(5)])


def finetune(source: str, mode: str, **overrides) -> tuple[TrainResult, dict]:
    overrides = {**ARCHITECTURE, **overrides}
    config = train_config(finetune_from=source, finetune_mode=mode, **overrides)
    return train(config, five_classes(), digits_stats(), config_digest=f"finetune-{mode}"), config


def fresh_network(config: dict) -> torch.nn.Module:
    """The network a run of `config` builds before loading anything (same seed, same initializer)."""
    torch.manual_seed(config["seed"])
    return build_network(config, regularization(config), digits().image_shape, 5)


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a, b)


def test_linear_trains_only_the_head(checkpoint) -> None:
    path, source = checkpoint
    # L2 and a tight max-norm would both move frozen weights if the loop let them reach the backbone
    c = 0.3
    assert any(w.flatten(1).norm(dim=1).max() > c for k, w in source.items() if k.startswith("blocks.") and
               k.endswith("conv1.weight"))
    result, config = finetune(path, "linear", regularizers=["batch_norm", "l2", "max_norm"], l2=1e-2,
                              max_norm=c, epochs=2)
    assert result.status == "completed"
    state = result.model_state
    backbone = [k for k in state if k.startswith("blocks.")]
    assert any("running_mean" in k for k in backbone) and any("inner.weight" in k for k in backbone)
    for key in backbone:  # parameters and batch-norm statistics, bit for bit
        assert torch.equal(state[key], source[key]), key
    fresh = fresh_network(config).state_dict()
    head = [k for k in state if k.startswith("head.")]
    assert head == ["head.fc.weight", "head.fc.bias"]
    assert state["head.fc.weight"].shape == (5, 16) and source["head.fc.weight"].shape == (10, 16)
    for key in head:
        assert not torch.equal(state[key], fresh[key]), f"{key} did not train"
    assert (state["head.fc.weight"].norm(dim=1) <= c * (1 + 1e-5)).all()  # max-norm acts on the head


def test_the_head_is_freshly_initialized_when_the_class_count_differs(checkpoint) -> None:
    path, source = checkpoint
    result, config = finetune(path, "linear", lr=1e-30)  # a learning rate that moves nothing
    fresh = fresh_network(config).state_dict()
    torch.testing.assert_close(result.model_state["head.fc.weight"], fresh["head.fc.weight"], rtol=0, atol=1e-20)
    torch.testing.assert_close(result.model_state["head.fc.bias"], torch.zeros(5), rtol=0, atol=1e-20)
    assert all(torch.equal(result.model_state[k], source[k]) for k in source if k.startswith("blocks."))


def test_the_head_starts_fresh_even_when_the_class_count_matches(checkpoint) -> None:
    """A source of 5 other classes: its head has the new head's shape but not its meaning, so only the
    feature blocks are loaded (seed-transfer-small: CIFAR-10 classes 0-4 fine-tuned onto 5-9)."""
    _, ten_class = checkpoint
    config = train_config(**ARCHITECTURE, finetune_from="source.pt", finetune_mode="full")
    source_network = fresh_network({**config, "seed": 1})  # another 5-class network: every tensor differs
    source = {**source_network.state_dict(), **{k: v for k, v in ten_class.items() if k.startswith("blocks.")}}
    assert source["head.fc.weight"].shape == fresh_network(config).state_dict()["head.fc.weight"].shape
    model = fresh_network(config)
    fresh_head = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("head.")}
    assert not torch.equal(fresh_head["head.fc.weight"], source["head.fc.weight"])
    load_finetune(model, config, source)
    for key, value in model.state_dict().items():
        assert torch.equal(value, fresh_head[key] if key.startswith("head.") else source[key]), key


def test_top_trains_the_head_and_the_last_block(checkpoint) -> None:
    path, source = checkpoint
    result, _ = finetune(path, "top", epochs=2)
    state = result.model_state
    for key in state:
        if key.startswith(("blocks.stage1.", "blocks.stage2.")):
            assert torch.equal(state[key], source[key]), key
        elif key.startswith("blocks.stage3.") and not key.endswith("num_batches_tracked"):
            assert not same(state[key], source[key]), f"{key} did not train"


def test_full_trains_everything(checkpoint) -> None:
    path, source = checkpoint
    result, _ = finetune(path, "full", epochs=2)
    state = result.model_state
    changed = [k for k in state if k.startswith("blocks.") and not same(state[k], source[k])]
    assert changed == [k for k in state if k.startswith("blocks.")]


def test_full_starts_from_the_checkpoint(checkpoint) -> None:
    """A full fine-tune at a learning rate that moves nothing ends where the checkpoint's weights are
    (its batch-norm statistics do move: they follow the new data in training mode)."""
    path, source = checkpoint
    result, _ = finetune(path, "full", lr=1e-30)
    for key, value in result.model_state.items():
        if key.startswith("blocks.") and "running" not in key and "num_batches" not in key:
            torch.testing.assert_close(value, source[key], rtol=1e-6, atol=1e-20, msg=key)


@pytest.mark.parametrize("mode, trainable_prefixes", [("linear", ("head.",)), ("top", ("head.", "blocks.stage3.")),
                                                      ("full", ("",))])
def test_the_optimizer_and_the_penalties_see_only_trainable_parameters(mode: str, trainable_prefixes) -> None:
    config = train_config(**{**ARCHITECTURE, "regularizers": ["batch_norm", "l2"]}, finetune_mode=mode)
    reg = regularization(config)
    model = build_network(config, reg, digits().image_shape, 5)
    apply_finetune(model, mode)
    names = {id(p): n for n, p in model.named_parameters()}
    handed = [names[id(p)] for group in parameter_groups(model, reg, config) for p in group["params"]]
    assert sorted(handed) == sorted(n for n in names.values() if n.startswith(trainable_prefixes))
    assert all(names[id(w)].startswith(trainable_prefixes) for w in penalized_weights(model))
    frozen = {id(m) for m in frozen_blocks(model)}
    expected = {"linear": ["stage1", "stage2", "stage3"], "top": ["stage1", "stage2"], "full": []}[mode]
    assert frozen == {id(model.blocks.get_submodule(name)) for name in expected}


# ------------------------------------------------------------------------------------------- bad inputs

def test_a_missing_checkpoint_is_one_clear_error(tmp_path) -> None:
    missing = tmp_path / "runs" / "model.pt"
    with pytest.raises(DataError) as caught:
        finetune(str(missing), "linear")
    message = str(caught.value)
    assert message.startswith(f"train.finetune_from: {missing}: no such file") and "\n" not in message


def test_an_unusable_checkpoint_names_the_key(tmp_path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"train\.finetune_from: .*garbage\.pt: not a readable model\.pt"):
        finetune(str(garbage), "linear")
    other = tmp_path / "other.pt"  # a checkpoint of another architecture: no tensor fits
    torch.save({"features.0.weight": torch.zeros(3, 3)}, other)
    with pytest.raises(DataError, match=r"train\.finetune_from: .*other\.pt: no tensor"):
        finetune(str(other), "linear")


@pytest.mark.parametrize("problem", ["missing", "garbage"])
def test_the_cli_reports_a_bad_checkpoint_in_one_line(tmp_path, capsys, problem: str) -> None:
    source = tmp_path / "source" / "model.pt"
    if problem == "garbage":
        source.parent.mkdir()
        source.write_bytes(b"\x00" * 10)
    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["paths"] = {"artifacts": str(tmp_path / "artifacts"), "results": str(tmp_path / "results")}
    params["train"].update(epochs=1, width=4, device="cpu", finetune_from=str(source), finetune_mode="linear")
    params["studies"] = {"ft": {"axes": {"seed": [0]}}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    from trickbench.params import load_params
    from trickbench.paths import Layout
    from trickbench.stages.data import download, prepare, stats

    loaded = load_params(path)
    loaded["tracking"]["enabled"] = False  # the data stages in this process: seconds, no MLflow store
    layout = Layout(tmp_path / "artifacts", tmp_path / "results")
    download(loaded, layout)  # the train stage's inputs are there: only the checkpoint is at fault
    prepare(loaded, layout, progress=False)
    stats(loaded, layout)
    (point,) = expand_grid(loaded)
    sigterm = signal.getsignal(signal.SIGTERM)  # `train` installs its own handler in this process
    try:
        code = main(["--params", str(path), "train", "--study", "ft", "--point", point.point_id])
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"trickbench train: error: train.finetune_from: {source}: "), err
    assert err.count("\n") == 1, err
    assert not (tmp_path / "artifacts" / "runs").exists()  # failed before any run was opened
