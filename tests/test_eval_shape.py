"""One evaluation batch shape per job (GitHub issue 25): `predict(pad=True)`, what a CUDA job uses, fills the
short last batch up to the full size and gives the probabilities of the unpadded evaluation."""
from __future__ import annotations

import torch

from conftest import digits, digits_stats, train_config
from trickbench.data.preprocess import build_preprocessor
from trickbench.train.loop import DeviceData, build_network, predict
from trickbench.train.regularizers import regularization


def test_padded_evaluation_has_one_shape_and_the_same_probabilities() -> None:
    config = train_config(model="small_cnn", width=4, activation="prelu", regularizers=["batch_norm", "dropout"])
    torch.manual_seed(0)
    model = build_network(config, regularization(config), digits().image_shape, 10)
    prepare = build_preprocessor("normalize", digits_stats(), "cpu")
    shapes = []
    model.register_forward_pre_hook(lambda _m, inputs: shapes.append(tuple(inputs[0].shape)) and None)
    for split in ("train", "val", "test"):
        data = DeviceData(digits().images[split], digits().labels[split], torch.device("cpu"))
        assert len(data) % 96  # a short last batch to pad
        shapes.clear()
        plain = predict(model, data, prepare, batch_size=96, amp=False)
        assert len(set(shapes)) == 2
        shapes.clear()
        padded = predict(model, data, prepare, batch_size=96, amp=False, pad=True)
        assert set(shapes) == {(96, 1, 8, 8)} and padded.shape == plain.shape == (len(data), 10)
        torch.testing.assert_close(padded, plain, rtol=0, atol=1e-6)
