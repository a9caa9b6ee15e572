"""The statistics the reports give: how noisy one run's accuracy is (the run report, per skill, and
``lessonloop compare``), and how sure a difference between two arms is.

- ``binomial_se``: the standard error of an accuracy measured on ``n`` independent test items,
  ``sqrt(p (1 - p) / n)``: the noise of one run's number from the finite test set alone.
- ``mean_se``: the same for an unweighted mean of several per-skill accuracies (the under-served
  skills), each measured on its own items: ``sqrt(sum p_s (1 - p_s) / n_s) / m``.
- ``t_interval``: a confidence interval for the mean of paired differences (one per seed), from
  Student's t distribution with n - 1 degrees of freedom: ``mean ± t(0.975, n - 1) · sd / sqrt(n)``
  for 95 %. Seeds are few, so the normal quantile (1.96) would be far too narrow: with 3 seeds
  the t quantile is 4.30.

Only the standard library: the t quantile inverts the t distribution's CDF, written through the
regularised incomplete beta function.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def binomial_se(p: float, n: int) -> float | None:
    """Standard error of an accuracy ``p`` measured on ``n`` items (None without items)."""
    if n <= 0:
        return None
    return math.sqrt(max(0.0, p * (1.0 - p)) / n)


def mean_se(parts: Sequence[tuple[float, int]]) -> float | None:
    """Standard error of the unweighted mean of accuracies ``(p, n)`` measured on disjoint item
    sets (None when a part has no items, or there is no part)."""
    if not parts or any(n <= 0 for _, n in parts):
        return None
    return math.sqrt(sum(p * (1.0 - p) / n for p, n in parts)) / len(parts)


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), for ``0 <= x <= 1``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):  # the fraction converges fast on this side
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t distribution with ``df`` degrees of freedom."""
    tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t distribution with ``df`` > 0 degrees of freedom."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):  # bisection: the CDF is monotone
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2.0


def t_interval(values: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """Mean of ``values`` (paired differences, one per seed) with its ``confidence`` interval
    from Student's t with n - 1 degrees of freedom. ``low`` and ``high`` are None with fewer than
    two values: one seed says nothing about the spread."""
    n = len(values)
    if n == 0:
        raise ValueError("t_interval needs at least one value")
    mean = statistics.fmean(values)
    out: dict[str, Any] = {"mean": mean, "n": n, "df": n - 1, "confidence": confidence}
    if n < 2:
        return {**out, "sd": None, "t": None, "low": None, "high": None}
    sd = statistics.stdev(values)
    t = t_quantile(0.5 + confidence / 2.0, n - 1)
    half = t * sd / math.sqrt(n)
    return {**out, "sd": sd, "t": t, "low": mean - half, "high": mean + half}
