"""The statistics ``lessonloop compare`` reports, kept importable here for older callers.

They live in ``curriculum.stats``: the run report (``curriculum.report``) needs the binomial
standard error too, and curriculum/ never imports train/.
"""

from curriculum.stats import binomial_se, incomplete_beta, mean_se, t_cdf, t_interval, t_quantile

__all__ = ["binomial_se", "incomplete_beta", "mean_se", "t_cdf", "t_interval", "t_quantile"]
