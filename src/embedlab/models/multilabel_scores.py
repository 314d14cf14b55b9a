"""Per-label scorers of the multi-label classifier that are trained: one-vs-rest logistic
regression, and a one-hidden-layer network with one sigmoid output per label."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.special import expit

__all__ = ["fit_mlp", "fit_ovr_logistic", "mlp_scores"]


def fit_ovr_logistic(Z: np.ndarray, Y: np.ndarray, C: float) -> dict[str, np.ndarray]:
    """One binary L2 logistic regression per label (scikit-learn's, L-BFGS), stacked into
    one (L, d) weight matrix; a loop over labels, each fit vectorised over the rows."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    L, d = Y.shape[1], Z.shape[1]
    coef = np.zeros((L, d), dtype=np.float32)
    intercept = np.zeros(L, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for j in range(L):
            if Y[:, j].all() or not Y[:, j].any():  # one value (a fold without the label)
                intercept[j] = 20.0 if Y[:, j].all() else -20.0
                continue
            lr = LogisticRegression(C=C, max_iter=1000).fit(Z, Y[:, j])
            coef[j], intercept[j] = lr.coef_[0], lr.intercept_[0]
    return {"coef": coef, "intercept": intercept}


def fit_mlp(
    Z: np.ndarray, Y: np.ndarray, hidden: int, epochs: int, seed: int
) -> dict[str, np.ndarray]:
    """A one-hidden-layer network (GELU, dropout 0.2) with one logit per label, trained with
    binary cross-entropy (AdamW, lr 1e-3, weight decay 1e-4, batches of 256) for ``epochs``
    passes. Every random draw (initial weights, batch order, dropout) comes from one
    generator seeded with ``seed``: torch's global random state is neither used nor changed,
    so concurrent fits stay reproducible. Weights come back as float32 arrays."""
    import math

    import torch

    gen = torch.Generator().manual_seed(seed)
    d, L = Z.shape[1], Y.shape[1]

    def uniform(shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
        bound = 1.0 / math.sqrt(fan_in)  # torch.nn.Linear's default initialisation
        t = torch.rand(shape, generator=gen) * (2 * bound) - bound
        return t.requires_grad_()

    w1, b1 = uniform((hidden, d), d), uniform((hidden,), d)
    w2, b2 = uniform((L, hidden), hidden), uniform((L,), hidden)
    opt = torch.optim.AdamW([w1, b1, w2, b2], lr=1e-3, weight_decay=1e-4)
    X = torch.from_numpy(np.ascontiguousarray(Z, dtype=np.float32))
    T = torch.from_numpy(Y.astype(np.float32))
    gelu = torch.nn.functional.gelu
    for _ in range(epochs):  # a loop over epochs and batches, each batch vectorised
        order = torch.randperm(len(X), generator=gen)
        for s in range(0, len(X), 256):
            b = order[s : s + 256]
            h = gelu(X[b] @ w1.T + b1)
            keep = (torch.rand(h.shape, generator=gen) >= 0.2).float() / 0.8  # dropout
            logits = (h * keep) @ w2.T + b2
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, T[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return {
        "w1": w1.detach().numpy().astype(np.float32),
        "b1": b1.detach().numpy().astype(np.float32),
        "w2": w2.detach().numpy().astype(np.float32),
        "b2": b2.detach().numpy().astype(np.float32),
    }


def mlp_scores(Z: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    """Per-label sigmoid outputs of the network, in chunks of rows (numpy, no torch)."""
    from scipy.special import erf

    out = np.empty((len(Z), params["w2"].shape[0]), dtype=np.float32)
    for s in range(0, len(Z), 4096):  # memory bounded by the chunk's hidden layer
        H = Z[s : s + 4096] @ params["w1"].T + params["b1"]
        H = 0.5 * H * (1.0 + erf(H / np.float32(np.sqrt(2.0))))
        out[s : s + 4096] = expit(H @ params["w2"].T + params["b2"])
    return out
