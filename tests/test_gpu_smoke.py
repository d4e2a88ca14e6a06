"""CUDA smoke tests (marker `gpu`; each skips without a CUDA device): the training loop on the GPU, its
resume, its determinism switch, bf16 numerics, and the checkpoint's device check in the CUDA -> CPU direction.

This file must import and collect on the GPU machine's image (Python 3.12, no jsonschema, snakemake, mlflow),
so it uses only torch, numpy, scikit-learn and trickbench (tests/test_device_image.py checks that here);
benchmarks/gpu_check.py runs it there.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def config(**overrides) -> dict:
    """The schema's train defaults (filled without jsonschema), width 8, on CUDA."""
    from trickbench.params import fill_defaults, raw_schema

    schema = raw_schema()
    train: dict = {}
    fill_defaults(train, schema["$defs"]["train_config"], schema)
    train.update(device="cuda", width=8, epochs=3, batch_size=64, snapshots=1)
    unknown = set(overrides) - set(train)
    assert not unknown, unknown
    train.update(overrides)
    return train


@functools.lru_cache(maxsize=1)
def digits():
    from sklearn.datasets import load_digits

    from trickbench.data.prepared import Prepared, stratified_split

    bunch = load_digits()
    images = np.rint(bunch.images * 255.0 / 16.0).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    kept, test = stratified_split(labels, 0.15, 0)
    train_idx, val_idx = stratified_split(labels[kept], 0.15, 1)
    return Prepared({"train": images[kept][train_idx], "val": images[kept][val_idx], "test": images[test]},
                    {"train": labels[kept][train_idx], "val": labels[kept][val_idx], "test": labels[test]},
                    [str(i) for i in range(10)])


def stats(device: str = "cuda") -> dict:
    from trickbench.data.stats import compute_stats, runtime_stats

    return runtime_stats(*compute_stats(digits().images["train"]), torch.device(device))


def test_the_helpers_work_without_cuda():
    """Runs everywhere: the schema's defaults without jsonschema, the digits, their statistics on the CPU."""
    assert config()["device"] == "cuda" and not config()["deterministic"]
    assert len(digits().labels["train"]) > 1000 and stats("cpu")["channel_mean"] is not None


@needs_cuda
@pytest.mark.parametrize("deterministic", [False, True])
def test_cuda_training_completes_and_resumes(tmp_path, deterministic):
    from trickbench.train.loop import train

    run_config = config(deterministic=deterministic, regularizers=["dropout"], augmentations=["flip", "crop"],
                        preprocessing="zca_whiten")
    checkpoint = tmp_path / "checkpoint.pt"

    class Stop(Exception):
        pass

    def stop_after_2(row):
        if row["epoch"] == 2:
            raise Stop

    whole = train(run_config, digits(), stats(), config_digest="gpu")
    assert whole.status == "completed" and all(np.isfinite(row["val_loss"]) for row in whole.history)
    with pytest.raises(Stop):
        train(run_config, digits(), stats(), config_digest="gpu", checkpoint_path=checkpoint, on_epoch=stop_after_2)
    state = torch.load(checkpoint, weights_only=True)
    assert state["device_type"] == "cuda" and "torch_cuda_device" in state["rng"]
    resumed = train(run_config, digits(), stats(), config_digest="gpu", checkpoint_path=checkpoint)
    assert resumed.resumed_from_epoch == 2
    if deterministic:  # bit-identical on CUDA only with the switch on
        for key, value in whole.model_state.items():
            assert torch.equal(value, resumed.model_state[key]), key


@needs_cuda
def test_a_cuda_checkpoint_is_refused_by_a_cpu_run(tmp_path):
    from trickbench.errors import DataError
    from trickbench.train.loop import train

    checkpoint = tmp_path / "checkpoint.pt"

    class Stop(Exception):
        pass

    def stop(row):
        raise Stop

    with pytest.raises(Stop):
        train(config(), digits(), stats(), config_digest="x", checkpoint_path=checkpoint, on_epoch=stop)
    with pytest.raises(DataError, match="checkpoint written on cuda, this run is on cpu"):
        train(config(device="cpu"), digits(), stats("cpu"), config_digest="x", checkpoint_path=checkpoint)


@needs_cuda
def test_the_input_pipeline_stays_float32_under_cuda_autocast():
    from trickbench.data.preprocess import build_preprocessor
    from trickbench.train.loop import input_pipeline

    runtime = stats()
    x = torch.from_numpy(digits().images["train"][:64]).cuda().permute(0, 3, 1, 2).float().div(255)
    preprocess = build_preprocessor("zca_whiten", runtime, torch.device("cuda"))
    outputs = []
    for autocast in (False, True):
        generator = torch.Generator(device="cuda").manual_seed(0)
        train_batch, _ = input_pipeline(["flip", "crop", "rotate_scale"], None, preprocess, torch.channels_last,
                                        generator, runtime)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            outputs.append(train_batch(x))
    assert outputs[1].dtype == torch.float32 and torch.equal(outputs[0], outputs[1])


@needs_cuda
def test_bf16_autocast_logits_stay_close_to_fp32():
    from trickbench.nn.activations import make_activation
    from trickbench.nn.models import build_model

    torch.manual_seed(0)
    model = build_model("nin", in_channels=3, num_classes=10, image_size=32, activation=make_activation("relu"),
                        width=32, batch_norm=False, dropout=0.0).cuda().eval()
    x = torch.rand(64, 3, 32, 32, device="cuda")
    with torch.no_grad():
        reference = model(x).float()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = model(x).float()
    relative = (low - reference).norm() / reference.norm()
    assert relative < 3e-2, float(relative)
    assert (low.argmax(1) == reference.argmax(1)).float().mean() > 0.9


@needs_cuda
def test_generator_draws_stay_on_the_gpu():
    generator = torch.Generator(device="cuda").manual_seed(0)
    order = torch.randperm(1000, generator=generator, device="cuda")
    assert order.is_cuda and torch.equal(order.sort().values.cpu(), torch.arange(1000))
