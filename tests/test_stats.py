"""The statistics compare reports, against numbers from published tables and by hand."""

import math

import pytest

from train.stats import binomial_se, incomplete_beta, mean_se, t_cdf, t_interval, t_quantile


@pytest.mark.parametrize(
    ("df", "expected"),
    # Two-sided 95 % critical values of Student's t (any statistics table).
    [
        (1, 12.7062),
        (2, 4.3027),
        (3, 3.1824),
        (4, 2.7764),
        (5, 2.5706),
        (9, 2.2622),
        (29, 2.0452),
        (120, 1.9799),
    ],
)
def test_t_quantile_matches_the_table(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=5e-5)


def test_t_quantile_other_levels_and_symmetry():
    assert t_quantile(0.95, 10) == pytest.approx(1.8125, abs=5e-5)  # one-sided 95 %, 10 df
    assert t_quantile(0.995, 4) == pytest.approx(4.6041, abs=5e-5)
    assert t_quantile(0.025, 4) == pytest.approx(-t_quantile(0.975, 4))
    assert t_quantile(0.975, 10_000) == pytest.approx(1.95996, abs=1e-3)  # tends to the normal's
    assert t_cdf(0.0, 3) == pytest.approx(0.5)
    # One degree of freedom is the Cauchy distribution: CDF 1/2 + atan(t)/pi.
    assert t_cdf(2.0, 1) == pytest.approx(0.5 + math.atan(2.0) / math.pi, abs=1e-12)
    assert incomplete_beta(2, 3, 0.4) == pytest.approx(0.5248, abs=1e-12)  # 1 - (0.6^4 + 4*0.4*0.6^3)
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)


def test_paired_interval_by_hand():
    # diffs 0.01..0.05: mean 0.03, sd 0.0158114, n 5; 0.03 ± 2.776445 * 0.0158114 / sqrt(5)
    got = t_interval([0.01, 0.03, 0.02, 0.05, 0.04])
    assert (got["n"], got["df"], got["confidence"]) == (5, 4, 0.95)
    assert got["mean"] == pytest.approx(0.03) and got["sd"] == pytest.approx(0.0158114, abs=1e-7)
    assert got["low"] == pytest.approx(0.0103676, abs=1e-6) and got["high"] == pytest.approx(
        0.0496324, abs=1e-6
    )
    # Three seeds: t(0.975, 2) = 4.3027, far wider than the normal's 1.96 would say.
    three = t_interval([0.02, -0.01, 0.05])
    assert three["high"] - three["mean"] == pytest.approx(4.302653 * 0.03 / math.sqrt(3), abs=1e-6)
    assert three["low"] < 0 < three["mean"]
    one = t_interval([0.02])
    assert one["mean"] == 0.02 and one["low"] is None and one["high"] is None and one["df"] == 0


def test_standard_errors():
    assert binomial_se(0.3, 540) == pytest.approx(math.sqrt(0.3 * 0.7 / 540))
    assert binomial_se(1.0, 10) == 0.0 and binomial_se(0.5, 0) is None
    # The unweighted mean of two skills measured on 60 and 40 items.
    assert mean_se([(0.5, 60), (0.2, 40)]) == pytest.approx(math.sqrt(0.25 / 60 + 0.16 / 40) / 2)
    assert mean_se([]) is None and mean_se([(0.5, 0)]) is None
