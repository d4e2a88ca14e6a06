"""CUDA readiness checked on the CPU (GitHub issue 18): what the GPU paths do that can be seen without a GPU.

The input pipeline stays float32 under a bf16 autocast context; a `device: cpu` job never calls torch.cuda;
`train.deterministic` switches determinism on and off in one process and its pools match the adaptive ones;
max-norm and L1 through torch._foreach_norm give the per-layer values; a compiled forward sees one shape;
a checkpoint of another device type is refused with one line (tests/test_resume.py has the real CPU ones).
"""
from __future__ import annotations

import copy
import os
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import StopTraining, digits, digits_stats, stats_of, stop_after, train_config
from trickbench.data.prepared import Prepared
from trickbench.data.preprocess import build_preprocessor
from trickbench.nn.models import MODELS, build_model
from trickbench.nn.activations import make_activation
from trickbench.train import backends
from trickbench.train.checkpoint import TrainState, read_checkpoint
from trickbench.train.loop import input_pipeline, train, training_steps
from trickbench.train.regularizers import apply_max_norm, l1_penalty

pytestmark = pytest.mark.usefixtures("one_thread")


def rgb_set(n: int = 96, size: int = 12) -> Prepared:
    """Random RGB images, enough for colour PCA and a whitening matrix of 3 x size x size features."""
    rng = np.random.default_rng(0)
    images = {split: rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8) for split in ("train", "val", "test")}
    labels = {split: rng.integers(0, 3, n).astype(np.int64) for split in ("train", "val", "test")}
    return Prepared(images, labels, ["a", "b", "c"])


# ------------------------------------------------------------------------------------ input pipeline

@pytest.mark.parametrize("preprocessing", ["zca_whiten", "pca_whiten", "normalize"])
def test_the_input_pipeline_is_float32_and_unchanged_under_bf16_autocast(preprocessing):
    prepared = rgb_set()
    stats = stats_of(prepared)
    batch = torch.from_numpy(prepared.images["train"][:32]).permute(0, 3, 1, 2).float().div(255)
    augmentations = ["flip", "crop", "rotate_scale", "fancy_pca", "hsv", "color_jitter"]
    preprocess = build_preprocessor(preprocessing, stats, torch.device("cpu"))

    def through_pipeline(autocast: bool) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(3)
        train_batch, eval_batch = input_pipeline(augmentations, None, preprocess, torch.channels_last, generator, stats)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            return train_batch(batch.clone()), eval_batch(batch.clone())

    plain_train, plain_eval = through_pipeline(False)
    cast_train, cast_eval = through_pipeline(True)
    assert cast_train.dtype == cast_eval.dtype == torch.float32
    assert torch.equal(cast_train, plain_train) and torch.equal(cast_eval, plain_eval)


