"""Train a tiny classifier on synthetic spirals, printing the loss and accuracy per epoch.

    callpyback run examples/ml/train.py                 # observed by callpyback.toml next to it
    callpyback run examples/ml/train.py --lr 40         # too high: the loss becomes NaN
    callpyback run examples/ml/train.py --lr 0.002      # too low: the loss stops improving
    python examples/ml/train.py                         # the same script, unobserved

An ordinary training script: it does not mention callpyback.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from tinyml.data import spirals, split
from tinyml.loop import evaluate, train_epoch
from tinyml.model import MLP


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    x, y = spirals(seed=args.seed)
    x_train, y_train, x_test, y_test = split(x, y, seed=args.seed)
    model = MLP(inputs=2, hidden=args.hidden, classes=3, seed=args.seed)
    # A diverging run (too high a learning rate) prints nan rather than numpy warnings.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for epoch in range(1, args.epochs + 1):
            history = train_epoch(model, x_train, y_train, args.lr, args.batch_size, epoch)
            print(
                f"epoch {epoch:3d}  loss {history['loss']:.4f}  accuracy {history['accuracy']:.3f}"
            )
        test_accuracy = evaluate(model, x_test, y_test)
    print(f"test accuracy {test_accuracy:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
