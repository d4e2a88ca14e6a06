"""A dry run of the CUDA training step without a GPU (GitHub issue 25): every registered model with every
registered activation, on fake tensors placed on cuda:0 (torch._subclasses.fake_tensor.FakeTensorMode).

A fake tensor carries a device and a shape but no data, and an operation that mixes cuda:0 with a CPU
tensor raises, as on a GPU. What a CPU-only build allows, checked here: moving a real CPU module and real
inputs to "cuda:0" under FakeTensorMode(allow_non_fake_inputs=True); the forward (training and evaluation
mode, RReLU's draw included), the loss with class weights, the L1 penalty and max-norm, and the optimizer
step. What it does not allow: the autograd engine's backward on fake CUDA tensors asks the CUDA driver for
a primary context ("hasPrimaryContext expects a valid device index", pytorch/pytorch#92627), and
torch.autocast("cuda") switches itself off without a GPU. The step therefore gets its gradients as fake
CUDA tensors the shape of each parameter, which is where autograd puts them; a CPU tensor that reaches the
graph fails in the forward already. tests/test_gpu_smoke.py runs the whole loop on a real GPU.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

from conftest import train_config
from trickbench.nn.activations import ACTIVATIONS
from trickbench.nn.models import MODELS
from trickbench.train.loop import build_network, parameter_groups
from trickbench.train.optim import OPTIMIZERS
from trickbench.train.regularizers import apply_max_norm, l1_penalty, penalized_weights, regularization

CUDA = torch.device("cuda:0")



def fake_cuda_step(model_name: str, activation: str, optimizer: str = "sgd", *, class_weight_device=CUDA) -> None:
    """Build on the CPU, move to fake cuda:0, then one training step and one evaluation forward there."""
    size = MODELS.entry(model_name).extra["min_image_size"]
    config = train_config(model=model_name, activation=activation, width=4, optimizer=optimizer,
                          regularizers=["dropout", "batch_norm", "l1", "max_norm"])
    reg = regularization(config)
    model = build_network(config, reg, (size, size, 3), 10)
    with FakeTensorMode(allow_non_fake_inputs=True):
        model = model.to(device=CUDA, memory_format=torch.channels_last)
        opt = OPTIMIZERS.get(optimizer)(parameter_groups(model, reg, config), config)
        weights = penalized_weights(model)
        x = torch.rand(8, 3, size, size).to(CUDA).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (8,)).to(CUDA)
        class_weight = torch.ones(10).to(class_weight_device)
        model.train()
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y, weight=class_weight) + l1_penalty(weights, reg.l1)
        assert logits.device == CUDA and logits.shape == (8, 10) and loss.device == CUDA
        for parameter in model.parameters():
            parameter.grad = torch.empty_like(parameter)
        opt.step()
        apply_max_norm(weights, reg.max_norm)
        assert all(p.device == CUDA for p in model.parameters())
        assert all(t.device == CUDA for state in opt.state.values() for t in state.values()
                   if isinstance(t, torch.Tensor) and t.dim())  # momentum buffers (a step count may stay on CPU)
        model.eval()
        with torch.no_grad():
            probs = model(x).float().softmax(dim=1)
        assert probs.device == CUDA and (probs.argmax(dim=1) != y).device == CUDA


@pytest.mark.parametrize("activation", ACTIVATIONS.names())
@pytest.mark.parametrize("model_name", MODELS.names())
def test_every_model_and_activation_steps_on_fake_cuda(model_name: str, activation: str) -> None:
    fake_cuda_step(model_name, activation)


@pytest.mark.parametrize("optimizer", OPTIMIZERS.names())
def test_every_optimizer_steps_on_fake_cuda(optimizer: str) -> None:
    fake_cuda_step("small_cnn", "prelu", optimizer)


def test_a_cpu_tensor_in_the_cuda_step_fails_here() -> None:
    """The control: the dry run is not blind to the bug it is for."""
    with pytest.raises(Exception, match="(?i)device"):
        fake_cuda_step("small_cnn", "relu", class_weight_device=torch.device("cpu"))
