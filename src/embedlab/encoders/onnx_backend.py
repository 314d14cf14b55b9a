"""ONNX Runtime backend for mean-pooled BERT-family sentence-transformers models.

The transformer (cut to layer k when asked) and its mean pooling are exported once to an
ONNX graph, fused with ONNX Runtime's BERT optimiser (attention, LayerNorm, GELU), and
optionally int8-quantised (per-channel weights; activations quantised per token, so a
text's vector never depends on the other texts of its batch). Artefacts live in
``$EMBEDLAB_CACHE/onnx/`` under the model fingerprint with a JSON sidecar holding the
sha256 of the graph; a missing, stale or corrupted graph is exported again.

Texts are tokenised with the model's own ``tokenizer.json`` (Rust ``tokenizers``), sorted
by token length and batched so that no batch pads beyond its longest member.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.core.errors import EncoderError

__all__ = [
    "BACKENDS",
    "ONNX_EXPORT_VERSION",
    "OnnxBackend",
    "onnx_available",
    "system_graph_dir",
    "unsupported",
]

log = logging.getLogger("embedlab")

BACKENDS = ("auto", "torch", "onnx", "onnx-int8")
ONNX_EXPORT_VERSION = 4  # 2: per-token activation scales (batch-invariant int8); 3: int8 Q/K/V
# packed; 4: 7-bit weights (no u8 x s8 pair saturation on CPUs without VNNI)
_MAX_BATCH_TOKENS = 4096  # tokens per ONNX Runtime call (batch rows x padded length)
_MAX_BATCH_ROWS = 32
_MAX_SESSIONS = 4  # ONNX Runtime sessions run side by side (each holds the graph)


def onnx_available() -> str | None:
    """None when onnxruntime and onnx import, else the reason they cannot be used."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return f"onnxruntime / onnx are not installed ({exc.name})"
    return None


def unsupported(config: dict[str, Any], model_path: Path) -> str | None:
    """Why a model (its configuration and directory) cannot run on this backend, or None."""
    reason = onnx_available()
    if reason:
        return reason
    if config.get("pooling") != "mean":
        return f"the model pools by {config.get('pooling')!r} (the onnx backend does mean pooling)"
    arch = str(config.get("architecture") or "")
    if not any(a in arch.lower() for a in ("bert", "mpnet", "roberta")):
        return f"{arch or 'this architecture'} is not a supported BERT-family model"
    if not (model_path / "tokenizer.json").is_file():
        return "the model has no tokenizer.json (fast tokenizer)"
    return None


def system_graph_dir() -> Path | None:
    """Where ``make`` prebuilds the packaged encoder's graph at install time
    (``<venv>/share/embedlab/onnx``); ``$EMBEDLAB_SYSTEM_GRAPHS`` names another folder, or
    "0" for none."""
    value = os.environ.get("EMBEDLAB_SYSTEM_GRAPHS")
    if value == "0":
        return None
    if value:
        return Path(value)
    return Path(sys.prefix) / "share" / "embedlab" / "onnx"


