"""Is a change of a statement's mean time real? Welch's t-test on pg_stat_statements' spread.

pg_stat_statements keeps, per statement, the number of calls, the mean and the
standard deviation of the execution time (a population deviation: sum of squares over
calls). Two such records (before and after) are two samples of unequal size and
variance: Welch's t-test (unequal variances, Welch–Satterthwaite degrees of freedom)
says whether their means differ more than the spread explains, and gives a confidence
interval for the difference. Standard library only: Student's t distribution through
the regularized incomplete beta function (a continued fraction, as in Numerical Recipes).

Executions of one statement are not independent draws (caches warm up, parameters
differ), so with thousands of calls a tiny systematic drift is "significant": a
verdict also needs the change to be material (queryaudit.before_after).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def _betacf(a: float, b: float, x: float) -> float:
    tiny, eps = 1e-300, 3e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(ln_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(ln_front) * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def t_critical(alpha: float, df: float) -> float:
    """The t with P(|T| >= t) = alpha (bisection: the p-value falls as t grows)."""
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > alpha:
        hi *= 2.0
    for _ in range(100):
        mid = (lo + hi) / 2.0
        if t_two_sided_p(mid, df) > alpha:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


@dataclass
class Welch:
    difference: float  # mean after - mean before
    low: float  # confidence interval of the difference
    high: float
    p_value: float
    df: float

    def significant(self, alpha: float) -> bool:
        return self.p_value < alpha


def welch(
    mean_before: float,
    stddev_before: float,
    calls_before: int,
    mean_after: float,
    stddev_after: float,
    calls_after: int,
    alpha: float = 0.05,
) -> Welch | None:
    """Welch's test on two pg_stat_statements records; None with fewer than 2 calls a side.
    The deviations are pg_stat_statements' (population): turned into sample variances."""
    if calls_before < 2 or calls_after < 2:
        return None
    var_b = stddev_before**2 * calls_before / (calls_before - 1)
    var_a = stddev_after**2 * calls_after / (calls_after - 1)
    se2_b, se2_a = var_b / calls_before, var_a / calls_after
    se2 = se2_b + se2_a
    diff = mean_after - mean_before
    if se2 <= 0.0:  # no spread at all: any difference is certain, none is nothing
        return Welch(diff, diff, diff, 0.0 if diff else 1.0, float(calls_before + calls_after - 2))
    df = se2**2 / (se2_b**2 / (calls_before - 1) + se2_a**2 / (calls_after - 1))
    se = math.sqrt(se2)
    half = t_critical(alpha, df) * se
    return Welch(diff, diff - half, diff + half, t_two_sided_p(diff / se, df), df)
