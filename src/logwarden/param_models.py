"""DeepLog's parameter-value models (section 3 of the method): performance and value anomalies.

For every log key, the entries of that key form a multivariate time series of *feature
vectors*, in time order across sessions (session order, then position in the session):

* dimension 0 is the **elapsed time** since the previous entry of the same session
  (``Session.elapsed``; 0.0 for a session's first entry, missing when a timestamp is);
* the other dimensions are the entry's **numeric parameters**, in template order: ints,
  floats, sizes (in bytes) and durations (in seconds), see ``numeric_value``.

Identifiers, IPs, hex values, paths, host names, timestamps and free text are *not*
features: their values name things rather than measure them, so a distance between two of
them means nothing (``blk_1`` is not "close" to ``blk_2``).

Which parameter positions of a key are features (its *layout*) is fixed at training: the
most common set of numeric positions among its entries. An entry where one of those
parameters is missing or not numeric ("-", "n/a") gets NaN in that dimension and counts as
irregular. Missing dimensions are masked out of the training loss and skipped when scoring.

Two models, chosen per key by the number of training entries:

* ``lstm`` (at least ``min_samples`` entries): each dimension normalised with the mean and
  standard deviation of the training part (a constant dimension gets std 1, so nothing is
  divided by zero); an LSTM regression predicts the next vector from the previous
  ``window`` vectors (mean squared error over the observed dimensions); the series is split
  in time order into training and validation parts, the per-entry errors on the validation
  part are modelled as a Gaussian, and an entry whose error exceeds ``mean + z * std`` is
  anomalous, ``z`` from the two-sided ``confidence`` interval as in the paper.
* ``robust`` (fewer entries): per dimension the median and the MAD scaled to a standard
  deviation; an entry is anomalous when a dimension is more than ``z`` robust sigmas away.

Training runs in PyTorch, one mini-batched network per key; scoring runs in NumPy from the
exported weights (``to_state`` / ``from_state``), so detection does not import PyTorch.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from logwarden.records import Param
from logwarden.sessions import Session

STATE_VERSION = 1

#: Parameter kinds that can carry a numeric feature.
NUMERIC_KINDS = frozenset({"int", "float", "size", "duration"})

# Sizes: SI prefixes for KB/MB/..., binary for KiB/MiB/...; a bare "b" is bytes (logs that
# print bits say "bit"/"bps", which the parser does not classify as a size).
_SIZE_UNITS = {
    "": 1.0,
    "b": 1.0,
    "byte": 1.0,
    "bytes": 1.0,
    "kb": 1e3,
    "mb": 1e6,
    "gb": 1e9,
    "tb": 1e12,
    "pb": 1e15,
    "kib": 1024.0,
    "mib": 1024.0**2,
    "gib": 1024.0**3,
    "tib": 1024.0**4,
    "pib": 1024.0**5,
}
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "min": 60.0,
    "mins": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hrs": 3600.0,
}
_NUMBER_UNIT = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([^\d\s]*)\s*")

# Normalised history values are clipped to this many standard deviations before entering
# the network, so that one wild value does not also make the next few predictions wild.
_INPUT_CLIP = 10.0


def numeric_value(param: Param) -> float | None:
    """The numeric value of a parameter: ints and floats as they are, sizes in bytes,
    durations in seconds; None for other kinds and for values that do not parse or are not
    finite."""
    kind = param.kind
    if kind not in NUMERIC_KINDS:
        return None
    try:
        if kind == "int" or kind == "float":
            v = float(param.value)
        else:
            m = _NUMBER_UNIT.fullmatch(param.value)
            if m is None:
                return None
            units = _SIZE_UNITS if kind == "size" else _DURATION_UNITS
            unit = m.group(2) if kind == "duration" else m.group(2).lower()
            scale = units.get(unit)
            if scale is None:
                return None
            v = float(m.group(1)) * scale
    except (ValueError, OverflowError):
        return None
    return v if math.isfinite(v) else None


# --- features -------------------------------------------------------------------------------


@dataclass
class KeySeries:
    """The feature vectors of one key's entries, in time order.

    ``values[i]`` is ``[elapsed, numeric params at positions...]`` with NaN where missing;
    ``refs[i]`` is ``(session index, entry index)`` of the entry, to map scores back.
    """

    key: int
    positions: tuple[int, ...]  # parameter positions of dimensions 1..d-1
    values: np.ndarray  # float64 (n, 1 + len(positions))
    refs: np.ndarray  # int64 (n, 2)
    irregular: int = 0  # entries whose numeric parameters did not match the layout

    @property
    def dim(self) -> int:
        return 1 + len(self.positions)

    def __len__(self) -> int:
        return len(self.values)


def _numeric_positions(params: list[Param]) -> tuple[int, ...]:
    return tuple(i for i, p in enumerate(params) if numeric_value(p) is not None)


def build_series(
    sessions: Iterable[Session], layouts: Mapping[int, tuple[int, ...]] | None = None
) -> dict[int, KeySeries]:
    """Per key, the series of its entries' feature vectors across ``sessions``.

    ``layouts`` gives each key's feature positions (a fitted model's ``layouts``); keys not
    in it (or all keys when None) get the most common set of numeric positions of their
    entries here. Keys with no numeric parameter are modelled on elapsed time alone.
    """
    # One pass to collect entries per key; layouts need all of a key's entries first.
    entries: dict[int, list[tuple[int, int, float | None, list[Param]]]] = {}
    for si, session in enumerate(sessions):
        elapsed = session.elapsed
        for ei, event in enumerate(session.events):
            el = elapsed[ei] if ei < len(elapsed) else None
            entries.setdefault(event.key, []).append((si, ei, el, event.params))
    out: dict[int, KeySeries] = {}
    for key, items in entries.items():
        found = [_numeric_positions(params) for _, _, _, params in items]
        if layouts is not None and key in layouts:
            layout = tuple(layouts[key])
        else:
            layout = Counter(found).most_common(1)[0][0]
        values = np.full((len(items), 1 + len(layout)), np.nan)
        refs = np.empty((len(items), 2), dtype=np.int64)
        irregular = 0
        for row, ((si, ei, el, params), pos) in enumerate(zip(items, found, strict=True)):
            refs[row] = (si, ei)
            if el is not None and math.isfinite(el):
                values[row, 0] = el
            if pos != layout:
                irregular += 1
            for d, p in enumerate(layout, start=1):
                if p < len(params):
                    v = numeric_value(params[p])
                    if v is not None:
                        values[row, d] = v
        out[key] = KeySeries(key, layout, values, refs, irregular)
    return out


# --- configuration and results ----------------------------------------------------------------


@dataclass
class ParamModelConfig:
    """Hyperparameters of the per-key parameter models (see the module docstring)."""

    window: int = 5  # history vectors before the predicted one
    hidden: int = 16
    layers: int = 1
    epochs: int = 40
    batch_size: int = 256
    learning_rate: float = 0.01
    validation: float = 0.2  # last fraction of each key's series, for the error Gaussian
    confidence: float = 0.999  # two-sided interval; the paper reports 0.98, 0.99, 0.999
    min_samples: int = 100  # fewer entries: the robust model
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.window >= 1, "window must be >= 1"),
            (self.hidden >= 1 and self.layers >= 1, "hidden and layers must be >= 1"),
            (self.epochs >= 1 and self.batch_size >= 1, "epochs and batch_size must be >= 1"),
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (0.0 < self.validation < 1.0, "validation must be in (0, 1)"),
            (0.5 <= self.confidence < 1.0, "confidence must be in [0.5, 1)"),
            (self.min_samples >= 2, "min_samples must be >= 2"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    @property
    def z(self) -> float:
        """Standard normal quantile of the two-sided interval (0.999 -> 3.29)."""
        return NormalDist().inv_cdf(1.0 - (1.0 - self.confidence) / 2.0)


@dataclass
class ParamScores:
    """Scores of one key's entries (arrays of length n, in the series' order).

    ``dim`` is the dimension that deviated most (0 = elapsed; -1 when nothing was observed),
    ``expected``/``observed`` its predicted (lstm) or median (robust) and actual values in
    the original units, ``sigmas`` the signed deviation in standard deviations of that
    dimension, ``error`` the per-entry MSE (lstm) or largest absolute deviation in robust
    sigmas (robust), compared with ``threshold``. ``model`` is "lstm", "robust" or "none"
    (a key without a parameter model: never flagged here).
    """

    key: int
    model: str
    anomalous: np.ndarray
    dim: np.ndarray
    expected: np.ndarray
    observed: np.ndarray
    sigmas: np.ndarray
    error: np.ndarray
    threshold: float
    refs: np.ndarray


@dataclass
class _KeyModel:
    kind: str  # "lstm" | "robust"
    positions: tuple[int, ...]
    center: np.ndarray  # lstm: training mean; robust: median
    scale: np.ndarray  # lstm: training std; robust: MAD sigma (never 0)
    threshold: float  # lstm: error threshold; robust: z
    info: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    # Per dimension: NaN = modelled as is, else modelled as log(max(x, 0) + offset).
    log_offset: np.ndarray | None = None

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Raw feature values -> the model's units (log for skewed, non-negative dims)."""
        if self.log_offset is None:
            return values
        return _apply_log(values, self.log_offset)

    def untransform(self, values: np.ndarray, dims: np.ndarray) -> np.ndarray:
        """Model units -> raw units, for values of the given dimensions."""
        if self.log_offset is None:
            return values
        off = self.log_offset[dims]
        return np.where(
            np.isnan(off), values, np.exp(np.minimum(values, 700.0)) - np.nan_to_num(off)
        )