def physical_cores() -> int:
    """CPU cores this process may run on (affinity-aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class OnnxBackend:
    """Pooled sentence vectors from an exported ONNX graph.

    Parameters
    ----------
    model_path : Path
        The sentence-transformers model directory.
    fingerprint : str
        The model's fingerprint (names the cached graph).
    config : dict
        The encoder's model configuration (num_layers, max_seq_length, pooling, ...).
    layer : int, optional
        Stop at this transformer layer (default: the last).
    quantize : bool
        Use the int8 graph.
    cache_dir : Path
        Where exported graphs are kept.
    bundled : (Path, dict), optional
        A graph a model bundle carries (path, and its kind / layer / sha256 / export
        version): used as it is when it matches, so a bundle predicts without exporting.
    """

    def __init__(
        self,
        model_path: Path,
        fingerprint: str,
        config: dict[str, Any],
        *,
        layer: int | None = None,
        quantize: bool = False,
        cache_dir: Path,
        threads: int | None = None,
        bundled: tuple[Path, dict[str, Any]] | None = None,
    ) -> None:
        reason = unsupported(config, Path(model_path))
        if reason:
            raise EncoderError(f"the onnx backend is unavailable: {reason}")
        self.model_path = Path(model_path)
        self.fingerprint = fingerprint
        self.config = config
        self.layer = int(layer or config["num_layers"])
        self.quantize = bool(quantize)
        self.cache_dir = Path(cache_dir) / "onnx"
        self.threads = int(threads or physical_cores())
        self._session: Any = None
        self._sessions: list[Any] = []
        self._private: Any = None  # a temporary folder when the cache cannot be written
        self._shared_cache_dir = self.cache_dir
        self._tokenizer: Any = None
        self._lock = threading.RLock()  # one session / tokenizer, however many threads
        # A graph shipped inside a model bundle: used instead of the cache while it matches.
        self._bundled = bundled
        if bundled is not None and not self._bundled_usable():
            self._bundled = None
        self._warned_truncation = False
        self.max_length = int(config.get("max_seq_length") or 512)
        # A graph built at install time (``make`` prebuilds the packaged encoder's) is used
        # read-only when the cache has none; it is checked like any other before use.
        self._from_system = False
        system = system_graph_dir()
        if (
            self._bundled is None
            and system is not None
            and not self.graph_path.exists()
            and (system / self.graph_path.name).is_file()
            and (system / self.meta_path.name).is_file()
        ):
            self.cache_dir = system
            self._from_system = True

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the settings; the session and tokenizer load again on first use."""
        state = self.__dict__.copy()
        state.update(
            _session=None,
            _sessions=[],
            _tokenizer=None,
            _lock=None,
            _private=None,
            cache_dir=self.cache_dir if self._from_system else self._shared_cache_dir,
        )
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ artefacts
    @property
    def name(self) -> str:
        return "onnx-int8" if self.quantize else "onnx"

    @property
    def graph_path(self) -> Path:
        if self._bundled is not None:
            return self._bundled[0]
        kind = "int8" if self.quantize else "fp32"
        return self.cache_dir / f"{self.fingerprint}-layer{self.layer}-{kind}.onnx"

    def _bundled_usable(self) -> bool:
        path, info = self._bundled  # type: ignore[misc]
        expected = {"kind": self.name, "layer": self.layer, "export_version": ONNX_EXPORT_VERSION}
        if any(info.get(k) != v for k, v in expected.items()):
            log.warning(
                "the bundle's ONNX graph %s was made for another layer, kind or export "
                "version; exporting one instead",
                path.name,
            )
            return False
        return path.is_file()

    @property
    def meta_path(self) -> Path:
        return self.graph_path.with_suffix(".json")

    def recorded_sha256(self) -> str | None:
        """The graph's sha256 as its sidecar records it (None without a readable sidecar);
        :meth:`ensure_exported` checks the file against it before any session loads it."""
        if self._bundled is not None:
            return self._bundled[1].get("sha256")
        try:
            return json.loads(self.meta_path.read_text(encoding="utf-8")).get("sha256")
        except (OSError, json.JSONDecodeError, AttributeError):
            return None

    def _fresh(self) -> bool:
        """True when the cached graph exists, matches its sidecar and this export version."""
        from embedlab.store.manifest import sha256_file

        if not (self.graph_path.is_file() and self.meta_path.is_file()):
            return False
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return False
        expected = {
            "export_version": ONNX_EXPORT_VERSION,
            "fingerprint": self.fingerprint,
            "layer": self.layer,
            "quantized": self.quantize,
        }
        if any(meta.get(k) != v for k, v in expected.items()):
            return False
        return meta.get("sha256") == sha256_file(self.graph_path)

    def ensure_exported(self, reference: tuple[list[str], Path] | None = None) -> Path:
        """Export (once) and return the graph path.

        The export runs in a child Python process that loads the model from ``model_path``:
        tracing, ONNX Runtime's optimiser and quantiser touch process-wide state (warnings,
        the root logger) that must not leak into the caller's process. ``reference`` =
        (texts, path): when this call exports, the child also saves the torch fp32 vectors
        of ``texts`` to ``path`` (the ``auto`` quality check then needs no torch here).

        A fresh graph is used even from a read-only cache. When the cache cannot be written
        (read-only folder or file system), the graph is exported to a private temporary
        folder for this process instead, and that is said once.
        """
        from filelock import FileLock

        if self._bundled is not None:
            from embedlab.core.errors import StoreError
            from embedlab.store.containment import check_onnx_sizes
            from embedlab.store.manifest import sha256_file

            path, info = self._bundled
            if path.is_file() and not path.is_symlink() and sha256_file(path) == info.get("sha256"):
                try:
                    check_onnx_sizes(path, "the bundle's ONNX graph")
                    return path
                except StoreError as exc:
                    log.warning("%s; using a graph exported to the cache instead", exc)
            else:
                log.warning("the bundle's ONNX graph %s is damaged; exporting one instead", path)
            self._bundled = None
        if self._fresh():
            return self.graph_path
        if self._from_system:  # stale or damaged: export into the user's cache instead
            log.warning("the prebuilt ONNX graph %s does not match; exporting one", self.graph_path)
            self.cache_dir, self._from_system = self._shared_cache_dir, False
            if self._fresh():
                return self.graph_path
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            with FileLock(str(self.graph_path) + ".lock", timeout=600):
                if not self._fresh():
                    if self.graph_path.exists() or self.meta_path.exists():
                        log.warning(
                            "exported ONNX graph %s is stale or damaged: exporting again",
                            self.graph_path.name,
                        )
                    self._export(reference)
        except OSError as exc:
            if self._private is not None:
                raise
            self._use_private_dir(exc)
            return self.ensure_exported(reference)
        return self.graph_path

    def _use_private_dir(self, exc: OSError) -> None:
        import tempfile

        self._private = tempfile.TemporaryDirectory(prefix="embedlab-onnx-")
        log.warning(
            "the ONNX cache %s cannot be written (%s); exporting to a temporary folder for "
            "this process (make the cache writable, or set EMBEDLAB_CACHE, to keep the graph)",
            self.cache_dir,
            exc.strerror or exc,
        )
        self.cache_dir = Path(self._private.name)

    def _export(self, reference: tuple[list[str], Path] | None = None) -> None:
        import subprocess

        from embedlab.store.atomic import atomic_write_bytes
        from embedlab.store.manifest import sha256_file

        t0 = time.perf_counter()
        work = self.cache_dir / f".export-{os.getpid()}-{self.graph_path.stem}"
        work.mkdir(parents=True, exist_ok=True)
        log.warning(
            "exporting %s to ONNX (layer %d, %s) — this takes up to a minute; %s",
            self.model_path.name,
            self.layer,
            "int8" if self.quantize else "fp32",
            f"later runs reuse {self.graph_path}"
            if self._private is None
            else "kept for this process only (the cache cannot be written)",
        )
        final = work / "graph.onnx"
        job = {
            "model_path": str(self.model_path),
            "layer": self.layer,
            "config": self.config,
            "quantize": self.quantize,
            "out": str(final),
            "label": self.name,
        }
        if reference is not None:
            texts_file = work / "reference-texts.json"
            texts_file.write_text(json.dumps(reference[0]), encoding="utf-8")
            job.update(reference_texts=str(texts_file), reference_out=str(reference[1]))
        try:
            # A process that has torch and sentence-transformers loaded already (a fit that
            # adapted the encoder) builds here; others in a child, so that they never load
            # torch themselves.
            here = "sentence_transformers" in sys.modules and "torch" in sys.modules
            try:
                if here:
                    raise OSError("torch is loaded here already")
                proc = subprocess.run(
                    [sys.executable, "-m", "embedlab.encoders.onnx_export", json.dumps(job)],
                    stdout=subprocess.PIPE,
                    stderr=None,  # the child's progress bar shows on our stderr
                    text=True,
                    timeout=3600,
                )
            except OSError as exc:  # this user may not start the interpreter: build here
                log.info("exporting in this process (%s)", exc)
                from embedlab.encoders.onnx_export import build_graph

                with warnings.catch_warnings(), _root_logger_kept():
                    warnings.simplefilter("ignore")
                    build_graph(job, quiet=False)
                proc = subprocess.CompletedProcess([], 0, "")
            if proc.returncode != 0 or not final.is_file():
                raise EncoderError(
                    f"exporting {self.model_path} to ONNX failed (exit {proc.returncode}): "
                    + (proc.stdout.strip().splitlines() or ["no message"])[-1]
                )
            os.replace(final, self.graph_path)
            meta = {
                "export_version": ONNX_EXPORT_VERSION,
                "fingerprint": self.fingerprint,
                "layer": self.layer,
                "quantized": self.quantize,
                "sha256": sha256_file(self.graph_path),
                "seconds": round(time.perf_counter() - t0, 1),
            }
            atomic_write_bytes(self.meta_path, json.dumps(meta, indent=1).encode())
        finally:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
        log.info("exported %s in %.1f s", self.graph_path.name, time.perf_counter() - t0)

    # ------------------------------------------------------------------ running
    @property
    def session(self) -> Any:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._load_session()
        return self._session

    def _load_session(self) -> None:
        """Sessions that :meth:`embed` runs batches on side by side: one single-threaded
        session per core up to ``_MAX_SESSIONS`` (on 2 cores this measured 25-45 % faster
        for short texts than one session spreading each small operator over both cores,
        docs/benchmarks.md), then the cores shared out among them, so memory stays at
        ``_MAX_SESSIONS`` copies of the graph on a large machine."""
        import onnxruntime as ort

        path = self.ensure_exported()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        n_sessions = max(1, min(self.threads, _MAX_SESSIONS))
        opts.intra_op_num_threads = max(1, self.threads // n_sessions)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3

        def load(graph: Path) -> Any:
            return ort.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"])

        try:
            first = load(path)
        except Exception as exc:  # a graph this ONNX Runtime cannot load
            if self._bundled is not None:  # a bundle's own file: reported, never touched
                log.warning(
                    "the bundle's ONNX graph %s cannot be loaded by this ONNX Runtime (%s); "
                    "using a graph exported to the cache instead (the bundle is left as it is)",
                    path,
                    str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
                )
                self._bundled = None
            else:  # the cache's own export: made again once
                log.warning("cannot load %s (%s): exporting again", path.name, exc)
                path.unlink(missing_ok=True)
            path = self.ensure_exported()
            first = load(path)
        self._inputs = {i.name for i in first.get_inputs()}
        others: list[Any] = []
        if n_sessions > 1:  # ONNX Runtime builds sessions without the GIL: side by side
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(n_sessions - 1) as pool:
                others = list(pool.map(lambda _: load(path), range(n_sessions - 1)))
        self._sessions = [first, *others]
        self._session = first  # published last: other threads test it without the lock

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    from tokenizers import Tokenizer

                    tok = Tokenizer.from_file(str(self.model_path / "tokenizer.json"))
                    tok.no_padding()
                    tok.enable_truncation(max_length=self.max_length)
                    self._tokenizer = tok
        return self._tokenizer

    def embed(
        self, texts: Sequence[str], advance: Callable[[int], Any] | None = None
    ) -> np.ndarray:
        """Mean-pooled (and, as the model does, normalised) vectors of ``texts``;
        ``advance(n)`` is called as each batch of n texts is done (from worker threads)."""
        encodings = self.tokenizer.encode_batch(list(texts))
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(texts))
        if not self._warned_truncation and (lengths >= self.max_length).any():
            n_long = int((lengths >= self.max_length).sum())
            log.warning(
                "%d text(s) reach the model's maximum of %d tokens and were truncated to it "
                "(said once)",
                n_long,
                self.max_length,
            )
            self._warned_truncation = True
        order = np.argsort(-lengths, kind="stable")
        batches = []
        s = 0
        while s < len(order):  # longest first, so no batch pads beyond its longest member
            width = int(lengths[order[s]])
            rows = max(1, min(_MAX_BATCH_ROWS, _MAX_BATCH_TOKENS // max(width, 1)))
            batches.append(order[s : s + rows])
            s += rows
        out = np.empty((len(texts), int(self.config["dim"])), dtype=np.float32)
        _ = self.session
        sessions = self._sessions[: len(batches)]

        def run(k: int) -> None:
            session = sessions[k]
            for batch in batches[k :: len(sessions)]:  # interleaved: similar lengths each
                width = int(lengths[batch[0]])
                ids = np.zeros((len(batch), width), dtype=np.int64)
                mask = np.zeros((len(batch), width), dtype=np.int64)
                types = np.zeros((len(batch), width), dtype=np.int64)
                for j, i in enumerate(batch):  # a loop over one batch's rows (ragged ids)
                    e = encodings[i]
                    n = len(e.ids)
                    ids[j, :n] = e.ids
                    mask[j, :n] = 1
                    types[j, :n] = e.type_ids
                feeds = {"input_ids": ids, "attention_mask": mask}
                if "token_type_ids" in self._inputs:
                    feeds["token_type_ids"] = types
                out[batch] = session.run(None, feeds)[0]
                if advance is not None:
                    advance(len(batch))

        if len(sessions) <= 1:
            for k in range(len(sessions)):
                run(k)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(len(sessions), thread_name_prefix="embedlab-onnx") as pool:
                list(pool.map(run, range(len(sessions))))
        return out


# --------------------------------------------------------------------------- export steps


@contextlib.contextmanager
def _root_logger_kept() -> Iterator[None]:
    """Undo what an exporter does to the root logger (onnxruntime's quantiser logs through
    ``logging.warning``, which configures it): its handlers and level as they were."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