def test_the_autocast_context_of_that_test_does_lower_the_pipelines_matmuls():
    """The control: the same context makes a bare addmm and affine_grid bfloat16, so the test above would
    see the pipeline drop to bf16 if it ran inside autocast."""
    x, w, bias = torch.rand(4, 8), torch.rand(8, 8), torch.rand(8)
    theta = torch.eye(2, 3).expand(4, 2, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.addmm(bias, x, w).dtype == torch.bfloat16
        assert F.affine_grid(theta, [4, 1, 6, 6], align_corners=False).dtype == torch.bfloat16


def test_in_the_loop_the_pipeline_gives_float32_under_a_bf16_autocast_context(monkeypatch):
    """train() itself, run inside a CPU bf16 autocast context (the loop's own autocast is for CUDA only):
    every batch that leaves its input pipeline is float32, and an evaluation batch (no random draws) equals
    the same batch prepared with autocast off. (The run as a whole is not compared: a surrounding autocast
    also reaches the backward pass, which the loop keeps outside its own autocast block.)"""
    import trickbench.train.loop as loop

    dtypes, evaluated = [], []
    real = loop.input_pipeline

    def recording(*args):
        train_batch, eval_batch = real(*args)

        def watched_train(x):
            out = train_batch(x)
            dtypes.append((torch.is_autocast_enabled("cpu"), out.dtype))
            return out

        def watched_eval(x):
            out = eval_batch(x)
            with torch.autocast("cpu", enabled=False):
                evaluated.append(torch.equal(out, eval_batch(x)))
            dtypes.append((torch.is_autocast_enabled("cpu"), out.dtype))
            return out
        return watched_train, watched_eval

    monkeypatch.setattr(loop, "input_pipeline", recording)
    config = train_config(epochs=1, augmentations=["flip", "crop", "rotate_scale"], preprocessing="zca_whiten")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = train(config, digits(), digits_stats(), config_digest="x")
    assert result.status == "completed" and len(dtypes) > 10 and evaluated
    assert set(dtypes) == {(True, torch.float32)} and all(evaluated)


# ----------------------------------------------------------------------------- no torch.cuda on a CPU job

CUDA_CALLS = ("is_available", "device_count", "init", "_lazy_init", "current_device", "synchronize",
              "get_rng_state", "get_rng_state_all", "set_rng_state", "set_rng_state_all", "manual_seed",
              "manual_seed_all")


@pytest.fixture
def cuda_raises(monkeypatch):
    def forbidden(name):
        def call(*args, **kwargs):
            raise AssertionError(f"torch.cuda.{name} called in a device: cpu job")
        return call

    for name in CUDA_CALLS:
        monkeypatch.setattr(torch.cuda, name, forbidden(name))


def test_a_cpu_job_never_calls_torch_cuda_even_when_it_checkpoints_and_resumes(cuda_raises, tmp_path):
    with pytest.raises(AssertionError, match="torch.cuda.is_available"):
        torch.cuda.is_available()  # the patch is live
    config = train_config(epochs=3, regularizers=["dropout"], augmentations=["flip", "crop"])
    checkpoint = tmp_path / "checkpoint.pt"

    with pytest.raises(StopTraining):
        train(config, digits(), digits_stats(), config_digest="cpu-job", checkpoint_path=checkpoint,
              on_epoch=stop_after(2))
    state = read_checkpoint(checkpoint)
    assert state["device_type"] == "cpu" and set(state["rng"]) == {"device_type", "torch_cpu", "generator"}
    resumed = train(config, digits(), digits_stats(), config_digest="cpu-job", checkpoint_path=checkpoint)
    whole = train(config, digits(), digits_stats(), config_digest="cpu-job")
    assert resumed.resumed_from_epoch == 2 and resumed.status == "completed"
    for key, value in whole.model_state.items():
        assert torch.equal(value, resumed.model_state[key]), key


def test_a_cuda_job_saves_and_restores_only_its_own_device(monkeypatch):
    """No GPU here: torch.cuda's RNG functions are replaced by recorders, the all-device ones by raisers."""
    calls = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: calls.append(("get", device)) or torch.zeros(16, dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: calls.append(("set", device)))
    for name in ("get_rng_state_all", "set_rng_state_all"):
        monkeypatch.setattr(torch.cuda, name, lambda *a: pytest.fail(f"{name}: every device's state"))
    device = torch.device("cuda:1")
    generator = torch.Generator()  # a CPU generator stands in for the device one
    state = backends.rng_state(generator, device)
    assert state["device_type"] == "cuda" and state["torch_cuda_device"].numel() == 16
    backends.restore_rng(state, generator, device)
    assert calls == [("get", device), ("set", device)]
    with pytest.raises(backends.CheckpointDeviceError, match="saved on cuda, this run is on cpu"):
        backends.restore_rng(state, generator, torch.device("cpu"))


# ------------------------------------------------------------------------------------- determinism

def test_deterministic_switch_is_applied_and_undone_per_run():
    seen = {}

    def record(label):
        def hook(row):
            seen[label] = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
                           torch.backends.cudnn.benchmark, os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
        return hook

    # every op of the loop must have a deterministic CPU kernel: augmentation, resampling, penalties
    config = train_config(model="nin", width=8, epochs=1, augmentations=["flip", "crop", "rotate_scale"],
                          class_balance="oversample", regularizers=["dropout", "max_norm", "l1"])
    first = train({**config, "deterministic": True}, digits(), digits_stats(), config_digest="d", on_epoch=record("on"))
    again = train({**config, "deterministic": True}, digits(), digits_stats(), config_digest="d")
    train({**config, "deterministic": False}, digits(), digits_stats(), config_digest="d", on_epoch=record("off"))
    assert seen["on"][:3] == (True, True, False) and seen["on"][3] is not None
    assert seen["off"][:3] == (False, False, False)  # cudnn.benchmark only on CUDA
    for key, value in first.model_state.items():
        assert torch.equal(value, again.model_state[key]), key


def test_off_on_cuda_turns_on_cudnn_benchmark_and_tf32_matmuls_without_amp():
    saved = (torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision())
    try:
        backends.configure(torch.device("cuda"), deterministic=False, amp=False)
        assert torch.backends.cudnn.benchmark and torch.get_float32_matmul_precision() == "high"
        backends.configure(torch.device("cuda"), deterministic=True, amp=True)
        assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
        assert torch.get_float32_matmul_precision() == "highest"
    finally:
        backends.configure(torch.device("cpu"), deterministic=False, amp=False)
        torch.backends.cudnn.benchmark = saved[0]
        torch.set_float32_matmul_precision(saved[1])
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("size", [(8, 8), (7, 5), (17, 17), (3, 9)])
def test_deterministic_adaptive_max_pool_equals_pytorchs(size):
    x = torch.randn(2, 3, *size, requires_grad=True)
    for level in (1, 2, 3, 4):
        ours = backends.adaptive_max_pool2d(x, level)
        assert torch.equal(ours, F.adaptive_max_pool2d(x, level)), level
    reference, = torch.autograd.grad(F.adaptive_max_pool2d(x, 4).sum(), x)
    ours, = torch.autograd.grad(backends.adaptive_max_pool2d(x, 4).sum(), x)
    assert torch.equal(ours, reference)  # random data: no ties, so the gradients agree exactly


@pytest.mark.parametrize("model_name", sorted(MODELS.names()))
def test_deterministic_pools_keep_every_models_outputs_and_gradients(model_name):
    image = 70 if model_name == "ndsb_net" else 32
    torch.manual_seed(0)
    try:
        model = build_model(model_name, in_channels=3, num_classes=5, image_size=image,
                            activation=make_activation("relu"), width=4, batch_norm=False, dropout=0.0)
    except ValueError as error:
        pytest.skip(f"{model_name}: {error}")
    swapped = copy.deepcopy(model)
    replaced = backends.use_deterministic_pools(swapped)
    assert not any(isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) for m in swapped.modules())
    assert type(swapped).__name__ == type(model).__name__ and replaced >= 0
    assert swapped.state_dict().keys() == model.state_dict().keys()
    x = torch.rand(2, 3, image, image)
    out, ours = model(x), swapped(x)
    torch.testing.assert_close(ours, out, rtol=1e-5, atol=1e-6)
    out.sum().backward(), ours.sum().backward()
    for (name, a), b in zip(model.named_parameters(), swapped.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)


