"""Parameter-value models: feature extraction, the robust and LSTM models, persistence.

The LSTM tests train tiny networks (8 units, few epochs) on synthetic series whose normal
behaviour is known, so that injected anomalies have an exact expected size.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from logwarden.models.params import (
    KeySeries,
    ParamModelConfig,
    ParamModels,
    build_series,
    counter_positions,
    numeric_value,
)
from logwarden.records import Event, Line, Param, Record
from logwarden.sessions import Session

TINY = {"hidden": 8, "epochs": 15, "min_samples": 100}


def P(value: str, kind: str) -> Param:
    return Param(value, kind)


# --- numeric_value -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("42", "int", 42.0),
        ("-7", "int", -7.0),
        ("0.25", "float", 0.25),
        ("1e3", "float", 1000.0),
        ("5.2 KB", "size", 5200.0),
        ("512B", "size", 512.0),
        ("1.5GiB", "size", 1.5 * 1024**3),
        ("10 bytes", "size", 10.0),
        ("250ms", "duration", 0.25),
        ("1.5s", "duration", 1.5),
        ("2min", "duration", 120.0),
        ("3h", "duration", 10800.0),
        ("20us", "duration", 20e-6),
    ],
)
def test_numeric_value_converts_units(value: str, kind: str, expected: float) -> None:
    got = numeric_value(P(value, kind))
    assert got is not None
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("blk_123", "id"),
        ("10.0.0.1", "ip"),
        ("0xff", "hex"),
        ("/var/log/x", "path"),
        ("node1.example.com", "host"),
        ("hello", "text"),
        ("12:30:01", "time"),
        ("5 parsecs", "size"),  # unknown unit
        ("1" * 400, "int"),  # overflows to inf
        ("abc", "int"),
    ],
)
def test_numeric_value_none_for_non_measures(value: str, kind: str) -> None:
    assert numeric_value(P(value, kind)) is None


# --- features ------------------------------------------------------------------------------


def _event(key: int, params: list[Param]) -> Event:
    rec = Record(Line("", "x", 0, 1), "", {}, None)
    return Event(rec, key, "", params)


def test_build_series_layout_missing_params_and_elapsed() -> None:
    s1 = Session(
        "a",
        events=[
            _event(1, [P("blk_1", "id"), P("10", "int"), P("5 KB", "size")]),
            _event(2, [P("/tmp/x", "path")]),
            _event(1, [P("blk_1", "id"), P("11", "int"), P("6 KB", "size")]),
        ],
        elapsed=[0.0, 1.5, None],
    )
    s2 = Session(
        "b",
        events=[
            # the size is missing ("-") and the count is there: NaN in the size dim only
            _event(1, [P("blk_2", "id"), P("12", "int"), P("-", "text")]),
            _event(1, [P("blk_2", "id"), P("13", "int")]),  # a parameter missing
        ],
        elapsed=[0.0, 2.0],
    )
    series = build_series([s1, s2], by_predecessor=False)
    k1 = series[(1, None)]
    # Layout: the id at 0 is not a feature; the int at 1 and the size at 2 are.
    assert k1.positions == (1, 2)
    assert k1.dim == 3
    want = [
        [0.0, 10.0, 5000.0],
        [math.nan, 11.0, 6000.0],
        [0.0, 12.0, math.nan],
        [2.0, 13.0, math.nan],
    ]
    np.testing.assert_array_equal(k1.values, np.array(want))
    assert k1.refs.tolist() == [[0, 0], [0, 2], [1, 0], [1, 1]]
    assert k1.irregular == 2
    # A key without numeric parameters is modelled on elapsed time alone.
    assert series[(2, None)].positions == ()
    assert series[(2, None)].values.tolist() == [[1.5]]


def test_build_series_splits_by_predecessor() -> None:
    """Units (key, predecessor) with min_samples entries; rarer predecessors share (key, None)."""
    sessions = []
    for i in range(6):
        # 1 -> 2 (always), then 3 -> 2 in most sessions, 4 -> 2 once
        mid = 4 if i == 0 else 3
        events = [_event(1, []), _event(2, []), _event(mid, []), _event(2, [])]
        sessions.append(Session(str(i), events=events, elapsed=[0.0, 1.0, 0.1, 0.01 * i]))
    series = build_series(sessions, min_samples=5)
    assert set(series) == {(1, 0), (2, 1), (2, 3), (2, None), (3, 2), (4, None)}
    assert series[(2, 3)].values[:, 0].tolist() == pytest.approx([0.01 * i for i in range(1, 6)])
    assert series[(2, None)].refs.tolist() == [[0, 3]]  # after the rare predecessor 4
    assert series[(2, 1)].prev == 1 and series[(2, 1)].unit == (2, 1)
    # Scoring with a fitted model's units: pairs that are not units go to (key, None).
    again = build_series(sessions, units={(2, 1)})
    assert set(again) == {(1, None), (2, 1), (2, None), (3, None), (4, None)}
    assert len(again[(2, None)]) == 6


def test_build_series_uses_given_layout() -> None:
    s = Session("a", events=[_event(1, [P("3", "int"), P("4", "int")])], elapsed=[0.0])
    k = build_series([s], layouts={1: (1,)})[(1, None)]
    assert k.positions == (1,)
    assert k.values.tolist() == [[0.0, 4.0]]


# --- robust model --------------------------------------------------------------------------


def _series(values: np.ndarray, key: int = 1, positions: tuple[int, ...] = (0,)) -> KeySeries:
    return KeySeries(key, positions, values, np.zeros((len(values), 2), np.int64))


def test_robust_model_on_small_series() -> None:
    rng = np.random.default_rng(3)
    # 40 entries: elapsed around 1 s, a count around 100 with sd 5 (fewer than min_samples).
    train = np.stack([rng.normal(1.0, 0.05, 40), rng.normal(100, 5, 40)], axis=1)
    models = ParamModels(ParamModelConfig(**TINY)).fit({1: _series(train)})
    test = np.array([[1.0, 100.0], [1.0, 200.0], [math.nan, 98.0], [math.nan, math.nan]])
    sc = models.score({1: _series(test)})[1]
    assert sc.model == "robust"
    assert sc.anomalous.tolist() == [False, True, False, False]
    assert sc.dim.tolist()[1] == 1 and sc.dim.tolist()[3] == -1
    assert sc.observed[1] == 200.0
    med = float(np.median(train[:, 1]))
    assert sc.expected[1] == pytest.approx(med)
    # 100 above a spread of about 5: near 20 sigmas (MAD estimate of a sample of 40)
    assert 12 < sc.sigmas[1] < 30


def test_constant_dimensions_do_not_divide_by_zero() -> None:
    const = np.tile([[0.5, 7.0]], (150, 1))
    for n in (30, 150):  # robust and lstm
        models = ParamModels(ParamModelConfig(**TINY)).fit({1: _series(const[:n])})
        # A constant dimension gets std 1 (in its own units): 7 -> 20 is 13 "sigmas".
        test = np.array([[0.5, 7.0], [0.5, 20.0]])
        sc = models.score({1: _series(test)})[1]
        assert np.all(np.isfinite(sc.error))
        assert sc.anomalous.tolist() == [False, True], n
        assert sc.sigmas[1] == pytest.approx(13.0, abs=0.1)
        assert sc.dim[1] == 1 and sc.expected[1] == pytest.approx(7.0, abs=0.05)


def test_layout_mismatch_is_an_error() -> None:
    models = ParamModels(ParamModelConfig(**TINY)).fit({1: _series(np.ones((10, 2)))})
    with pytest.raises(ValueError, match="layout"):
        models.score({1: _series(np.ones((3, 3)), positions=(0, 1))})


def test_unknown_key_is_not_scored() -> None:
    models = ParamModels(ParamModelConfig(**TINY)).fit({1: _series(np.ones((10, 2)))})
    sc = models.score({9: _series(np.ones((2, 2)), key=9)})[9]
    assert sc.model == "none" and not sc.anomalous.any()


# --- LSTM model ----------------------------------------------------------------------------


def _normal(n: int, seed: int) -> np.ndarray:
    """elapsed ~ lognormal(median 0.2 s, sigma 0.3), size ~ normal(5000, 300)."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.lognormal(math.log(0.2), 0.3, n), rng.normal(5000, 300, n)], axis=1)