# --- the models -------------------------------------------------------------------------------


class ParamModels:
    """One parameter model per key: ``fit`` on normal series, ``score`` new ones."""

    def __init__(self, config: ParamModelConfig | None = None) -> None:
        self.config = config or ParamModelConfig()
        self.models: dict[int, _KeyModel] = {}

    @property
    def layouts(self) -> dict[int, tuple[int, ...]]:
        """Feature positions per key, to build scoring series with ``build_series``."""
        return {k: m.positions for k, m in self.models.items()}

    def series(self, sessions: Iterable[Session]) -> dict[int, KeySeries]:
        """``build_series`` with this model's layouts."""
        return build_series(sessions, self.layouts)

    def fit(self, series_by_key: Mapping[int, KeySeries]) -> ParamModels:
        """Fit every key's model (replacing earlier ones for these keys); returns self."""
        cfg = self.config
        for key in sorted(series_by_key):
            s = series_by_key[key]
            observed = int(np.any(~np.isnan(s.values), axis=1).sum())
            if observed == 0:
                continue  # nothing to learn; the key model still covers the key
            if len(s) >= cfg.min_samples and _split(len(s), cfg.validation)[1] >= 2:
                self.models[key] = _fit_lstm(s, cfg)
            else:
                self.models[key] = _fit_robust(s, cfg)
        return self

    def score(self, series_by_key: Mapping[int, KeySeries]) -> dict[int, ParamScores]:
        """Per key, per entry: anomalous or not, and why (see ``ParamScores``)."""
        return {key: self.score_key(s) for key, s in series_by_key.items()}

    def score_key(self, s: KeySeries) -> ParamScores:
        m = self.models.get(s.key)
        n = len(s)
        if m is None:
            nan = np.full(n, np.nan)
            return ParamScores(
                s.key, "none", np.zeros(n, bool), np.full(n, -1), nan, nan.copy(),
                nan.copy(), nan.copy(), math.inf, s.refs,
            )  # fmt: skip
        if s.positions != m.positions:
            raise ValueError(
                f"key {s.key}: series layout {s.positions} differs from the model's "
                f"{m.positions}; build it with ParamModels.series or the model's layouts"
            )
        z = (m.transform(s.values) - m.center) / m.scale
        if m.kind == "lstm":
            pred = _LstmNumpy(m.weights, self.config.layers).predict(
                _windows(z, self.config.window)
            )
            dev = z - pred
            sq = dev * dev
            obs = ~np.isnan(sq)
            count = obs.sum(axis=1)
            error = np.where(count > 0, np.nansum(sq, axis=1) / np.maximum(count, 1), np.nan)
            expected_n = pred
        else:
            dev = z
            absdev = np.abs(dev)
            error = np.where(np.any(~np.isnan(absdev), axis=1), _nanmax_rows(absdev), np.nan)
            expected_n = np.zeros_like(z)
        dim = _nanargmax_rows(np.abs(dev))
        rows = np.arange(n)
        safe = np.maximum(dim, 0)
        has = dim >= 0
        expected_t = expected_n[rows, safe] * m.scale[safe] + m.center[safe]
        expected = np.where(has, m.untransform(expected_t, safe), np.nan)
        observed = np.where(has, s.values[rows, safe], np.nan)
        sigmas = np.where(has, dev[rows, safe], np.nan)
        anomalous = np.where(np.isnan(error), False, error > m.threshold)
        return ParamScores(
            s.key, m.kind, anomalous, dim, expected, observed, sigmas, error, m.threshold, s.refs
        )

    # -- persistence -------------------------------------------------------------------------

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """A JSON-ready description and the weight arrays (named ``"<key>/<tensor>"``)."""
        keys: dict[str, Any] = {}
        arrays: dict[str, np.ndarray] = {}
        for key, m in sorted(self.models.items()):
            keys[str(key)] = {
                "model": m.kind,
                "positions": list(m.positions),
                "center": [float(v) for v in m.center],
                "scale": [float(v) for v in m.scale],
                "threshold": float(m.threshold),
                "log_offset": None
                if m.log_offset is None
                else [None if math.isnan(v) else float(v) for v in m.log_offset],
                "info": m.info,
            }
            for name, w in m.weights.items():
                arrays[f"{key}/{name}"] = w
        meta = {"version": STATE_VERSION, "config": asdict(self.config), "keys": keys}
        return meta, arrays

    @classmethod
    def from_state(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> ParamModels:
        if meta.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported parameter model state version {meta.get('version')!r}")
        try:
            self = cls(ParamModelConfig(**meta["config"]))
            for k, d in meta["keys"].items():
                key = int(k)
                prefix = f"{key}/"
                weights = {
                    name[len(prefix) :]: np.asarray(w, dtype=np.float32)
                    for name, w in arrays.items()
                    if name.startswith(prefix)
                }
                if d["model"] not in ("lstm", "robust"):
                    raise ValueError(f"unknown model {d['model']!r}")
                if d["model"] == "lstm" and not weights:
                    raise ValueError("missing weights")
                center = np.asarray(d["center"], dtype=np.float64)
                scale = np.asarray(d["scale"], dtype=np.float64)
                positions = tuple(int(p) for p in d["positions"])
                if center.shape != (1 + len(positions),) or scale.shape != center.shape:
                    raise ValueError("normalisation does not match the layout")
                raw_off = d.get("log_offset")
                log_offset = (
                    None
                    if raw_off is None
                    else np.array([np.nan if v is None else v for v in raw_off], np.float64)
                )
                if log_offset is not None and log_offset.shape != center.shape:
                    raise ValueError("log offsets do not match the layout")
                self.models[key] = _KeyModel(
                    d["model"], positions, center, scale, float(d["threshold"]),
                    dict(d.get("info", {})), weights, log_offset,
                )  # fmt: skip
        except (KeyError, TypeError) as e:
            raise ValueError(f"malformed parameter model state: {e!r}") from e
        return self


# --- fitting ----------------------------------------------------------------------------------


def _split(n: int, validation: float) -> tuple[int, int]:
    n_val = max(1, round(n * validation))
    return n - n_val, n_val


def _skew(col: np.ndarray) -> float:
    sd = col.std()
    return float(((col - col.mean()) ** 3).mean() / sd**3) if sd > 0 else 0.0


def _choose_log(v: np.ndarray) -> np.ndarray:
    """Per dimension: the offset of a log transform, or NaN to model the values as they are.

    Timings and sizes are usually right-skewed (log-normal like): on the raw scale their
    tail makes the Gaussian error model flag normal slow entries, while in log units a 10x
    slower step is a fixed, large shift. A dimension is logged when its training values are
    non-negative, right-skewed, and less skewed after the transform. The offset (a tenth of
    the median positive value) keeps zeros (a session's first entry) finite.
    """
    out = np.full(v.shape[1], np.nan)
    for j in range(v.shape[1]):
        col = v[:, j][~np.isnan(v[:, j])]
        pos = col[col > 0]
        if len(col) < 3 or len(pos) == 0 or col.min() < 0:
            continue
        off = 0.1 * float(np.median(pos))
        raw_skew = _skew(col)
        if raw_skew > 0.5 and abs(_skew(np.log(col + off))) < abs(raw_skew):
            out[j] = off
    return out


def _apply_log(values: np.ndarray, log_offset: np.ndarray) -> np.ndarray:
    logged = ~np.isnan(log_offset)
    if not logged.any():
        return values
    out = values.copy()
    # Negative values (out-of-order timestamps) count as 0, the smallest the model knows.
    out[:, logged] = np.log(np.maximum(values[:, logged], 0.0) + log_offset[logged])
    return out


def _fit_robust(s: KeySeries, cfg: ParamModelConfig) -> _KeyModel:
    log_offset = _choose_log(s.values)
    v = _apply_log(s.values, log_offset)
    d = v.shape[1]
    center = np.zeros(d)
    scale = np.ones(d)
    for j in range(d):
        col = v[:, j][~np.isnan(v[:, j])]
        if len(col) == 0:
            continue
        med = float(np.median(col))
        sigma = 1.4826 * float(np.median(np.abs(col - med)))  # MAD -> sigma for a Gaussian
        if sigma <= 0:
            # Over half the values equal: fall back to the plain std, then to 1 (constant).
            sigma = float(col.std()) or 1.0
        center[j], scale[j] = med, sigma
    info = {"entries": len(s), "irregular": s.irregular}
    return _KeyModel("robust", s.positions, center, scale, cfg.z, info, {}, log_offset)


def _mean_std(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    obs = ~np.isnan(v)
    count = obs.sum(axis=0)
    filled = np.where(obs, v, 0.0)
    mean = np.where(count > 0, filled.sum(axis=0) / np.maximum(count, 1), 0.0)
    var = np.where(obs, (v - mean) ** 2, 0.0).sum(axis=0) / np.maximum(count, 1)
    std = np.sqrt(var)
    # Constant (or never observed) dimensions: std 1, so nothing is divided by zero and a
    # change of the constant still shows as a deviation in the original units.
    std = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, 1.0)
    return mean, std


def _windows(z: np.ndarray, window: int) -> np.ndarray:
    """History windows (n, window, d): the ``window`` vectors before each entry.

    Missing values enter as 0 (the training mean); the first entries' history is padded
    with zeros likewise, so every entry is scored. Inputs are clipped (see _INPUT_CLIP).
    """
    n, d = z.shape
    x = np.zeros((n + window, d), dtype=np.float32)
    x[window:] = np.clip(np.nan_to_num(z, nan=0.0), -_INPUT_CLIP, _INPUT_CLIP)
    view = np.lib.stride_tricks.sliding_window_view(x, (window, d))[:n, 0]
    return np.ascontiguousarray(view)


def _fit_lstm(s: KeySeries, cfg: ParamModelConfig) -> _KeyModel:
    n_train, _ = _split(len(s), cfg.validation)
    log_offset = _choose_log(s.values[:n_train])
    values = _apply_log(s.values, log_offset)
    mean, std = _mean_std(values[:n_train])
    z = (values - mean) / std
    x = _windows(z, cfg.window)
    weights, info = _train(x[:n_train], z[:n_train], cfg)
    net = _LstmNumpy(weights, cfg.layers)
    dev = z[n_train:] - net.predict(x[n_train:])
    sq = dev * dev
    count = (~np.isnan(sq)).sum(axis=1)
    errors = (np.nansum(sq, axis=1) / np.maximum(count, 1))[count > 0]
    # The Gaussian is fitted to the cube root of the errors (Wilson-Hilferty): an MSE is a
    # scaled chi-square, far from Gaussian (a Gaussian on the raw errors flags 1.4-1.7% of
    # normal entries at the 99.9% interval); its cube root is close to Gaussian (measured:
    # 0.06-0.09%). The threshold is cubed back, so it is still a threshold on the MSE.
    roots = np.cbrt(errors)
    if len(roots) >= 2:
        mu, sd = float(roots.mean()), float(roots.std(ddof=1))
    else:  # too little validation data: a wide default (errors of a mean predictor)
        mu, sd = 1.0, 1.0
    # A perfectly predictable key (all errors equal) would otherwise flag any rounding.
    sd = max(sd, 1e-6, 0.01 * mu)
    threshold = (mu + cfg.z * sd) ** 3
    info.update(
        {
            "entries": len(s),
            "train_entries": n_train,
            "validation_entries": len(errors),
            "irregular": s.irregular,
            "error_cbrt_mean": mu,
            "error_cbrt_std": sd,
            "logged_dims": [int(j) for j in np.flatnonzero(~np.isnan(log_offset))],
        }
    )
    return _KeyModel("lstm", s.positions, mean, std, threshold, info, weights, log_offset)


def _train(
    x: np.ndarray, z: np.ndarray, cfg: ParamModelConfig
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    import torch

    threads = torch.get_num_threads()
    # One thread: the networks are tiny and a second thread only spins (see models.py).
    torch.set_num_threads(1)
    try:
        return _train_torch(x, z, cfg)
    finally:
        torch.set_num_threads(threads)


def _train_torch(
    x: np.ndarray, z: np.ndarray, cfg: ParamModelConfig
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    import torch
    from torch import nn

    d = z.shape[1]
    # Seeded per key (not once for all keys) so that a key's model does not depend on
    # which other keys were trained before it.
    torch.manual_seed(cfg.seed)

    class ParamNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(d, cfg.hidden, cfg.layers, batch_first=True)
            self.out = nn.Linear(cfg.hidden, d)

        def forward(self, inp: torch.Tensor) -> torch.Tensor:
            o, _ = self.lstm(inp)
            return self.out(o[:, -1])

    keep = np.any(~np.isnan(z), axis=1)  # entries with nothing observed teach nothing
    x_all = torch.as_tensor(x[keep], dtype=torch.float32)
    mask_np = ~np.isnan(z[keep])
    y_all = torch.as_tensor(np.nan_to_num(z[keep], nan=0.0), dtype=torch.float32)
    m_all = torch.as_tensor(mask_np, dtype=torch.float32)
    net = ParamNet()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    gen = torch.Generator().manual_seed(cfg.seed)
    n = len(x_all)
    loss_value = math.nan
    for _ in range(cfg.epochs):
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            m = m_all[idx]
            # MSE over the observed dimensions only: missing values give no gradient.
            loss = (((net(x_all[idx]) - y_all[idx]) ** 2) * m).sum() / m.sum().clamp(min=1.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        loss_value = total / max(n, 1)
    weights = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in net.state_dict().items()}
    return weights, {"epochs": cfg.epochs, "loss": loss_value}


# --- inference in NumPy -----------------------------------------------------------------------


class _LstmNumpy:
    """Forward pass of ``ParamNet`` from its weights (PyTorch gate order i, f, g, o)."""

    def __init__(self, weights: Mapping[str, np.ndarray], layers: int) -> None:
        w = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
        self.layers = layers
        self.wih = [w[f"lstm.weight_ih_l{k}"].T for k in range(layers)]
        self.whh = [w[f"lstm.weight_hh_l{k}"].T for k in range(layers)]
        self.b = [w[f"lstm.bias_ih_l{k}"] + w[f"lstm.bias_hh_l{k}"] for k in range(layers)]
        self.wout = w["out.weight"].T
        self.bout = w["out.bias"]
        self.hidden = self.whh[0].shape[0]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n, window, d) normalised histories -> (n, d) predicted next vectors (float64)."""
        n, steps, _ = x.shape
        hsz = self.hidden
        seq = x.astype(np.float32)
        for layer in range(self.layers):
            # The input projection of all steps at once; only the recurrence loops.
            proj = seq @ self.wih[layer] + self.b[layer]
            h = np.zeros((n, hsz), dtype=np.float32)
            c = np.zeros((n, hsz), dtype=np.float32)
            outs = np.empty((n, steps, hsz), dtype=np.float32)
            for t in range(steps):
                g = proj[:, t] + h @ self.whh[layer]
                i = _sigmoid(g[:, :hsz])
                f = _sigmoid(g[:, hsz : 2 * hsz])
                gg = np.tanh(g[:, 2 * hsz : 3 * hsz])
                o = _sigmoid(g[:, 3 * hsz :])
                c = f * c + i * gg
                h = o * np.tanh(c)
                outs[:, t] = h
            seq = outs
        return (seq[:, -1] @ self.wout + self.bout).astype(np.float64)


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * v) + 1.0)


def _nanargmax_rows(a: np.ndarray) -> np.ndarray:
    """Column of each row's largest value ignoring NaN; -1 for all-NaN rows."""
    filled = np.where(np.isnan(a), -np.inf, a)
    idx = filled.argmax(axis=1) if a.shape[1] else np.zeros(len(a), dtype=np.int64)
    if a.shape[1]:
        idx[np.all(np.isnan(a), axis=1)] = -1
    return idx.astype(np.int64)


def _nanmax_rows(a: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(a), -np.inf, a).max(axis=1)
