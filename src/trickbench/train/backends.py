"""Process-wide torch settings of one training run: determinism, cuDNN autotuning, TF32, RNG states.

`train.deterministic: true` asks for a run that repeats bit for bit on the same machine and software:
cuDNN picks deterministic kernels and stops autotuning, cuBLAS gets a fixed workspace
(CUBLAS_WORKSPACE_CONFIG, read when its first handle is created, so it is set before any CUDA work), and
`torch.use_deterministic_algorithms(True)` turns every remaining nondeterministic kernel into an error
instead of silent drift. The adaptive pools of the models have no deterministic CUDA backward; they are
swapped for plain-reduction equivalents (same forward, a backward without atomics). Off (the default):
`cudnn.benchmark` autotunes each convolution shape once (the loop sees two training and two evaluation
shapes), faster but free to pick a different kernel in another process.

On CUDA with `amp: false`, float32 matmuls use TF32 like the convolutions already do
(`set_float32_matmul_precision("high")`): about 10 mantissa bits in the products, fp32 accumulation.

Every setting is written on every call (on and off), so one process that trains several grid points
(DVC's `train-study`, the tests) never carries one point's settings into the next.
"""
from __future__ import annotations

import os
from typing import Any

import torch

from torch import nn

from trickbench.errors import ParamsError

# the smaller of the two documented values costs less memory; either makes cuBLAS deterministic
CUBLAS_WORKSPACE = ":4096:8"


def configure(device: torch.device, *, deterministic: bool, amp: bool) -> None:
    """Apply a run's determinism and speed settings. A CPU run touches no CUDA state."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = not amp
        torch.set_float32_matmul_precision("high" if not amp else "highest")


# ------------------------------------------------------------------------------- deterministic pools

class GlobalAveragePool(nn.Module):
    """AdaptiveAvgPool2d(1) as a mean over H and W: the same values, a backward that is an expand."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


def adaptive_max_pool2d(x: torch.Tensor, level: int) -> torch.Tensor:
    """F.adaptive_max_pool2d(x, level) from one amax per bin (PyTorch's bin edges: floor(i H / level) to
    ceil((i + 1) H / level)); the backward of amax is an elementwise mask, no scatter. Ties share the
    gradient evenly where max pooling gives it to one of them."""
    height, width = x.shape[-2:]
    rows = []
    for i in range(level):
        top, bottom = (i * height) // level, -((-(i + 1) * height) // level)
        cells = []
        for j in range(level):
            left, right = (j * width) // level, -((-(j + 1) * width) // level)
            cells.append(x[:, :, top:bottom, left:right].amax(dim=(2, 3)))
        rows.append(torch.stack(cells, dim=-1))
    return torch.stack(rows, dim=-2)


class DeterministicSpatialPyramidPool(nn.Module):
    """SpatialPyramidPool with adaptive_max_pool2d above (same levels, same output layout)."""

    def __init__(self, levels: tuple[int, ...]):
        super().__init__()
        self.levels = levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([adaptive_max_pool2d(x, level).flatten(1) for level in self.levels], dim=1)


def use_deterministic_pools(model: nn.Module) -> int:
    """Replace the model's adaptive pools by the modules above, in place; returns how many were replaced.
    Pools hold no parameters, so state dicts and checkpoints are unchanged."""
    from trickbench.nn.models import SpatialPyramidPool

    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            new: nn.Module | None = None
            if isinstance(child, nn.AdaptiveAvgPool2d) and child.output_size in (1, (1, 1)):
                new = GlobalAveragePool()
            elif isinstance(child, SpatialPyramidPool):
                new = DeterministicSpatialPyramidPool(tuple(child.levels))
            elif isinstance(child, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
                raise ParamsError(f"train.deterministic: {type(child).__name__}({child.output_size}) in "
                                 f"{type(model).__name__} has no deterministic replacement")
            if new is not None:
                setattr(parent, name, new)
                replaced += 1
    return replaced


# ---------------------------------------------------------------------------------------- RNG states

def seed(seed_value: int, device: torch.device) -> None:
    """Seed the CPU generator and, for a CUDA run, that one device's generator (dropout draws there).
    torch.manual_seed would also queue a seed for every CUDA device, from a CPU job too."""
    torch.random.default_generator.manual_seed(seed_value)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed_value)


def rng_state(generator: torch.Generator, device: torch.device) -> dict[str, Any]:
    """The RNG states a resume needs: the CPU generator, the loop's generator, and for a CUDA run the
    default generator of the device in use (only that one: its state does not depend on which GPU it is)."""
    state: dict[str, Any] = {"device_type": device.type, "torch_cpu": torch.get_rng_state(),
                             "generator": generator.get_state()}
    if device.type == "cuda":
        state["torch_cuda_device"] = torch.cuda.get_rng_state(device)
    return state


class CheckpointDeviceError(ValueError):
    """A checkpoint written on another device type: its generator states do not exist here."""


def restore_rng(state: dict[str, Any], generator: torch.Generator, device: torch.device) -> None:
    saved = state.get("device_type", "cpu")
    if saved != device.type:
        raise CheckpointDeviceError(f"RNG states saved on {saved}, this run is on {device.type}")
    torch.set_rng_state(state["torch_cpu"])
    generator.set_state(state["generator"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["torch_cuda_device"], device)


