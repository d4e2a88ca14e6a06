"""The batch-loss band on a log axis: taken in log space it stays > 0 and brackets the plotted mean, where an
arithmetic mean − std of noisy losses goes below 0 (drawn on a log axis: false spikes to the bottom)."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from trickbench.report import figures

WINDOW = 20


def noisy_batches() -> pd.DataFrame:
    steps = np.arange(300)
    rng = np.random.default_rng(0)
    # multiplicative noise, as batch losses have: a few batches far above the trend, most below it
    loss = (2.0 * np.exp(-steps / 80) + 0.05) * rng.lognormal(0.0, 1.2, size=len(steps))
    return pd.DataFrame({"step": steps, "loss": loss, "lr": "0.1"})


def band_and_curve(axis) -> tuple[dict[float, list[float]], dict[float, float]]:
    (band,) = [c for c in axis.collections if "std" in c.get_label()]
    ys: dict[float, list[float]] = defaultdict(list)
    for path in band.get_paths():
        for x, y in path.vertices:
            ys[float(x)].append(float(y))
    (line,) = [line for line in axis.lines if line.get_label().startswith("rolling")]
    return ys, dict(zip(map(float, line.get_xdata()), map(float, line.get_ydata())))


def test_the_arithmetic_band_would_go_below_zero():
    loss = noisy_batches()["loss"]
    rolling = loss.rolling(WINDOW, min_periods=1)
    assert ((rolling.mean() - rolling.std()) < 0).sum() > 20  # the case the figure must survive


def test_band_on_the_log_axis_is_positive_and_brackets_the_curve():
    batches = noisy_batches()
    figure = figures.batch_loss_figure(batches, "lr", window=WINDOW)
    axis = figure.axes[0]
    assert axis.get_yscale() == "log"
    band, curve = band_and_curve(axis)
    assert set(curve) == set(map(float, batches["step"])) and set(curve) <= set(band)
    for step, centre in curve.items():
        low, high = min(band[step]), max(band[step])
        assert 0 < low <= centre <= high, step
    # geometric: the centre is the rolling mean of log(loss) taken back, the band a factor each side
    centre, lower, upper = figures.rolling_band(batches["loss"], WINDOW, log=True)
    logs = np.log(batches["loss"]).rolling(WINDOW, min_periods=1)
    np.testing.assert_allclose(centre, np.exp(logs.mean()))
    np.testing.assert_allclose(upper / centre, centre / lower)
    np.testing.assert_allclose([curve[float(s)] for s in batches["step"]], centre)
    figures.plt.close(figure)


def test_band_without_a_log_axis_stays_arithmetic():
    batches = noisy_batches()
    batches.loc[5, "loss"] = 0.0  # a zero loss: no log axis, mean ± std as before
    figure = figures.batch_loss_figure(batches, "lr", window=WINDOW)
    axis = figure.axes[0]
    assert axis.get_yscale() == "linear"
    band, curve = band_and_curve(axis)
    rolling = batches["loss"].rolling(WINDOW, min_periods=1)
    assert curve[50.0] == pytest.approx(rolling.mean()[50])
    assert min(band[50.0]) == pytest.approx(rolling.mean()[50] - rolling.std()[50])
    figures.plt.close(figure)
