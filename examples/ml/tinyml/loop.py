"""The training loop: one function per step, per epoch and for evaluation.

Nothing here knows it is observed; examples/ml/callpyback.toml times these functions and
reads the ``loss`` and ``accuracy`` locals of ``train_epoch``.
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np

from .model import MLP


def train_step(model: MLP, xb: np.ndarray, yb: np.ndarray, lr: float) -> float:
    """One mini-batch of plain gradient descent; returns the batch loss."""
    loss, grads = model.loss_and_gradients(xb, yb)
    for name, grad in grads.items():
        model.params[name] -= lr * grad
    return loss


def train_epoch(
    model: MLP, x: np.ndarray, y: np.ndarray, lr: float, batch_size: int, seed: int
) -> Dict[str, float]:
    """One pass over the training set in shuffled mini-batches."""
    order = np.random.default_rng(seed).permutation(len(x))
    losses: List[float] = []
    for start in range(0, len(x), batch_size):
        batch = order[start : start + batch_size]
        losses.append(train_step(model, x[batch], y[batch], lr))
    loss = float(np.mean(losses))
    accuracy = evaluate(model, x, y)
    return {"loss": loss, "accuracy": accuracy}


def evaluate(model: MLP, x: np.ndarray, y: np.ndarray) -> float:
    return float((model.predict(x) == y).mean())
