"""A sparse dictionary of an embedding space: every (unit) vector rewritten as a bias plus
``k`` active atoms out of ``n_atoms`` unit directions, ``u ≈ b + Σ_j z_j·D_j``.

Two ways to learn it:

- ``"topk-sae"`` (default): a top-k sparse autoencoder in torch (Makhzani & Frey 2013; Gao
  et al. 2024): encoder ``TopK(ReLU((u − b)·W + c))``, decoder rows kept at unit length,
  trained by Adam on reconstruction error; atoms silent for an epoch learn to model what
  the active ones leave (the AuxK loss) and are pointed at the residuals of the rows
  reconstructed worst, so few stay dead.
- ``"omp"``: a k-means dictionary (unit centroids of the centred rows) and orthogonal
  matching pursuit codes (scikit-learn), no training of the codes.

Seeded and deterministic for a given seed and thread count; codes are computed a chunk at a
time (memory bounded by the chunk, never n × atoms dense for the whole set).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from embedlab.core.errors import ValidationError
from embedlab.core.progress import progress_bar
from embedlab.core.validation import check_vectors
from embedlab.core.vectors import unit_rows

__all__ = ["METHODS", "ConceptDictionary", "SparseCodes"]

METHODS = ("topk-sae", "omp")
_CHUNK = 8192


class SparseCodes:
    """The ``k`` active atoms of each row: ``index`` (n, k) int32 and ``value`` (n, k)
    float32 (zero where fewer than k atoms are active), sorted by value, largest first."""

    def __init__(self, index: np.ndarray, value: np.ndarray, n_atoms: int) -> None:
        self.index, self.value, self.n_atoms = index, value, int(n_atoms)

    def __len__(self) -> int:
        return len(self.index)

    def dense(self) -> np.ndarray:
        """(n, n_atoms) float32: for a chunk or a small set only."""
        out = np.zeros((len(self.index), self.n_atoms), dtype=np.float32)
        np.put_along_axis(out, self.index.astype(np.int64), self.value, axis=1)
        return out

    def counts(self) -> np.ndarray:
        """How many rows each atom is active on, (n_atoms,) int64."""
        out = np.zeros(self.n_atoms, dtype=np.int64)
        np.add.at(out, self.index[self.active()], 1)
        return out

    def active(self) -> np.ndarray:
        """(n, k) bool: which of the k slots hold an active atom."""
        return self.value != 0


class ConceptDictionary:
    """A sparse dictionary of a space (see the module). ``fit(X)`` then ``codes(X)``,
    ``reconstruct(X)``; ``decoder_`` (n_atoms, d) unit rows and ``bias_`` (d,) describe it.

    Parameters
    ----------
    n_atoms : int or "auto", default "auto"
        ``auto``: one atom per 5 rows, a multiple of 64, from 64 to 4096 (3,008 for
        CLINC150's 15,100 training rows). More atoms are more specific (purer) and rarer.
    k : int, default 16
        Active atoms per row.
    method : "topk-sae" or "omp"
    epochs : int, default 20
        Passes over the rows (topk-sae).
    batch_size : int, default 512
    lr : float, default 5e-3
    refine : bool, default True
        Codes: after the encoder picks a row's k atoms, their values are refitted by least
        squares (a better reconstruction from the same atoms; values may then be negative).
    random_state : int, default 0
    """

    def __init__(
        self,
        n_atoms: int | str = "auto",
        k: int = 16,
        *,
        method: str = "topk-sae",
        epochs: int = 20,
        batch_size: int = 512,
        lr: float = 5e-3,
        refine: bool = True,
        random_state: int = 0,
    ) -> None:
        self.n_atoms, self.k, self.method = n_atoms, int(k), method
        self.epochs, self.batch_size, self.lr = int(epochs), int(batch_size), float(lr)
        self.refine, self.random_state = bool(refine), int(random_state)

    # ------------------------------------------------------------------ checks
    def _check(self, n: int) -> None:
        if self.n_atoms == "auto":
            self.n_atoms = auto_atoms(n)
        if isinstance(self.n_atoms, bool) or not isinstance(self.n_atoms, (int, np.integer)):
            raise ValidationError(f"atoms must be a whole number or 'auto', got {self.n_atoms!r}")
        self.n_atoms = int(self.n_atoms)
        if self.method not in METHODS:
            raise ValidationError(
                f"method must be one of {', '.join(METHODS)}, got {self.method!r}"
            )
        if self.k < 1 or self.n_atoms < 2:
            raise ValidationError(
                f"need k >= 1 and atoms >= 2, got k={self.k}, atoms={self.n_atoms}"
            )
        if self.k >= self.n_atoms:
            raise ValidationError(
                f"k={self.k} active atoms of {self.n_atoms}: k must be below the number of atoms"
            )
        limit = max_atoms(n)
        if self.n_atoms > limit:
            raise ValidationError(
                f"{n} rows are too few for {self.n_atoms} atoms: at most {limit} "
                "(one atom per 4 rows; pass --atoms or more rows)"
            )

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, *, progress: bool | None = None) -> ConceptDictionary:
        """Learn the dictionary of the rows of ``X`` (scaled to unit length first)."""
        self.fit_codes(X, progress=progress)
        return self

    def fit_codes(self, X: Any, *, progress: bool | None = None) -> SparseCodes:
        """:meth:`fit`, returning the codes of the training rows (computed once: they also
        give each atom's training frequency)."""
        X = check_vectors(X, name="vectors")
        self._check(len(X))
        U = unit_rows(X)
        show = bool(progress) if progress is not None else len(U) * self.epochs > 2_000_000
        if self.method == "omp":
            self._fit_omp(U)
        else:
            self._fit_sae(U, show)
        self.n_features_in_ = int(U.shape[1])
        codes = self.codes(U)
        self.frequency_ = (codes.counts() / len(U)).astype(np.float32)
        return codes

    def _fit_omp(self, U: np.ndarray) -> None:
        from sklearn.cluster import MiniBatchKMeans

        self.bias_ = U.mean(axis=0).astype(np.float32)
        km = MiniBatchKMeans(
            n_clusters=self.n_atoms, random_state=self.random_state, n_init=1, batch_size=4096
        ).fit(U - self.bias_)
        self.decoder_ = unit_rows(km.cluster_centers_)
        self.encoder_ = None

    def _fit_sae(self, U: np.ndarray, show: bool) -> None:
        import torch

        gen = torch.Generator().manual_seed(self.random_state)
        n, d = U.shape
        data = torch.from_numpy(U)
        bias = torch.nn.Parameter(data.mean(0).clone())
        dec = torch.randn(self.n_atoms, d, generator=gen)
        dec = dec / dec.norm(dim=1, keepdim=True)
        W_dec = torch.nn.Parameter(dec)
        W_enc = torch.nn.Parameter(dec.t().clone())
        b_enc = torch.nn.Parameter(torch.zeros(self.n_atoms))
        params = [bias, W_dec, W_enc, b_enc]
        opt = torch.optim.Adam(params, lr=self.lr)
        steps = math.ceil(n / self.batch_size)
        total = self.epochs * steps
        lr_at = lambda s: self.lr * min(1.0, (total - s) / (0.2 * total))  # noqa: E731 - linear decay over the last fifth
        step = 0
        last_fired = torch.zeros(self.n_atoms, dtype=torch.long)
        with progress_bar(total, "learning concepts", enabled=show) as advance:
            for _ in range(self.epochs):
                order = torch.randperm(n, generator=gen)
                fired = torch.zeros(self.n_atoms, dtype=torch.bool)
                worst_err = torch.zeros(0)
                worst_rows = torch.zeros(0, dtype=torch.long)
                for s in range(0, n, self.batch_size):
                    rows = order[s : s + self.batch_size]
                    x = data[rows]
                    raw = (x - bias) @ W_enc + b_enc
                    val, idx = torch.relu(raw).topk(self.k, dim=1)
                    recon = bias + _sparse_decode(idx, val, W_dec)
                    err = ((recon - x) ** 2).sum(1)
                    loss = err.mean()
                    dead = (step - last_fired) > steps  # silent for an epoch
                    if dead.any():  # AuxK (Gao et al. 2024): dead atoms model the residual
                        k_aux = min(2 * self.k, int(dead.sum()))
                        v_aux, i_aux = raw.masked_fill(~dead, -torch.inf).topk(k_aux, dim=1)
                        resid = (x - recon).detach()
                        fit = _sparse_decode(i_aux, v_aux, W_dec)
                        aux = ((fit - resid) ** 2).sum(1).mean()
                        loss = loss + aux / (resid**2).sum(1).mean().clamp_min(1e-8) / 32
                    for g in opt.param_groups:
                        g["lr"] = lr_at(step)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    # keep decoder rows at unit length: no gradient along them
                    with torch.no_grad():
                        W = W_dec.data
                        W_dec.grad -= (W_dec.grad * W).sum(1, keepdim=True) * W
                    opt.step()
                    with torch.no_grad():
                        W_dec.data /= W_dec.data.norm(dim=1, keepdim=True).clamp_min(1e-8)
                        fired[idx[val > 0]] = True
                        last_fired[idx[val > 0]] = step
                        e = err.detach()
                        worst_err = torch.cat([worst_err, e])
                        worst_rows = torch.cat([worst_rows, rows])
                    step += 1
                    advance(1)
                dead = torch.nonzero(~fired).ravel()
                if len(dead) and step < 0.8 * total:
                    self._revive(dead, worst_err, worst_rows, data, bias, W_enc, W_dec, b_enc, opt)
        self.bias_ = bias.detach().numpy().astype(np.float32)
        self.decoder_ = W_dec.detach().numpy().astype(np.float32)
        self.encoder_ = W_enc.detach().numpy().astype(np.float32)
        self.encoder_bias_ = b_enc.detach().numpy().astype(np.float32)

    @staticmethod
    def _revive(dead, err, rows, data, bias, W_enc, W_dec, b_enc, opt) -> None:
        """Point dead atoms at the residuals of the rows reconstructed worst this epoch."""
        import torch

        with torch.no_grad():
            take = rows[torch.argsort(err, descending=True, stable=True)[: len(dead)]]
            if len(take) < len(dead):
                dead = dead[: len(take)]
            x = data[take]
            pre = torch.relu((x - bias) @ W_enc + b_enc)
            val, idx = pre.topk(min(16, pre.shape[1]), dim=1)
            resid = x - bias - _sparse_decode(idx, val, W_dec)
            resid = resid / resid.norm(dim=1, keepdim=True).clamp_min(1e-8)
            W_dec.data[dead] = resid
            live_norm = W_enc.data.norm(dim=0).mean()
            W_enc.data[:, dead] = resid.t() * live_norm
            b_enc.data[dead] = 0.0
            state = opt.state
            for p, cols in ((W_dec, (dead, slice(None))), (W_enc, (slice(None), dead))):
                st = state.get(p)
                if st:
                    st["exp_avg"][cols] = 0
                    st["exp_avg_sq"][cols] = 0
            st = state.get(b_enc)
            if st:
                st["exp_avg"][dead] = 0
                st["exp_avg_sq"][dead] = 0

    # ------------------------------------------------------------------ using
    def _fitted(self) -> None:
        if not hasattr(self, "decoder_"):
            raise ValidationError("this concept dictionary is not fitted")

    def codes(self, X: Any) -> SparseCodes:
        """The ``k`` active atoms of each row of ``X`` (scaled to unit length first)."""
        self._fitted()
        X = check_vectors(X, name="vectors", dim=int(self.decoder_.shape[1]))
        U = unit_rows(X)
        index = np.zeros((len(U), self.k), dtype=np.int32)
        value = np.zeros((len(U), self.k), dtype=np.float32)
        for s in range(0, len(U), _CHUNK):
            i, v = self._codes_chunk(U[s : s + _CHUNK])
            index[s : s + len(i)], value[s : s + len(i)] = i, v
        return SparseCodes(index, value, self.n_atoms)

    def _codes_chunk(self, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        C = U - self.bias_
        if self.method == "omp" or self.encoder_ is None:
            return self._omp(C)
        pre = np.maximum(C @ self.encoder_ + self.encoder_bias_, 0.0)
        idx = np.argpartition(-pre, self.k - 1, axis=1)[:, : self.k]
        val = np.take_along_axis(pre, idx, axis=1)
        if self.refine:
            val = self._least_squares(C, idx, val > 0)
        order = np.argsort(-val, axis=1, kind="stable")
        return (
            np.take_along_axis(idx, order, axis=1).astype(np.int32),
            np.take_along_axis(val, order, axis=1).astype(np.float32),
        )

    def _omp(self, C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Orthogonal matching pursuit for a chunk of rows at once: k greedy steps, each
        adding every row's atom most correlated with its residual and refitting the values
        on the atoms chosen so far (least squares). Signed values, largest |value| first."""
        n, k = len(C), self.k
        idx = np.zeros((n, k), dtype=np.int64)
        val = np.zeros((n, k), dtype=np.float32)
        on = np.zeros((n, k), dtype=bool)
        resid = C.astype(np.float32)
        rows = np.arange(n)
        for step in range(k):
            corr = np.abs(resid @ self.decoder_.T)
            if step:
                np.put_along_axis(corr, idx[:, :step], -1.0, axis=1)  # chosen already
            idx[:, step] = corr.argmax(axis=1)
            on[:, step] = True
            val = self._least_squares(C, idx, on)
            dense = np.zeros((n, self.n_atoms), dtype=np.float32)
            dense[rows[:, None], idx[:, : step + 1]] = val[:, : step + 1]
            resid = C - dense @ self.decoder_
        order = np.argsort(-np.abs(val), axis=1, kind="stable")
        return (
            np.take_along_axis(idx, order, axis=1).astype(np.int32),
            np.take_along_axis(val, order, axis=1).astype(np.float32),
        )

    def _least_squares(self, C: np.ndarray, idx: np.ndarray, on: np.ndarray) -> np.ndarray:
        """The values on each row's chosen atoms that reconstruct it best (least squares on
        the support; the atoms' Gram matrix is gathered, no n × k × d tensor)."""
        if not hasattr(self, "_gram"):
            self._gram = (self.decoder_ @ self.decoder_.T).astype(np.float32)
        G = self._gram[idx[:, :, None], idx[:, None, :]]  # (n, k, k)
        G = G * (on[:, :, None] & on[:, None, :]) + np.eye(self.k, dtype=np.float32) * 1e-4
        rhs = np.take_along_axis(C @ self.decoder_.T, idx, axis=1) * on
        return (np.linalg.solve(G, rhs[:, :, None])[:, :, 0] * on).astype(np.float32)

    def decode(self, codes: SparseCodes) -> np.ndarray:
        """``b + Σ z_j D_j`` for each row, (n, d) float32."""
        self._fitted()
        out = np.empty((len(codes), self.decoder_.shape[1]), dtype=np.float32)
        step = max(1, _CHUNK // 2)
        for s in range(0, len(codes), step):
            part = SparseCodes(codes.index[s : s + step], codes.value[s : s + step], self.n_atoms)
            out[s : s + len(part)] = self.bias_ + part.dense() @ self.decoder_
        return out

    def reconstruct(self, X: Any) -> np.ndarray:
        """The dictionary's reconstruction of the unit rows of ``X``."""
        return self.decode(self.codes(X))

    def dead_atoms(self) -> np.ndarray:
        """Indices of atoms active on no training row."""
        self._fitted()
        return np.flatnonzero(self.frequency_ == 0)

    # ------------------------------------------------------------------ saving
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON-able config, arrays) for a bundle; see :meth:`from_state`."""
        self._fitted()
        config = {
            "n_atoms": self.n_atoms,
            "k": self.k,
            "method": self.method,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "refine": self.refine,
            "random_state": self.random_state,
            "n_features_in": self.n_features_in_,
        }
        arrays = {"decoder": self.decoder_, "bias": self.bias_, "frequency": self.frequency_}
        if self.encoder_ is not None:
            arrays.update(encoder=self.encoder_, encoder_bias=self.encoder_bias_)
        return config, arrays

    @classmethod
    def from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> ConceptDictionary:
        keys = ("n_atoms", "k", "method", "epochs", "batch_size", "lr", "refine", "random_state")
        out = cls(**{k: config[k] for k in keys})
        dec = np.asarray(arrays["decoder"], dtype=np.float32)
        d = int(config["n_features_in"])
        if dec.shape != (out.n_atoms, d) or np.asarray(arrays["bias"]).shape != (d,):
            raise ValidationError("the concept dictionary's arrays do not match its config")
        out.decoder_, out.bias_ = dec, np.asarray(arrays["bias"], dtype=np.float32)
        out.frequency_ = np.asarray(arrays["frequency"], dtype=np.float32)
        out.n_features_in_ = d
        if "encoder" in arrays:
            out.encoder_ = np.asarray(arrays["encoder"], dtype=np.float32)
            out.encoder_bias_ = np.asarray(arrays["encoder_bias"], dtype=np.float32)
            if out.encoder_.shape != (d, out.n_atoms):
                raise ValidationError("the concept dictionary's encoder does not match")
        else:
            out.encoder_ = None
        return out


def auto_atoms(n_rows: int) -> int:
    """The default number of atoms for ``n_rows`` rows: one per 5 rows, a multiple of 64,
    within [64, 4096] (and never above :func:`max_atoms`)."""
    return int(min(max_atoms(n_rows), max(64, min(4096, (n_rows // 5) // 64 * 64))))


def max_atoms(n_rows: int) -> int:
    """The most atoms a dictionary may have for ``n_rows`` rows (one per 4 rows)."""
    return max(2, n_rows // 4)


def _sparse_decode(idx: Any, val: Any, W_dec: Any) -> Any:
    """Σ_j val_j · W_dec[idx_j] per row, without an n × atoms × d tensor."""
    import torch.nn.functional as F

    return F.embedding_bag(idx, W_dec, per_sample_weights=val, mode="sum")
