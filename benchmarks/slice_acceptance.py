"""The vertical slice's acceptance numbers on the embedded default, measured in one run.

Square, l-inf eps 0.3, 1000 queries, seed 0, the first 500 MNIST-5k test images; AAA's temperature is tuned on the
last 500 test images (disjoint from the attacked ones, as the AAA paper did on CIFAR-10). Prints robust accuracy
at 100 / 1000 queries for the undefended CNN, AAA-linear and AAA-sine, AAA's prediction agreement with the
undefended model on all 1000 test images, and the 15-bin ECE on the attacked images.

    python benchmarks/slice_acceptance.py
"""

from __future__ import annotations

import pandas as pd
import torch

from workbench import data, metrics, models
from workbench.attacks.square import Square
from workbench.defenses.aaa import AAA
from workbench.oracle import Oracle


def main() -> None:
    torch.manual_seed(0)
    test = data.load("mnist5k", "test")
    x, y = test[:500]
    model = models.load("mnist-cnn")
    clean = metrics.predict(model, test.x)
    rows = {}
    for name, net in [("undefended", model), ("AAA-linear", AAA(model, "linear")), ("AAA-sine", AAA(model, "sine"))]:
        if isinstance(net, AAA):
            net.calibrate(*test[500:])
        logits = metrics.predict(net, test.x)
        result = Square(norm="linf", eps=0.3, seed=0, progress=False).run(Oracle(net, x, y, budget=1000))
        rows[name] = {"temperature": getattr(net, "temperature", float("nan")),
                      "agreement (1000)": metrics.agreement(logits, clean),
                      "clean acc": metrics.accuracy(logits[:500], y), "ECE": metrics.ece(logits[:500], y),
                      "ECE (held-out 500)": metrics.ece(logits[500:], test.y[500:]),
                      **metrics.summary(result, [100, 1000])}
    pd.set_option("display.width", 200)
    print(pd.DataFrame(rows).T.round(4).to_string())


if __name__ == "__main__":
    main()