# ----------------------------------------------------------------- max-norm and L1 in fewer kernels

def per_layer_max_norm(weights, c):
    """The former per-layer implementation: the reference values."""
    with torch.no_grad():
        for weight in weights:
            norms = weight.flatten(1).norm(dim=1)
            scale = torch.where(norms > c, c / norms.clamp_min(1e-12), torch.ones_like(norms))
            weight.mul_(scale.view(-1, *([1] * (weight.dim() - 1))))


def test_max_norm_with_foreach_scales_gives_the_former_values():
    torch.manual_seed(0)
    weights = [torch.randn(16, 8, 3, 3).contiguous(memory_format=torch.channels_last), torch.randn(10, 64),
               torch.randn(32, 16, 1, 1) * 0.05]  # the last one is inside the ball: untouched
    weights[1][3] = 0.0  # a zero unit stays zero (no division by its norm)
    expected = [w.clone() for w in weights]
    per_layer_max_norm(expected, 1.5)
    untouched = weights[2].clone()
    apply_max_norm(weights, 1.5)
    for ours, theirs in zip(weights, expected):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)
    assert torch.equal(weights[2], untouched) and not weights[1][3].any()
    assert weights[0].is_contiguous(memory_format=torch.channels_last)
    assert float(weights[0].flatten(1).norm(dim=1).max()) == pytest.approx(1.5, rel=1e-5)


def test_foreach_l1_gives_the_per_layer_value_and_gradient():
    torch.manual_seed(1)
    weights = [torch.randn(6, 3, 3, 3, requires_grad=True), torch.randn(4, 7, requires_grad=True)]
    penalty = l1_penalty(weights, 1e-3)
    reference = 1e-3 * sum(w.abs().sum() for w in weights)
    torch.testing.assert_close(penalty, reference, rtol=1e-6, atol=0)
    grads = torch.autograd.grad(penalty, weights)
    for grad, weight in zip(grads, weights):
        torch.testing.assert_close(grad, 1e-3 * torch.sign(weight.detach()))


# ---------------------------------------------------------------------------------- compile: one shape

def test_training_steps_drop_the_partial_batch_only_when_compiled():
    assert training_steps(1000, 64, compiled=False) == 16
    assert training_steps(1000, 64, compiled=True) == 15
    assert training_steps(30, 64, compiled=True) == 1  # shorter than one batch: the one partial batch
    assert training_steps(1024, 64, compiled=True) == 16


