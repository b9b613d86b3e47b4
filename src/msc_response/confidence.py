"""The confidence level of every interval the package reports, and its normal quantile."""

#: Two-sided confidence level of every interval.
LEVEL = 0.95
#: The normal quantile of :data:`LEVEL` (``norm.ppf(0.975)`` = 1.95996, rounded as the
#: Wald-type intervals, bands and Riley's sample size have always used it).
Z = 1.96