@pytest.fixture(scope="module")
def fitted() -> ParamModels:
    cfg = ParamModelConfig(**TINY)
    return ParamModels(cfg).fit({1: _series(_normal(1000, 1))})


def test_lstm_flags_injected_anomalies_and_few_normals(fitted: ParamModels) -> None:
    normal = _normal(4000, 2)
    sc = fitted.score({1: _series(normal)})[1]
    assert sc.model == "lstm"
    assert sc.anomalous.mean() < 0.01  # 99.9% interval: few false positives

    bad = normal.copy()
    slow = np.arange(0, 4000, 100)
    big = np.arange(50, 4000, 100)
    bad[slow, 0] *= 10  # a step 10x slower
    bad[big, 1] *= 20  # a size 20x out of range
    sc = fitted.score({1: _series(bad)})[1]
    assert sc.anomalous[slow].mean() >= 0.9
    assert sc.anomalous[big].all()
    assert (sc.dim[slow][sc.anomalous[slow]] == 0).all()
    assert (sc.dim[big] == 1).all()
    np.testing.assert_array_equal(sc.observed[big], bad[big, 1])
    # expected sizes near the normal mean, and many sigmas away (20x of sd 300 -> ~300 sd)
    assert np.all(np.abs(sc.expected[big] - 5000) < 600)
    assert np.all(sc.sigmas[big] > 100)
    assert np.all(sc.sigmas[slow] > 3)  # slower: positive deviation


