"""Tail probabilities of session scores among normal sessions, for calibrated thresholds.

A detector's threshold is only as good as its estimate of how often *normal* sessions score
beyond it. This module turns scores that normal sessions got from models that did not
train on them (cross-fitted scores, see ``models.keys``) into that estimate:

* ``TailModel``: the survival function P(score >= t) of a normal session. Below a high
  quantile ``u`` it is the empirical one; above ``u`` the excesses are modelled by a
  generalized Pareto distribution (peaks over threshold: the limit law of excesses over a
  high threshold, Pickands-Balkema-de Haan), fitted with Zhang and Stephens' estimator
  (2009; robust for a few dozen excesses, no optimiser needed). So a target below 1/n of
  n sessions still gets an answer, and a target near k/n is not decided by the k-th score
  alone.
* ``bootstrap_rate``: an interval for the false-positive rate at a threshold: the whole
  fit redone on resampled sessions.

Pure NumPy: detection loads a ``TailModel`` from JSON and calls ``sf``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "TailModel",
    "binomial_interval",
    "bootstrap_rate",
    "fit_gpd",
]

# Excesses needed before the generalized Pareto is trusted, and distinct values among them:
# with fewer (a strict grammar's scores take a handful of values) the tail is the
# empirical one. Copies of one key sequence tie, so real logs have many ties: a few
# distinct values are enough.
MIN_EXCESSES = 20
MIN_DISTINCT = 5
# The tail starts at the score exceeded by this share of the sessions (at least
# MIN_EXCESSES of them, at most MAX_EXCESSES: past that the bias of a low u dominates).
TAIL_SHARE = 0.1
MAX_EXCESSES = 1000
# Points of the empirical survival function kept in the model (quantiles of the bulk).
GRID = 512
# The largest shape a fitted tail keeps. The statistics are bounded (-log10 of a floored
# probability): their tail has a mean, so a shape of 1 or more (none) is the fit misled.
# Seen: excesses of a log of duplicate sessions, 20 of 78 tied just above the threshold,
# gave 3.29 (scale 0.0145), and that one fold's tail vetoed every truncated session.
XI_MAX = 1.0


def fit_gpd(excess: np.ndarray) -> tuple[float, float]:
    """Shape ``xi`` and scale ``sigma`` of a generalized Pareto fitted to positive excesses.

    Zhang and Stephens (Technometrics 51, 2009): the profile of ``theta = -xi / sigma`` is
    averaged over a grid weighted by its likelihood; the empirical-Bayes posterior mean is
    close to the MLE where the MLE exists and stays finite where it does not. Survival:
    ``(1 + xi * y / sigma) ** (-1 / xi)`` (``exp(-y / sigma)`` at ``xi = 0``).
    """
    y = np.sort(np.asarray(excess, dtype=np.float64))
    n = len(y)
    if n < 2 or y[-1] <= 0:
        raise ValueError("the generalized Pareto needs at least two positive excesses")
    m = 30 + int(math.sqrt(n))
    quarter = max(float(y[max(int(n / 4 + 0.5) - 1, 0)]), y[-1] * 1e-9)
    theta = 1.0 / y[-1] + (1.0 - np.sqrt(m / (np.arange(1, m + 1) - 0.5))) / (3.0 * quarter)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.log1p(-theta[:, None] * y[None, :]).mean(axis=1)  # xi(theta), profiled
        loglik = n * (np.log(-theta / k) - k - 1.0)
    ok = np.isfinite(loglik)
    theta, loglik = theta[ok], loglik[ok]
    if len(theta) == 0:  # every excess equal: an exponential with their mean
        return 0.0, float(y.mean())
    weights = np.exp(loglik - loglik.max())  # the profile likelihood, normalised
    weights /= weights.sum()
    theta_hat = float((theta * weights).sum())
    xi = float(np.log1p(-theta_hat * y).mean())
    sigma = -xi / theta_hat if theta_hat != 0.0 else float(y.mean())
    if not (math.isfinite(xi) and math.isfinite(sigma) and sigma > 0):
        return 0.0, float(y.mean())
    return xi, sigma


def gpd_scale(excess: np.ndarray, xi: float) -> float:
    """The maximum-likelihood scale of a generalized Pareto of shape ``xi`` > 0 for
    positive excesses: the root of ``(1 + xi) * sum(y / (sigma + xi * y)) = n`` (the
    left side falls as ``sigma`` grows), by bisection on log ``sigma``."""
    y = np.asarray(excess, dtype=np.float64)
    y = y[y > 0]
    if len(y) == 0:
        raise ValueError("the generalized Pareto needs positive excesses")
    n = len(y)

    def excess_score(log_sigma: float) -> float:
        return float((1.0 + xi) * (y / (math.exp(log_sigma) + xi * y)).sum() - n)

    lo, hi = math.log(y.max() * 1e-12), math.log(y.max() * 1e6)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if excess_score(mid) > 0:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def _gpd_sf(y: np.ndarray, xi: float, sigma: float) -> np.ndarray:
    y = np.maximum(y, 0.0)
    if abs(xi) < 1e-9:
        return np.exp(-y / sigma)
    base = 1.0 + xi * y / sigma
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = np.where(base > 0, np.power(np.maximum(base, 1e-300), -1.0 / xi), 0.0)
    return out


def _gpd_isf(p: float, xi: float, sigma: float) -> float:
    if abs(xi) < 1e-9:
        return -sigma * math.log(p)
    return sigma / xi * (p ** (-xi) - 1.0)


@dataclass
class TailModel:
    """P(score >= t) for a normal session: empirical up to ``u``, generalized Pareto above.

    ``grid`` lists distinct scores up to ``u`` (all of them, or GRID points of the bulk)
    with ``levels``, P(score >= grid[i]). With a fitted tail (``xi`` set), ``tail_share``
    of the sessions score above ``u`` and their excesses follow the generalized Pareto.
    Without one (too few or too few distinct excesses), ``u`` is the largest score seen and
    ``tail_share`` is 0: past it the survival is 1 / (n + 1), falling tenfold per unit.
    """

    n: int  # sessions the model was fitted on
    grid: list[float]
    levels: list[float]
    u: float
    tail_share: float  # P(score > u)
    xi: float | None = None
    sigma: float | None = None
    excesses: int = 0
    top: float = 0.0

    @classmethod
    def fit(cls, scores: np.ndarray) -> TailModel:
        """The tail model of finite scores (any order; at least one)."""
        s = np.sort(np.asarray(scores, dtype=np.float64))
        n = len(s)
        if n == 0:
            raise ValueError("no scores to fit a tail model on")
        if not np.isfinite(s).all():
            raise ValueError("scores must be finite")
        k = min(max(MIN_EXCESSES, round(TAIL_SHARE * n)), MAX_EXCESSES, n - 1)
        u = float(s[n - 1 - k]) if k > 0 else float(s[-1])
        excess = s[s > u] - u
        xi = sigma = None
        # Scores with a handful of distinct values (a strict grammar) have no tail to fit:
        # then the empirical survival runs to the largest score and is 0 past it.
        if len(excess) >= MIN_EXCESSES and len(np.unique(excess)) >= MIN_DISTINCT:
            xi, sigma = fit_gpd(excess)
            # A negative shape puts an end to the tail just past the data; beyond the data
            # an exponential tail (shape 0) is the cautious reading.
            if xi < 0.0:
                xi, sigma = 0.0, float(excess.mean())
            elif xi > XI_MAX:
                xi, sigma = XI_MAX, gpd_scale(excess, XI_MAX)
        else:
            u, excess = float(s[-1]), excess[:0]
        # Distinct scores up to u with P(score >= value), exact; thinned to GRID points in
        # the bulk (the tail's own points are always kept).
        values, first = np.unique(s[: n - len(excess)], return_index=True)
        levels = 1.0 - first / n
        if len(values) > GRID:
            keep = np.unique(np.linspace(0, len(values) - 1, GRID).round().astype(int))
            keep = np.union1d(keep, np.flatnonzero(levels <= TAIL_SHARE))
            values, levels = values[keep], levels[keep]
        return cls(
            n,
            values.tolist(),
            levels.tolist(),
            u,
            len(excess) / n,
            xi,
            sigma,
            len(excess),
            float(s[-1]),
        )

    def sf(self, t: np.ndarray | float) -> np.ndarray:
        """P(score >= t) for a normal session (+inf gives 0)."""
        t = np.asarray(t, dtype=np.float64)
        grid = np.asarray(self.grid)
        levels = np.asarray(self.levels)
        # Up to u: the level of the first listed score >= t.
        j = np.searchsorted(grid, t, side="left")
        bulk = np.where(j < len(grid), levels[np.minimum(j, len(grid) - 1)], self.tail_share)
        if self.xi is not None and self.sigma is not None:
            tail = self.tail_share * _gpd_sf(t - self.u, self.xi, self.sigma)
            out = np.where(t <= self.u, np.maximum(bulk, self.tail_share), tail)
        else:
            # Past every normal session the data only says "rarer than 1 in n + 1"; beyond
            # that, a session ten times less probable to the model counts ten times rarer
            # (an exponential tail in these -log10 units), so that findings still rank.
            with np.errstate(over="ignore"):
                past = np.power(10.0, -np.maximum(t - self.u, 0.0)) / (self.n + 1)
            out = np.where(t <= self.u, bulk, past)
        return np.where(np.isposinf(t), 0.0, out)

    def isf(self, p: float) -> float:
        """The smallest score t with P(score > t) <= p: past the listed scores, the
        generalized Pareto's quantile, or the largest score when there is no fitted tail."""
        if p < self.tail_share and self.xi is not None and self.sigma is not None:
            return self.u + _gpd_isf(p / self.tail_share, self.xi, self.sigma)
        levels = np.asarray(self.levels)
        # P(score > grid[j]) = levels[j + 1]: the first j whose successor's level is <= p.
        nxt = np.append(levels[1:], self.tail_share)
        j = int(np.argmax(nxt <= p)) if (nxt <= p).any() else len(self.grid) - 1
        return float(self.grid[j])

    @property
    def fitted_tail(self) -> bool:
        return self.xi is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TailModel:
        model = cls(**dict(d))
        if len(model.grid) != len(model.levels) or model.n < 1:
            raise ValueError("tail model: grid and levels do not match")
        return model


