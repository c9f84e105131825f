"""The models' networks in PyTorch, at module level so that tests and warm starts can build them.

Importing this module imports PyTorch: only training does (detection runs the NumPy forward
passes of ``numpy_nets``). The state-dict names are part of the bundle format.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["KeyNet", "ParamNet"]


class KeyNet(nn.Module):
    """The key model: an embedding, stacked LSTM layers and a linear layer over the keys."""

    def __init__(self, n_outputs: int, embedding: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_outputs, embedding)
        self.lstm = nn.LSTM(embedding, hidden, layers, batch_first=True)
        self.out = nn.Linear(hidden, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o, _ = self.lstm(self.embed(x))
        return self.out(o[:, -1])


class ParamNet(nn.Module):
    """A parameter model: stacked LSTM layers over feature vectors, a linear regression out."""

    def __init__(self, dims: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dims, hidden, layers, batch_first=True)
        self.out = nn.Linear(hidden, dims)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        o, _ = self.lstm(inp)
        return self.out(o[:, -1])