def test_missing_dims_are_skipped(fitted: ParamModels) -> None:
    v = _normal(50, 4)
    v[10, 1] = math.nan
    v[20, 0] = math.nan
    v[30] = math.nan
    v[10, 0] *= 10  # the slow step is still seen with its size missing
    sc = fitted.score({1: _series(v)})[1]
    assert sc.anomalous[10] and sc.dim[10] == 0
    assert sc.dim[30] == -1 and not sc.anomalous[30]
    assert sc.dim[20] == 1 and np.isfinite(sc.error[20])


def test_state_round_trip_gives_identical_scores(fitted: ParamModels) -> None:
    import json

    meta, arrays = fitted.to_state()
    meta = json.loads(json.dumps(meta))
    back = ParamModels.from_state(meta, {k: v.copy() for k, v in arrays.items()})
    s = _series(_normal(300, 5))
    a = fitted.score({1: s})[1]
    b = back.score({1: s})[1]
    for name in ("anomalous", "dim", "expected", "observed", "sigmas", "error"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.threshold == b.threshold
    with pytest.raises(ValueError):
        ParamModels.from_state({**meta, "version": 99}, arrays)
    with pytest.raises(ValueError):
        ParamModels.from_state(meta, {})  # weights missing


def test_training_is_deterministic_with_a_seed(fitted: ParamModels) -> None:
    again = ParamModels(ParamModelConfig(**TINY)).fit({1: _series(_normal(1000, 1))})
    _, a = fitted.to_state()
    _, b = again.to_state()
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    other = ParamModels(ParamModelConfig(**{**TINY, "seed": 1})).fit({1: _series(_normal(1000, 1))})
    name = "1<-*/out.weight"  # unit (1, None)
    assert not np.array_equal(other.to_state()[1][name], a[name])


def test_numpy_inference_matches_torch(fitted: ParamModels) -> None:
    import torch

    from logwarden.models.numpy_nets import ParamNetNumpy

    _, arrays = fitted.to_state()
    w = {k.split("/", 1)[1]: v for k, v in arrays.items()}
    lstm = torch.nn.LSTM(2, 8, 1, batch_first=True)
    out = torch.nn.Linear(8, 2)
    lstm.load_state_dict({k[5:]: torch.tensor(v) for k, v in w.items() if k.startswith("lstm.")})
    out.load_state_dict({k[4:]: torch.tensor(v) for k, v in w.items() if k.startswith("out.")})
    x = np.random.default_rng(0).normal(size=(20, 5, 2)).astype(np.float32)
    with torch.no_grad():
        o, _ = lstm(torch.tensor(x))
        ref = out(o[:, -1]).numpy()
    np.testing.assert_allclose(ParamNetNumpy(w, 1).predict(x), ref, rtol=1e-4, atol=1e-5)


def test_distinct_rows_groups_equal_bytes_and_survives_collisions() -> None:
    from logwarden.models.numpy_nets import distinct_rows

    rng = np.random.default_rng(3)
    base = (rng.integers(0, 40, size=(50, 6)) / 7).astype(np.float32)
    base[1, 2], base[2, 2], base[3, 2] = np.nan, 0.0, -0.0  # NaN equals NaN; 0.0 != -0.0
    base[4] = base[3]
    base[4, 2] = 0.0  # equal values, other bytes
    rows = base[rng.integers(0, len(base), 400)]
    rows[:5] = base[:5]
    rows[-1] = base[1]
    rows[-2] = base[1]

    def check(mix: int | None = None) -> None:
        first, inverse = distinct_rows(rows) if mix is None else distinct_rows(rows, mix)
        raw = [r.tobytes() for r in rows]
        assert len(first) == len(set(raw))
        assert [raw[i] for i in first[inverse]] == raw  # every row's group is its own bytes
        assert len({raw[i] for i in first}) == len(first)

    check()
    assert distinct_rows(rows)[1][-1] == distinct_rows(rows)[1][-2]
    # Every row hashed alike (a collision everywhere): the check falls back to the bytes.
    check(mix=0)


def test_confidence_levels() -> None:
    assert ParamModelConfig(confidence=0.999).z == pytest.approx(3.2905, abs=1e-3)
    assert ParamModelConfig(confidence=0.99).z == pytest.approx(2.5758, abs=1e-3)
    assert ParamModelConfig(confidence=0.98).z == pytest.approx(2.3263, abs=1e-3)
    with pytest.raises(ValueError):
        ParamModelConfig(confidence=1.0)


def test_faster_elapsed_is_not_an_anomaly_unless_asked(fitted: ParamModels) -> None:
    v = _normal(300, 6)
    fast = np.arange(10, 300, 30)
    v[fast, 0] /= 50  # 50x faster than usual
    assert not fitted.score({1: _series(v)})[1].anomalous[fast].any()
    sym = ParamModels(ParamModelConfig(**TINY, slower_only=False)).fit(
        {1: _series(_normal(1000, 1))}
    )
    assert sym.score({1: _series(v)})[1].anomalous[fast].mean() >= 0.9


def test_small_units_bound_deviations_with_student_t() -> None:
    """A robust unit (fewer than min_samples entries) of one dimension flags beyond
    Student's t at n - 1 degrees of freedom, widened by sqrt(1 + 1/n) for a new value."""
    rng = np.random.default_rng(5)
    cfg = ParamModelConfig(**{**TINY, "min_samples": 10_000})
    # Upper 0.0005 quantiles (the 0.999 interval) from tables; at 5000 degrees of freedom
    # nearly the normal's 3.2905.
    tables = [(6, 6.869, 0.01), (11, 4.587, 0.01), (20, 3.883, 0.01), (61, 3.460, 0.01)]
    for n, want, tol in [*tables, (5001, 3.2925, 3e-4)]:
        elapsed = rng.lognormal(0.0, 0.3, size=(n, 1))
        meta, _ = ParamModels(cfg).fit({1: _series(elapsed, positions=())}).to_state()
        unit = meta["units"]["1<-*"]
        assert unit["model"] == "robust"
        assert unit["threshold"] / math.sqrt(1 + 1 / n) == pytest.approx(want, rel=tol), n


def test_mixture_errors_raise_the_bound_above_the_gaussian() -> None:
    """A size that is the block size 80% of the time, anything below it otherwise: the
    Gaussian on the errors would flag the small normal sizes; the tail bound does not."""
    rng = np.random.default_rng(7)
    n = 3000
    full = 64e6
    size = np.where(rng.random(n) < 0.8, full, rng.uniform(4096, full, n))
    el = rng.lognormal(math.log(0.5), 0.3, n)
    models = ParamModels(ParamModelConfig(**TINY)).fit({1: _series(np.stack([el, size], 1))})
    info = models.models[(1, None)].info
    assert info["tail_bound"] > info["gaussian_bound"]
    test_size = np.where(rng.random(n) < 0.8, full, rng.uniform(4096, full, n))
    test = np.stack([rng.lognormal(math.log(0.5), 0.3, n), test_size], 1)
    sc = models.score({1: _series(test)})[1]
    assert sc.anomalous.mean() < 0.003
    test[::100, 1] = full * 20  # out of range
    assert models.score({1: _series(test)})[1].anomalous[::100].all()


def test_state_refuses_weights_of_no_unit(fitted: ParamModels) -> None:
    meta, arrays = fitted.to_state()
    with pytest.raises(ValueError, match="no unit"):
        ParamModels.from_state(meta, {**arrays, "9<-*/out.bias": np.zeros(2, np.float32)})
    partial = {k: v for k, v in arrays.items() if not k.endswith("out.bias")}
    with pytest.raises(ValueError):
        ParamModels.from_state(meta, partial)


def test_small_units_flag_only_values_outside_their_training_range() -> None:
    """A rare key whose size is the block size 80% of the time and anything below it
    otherwise: MAD and a Gaussian both put the small sizes far out, the range does not."""
    rng = np.random.default_rng(11)
    full = 64e6

    def sample(n: int) -> np.ndarray:
        size = np.where(rng.random(n) < 0.8, full, rng.uniform(4096, full, n))
        return np.stack([rng.lognormal(math.log(0.5), 0.3, n), size], 1)

    for n in (60, 400):  # robust, small LSTM
        models = ParamModels(ParamModelConfig(**TINY)).fit({1: _series(sample(n))})
        test = sample(2000)
        lo, hi = models.models[(1, None)].info["low"][1], models.models[(1, None)].info["high"][1]
        inside = (test[:, 1] >= lo) & (test[:, 1] <= hi)
        sc = models.score({1: _series(test)})[1]
        assert not (sc.anomalous & inside & (sc.dim == 1)).any(), n
        assert sc.anomalous.mean() < 0.01, n
        test[::50, 1] = full * 20
        assert models.score({1: _series(test)})[1].anomalous[::50].all(), n


def test_a_value_beyond_the_training_range_is_explained_by_that_range() -> None:
    """A small unit flags only values beyond its training range (and a margin): the
    explanation says "above the training range [lo, hi]" and the bound passed, not only
    the sigmas (a small LSTM's were +1.0 for a value just past its range)."""
    from logwarden.detect import DeepLog, Verdict

    rng = np.random.default_rng(4)
    for n in (60, 400):  # robust, small LSTM
        train = np.stack([rng.lognormal(math.log(0.5), 0.3, n), rng.uniform(4, 1026, n)], 1)
        models = ParamModels(ParamModelConfig(**TINY)).fit({1: _series(train)})
        m = models.models[(1, None)]
        lo, hi = m.info["low"][1], m.info["high"][1]
        assert models.beyond_range((1, None), 1, (lo + hi) / 2) is None
        assert models.beyond_range((9, None), 1, 1e9) is None  # no such unit
        got = models.beyond_range((1, None), 1, hi * 10)
        assert got is not None and got["range"] == [lo, hi]
        assert hi < got["limit"] < hi * 10
        low = models.beyond_range((1, None), 1, -1e6)
        assert low is not None and low["limit"] < lo
        test = np.array([[0.5, hi * 10]])
        sc = models.score({1: _series(test)})[1]
        assert sc.anomalous.tolist() == [True] and int(sc.dim[0]) == 1, n
        est = DeepLog()
        est.params_, est.templates_ = models, {"E1": "task <*> done"}
        line = Line("task 10260 done", "", 0, 1)
        session = Session("s", [Event(Record(line, "task 10260 done", {}, None, True), 1, "",
                                     [P(f"{hi * 10:g}", "int")])])  # fmt: skip
        d = est.deviation(sc, 0, ["E1"], session, 0)
        assert d["range"] == [lo, hi] and d["limit"] == got["limit"]
        text = Verdict("s", True, 1, 1.0, "parameter", "params", 0, deviation=d).describe()
        assert f"above the training range [{lo:.6g}, {hi:.6g}] and its margin" in text, text
        assert f"({got['limit']:.6g})" in text


def test_entry_scorer_gives_score_with_history_values_across_units() -> None:
    """The stream's one-pass scorer: every entry of a mix of units (contextual and small
    LSTMs, robust units, logged dimensions, 1 to 3 dimensions), in any order, with
    histories of any length and missing values, gets the flag and tail probability
    ``score_with_history`` gives it unit by unit."""
    rng = np.random.default_rng(5)

    def sample(n: int, d: int) -> np.ndarray:
        cols = [rng.lognormal(math.log(0.2), 0.3, n)]  # elapsed: skewed, logged
        cols += [rng.normal(100.0 * (j + 1), 10.0, n) for j in range(d - 1)]
        return np.stack(cols, axis=1)

    sizes = {1: (400, 2), 2: (150, 2), 3: (40, 2), 4: (300, 3), 5: (50, 1)}
    series = {
        k: _series(sample(n, d), key=k, positions=tuple(range(d - 1)))
        for k, (n, d) in sizes.items()
    }
    # Units of 300 entries and more are contextual; fewer than 100: robust.
    models = ParamModels(ParamModelConfig(**TINY, min_contextual=300)).fit(series)
    kinds = [models.models[(k, None)].kind for k in sizes]
    assert kinds == ["lstm", "lstm", "robust", "lstm", "robust"]
    w = models.config.window
    scorer = models.entry_scorer()
    units, values, histories = [], [], []
    for unit in models.models:
        d = sizes[unit[0]][1]
        test = sample(60, d)
        test[::7] *= 30  # out of range: flagged
        test[3, 0] = math.nan
        for i in range(len(test)):
            hist = sample(int(rng.integers(0, w + 1)), d)
            if len(hist):
                hist[0, -1] = math.nan
            units.append(scorer.index[unit])
            values.append(test[i].tolist())
            histories.append(hist.tolist())
    order = rng.permutation(len(units))
    units = [units[i] for i in order]
    values = [values[i] for i in order]
    histories = [histories[i] for i in order]
    anomalous, log10_p = scorer.score(units, values, histories)
    assert anomalous.sum() >= 5 * len(models.models)  # the out-of-range rows
    for k, unit in enumerate(scorer.units):
        rows = [i for i, u in enumerate(units) if u == k]
        d = scorer.dim[k]
        hist = np.full((len(rows), w, d), np.nan)
        for j, i in enumerate(rows):
            if histories[i]:
                hist[j, w - len(histories[i]) :] = histories[i]
        if models.models[unit].kind != "lstm":
            hist = np.zeros((len(rows), 0, d))
        sc = models.score_with_history(unit, np.array([values[i] for i in rows]), hist)
        np.testing.assert_array_equal(anomalous[rows], sc.anomalous, err_msg=str(unit))
        # The stacked LSTM's float32 sums may differ in the last bit from one network's.
        np.testing.assert_allclose(log10_p[rows], sc.log10_p, rtol=1e-5, err_msg=str(unit))
        # explain: the same flags and probabilities as score, exactly, and the verdict's
        # fields as score_with_history gives them.
        ex = scorer.explain(k, [values[i] for i in rows], [histories[i] for i in rows])
        np.testing.assert_array_equal(ex.anomalous, anomalous[rows], err_msg=str(unit))
        np.testing.assert_array_equal(ex.log10_p, log10_p[rows], err_msg=str(unit))
        np.testing.assert_array_equal(ex.dim, sc.dim, err_msg=str(unit))
        np.testing.assert_allclose(ex.expected, sc.expected, rtol=1e-5, err_msg=str(unit))
    # score_explained: the same flags, and every flagged entry (only those) explained with
    # the numbers explain gives it, whatever else was scored with it.
    anomalous2, log10_p2, explained = scorer.score_explained(units, values, histories)
    np.testing.assert_array_equal(anomalous2, anomalous)
    np.testing.assert_array_equal(log10_p2, log10_p)
    assert sorted(explained) == np.flatnonzero(anomalous).tolist()
    for i, (sc, j) in explained.items():
        alone = scorer.explain(units[i], [values[i]], [histories[i]])
        assert sc.anomalous[j] and alone.anomalous[0]
        for field in ("dim", "expected", "observed", "sigmas", "error", "log10_p"):
            got, want = getattr(sc, field)[j], getattr(alone, field)[0]
            np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=field)