@dataclass
class RateEstimate:
    """A false-positive rate with its 95% interval and how it was measured."""

    rate: float
    low: float
    high: float
    flagged: int = 0  # normal sessions flagged in the cross-fitted scores
    sessions: int = 0
    method: str = ""  # "tail model", "empirical"
    notes: list[str] = field(default_factory=list)


def binomial_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (0..1 at n = 0)."""
    if n <= 0:
        return 0.0, 1.0
    z = _z(1.0 - (1.0 - level) / 2.0)
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _z(q: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(q)


def bootstrap_rate(
    scores: np.ndarray,
    ruled: np.ndarray,
    threshold: float,
    rng: np.random.Generator,
    replicates: int = 200,
) -> tuple[float, float]:
    """95% percentile interval of the rate ``P(ruled or score > threshold)`` when the
    sessions are resampled and the tail model refitted on each resample."""
    n = len(scores)
    if n == 0:
        return 0.0, 1.0
    rates = np.empty(replicates)
    for b in range(replicates):
        idx = rng.integers(0, n, n)
        r = ruled[idx]
        share = float(r.mean())
        rest = scores[idx][~r]
        tail = float(TailModel.fit(rest).sf(np.nextafter(threshold, math.inf))) if len(rest) else 0
        rates[b] = share + (1.0 - share) * tail
    low, high = np.quantile(rates, [0.025, 0.975])
    return float(low), float(high)
