"""Synthetic normal sessions with a known grammar, shared by the model tests."""

from __future__ import annotations

import numpy as np

#: A small key model that learns the grammars here in a second or two (1 layer of 16).
TINY = {
    "window": 4,
    "hidden": 16,
    "embedding": 8,
    "layers": 1,
    "epochs": 200,
    "learning_rate": 0.02,
    "device": "cpu",
}


def grammar(n: int, seed: int) -> list[list[str]]:
    """``A``, then the loop ``B C`` 1-3 times, then ``D E``."""
    rng = np.random.default_rng(seed)
    loops = rng.choice([1, 2, 3], size=n, p=[0.2, 0.3, 0.5])
    return [["A", *(["B", "C"] * int(k)), "D", "E"] for k in loops]