def test_tails_of_a_table_are_the_tails_of_its_whole_series() -> None:
    """``tails_of`` (the history a chunked scan passes on, built from each unit's last
    entries only) equals ``tails(series(...))`` chunk after chunk: units by predecessor and
    the rest, rare units absent from a chunk, mixed kinds, missing timestamps, and chunks
    whose table holds lines of other sessions."""
    from logwarden.sessions import FlatValues, SessionTable

    rng = np.random.default_rng(11)
    ids, members, keys, stamps, flat, starts, kinds = [], [], [], [], [], [0], []
    t = 0.0
    for s in range(400):
        rows = []
        for _ in range(int(rng.integers(1, 7))):
            key = int(rng.choice([1, 2, 3, 4], p=[0.45, 0.3, 0.2, 0.05]))
            t += float(rng.exponential(0.5))
            stamps.append(None if rng.random() < 0.05 else t)
            if key == 1:  # an int, now and then a word in its place (mixed kinds)
                vals = ["x"] if rng.random() < 0.1 else [str(int(rng.integers(0, 500)))]
                kinds.append(("text",) if vals == ["x"] else ("int",))
            elif key == 2:
                vals, kinds_k = [f"{rng.normal(5, 1):.3f}", "blk"], ("float", "id")
                kinds.append(kinds_k)
            else:
                vals = []
                kinds.append(())
            flat.extend(vals)
            starts.append(len(flat))
            rows.append(len(keys))
            keys.append(key)
        ids.append(f"s{s}")
        members.append(rows)
    values = FlatValues(flat, starts, {})
    texts = [f"line {r}" for r in range(len(keys))]

    def table(a: int, b: int) -> SessionTable:
        return SessionTable(
            ids[a:b], members[a:b], texts, str, keys, stamps, values, kinds, {}, stamps
        )

    series = build_series(table(0, 200), by_predecessor=True, min_samples=40)
    models = ParamModels(ParamModelConfig(**{**TINY, "epochs": 2, "min_samples": 40}))
    models.fit(series)
    assert any(p is not None for _, p in models.models)  # units by predecessor too
    want: dict | None = None
    got: dict | None = None
    for a, b in [(200, 230), (230, 231), (231, 300), (300, 400)]:
        want = models.tails(models.series(table(a, b)), want)
        got = models.tails_of(table(a, b), got)
        assert want.keys() == got.keys()
        for unit in want:
            np.testing.assert_array_equal(got[unit], want[unit])


