"""What an activation costs per training step, and the paper's RReLU in three forms (GitHub issue 7).

Measured, forward + backward in training mode, on NiN's largest activation tensor (batch 128 x 192
channels x 32 x 32, channels_last) and inside a whole NiN training step (width 192, batch 128):

  * every paper activation as trickbench builds it (relu, leaky_relu_a100, prelu, rrelu, torch_rrelu);
  * the paper's RReLU in its plain where-form, torch.where(x >= 0, x, x / a): the baseline of the
    where-free form trickbench uses (x / rrelu_divisors(x), the same numbers bit for bit);
  * the where-form through torch.compile, which the issue names as the place where compilation may pay.

Baselines are measured in the same run, in interleaved rounds (best of each), so load from other
processes hits every arm alike.

    python benchmarks/activation_cost.py            # CPU, plus CUDA when available
    python benchmarks/activation_cost.py --quick    # tiny tensors: a test of the script
"""
from __future__ import annotations

import argparse
import time
from typing import Any, Callable

from _common import header, ratio_line, table

ACTIVATIONS = ["relu", "leaky_relu_a100", "prelu", "rrelu", "torch_rrelu"]


def where_form_class() -> type:
    import torch

    from trickbench.nn.activations import PaperRReLU

    class WhereFormRReLU(PaperRReLU):
        """The paper's RReLU written the obvious way (the baseline)."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.training:
                divisor = torch.empty_like(x).uniform_(self.lower, self.upper)
                return torch.where(x >= 0, x, x / divisor)
            return torch.where(x >= 0, x, x * self.eval_slope)

    return WhereFormRReLU


def best_times(arms: dict[str, Callable[[], Any]], rounds: int, sync: Callable[[], None]) -> dict[str, float]:
    """Seconds per call of each arm: warm-up, then `rounds` interleaved rounds, best of each arm."""
    for action in arms.values():
        action()
        action()
    sync()
    best = {name: float("inf") for name in arms}
    for _ in range(rounds):
        for name, action in arms.items():
            sync()
            started = time.perf_counter()
            action()
            sync()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def single_layer(device: str, shape: tuple[int, ...], rounds: int, compile_arm: bool) -> dict[str, float]:
    import torch

    from trickbench.nn.activations import make_activation

    x0 = torch.randn(*shape, device=device).contiguous(memory_format=torch.channels_last)
    upstream = torch.randn_like(x0)

    def forward_backward(layer: Callable[[Any], Any]) -> Callable[[], None]:
        def run() -> None:
            x = x0.detach().requires_grad_()
            layer(x).backward(upstream)
        return run

    arms = {name: forward_backward(make_activation(name)(shape[1]).to(device).train()) for name in ACTIVATIONS}
    where_form = where_form_class()().to(device).train()
    arms["rrelu, where-form"] = forward_backward(where_form)
    if compile_arm:
        arms["rrelu, where-form, torch.compile"] = forward_backward(torch.compile(where_form))
    return best_times(arms, rounds, sync_for(device))


def nin_step(device: str, width: int, batch: int, rounds: int) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    from trickbench.nn.activations import PaperRReLU
    from trickbench.nn.models import build_model

    where_form = where_form_class()
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)

    def trainer(activation: str, use_where_form: bool = False) -> Callable[[], None]:
        torch.manual_seed(0)
        model = build_model("nin", activation=activation, in_channels=3, num_classes=10, image_size=32,
                            width=width, batch_norm=False, dropout=0.5)
        for module in model.modules():
            if use_where_form and isinstance(module, PaperRReLU):
                module.__class__ = where_form
        model = model.to(device=device, memory_format=torch.channels_last).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, foreach=True)

        def step() -> None:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return step

    arms = {"NiN step, relu": trainer("relu"), "NiN step, rrelu": trainer("rrelu"),
            "NiN step, rrelu where-form": trainer("rrelu", use_where_form=True)}
    return best_times(arms, rounds, sync_for(device))


def sync_for(device: str) -> Callable[[], None]:
    import torch

    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny tensors and one round: checks the script")
    parser.add_argument("--devices", default="auto", help="cpu, cuda or auto (cuda when available, else cpu)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile arm")
    args = parser.parse_args()

    from trickbench.train.allocator import tune_allocator

    allocator = tune_allocator()
    import torch

    header("activation_cost")
    print(f"glibc malloc settings: {allocator}")
    # auto: the GPU alone where there is one, else the CPU
    devices = (["cuda"] if torch.cuda.is_available() else ["cpu"]) if args.devices == "auto" \
        else args.devices.split(",")
    if "cuda" in devices and not torch.cuda.is_available():
        raise SystemExit("--devices cuda: no CUDA device here")
        print("GPU: skipped (no CUDA device); CPU figures only")
    shape = (4, 24, 8, 8) if args.quick else (128, 192, 32, 32)
    width, batch = (24, 8) if args.quick else (192, 128)
    rounds = 1 if args.quick else 5

    for device in devices:
        seconds = single_layer(device, shape, rounds, compile_arm=not args.no_compile)
        seconds |= nin_step(device, width, batch, 1 if args.quick else 3)
        print()
        print(f"{device}: activation {'x'.join(map(str, shape))}, forward + backward; NiN w{width}, batch {batch}")
        table([{"what": name, "ms": 1000 * value} for name, value in seconds.items()], ["what", "ms"])
        print()
        ratio_line(f"rrelu_where_free_{device}", seconds["rrelu, where-form"], seconds["rrelu"],
                   what="where-form", baseline_what="trickbench rrelu", unit="s")
        if "rrelu, where-form, torch.compile" in seconds:
            ratio_line(f"rrelu_compile_{device}", seconds["rrelu, where-form"],
                       seconds["rrelu, where-form, torch.compile"], what="where-form eager",
                       baseline_what="where-form compiled", unit="s")
        ratio_line(f"rrelu_vs_relu_{device}", seconds["rrelu"], seconds["relu"], what="trickbench rrelu",
                   baseline_what="relu", unit="s")
        ratio_line(f"nin_step_rrelu_where_free_{device}", seconds["NiN step, rrelu where-form"],
                   seconds["NiN step, rrelu"], what="NiN step, where-form", baseline_what="NiN step, trickbench rrelu",
                   unit="s")
        ratio_line(f"nin_step_rrelu_vs_relu_{device}", seconds["NiN step, rrelu"], seconds["NiN step, relu"],
                   what="NiN step, rrelu", baseline_what="NiN step, relu", unit="s")


if __name__ == "__main__":
    main()
