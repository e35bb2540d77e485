"""A two-layer network (ReLU hidden layer, softmax output) with hand-written gradients."""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np


class MLP:
    def __init__(self, inputs: int, hidden: int, classes: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.params: Dict[str, np.ndarray] = {
            "w1": rng.normal(0, np.sqrt(2 / inputs), (inputs, hidden)),
            "b1": np.zeros(hidden),
            "w2": rng.normal(0, np.sqrt(2 / hidden), (hidden, classes)),
            "b2": np.zeros(classes),
        }

    def forward(self, x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        p = self.params
        hidden = np.maximum(0, x @ p["w1"] + p["b1"])
        logits = hidden @ p["w2"] + p["b2"]
        exp = np.exp(logits)
        return hidden, exp / exp.sum(axis=1, keepdims=True)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)[1].argmax(axis=1)

    def loss_and_gradients(
        self, x: np.ndarray, y: np.ndarray
    ) -> Tuple[float, Dict[str, np.ndarray]]:
        hidden, probs = self.forward(x)
        n = len(x)
        loss = float(-np.log(probs[np.arange(n), y]).mean())
        dlogits = probs.copy()
        dlogits[np.arange(n), y] -= 1
        dlogits /= n
        p = self.params
        dhidden = dlogits @ p["w2"].T
        dhidden[hidden <= 0] = 0
        grads = {
            "w2": hidden.T @ dlogits,
            "b2": dlogits.sum(axis=0),
            "w1": x.T @ dhidden,
            "b1": dhidden.sum(axis=0),
        }
        return loss, grads