# --- counters ------------------------------------------------------------------------------


def _job_windows(first: int, count: int, seed: int, size: int = 10) -> list[Session]:
    """Windows of a log like Spark's: ``Got assigned task <*>`` (key 1, a task counter) and
    ``Finished task (TID <*>) in <*> ms`` (key 2: the counter again, out of order since
    tasks finish concurrently, and a latency that creeps up with noise around its trend)."""
    rng = np.random.default_rng(seed)
    task = first * size // 2
    sessions = []
    for w in range(first, first + count):
        events, elapsed = [], []
        for _ in range(size // 2):
            done = max(0, task + int(rng.integers(-3, 4)))
            ms = rng.normal(200.0 + 0.05 * task, 20.0)
            events.append(_event(1, [P(str(task), "int")]))
            events.append(_event(2, [P(str(done), "int"), P(f"{ms:.0f}", "int")]))
            elapsed += [float(rng.lognormal(math.log(0.01), 0.3)) for _ in range(2)]
            task += 1
        elapsed[0] = 0.0
        sessions.append(Session(f"w{w}", events=events, elapsed=elapsed))
    return sessions


def test_counters_are_learnt_and_not_bounded_after_a_time_split() -> None:
    """A task counter grows past its training range in every later window: it is an
    identifier, not a measurement, so it must not make them anomalous; the latency that
    merely trends stays a feature and a slow step is still flagged."""
    import json

    train, later = _job_windows(0, 120, 1), _job_windows(120, 80, 2)
    models = ParamModels(ParamModelConfig(**TINY))
    models.fit(models.build(train))
    flagged = {u: int(sc.anomalous.sum()) for u, sc in models.score(models.series(later)).items()}
    assert sum(flagged.values()) <= 2, flagged
    assert models.counters == {1: (0,), 2: (0,)}
    assert models.layouts == {1: (), 2: (1,)}  # the latency (position 1) is modelled
    # The decision travels with the state; a state from before counters has none.
    meta, arrays = models.to_state()
    back = ParamModels.from_state(json.loads(json.dumps(meta)), arrays)
    assert back.counters == models.counters and back.layouts == models.layouts
    old = {k: v for k, v in meta.items() if k != "counters"}
    assert ParamModels.from_state(old, arrays).counters == {}
    # A slow step (20x the latency) is still a parameter anomaly.
    slow = _job_windows(120, 1, 3)
    slow[0].events[5].params[1] = P("4000", "int")
    sc = models.score(models.series(slow))
    assert any(s.anomalous.any() for s in sc.values())


def test_counter_positions_need_growth_not_a_trend() -> None:
    rng = np.random.default_rng(5)
    n = 400
    order = np.arange(n, dtype=np.float64)
    columns = {
        1: order + rng.integers(-5, 6, n),  # a counter, values a little out of order
        2: order // 10,  # a stage number: runs of equal values, rising
        3: 200 + 0.5 * order + rng.normal(0, 20, n),  # a latency trending up, with noise
        4: order % 40,  # a sequence number that restarts in every session
        5: rng.normal(5000, 300, n),  # a size
        6: np.minimum(order, 15),  # rises, then stays: too few distinct values
    }
    values = np.column_stack([np.zeros(n)] + [columns[p] for p in sorted(columns)])
    assert counter_positions(values, sorted(columns)) == (1, 2)
    assert counter_positions(values[:15], sorted(columns)) == ()  # too few entries to judge