def test_a_compiled_forward_sees_one_batch_shape(monkeypatch):
    """torch.compile stood in by a recorder of input shapes (a real compile takes a minute on this CPU)."""
    shapes = set()

    def fake_compile(model, **options):
        assert options.get("dynamic") is False
        return lambda x: shapes.add(tuple(x.shape)) or model(x)

    monkeypatch.setattr(torch, "compile", fake_compile)
    prepared = digits()
    assert len(prepared.labels["train"]) % 64  # the eager loop would end on a partial batch
    result = train(train_config(epochs=2, compile=True, batch_size=64), prepared, digits_stats(), config_digest="c")
    assert result.status == "completed" and shapes == {(64, 1, 8, 8)}
    steps = len(prepared.labels["train"]) // 64
    assert [b for e, b, _ in result.batch_losses if e == 0] == list(range(steps))


# ------------------------------------------------------------------------- checkpoints of another device

@pytest.mark.slow
def test_a_checkpoint_of_another_device_type_is_refused_with_one_line(tmp_path):
    """A real CPU checkpoint after epoch 2, rewritten as the same run's checkpoint from a CUDA machine
    (digest, device type, a CUDA generator state): `trickbench train` on the CPU refuses it, exit 2, one
    line naming the file and both devices, the file untouched and nothing written. The reverse direction
    (a CPU checkpoint met by a CUDA job) goes through the same check, called with device type cuda."""
    from conftest import RESUME_POINT as POINT, RESUME_STUDY as STUDY, cli_env, prepare_project, resume_params, train_command
    from trickbench.errors import DataError
    from trickbench.data.prepared import load_prepared
    from trickbench.data.stats import load_stats
    from trickbench.grid import find_point
    from trickbench.io import read_json
    from trickbench.params import load_params
    from trickbench.stages.train import run_digest

    layout = prepare_project(tmp_path, resume_params())
    params = load_params(tmp_path / "params.yaml")
    point = find_point(params, STUDY, POINT)
    data_digest = read_json(layout.manifest)["digest"]
    checkpoint = layout.checkpoint(STUDY, POINT)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)

    with pytest.raises(StopTraining):
        train(point.config, load_prepared(layout.prepared),
              load_stats(layout.stats_json, layout.stats_arrays, device=torch.device("cpu")),
              config_digest=run_digest(point, data_digest, "cpu"), checkpoint_path=checkpoint, on_epoch=stop_after(2))
    digests = {device: run_digest(point, data_digest, device) for device in ("cpu", "cuda")}
    with pytest.raises(DataError, match=r"checkpoint written on cpu, this run is on cuda"):
        TrainState.load(checkpoint, digests, "cuda", patience=None)
    assert TrainState.load(checkpoint, digests, "cpu", patience=None).epoch == 2  # its own device: resumed

    state = torch.load(checkpoint, weights_only=True)
    state.update(config_digest=run_digest(point, data_digest, "cuda"), device_type="cuda")
    state["rng"].update(device_type="cuda", torch_cuda_device=torch.zeros(16, dtype=torch.uint8))
    torch.save(state, checkpoint)
    before = checkpoint.read_bytes()
    done = subprocess.run(train_command(), cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(checkpoint.relative_to(tmp_path)) in lines[0] and "written on cuda, this run is on cpu" in lines[0], lines[0]
    assert checkpoint.read_bytes() == before
    assert not (layout.run_dir(STUDY, POINT) / "metrics.json").exists()

    # the loop's own guard, for callers that pass a digest without the device type (benchmarks, tests)
    state["config_digest"] = "same"
    torch.save(state, checkpoint)
    with pytest.raises(DataError, match="checkpoint written on cuda, this run is on cpu"):
        train(point.config, load_prepared(layout.prepared),
              load_stats(layout.stats_json, layout.stats_arrays, device=torch.device("cpu")),
              config_digest="same", checkpoint_path=checkpoint)


def test_the_whitening_matmul_runs_without_tf32_even_when_the_model_gets_it():
    """With amp off the loop lets CUDA matmuls use TF32 (set_float32_matmul_precision("high")); the input
    pipeline's whitening and affine_grid switch to full float32 and restore the setting after."""
    import warnings

    from trickbench.data.preprocess import exact_float32

    saved = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # autocast("cuda") without CUDA warns that it does nothing
            with exact_float32("cuda"):
                assert torch.get_float32_matmul_precision() == "highest"
        assert torch.get_float32_matmul_precision() == "high"
        with exact_float32("cpu"):  # the CPU: autocast off, the precision setting left alone
            assert torch.get_float32_matmul_precision() == "high" and not torch.is_autocast_enabled("cpu")
    finally:
        torch.set_float32_matmul_precision(saved)
