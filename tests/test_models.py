"""The log-key model's building blocks, checked against naive references and PyTorch.

Training here is tiny (a handful of distinct windows, 1 layer of 16 units) so that the
whole file runs in a few seconds on 2 cores.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from logwarden.detect import DeepLog
from logwarden.models.keys import (
    END,
    FIRST_KEY,
    PAD,
    UNK,
    KeyModel,
    KeyModelConfig,
    KeyNetNumpy,
    Threshold,
    fit_key_model,
    session_rows,
    session_statistic,
)
from logwarden.models.nets import KeyNet
from synthetic import grammar as grammar_sessions

TINY = {"hidden": 16, "embedding": 8, "layers": 1, "epochs": 40, "device": "cpu"}


# --- session_rows ---------------------------------------------------------------------------


def naive_rows(sessions: list[list[int]], window: int) -> tuple[list[list[int]], list[int]]:
    rows: list[list[int]] = []
    offsets = [0]
    for s in sessions:
        padded = [PAD] * window + list(s) + [END]
        rows += [padded[i : i + window + 1] for i in range(len(s) + 1)]
        offsets.append(len(rows))
    return rows, offsets


def test_session_rows_small_example() -> None:
    rows, offsets = session_rows([np.array([5, 6, 7], dtype=np.int32)], 2)
    # Worked by hand: PAD PAD 5 6 7 END, windows of 2 and the key after them.
    assert rows.tolist() == [[PAD, PAD, 5], [PAD, 5, 6], [5, 6, 7], [6, 7, END]]
    assert offsets.tolist() == [0, 4]


def test_session_rows_empty_session_and_empty_batch() -> None:
    rows, offsets = session_rows([np.zeros(0, dtype=np.int32)], 3)
    assert rows.tolist() == [[PAD, PAD, PAD, END]]
    assert offsets.tolist() == [0, 1]
    rows, offsets = session_rows([], 3)
    assert rows.shape == (0, 4)
    assert offsets.tolist() == [0]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.lists(st.integers(FIRST_KEY, 40), max_size=15), max_size=8),
    st.integers(1, 6),
)
def test_session_rows_matches_naive(sessions: list[list[int]], window: int) -> None:
    arrays = [np.array(s, dtype=np.int32) for s in sessions]
    rows, offsets = session_rows(arrays, window)
    want_rows, want_offsets = naive_rows(sessions, window)
    assert rows.shape == (len(want_rows), window + 1)
    assert rows.tolist() == want_rows
    assert offsets.tolist() == want_offsets
    # len + 1 rows per session, the last one ending with END.
    for i, s in enumerate(sessions):
        assert offsets[i + 1] - offsets[i] == len(s) + 1
        assert rows[offsets[i + 1] - 1, -1] == END


# --- the NumPy forward pass against PyTorch -------------------------------------------------


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_numpy_forward_equals_torch_lstm(layers: int) -> None:
    torch.manual_seed(layers)
    n_outputs, embedding, hidden, window = 13, 5, 7, 6  # all different: catches transposes
    net = KeyNet(n_outputs, embedding, hidden, layers)
    with torch.no_grad():
        for p in net.parameters():
            # Larger than the default init so gates saturate and biases matter.
            p.normal_(0.0, 0.7)
    weights = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    rng = np.random.default_rng(layers)
    windows = rng.integers(0, n_outputs, size=(37, window))
    with torch.no_grad():
        want = torch.softmax(net(torch.as_tensor(windows, dtype=torch.long)), dim=1).numpy()
    got = KeyNetNumpy(weights, layers).probabilities(windows, batch=8)  # several batches
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


# --- scoring: distinct windows, and the probability and rank of each observed key ----------


def untrained_model(n_keys: int, window: int, seed: int, *, ties: bool = False) -> KeyModel:
    """A key model with random weights (1 layer of 4 units): scoring needs no training.
    ``ties``: the output ignores the LSTM and its biases take three values, so that many
    keys share a probability (a tie must not push a key down)."""
    rng = np.random.default_rng(seed)
    n_out, hidden, emb = n_keys + FIRST_KEY, 4, 3
    shapes = {
        "embed.weight": (n_out, emb),
        "lstm.weight_ih_l0": (4 * hidden, emb),
        "lstm.weight_hh_l0": (4 * hidden, hidden),
        "lstm.bias_ih_l0": (4 * hidden,),
        "lstm.bias_hh_l0": (4 * hidden,),
        "out.weight": (n_out, hidden),
        "out.bias": (n_out,),
    }
    weights = {k: rng.normal(0.0, 1.5, size=v).astype(np.float32) for k, v in shapes.items()}
    if ties:
        weights["out.weight"][:] = 0.0
        weights["out.bias"] = rng.integers(0, 3, size=n_out).astype(np.float32)
    config = KeyModelConfig(window=window, top_g=1, layers=1, hidden=hidden, embedding=emb)
    keys = [f"k{i}" for i in range(n_keys)]
    return KeyModel(config, keys, weights, Threshold("top_g", g=1))


def check_scores(model: KeyModel, sessions: list[list[str]]) -> None:
    """``score`` against references: each position's window from ``session_rows``, the
    probabilities of each window computed alone, the rank counted key by key."""
    h = model.config.window
    encoded = model.encode_many(sessions)
    rows, offsets = session_rows(encoded, h)
    scores = model.score(encoded, keep_probs=True)
    assert scores.probs is not None
    assert scores.offsets.tolist() == offsets.tolist()
    assert scores.target.tolist() == rows[:, h].tolist()
    # Distinct windows, sorted (shared prefixes stay together), one per position.
    want_windows = np.unique(rows[:, :h], axis=0) if len(rows) else rows[:, :h]
    assert scores.windows.tolist() == want_windows.tolist()
    assert scores.windows[scores.window_rows].tolist() == rows[:, :h].tolist()
    alone = [model.net.probabilities(w[None])[0] for w in scores.windows]
    np.testing.assert_allclose(scores.probs, np.array(alone).reshape(scores.probs.shape), atol=1e-6)
    for i, target in enumerate(rows[:, h].tolist()):
        p = scores.probs[scores.window_rows[i]]
        if target == UNK:
            assert (scores.prob[i], scores.rank[i]) == (0.0, model.vocab_size + 1)
            continue
        # PAD and UNK are never predicted, so they take no rank.
        better = sum(1 for k in range(len(p)) if k not in (PAD, UNK) and p[k] > p[target])
        assert scores.prob[i] == p[target]
        assert scores.rank[i] == better + 1


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([(5, 4), (5, 25), (28, 12), (28, 13)]),
    st.lists(st.lists(st.integers(0, 29), max_size=20), max_size=6),
    st.booleans(),
    st.integers(0, 2**16),
)
def test_scores_match_references(
    shape: tuple[int, int], drawn: list[list[int]], ties: bool, seed: int
) -> None:
    # (keys, window): windows packed into one integer (8 symbols x 4), too wide for it
    # (x 25), at the 62-bit limit (31 symbols take 5 bits, x 12 = 60) and just past it.
    n_keys, window = shape
    model = untrained_model(n_keys, window, seed, ties=ties)
    # Keys up to the largest index, and two the model does not know (UNK).
    sessions = [[f"k{k % (n_keys + 2)}" for k in s] for s in drawn]
    check_scores(model, sessions)


@pytest.mark.parametrize("window", [12, 13])
def test_scores_at_the_62_bit_packing_limit(window: int) -> None:
    # 31 symbols take 5 bits: 12 columns (60 bits) are packed into one integer, 13 are not;
    # long sessions so that every column, the first included, takes the largest values.
    rng = np.random.default_rng(window)
    model = untrained_model(28, window, seed=3)
    sessions = [[f"k{k}" for k in rng.integers(0, 30, size=150)] for _ in range(4)]
    check_scores(model, sessions)


def test_scores_with_more_distinct_pairs_than_one_chunk() -> None:
    # More distinct (window, observed key) pairs than one chunk of 65536.
    rng = np.random.default_rng(0)
    model = untrained_model(40, 3, seed=1)
    sessions = [[f"k{k}" for k in rng.integers(0, 40, size=1000)] for _ in range(100)]
    encoded = model.encode_many(sessions)
    scores = model.score(encoded, keep_probs=True)
    assert scores.probs is not None
    pairs = np.unique(np.stack([scores.window_rows, scores.target]), axis=1).shape[1]
    assert pairs > 65536
    p = scores.probs[scores.window_rows, scores.target]
    masked = scores.probs.copy()
    masked[:, [PAD, UNK]] = -1
    assert np.array_equal(scores.prob, p)
    assert np.array_equal(scores.rank, (masked[scores.window_rows] > p[:, None]).sum(axis=1) + 1)


# --- training -------------------------------------------------------------------------------


def test_training_is_deterministic_with_a_seed() -> None:
    sessions = grammar_sessions(150, seed=0)
    cfg = KeyModelConfig(window=5, top_g=2, seed=7, **TINY)
    a = fit_key_model(sessions, cfg)
    b = fit_key_model(sessions, cfg)
    assert a.keys == b.keys == ["B", "C", "A", "D", "E"]  # by frequency
    assert a.weights.keys() == b.weights.keys()
    for name in a.weights:
        assert np.array_equal(a.weights[name], b.weights[name]), name
    # The seed is really used: another seed, other weights.
    c = fit_key_model(sessions, KeyModelConfig(window=5, top_g=2, seed=8, **TINY))
    assert not np.array_equal(a.weights["out.weight"], c.weights["out.weight"])


def test_fit_counts_windows_and_cross_fits_every_session() -> None:
    sessions = grammar_sessions(100, seed=1)
    model = fit_key_model(sessions, KeyModelConfig(window=4, **TINY))
    info = model.train_info
    assert info["sessions"] == 100
    # Windows = sum of (len + 1) over all sessions; the grammar has only 3 distinct
    # sessions, so few distinct windows.
    assert info["windows"] >= 100 * 6
    assert info["distinct_windows"] <= 3 * 10
    assert 1 <= info["epochs"] <= 40
    cal = info["calibration"]
    assert cal["folds"] == 5 and len(cal["fold_epochs"]) == 5
    assert model.threshold.mode == "probability"
    assert model.threshold.calibration_sessions == 100  # every session, none set aside


# --- the session statistic --------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted() -> KeyModel:
    cfg = KeyModelConfig(window=4, top_g=3, folds=0, **TINY)
    return fit_key_model(grammar_sessions(200, seed=2), cfg)


def random_model(n_keys: int, window: int, seed: int) -> KeyModel:
    """A key model with random weights: diverse probabilities, no training needed."""
    rng = np.random.default_rng(seed)
    n_out, emb, hid = n_keys + FIRST_KEY, 6, 8

    def w(*shape: int) -> np.ndarray:
        return rng.normal(0.0, 1.0, size=shape).astype(np.float32)

    weights = {
        "embed.weight": w(n_out, emb),
        "lstm.weight_ih_l0": w(4 * hid, emb),
        "lstm.weight_hh_l0": w(4 * hid, hid),
        "lstm.bias_ih_l0": w(4 * hid),
        "lstm.bias_hh_l0": w(4 * hid),
        "out.weight": w(n_out, hid),
        "out.bias": w(n_out),
    }
    config = KeyModelConfig(window=window, layers=1, hidden=hid, embedding=emb, top_g=1)
    keys = [f"K{i}" for i in range(n_keys)]
    return KeyModel(config, keys, weights, Threshold("top_g", g=1))


def random_sessions(model: KeyModel, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.integers(FIRST_KEY, FIRST_KEY + len(model.keys), size=int(rng.integers(1, 9))).astype(
            np.int32
        )
        for _ in range(n)
    ]


def test_session_statistic_matches_a_naive_reference() -> None:
    # -log10 of the lowest probability over the positions a probability cut may flag: not
    # an unseen key, not after one (UNK in the window), not the model's first choice.
    model = random_model(12, window=3, seed=4)
    sessions = random_sessions(model, 40, seed=5)
    sessions[3] = np.array([FIRST_KEY, UNK, FIRST_KEY + 1, FIRST_KEY, FIRST_KEY], np.int32)
    sessions[4] = np.zeros(0, np.int32)
    scores = model.score(sessions)
    got = session_statistic(scores)
    h = model.config.window
    for i, s in enumerate(sessions):
        padded = [PAD] * h + s.tolist() + [END]
        low = 1.0
        for t in range(len(s) + 1):
            window, target = padded[t : t + h], padded[t + h]
            p = model.net.probabilities(np.array([window], np.int32))[0]
            ranked = sorted((p[k] for k in range(len(p)) if k not in (PAD, UNK)), reverse=True)
            if target == UNK or UNK in window or p[target] >= ranked[0]:
                continue
            low = min(low, float(p[target]))
        assert got[i] == pytest.approx(-math.log10(max(low, 1e-45)), abs=1e-4), i
    assert np.isfinite(got).all()  # unseen keys and empty sessions included


def test_threshold_flags_rules() -> None:
    rank = np.array([1, 2, 3, 9])
    prob = np.array([0.5, 0.2, 0.01, 0.0], dtype=np.float32)
    assert Threshold("top_g", g=2).flags(rank, prob).tolist() == [False, False, True, True]
    assert Threshold("probability", tau=0.2).flags(rank, prob).tolist() == [
        False,
        False,
        True,
        True,
    ]
    # The model's most likely key is never the anomaly, however unsure the model is.
    assert Threshold("probability", tau=0.6).flags(rank, prob).tolist() == [
        False,
        True,
        True,
        True,
    ]


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 0}, "window"),
        ({"top_g": 0}, "top_g"),
        ({"layers": 0}, "layers"),
        ({"hidden": 0}, "hidden"),
        ({"embedding": 0}, "embedding"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"folds": 1}, "folds"),
        ({"folds": -1}, "folds"),
        ({"rule_share": 1.0}, "rule_share"),
        ({"rule_share": -0.1}, "rule_share"),
        ({"target_fpr": 0.0}, "target_fpr"),
        ({"target_fpr": 1.0}, "target_fpr"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_config_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KeyModelConfig(**kwargs)  # type: ignore[arg-type]


def test_fit_refuses_no_sessions_and_too_few_to_cross_fit() -> None:
    with pytest.raises(ValueError, match="no training sessions"):
        fit_key_model([], KeyModelConfig(**TINY))
    # 4 sessions for 5 folds: no fold model for every session, no automatic threshold.
    with pytest.raises(ValueError, match="folds"):
        fit_key_model(grammar_sessions(4, seed=0), KeyModelConfig(**TINY))
    with pytest.raises(ValueError, match="folds"):
        fit_key_model(grammar_sessions(40, seed=0), KeyModelConfig(folds=0, **TINY))
    # top-g needs no threshold: without folds it trains, with no false-positive estimate.
    model = fit_key_model(grammar_sessions(4, seed=0), KeyModelConfig(top_g=2, **TINY))
    assert model.threshold.expected_fpr is None
    assert model.calibration is not None and model.calibration.tail is None


def test_deeplog_exposes_every_config_hyperparameter() -> None:
    # DeepLog's constructor arguments are its hyperparameters; one missing from it cannot
    # be set by a user nor be recorded in a bundle's params.
    fields = set(KeyModelConfig.__dataclass_fields__)
    params = set(DeepLog().get_params())
    assert fields <= params, f"not settable through DeepLog: {sorted(fields - params)}"


# --- streaming scorer -----------------------------------------------------------------------


def test_window_probs_equals_batch_scoring(fitted: KeyModel) -> None:
    session = fitted.encode(["A", "B", "C", "D", "E"])
    scores = fitted.score([session], keep_probs=True)
    assert scores.probs is not None
    h = fitted.config.window
    padded = np.concatenate([np.full(h, PAD, np.int32), session])
    for t in range(len(session) + 1):
        got = fitted.window_probs(padded[t : t + h])
        want = scores.probs[scores.window_rows[t]]
        np.testing.assert_allclose(got, want, atol=1e-6)
        # And the cached answer is the same.
        np.testing.assert_array_equal(fitted.window_probs(padded[t : t + h]), got)


@pytest.mark.parametrize(("k", "n"), [(8, 64), (16, 64), (32, 128), (64, 256)])
def test_a_row_s_product_is_the_same_bits_at_any_place_in_the_batch(k: int, n: int) -> None:
    """BLAS kernels may round a row by where it sits in the product (OpenBLAS's Haswell
    kernels did, in 64-row products): ``rows_times`` gives each row the same bits alone,
    first, last or anywhere in a batch of any size."""
    from logwarden.models.numpy_nets import pad_columns, rows_times

    rng = np.random.default_rng(k)
    w = pad_columns(rng.standard_normal((k, n)).astype(np.float32))
    a = rng.standard_normal((300, k)).astype(np.float32)
    alone = np.concatenate([rows_times(a[i : i + 1], w) for i in range(len(a))])
    for size in (2, 9, 64, 100, 300):
        rows = rng.permutation(len(a))[:size]
        assert np.array_equal(rows_times(a[rows], w), alone[rows]), size


@pytest.mark.parametrize(("hidden", "n_out", "layers"), [(64, 33, 2), (18, 7, 1), (16, 40, 1)])
def test_a_window_s_probabilities_do_not_depend_on_the_windows_beside_it(
    hidden: int, n_out: int, layers: int
) -> None:
    """Every window's probabilities are the same bits alone, in a small batch or in a large
    one: a log scored by workers, each with its own cache of windows, gives what one
    process gives. (OpenBLAS multiplies one row another way, and small batches of an odd
    width another way again: a vocabulary of 33 keys differed in the last bits.)"""
    from logwarden.models.numpy_nets import KeyNetNumpy, ParamNetNumpy

    rng = np.random.default_rng(hidden)
    shapes = {"embed.weight": (n_out, 8), "out.weight": (n_out, hidden), "out.bias": (n_out,)}
    for k in range(layers):
        shapes[f"lstm.weight_ih_l{k}"] = (4 * hidden, 8 if k == 0 else hidden)
        shapes[f"lstm.weight_hh_l{k}"] = (4 * hidden, hidden)
        shapes[f"lstm.bias_ih_l{k}"] = (4 * hidden,)
        shapes[f"lstm.bias_hh_l{k}"] = (4 * hidden,)
    weights = {k: rng.normal(0.0, 0.5, size=v).astype(np.float32) for k, v in shapes.items()}
    net = KeyNetNumpy(weights, layers)
    windows = np.unique(rng.integers(0, n_out, size=(3000, 6)), axis=0).astype(np.int32)
    whole = net.probabilities(windows)
    for size in (1, 2, 3, 17, 130, 1000):
        part = np.sort(rng.choice(len(windows), size=size, replace=False))
        assert np.array_equal(net.probabilities(windows[part]), whole[part]), size
    # The parameter networks too: each entry's prediction alone or among others.
    d = 3
    pw = {
        "lstm.weight_ih_l0": (4 * hidden, d),
        "lstm.weight_hh_l0": (4 * hidden, hidden),
        "lstm.bias_ih_l0": (4 * hidden,),
        "lstm.bias_hh_l0": (4 * hidden,),
        "out.weight": (d, hidden),
        "out.bias": (d,),
    }
    pnet = ParamNetNumpy(
        {k: rng.normal(0.0, 0.5, size=v).astype(np.float32) for k, v in pw.items()}, 1
    )
    x = rng.normal(size=(3000, 5, d))
    all_rows = pnet.predict(x)
    for size in (1, 2, 3, 17, 130, 1000):
        part = np.sort(rng.choice(len(x), size=size, replace=False))
        assert np.array_equal(pnet.predict(x[part]), all_rows[part]), size
    # Repeated histories are computed once (predict): the same bits as each alone, NaN
    # and -0.0 included.
    x[7] = np.nan
    x[8, 0, 0] = -0.0
    x[9] = x[8]
    x[9, 0, 0] = 0.0
    repeated = np.concatenate([x[:10], x[:10], x[5:12]])
    alone = np.stack([pnet.predict(row[None])[0] for row in repeated])
    assert np.array_equal(pnet.predict(repeated), alone, equal_nan=True)
