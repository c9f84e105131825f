"""Tail models of normal sessions' scores: the fitted tail, the survival function and its
inverse, the intervals. Scores are drawn from known distributions, so every answer has a
true value to be checked against."""

from __future__ import annotations

import math

import numpy as np
import pytest

from logwarden.models.calibration import (
    XI_MAX,
    TailModel,
    binomial_interval,
    bootstrap_rate,
    fit_gpd,
    gpd_scale,
)


@pytest.mark.parametrize("xi", [0.0, 0.2, 0.4])
def test_fit_gpd_recovers_the_shape_and_scale(xi: float) -> None:
    rng = np.random.default_rng(1)
    u = rng.uniform(size=20_000)
    sigma = 1.5
    y = -sigma * np.log(u) if xi == 0 else sigma / xi * (u ** (-xi) - 1.0)
    got_xi, got_sigma = fit_gpd(y)
    assert got_xi == pytest.approx(xi, abs=0.05)
    assert got_sigma == pytest.approx(sigma, rel=0.06)


def test_fit_gpd_needs_positive_excesses() -> None:
    with pytest.raises(ValueError):
        fit_gpd(np.array([1.0]))
    with pytest.raises(ValueError):
        fit_gpd(np.zeros(10))


@pytest.mark.parametrize("xi", [0.3, 1.0, 2.0])
def test_gpd_scale_is_the_likelihood_s_at_a_known_shape(xi: float) -> None:
    rng = np.random.default_rng(4)
    y = 0.7 / xi * (rng.uniform(size=20_000) ** (-xi) - 1.0)
    assert gpd_scale(y, xi) == pytest.approx(0.7, rel=0.05)


def test_a_tail_whose_fit_has_no_mean_is_held_at_the_largest_shape() -> None:
    """Sessions in many copies: a block of tied statistics just above the tail's threshold
    among a spread of larger ones (a fold of the DeepLog split, 2026-12-04: 20 of 78
    excesses at 0.001) misled the fit to a shape of 3.29, whose tail probabilities far out
    were ten times the other folds'."""
    rng = np.random.default_rng(0)
    scores = np.concatenate(
        [rng.uniform(0, 1.5, 700), [1.559], np.full(20, 1.560), 1.559 + rng.exponential(0.6, 58)]
    )
    model = TailModel.fit(scores)
    assert model.u == 1.559 and model.excesses == 78
    excess = np.sort(scores)[-78:] - 1.559
    raw_xi, raw_sigma = fit_gpd(excess)
    assert raw_xi > 2.0  # what the fit alone says
    assert model.xi == XI_MAX and model.sigma == pytest.approx(gpd_scale(excess, XI_MAX))
    raw_sf = model.tail_share * (1 + raw_xi * (4.0 - 1.559) / raw_sigma) ** (-1 / raw_xi)
    assert float(model.sf(4.0)) < raw_sf / 2


def exponential_scores(n: int, seed: int) -> np.ndarray:
    # P(score >= t) = exp(-t): every tail probability has a closed form.
    return np.random.default_rng(seed).exponential(size=n)


@pytest.mark.parametrize("p", [0.05, 0.01, 0.003, 0.0005, 1e-5])
def test_tail_model_quantiles_match_the_truth_below_one_in_n(p: float) -> None:
    # 2,000 scores: 1e-5 and 5e-4 are below 1/n, where the data alone has nothing to say.
    model = TailModel.fit(exponential_scores(2000, seed=2))
    assert model.fitted_tail
    t = model.isf(p)
    assert t == pytest.approx(-math.log(p), rel=0.15)
    assert float(model.sf(t)) == pytest.approx(p, rel=1e-6)


def test_tail_model_survival_is_monotone_and_matches_the_data_in_the_bulk() -> None:
    scores = exponential_scores(3000, seed=3)
    model = TailModel.fit(scores)
    grid = np.linspace(0.0, 15.0, 400)
    sf = model.sf(grid)
    assert np.all(np.diff(sf) <= 1e-12)
    assert sf[0] == pytest.approx(1.0)
    for t in (0.1, 0.5, 1.0, 2.0):
        assert float(model.sf(t)) == pytest.approx(float((scores >= t).mean()), abs=0.01)
    assert float(model.sf(np.inf)) == 0.0


def test_tail_model_of_a_handful_of_values_is_the_empirical_one() -> None:
    # A strict grammar: three distinct scores. Nothing to fit a tail to.
    scores = np.repeat([0.1, 0.4, 0.7], [150, 90, 60])
    model = TailModel.fit(scores)
    assert not model.fitted_tail
    assert model.sf([0.1, 0.4, 0.7]).tolist() == pytest.approx([1.0, 0.5, 0.2])
    assert model.isf(0.3) == pytest.approx(0.4)  # P(score > 0.4) = 0.2 <= 0.3
    assert model.isf(0.005) == pytest.approx(0.7)  # nothing above the largest
    # Past the data: rarer than 1 in n + 1, and rarer still further out (findings rank).
    past = model.sf([0.8, 1.8, 2.8])
    assert past[0] <= 1 / 301
    assert past[0] > past[1] > past[2] > 0


def test_tail_model_round_trips_through_json() -> None:
    import json

    model = TailModel.fit(exponential_scores(500, seed=4))
    again = TailModel.from_dict(json.loads(json.dumps(model.to_dict())))
    t = np.array([0.0, 0.5, 2.0, 6.0, 12.0])
    np.testing.assert_allclose(again.sf(t), model.sf(t), rtol=1e-5)
    with pytest.raises(ValueError):
        TailModel.from_dict({**model.to_dict(), "levels": [1.0]})


def test_tail_model_refuses_empty_or_infinite_scores() -> None:
    with pytest.raises(ValueError):
        TailModel.fit(np.zeros(0))
    with pytest.raises(ValueError):
        TailModel.fit(np.array([1.0, np.inf]))


def test_bootstrap_interval_covers_the_true_rate() -> None:
    # 1,000 sessions, 1% ruled (always flagged), scores exponential; cut at exp(-t) = 0.4%.
    rng = np.random.default_rng(5)
    cut = -math.log(0.004)
    truth = 0.01 + 0.99 * 0.004
    covered = 0
    for seed in range(10):
        scores = exponential_scores(1000, seed=10 + seed)
        ruled = np.random.default_rng(seed).uniform(size=1000) < 0.01
        low, high = bootstrap_rate(scores, ruled, cut, rng, replicates=100)
        assert 0.0 <= low <= high <= 1.0
        covered += low <= truth <= high
    assert covered >= 8


def test_binomial_interval() -> None:
    low, high = binomial_interval(0, 100)
    assert low == 0.0 and 0.02 < high < 0.05  # the rule of three, about
    low, high = binomial_interval(50, 100)
    assert low < 0.5 < high and high - low < 0.25
    assert binomial_interval(0, 0) == (0.0, 1.0)
