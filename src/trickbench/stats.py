"""Every statistic of the verdicts in one place: the paired t-interval and tests (two-sided, one-sided,
TOST), Holm's step-down correction, and the power of a paired t-test (minimum detectable effect, seeds
needed). Inputs are the per-replicate differences d (one per independent seed); nothing here knows what
a claim or a preset is.

Power is the exact power of the paired t-test under a shifted normal model (noncentral t), so the seeds
needed agree with the textbook closed form n ≈ ((z₁₋α/₂ + z₁₋β)·s/δ)² + z²₁₋α/₂/2 (Guenther 1981) to
within a seed; `closed_form_seeds` gives that formula for the tests."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

POWER = 0.80
MAX_SEEDS = 10_000  # seeds_needed reports "more than this" as inf


@dataclass(frozen=True)
class Summary:
    """Mean, sample sd (ddof 1) and n of paired differences; sd is nan for n < 2."""
    n: int
    mean: float
    sd: float

    @property
    def se(self) -> float:
        return self.sd / math.sqrt(self.n) if self.n >= 2 else math.nan

    @property
    def exact(self) -> bool:
        """Every difference is the same number: no spread, nothing for a t-test to estimate."""
        return self.n >= 2 and self.sd == 0.0


def summarize(diffs: np.ndarray) -> Summary:
    diffs = np.asarray(diffs, dtype=float)
    n = len(diffs)
    if n == 0:
        return Summary(0, math.nan, math.nan)
    spread = float(np.std(diffs, ddof=1)) if n >= 2 else math.nan
    if n >= 2 and np.all(diffs == diffs[0]):
        spread = 0.0
    return Summary(n, float(np.mean(diffs)), spread)


def t_interval(summary: Summary, confidence: float) -> tuple[float, float]:
    """Two-sided t-interval of the mean difference at `confidence` (nan without spread estimate)."""
    if summary.n < 2 or math.isnan(summary.sd):
        return math.nan, math.nan
    half = float(sps.t.ppf(0.5 + confidence / 2, summary.n - 1)) * summary.se
    return summary.mean - half, summary.mean + half


def _upper_tail(summary: Summary, shift: float) -> float:
    """P(T ≥ (mean − shift)/se) under H0 mean = shift (one-sided test that the mean exceeds shift)."""
    return float(sps.t.sf((summary.mean - shift) / summary.se, summary.n - 1))


def p_two_sided(summary: Summary) -> float:
    """Paired t-test of H0: mean difference 0."""
    if summary.n < 2 or summary.sd == 0 or math.isnan(summary.sd):
        return math.nan
    return float(2 * sps.t.sf(abs(summary.mean) / summary.se, summary.n - 1))


def p_tost(summary: Summary, margin: float) -> float:
    """TOST (Schuirmann; Lakens 2017) of H0: |mean| ≥ margin: the larger of the two one-sided p's. At level
    alpha it rejects exactly when the (1 − 2·alpha) interval lies inside (−margin, margin)."""
    if summary.n < 2 or summary.sd == 0 or math.isnan(summary.sd):
        return math.nan
    below = _upper_tail(summary, -margin)          # H0a: mean ≤ −margin
    above = 1.0 - _upper_tail(summary, margin)     # H0b: mean ≥ +margin
    return max(below, above)


def p_below(summary: Summary, margin: float) -> float:
    """One-sided test of H0: mean ≥ margin (non-inferiority: the difference stays below margin)."""
    if summary.n < 2 or summary.sd == 0 or math.isnan(summary.sd):
        return math.nan
    return 1.0 - _upper_tail(summary, margin)


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN and is not counted in the family)."""
    finite = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    adjusted = [math.nan] * len(pvalues)
    running, m = 0.0, len(finite)
    for rank, (p, index) in enumerate(finite):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted


# ------------------------------------------------------------------------------------------------ power

def power_two_sided(n: int, effect: float, sd: float, alpha: float) -> float:
    """Power of the two-sided paired t-test at level alpha with n pairs, true mean `effect`, sd `sd`."""
    if n < 2 or sd <= 0:
        return math.nan
    df, shift = n - 1, abs(effect) * math.sqrt(n) / sd
    critical = float(sps.t.ppf(1 - alpha / 2, df))
    # the far tail (rejecting on the wrong side) is negligible where scipy's series loses it to nan
    wrong_side = float(sps.nct.cdf(-critical, df, shift))
    return float(sps.nct.sf(critical, df, shift)) + (0.0 if math.isnan(wrong_side) else wrong_side)


def power_tost(n: int, margin: float, sd: float, alpha: float) -> float:
    """Power of TOST at level alpha when the true mean is 0 (the equivalence it should find)."""
    if n < 2 or sd <= 0:
        return math.nan
    df, se = n - 1, sd / math.sqrt(n)
    critical = float(sps.t.ppf(1 - alpha, df))
    # reject when |mean| < margin − critical·se; with mean ~ N(0, se²) approximately
    reach = margin / se - critical
    return max(0.0, float(2 * sps.t.cdf(reach, df) - 1))


def seeds_needed(sd: float, effect: float, alpha: float, power: float = POWER, test: str = "difference") -> float:
    """Smallest n (≥ 2) whose power reaches `power` for a true `effect` (the smallest effect of interest)
    given the paired sd; inf beyond MAX_SEEDS; nan without an sd."""
    if math.isnan(sd) or math.isnan(effect) or effect <= 0:
        return math.nan
    if sd == 0:
        return 2.0
    compute = (lambda n: power_two_sided(n, effect, sd, alpha)) if test == "difference" else \
        (lambda n: power_tost(n, effect, sd, alpha))
    low, high = 2, 2
    while compute(high) < power:
        if high >= MAX_SEEDS:
            return math.inf
        low, high = high, min(high * 2, MAX_SEEDS)
    while low < high:  # power grows with n: bisect the first n that reaches it
        middle = (low + high) // 2
        low, high = (middle + 1, high) if compute(middle) < power else (low, middle)
    return float(high)


def minimum_detectable_effect(n: int, sd: float, alpha: float, power: float = POWER) -> float:
    """The true effect the two-sided paired t-test detects with probability `power` at n pairs."""
    if n < 2 or math.isnan(sd):
        return math.inf if n < 2 else math.nan
    if sd == 0:
        return 0.0
    from scipy.optimize import brentq

    high = sd
    while power_two_sided(n, high, sd, alpha) < power:
        high *= 2
    return float(brentq(lambda e: power_two_sided(n, e, sd, alpha) - power, 0.0, high, xtol=1e-12 * sd))


def closed_form_seeds(sd: float, effect: float, alpha: float, power: float = POWER) -> float:
    """Guenther's closed form for the paired t-test: ((z₁₋α/₂ + z_power)·sd/effect)² + z²₁₋α/₂ / 2."""
    z_alpha, z_power = float(sps.norm.ppf(1 - alpha / 2)), float(sps.norm.ppf(power))
    return ((z_alpha + z_power) * sd / effect) ** 2 + z_alpha ** 2 / 2
