"""torch.compile of the training forward, as the GPU presets run it (GitHub issue 25): the real loop with the
real torch.compile, but the cheap `aot_eager` backend (Dynamo's graph capture and AOT autograd's joint graph,
without Inductor's code generation), over three epochs, for every registered model and activation.

One graph, no graph break, no recompile after the first epoch (a recompile on a GPU costs 30-90 s and a
break splits the step into eager pieces), and RReLU's random draw inside the graph. About 1 s a case on
the idle 2-core machine (36 cases, 28 s; ten times that under a load of 10)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import train_config
from trickbench.data.prepared import Prepared
from trickbench.data.stats import runtime_stats
from trickbench.nn.activations import ACTIVATIONS, PaperRReLU
from trickbench.nn.models import MODELS
from trickbench.train.loop import train

BATCH = 16


def random_images(size: int) -> Prepared:
    """Two classes of random RGB images, unbalanced (oversampling has work to do), 3.5 batches of them."""
    rng = np.random.default_rng(0)
    counts = {"train": 56, "val": 16, "test": 16}
    images = {s: rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8) for s, n in counts.items()}
    labels = {s: (np.arange(n) % 4 == 0).astype(np.int64) for s, n in counts.items()}
    return Prepared(images, labels, ["a", "b"])


def compiled_run(monkeypatch: pytest.MonkeyPatch, model_name: str, activation: str,
                 backend: str = "eager") -> tuple[list[int], list]:
    """(graphs compiled by the end of each epoch, the captured FX graphs) of a 3-epoch compiled run."""
    graphs = []
    compiler = torch._dynamo.lookup_backend(backend)

    def recording_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return compiler(graph_module, example_inputs)

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **options: real_compile(model, backend=recording_backend,
                                                                                **options))
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    size = MODELS.entry(model_name).extra["min_image_size"]
    prepared = random_images(size)
    stats = runtime_stats({"channel_mean": [0.5] * 3, "channel_std": [0.25] * 3}, None, torch.device("cpu"))
    config = train_config(model=model_name, activation=activation, width=2, epochs=3, batch_size=BATCH,
                          eval_batch_size=32, compile=True, class_balance="oversample",
                          regularizers=["dropout", "batch_norm", "l1", "max_norm"])
    per_epoch: list[int] = []
    result = train(config, prepared, stats, config_digest="compile", on_epoch=lambda row: per_epoch.append(len(graphs)))
    assert result.status == "completed"
    return per_epoch, graphs


@pytest.mark.parametrize("activation", ACTIVATIONS.names())
@pytest.mark.parametrize("model_name", MODELS.names())
def test_one_graph_no_break_no_recompile(monkeypatch: pytest.MonkeyPatch, model_name: str, activation: str) -> None:
    """Dynamo's capture (the `eager` backend): where graph breaks and recompiles come from."""
    check_one_graph(*compiled_run(monkeypatch, model_name, activation), activation)


@pytest.mark.parametrize("model_name", MODELS.names())
def test_aot_autograd_keeps_one_graph_with_rrelu(monkeypatch: pytest.MonkeyPatch, model_name: str) -> None:
    """With AOT autograd's joint forward-backward graph too (`aot_eager`)."""
    check_one_graph(*compiled_run(monkeypatch, model_name, "rrelu", backend="aot_eager"), "rrelu")


def check_one_graph(per_epoch: list[int], graphs: list, activation: str) -> None:
    assert per_epoch == [1, 1, 1], f"graphs compiled by the end of each epoch: {per_epoch}"
    assert not torch._dynamo.utils.counters["graph_break"], dict(torch._dynamo.utils.counters["graph_break"])
    if isinstance(ACTIVATIONS.get(activation)(2), (PaperRReLU, torch.nn.RReLU)):  # random in training
        assert "uniform" in graphs[0].code or "rrelu" in graphs[0].code  # the draw is traced, not a break
