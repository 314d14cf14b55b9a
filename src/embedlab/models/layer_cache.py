"""The frozen lower layers of a transformer computed once: adaptation trains only the top
layers, so what the layers below give each text never changes and is worked out once, not
at every step, every pass and every held-out checkpoint.

:class:`LowerLayers` keeps each text's token states after the frozen layers (unpadded, in
one float32 array: in memory up to :data:`IN_MEMORY_BYTES`, otherwise in a temporary file
under ``workdir`` or the system's temporary folder, so memory is bounded by a chunk, not by
the data) and, while :meth:`LowerLayers.feeding` is active, makes the model start from
them: its input module is replaced by one that returns the cached states of the batch
being run, and its layer list by the layers being trained. Everything around them
(attention masks, pooling, normalisation) is the model's own code. Before it is used,
:meth:`LowerLayers.check` compares the truncated model with the whole one on a few texts;
an architecture where they differ (or which has no ``embeddings`` + ``encoder.layer``) is
trained whole.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

__all__ = ["IN_MEMORY_BYTES", "LowerLayers", "transformer_layers"]

#: Cached token states up to this size stay in memory; larger ones go to a temporary file.
IN_MEMORY_BYTES = 512 * 2**20


def transformer_layers(model: Any) -> tuple[Any, Any] | None:
    """(the Hugging Face model, its list of layers) inside a sentence-transformers model, or
    None where the architecture is not the BERT-like ``embeddings`` + ``encoder.layer``."""
    try:
        inner = model[0].auto_model
        layers = inner.encoder.layer
        inner.embeddings  # noqa: B018 - the input module must exist
    except (AttributeError, IndexError, TypeError, KeyError):
        return None
    return inner, layers


class _StopAfter(Exception):
    """Raised by a forward hook to end a forward pass once the cached layer has run."""


def _cached_input() -> Any:
    """A module to stand in for the input (embeddings) module: it returns the states set on
    it for the batch being run."""
    import torch

    class CachedInput(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.states: Any = None

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            return self.states

    return CachedInput()


class LowerLayers:
    """Token states of ``texts`` after the model's first ``frozen`` layers (eval mode, no
    gradients), one row per real token; :meth:`states` pads a batch of them. ``whole``:
    the same pass runs on to the whole model's sentence embeddings (``embeddings``)."""

    def __init__(
        self,
        model: Any,
        tokenize: Any,
        texts: Sequence[str],
        frozen: int,
        *,
        batch_size: int = 64,
        workdir: str | os.PathLike | None = None,
        whole: bool = False,
    ) -> None:
        import torch

        found = transformer_layers(model)
        if found is None or not 0 < frozen < len(found[1]):
            raise ValueError(f"cannot cache {frozen} frozen layers of this model")
        self.inner, self.layers = found
        self.frozen, self.tokenize = frozen, tokenize
        texts = list(texts)
        lengths = np.zeros(len(texts), dtype=np.int64)
        for s in range(0, len(texts), batch_size):
            mask = tokenize(texts[s : s + batch_size])["attention_mask"]
            lengths[s : s + batch_size] = mask.sum(dim=1).numpy()
        self.lengths = lengths
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        width = int(self.inner.config.hidden_size)
        shape = (int(self.offsets[-1]), width)
        self._tmp = None
        if shape[0] * width * 4 > IN_MEMORY_BYTES:
            self._tmp = tempfile.TemporaryDirectory(prefix="embedlab-layers-", dir=workdir)
            path = os.path.join(self._tmp.name, "states.f32")
            self.data = np.lib.format.open_memmap(path, "w+", np.float32, shape)
        else:
            self.data = np.empty(shape, dtype=np.float32)
        was_training = model.training
        model.eval()
        order = np.argsort(lengths, kind="stable")  # batches of like lengths: little padding
        self.embeddings: np.ndarray | None = None  # the whole model's, when asked for
        with torch.inference_mode():
            for s in range(0, len(texts), batch_size):
                rows = order[s : s + batch_size]
                states, emb = self._run(model, [texts[r] for r in rows], whole)
                pos = np.arange(states.shape[1])
                real = pos < lengths[rows, None]
                self.data[(self.offsets[rows, None] + pos)[real]] = states[real]
                if emb is not None:
                    if self.embeddings is None:
                        self.embeddings = np.empty((len(texts), emb.shape[1]), np.float32)
                    self.embeddings[rows] = emb
        model.train(was_training)

    def _run(self, model: Any, texts: list[str], whole: bool) -> tuple[np.ndarray, Any]:
        """The padded token states after the frozen layers for one batch of texts, and with
        ``whole`` the whole model's sentence embeddings of it (else None: the pass stops
        at the last frozen layer)."""
        got: list[Any] = []

        def grab(_module: Any, _inputs: Any, output: Any) -> None:
            got.append(output[0] if isinstance(output, tuple) else output)
            if not whole:
                raise _StopAfter

        handle = self.layers[self.frozen - 1].register_forward_hook(grab)
        emb = None
        try:
            with contextlib.suppress(_StopAfter):
                emb = model(self.tokenize(texts))["sentence_embedding"].float().numpy()
        finally:
            handle.remove()
        return got[0].float().numpy(), emb

    def states(self, rows: np.ndarray, width: int) -> Any:
        """The cached states of ``rows`` as a [len(rows), width, hidden] tensor, zeros past
        each text's end (the padding its attention mask hides)."""
        import torch

        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros((len(rows), width, self.data.shape[1]), dtype=np.float32)
        pos = np.arange(width)
        real = pos < np.minimum(self.lengths[rows], width)[:, None]
        out[real] = self.data[(self.offsets[rows][:, None] + pos)[real]]
        return torch.from_numpy(out)

    @contextlib.contextmanager
    def feeding(self, model: Any) -> Iterator[Any]:
        """While active, ``model`` starts from cached states: set ``.states`` on the
        yielded module before each forward pass. The model is whole again afterwards."""
        import torch

        inner = self.inner
        original_input, original_layers = inner.embeddings, inner.encoder.layer
        stand_in = _cached_input()
        inner.embeddings = stand_in
        inner.encoder.layer = torch.nn.ModuleList(list(original_layers)[self.frozen :])
        try:
            yield stand_in
        finally:
            inner.embeddings, inner.encoder.layer = original_input, original_layers

    def embed(self, model: Any, rows: np.ndarray, texts: Sequence[str]) -> Any:
        """Sentence embeddings of ``texts`` (the cached ``rows``) from the trained layers:
        the model's own forward pass, started from the cache."""
        features = self.tokenize(list(texts))
        width = int(features["attention_mask"].shape[1])
        with self.feeding(model) as stand_in:
            stand_in.states = self.states(rows, width)
            return model(features)["sentence_embedding"]

    def check(self, model: Any, texts: Sequence[str], tolerance: float = 1e-4) -> bool:
        """Whether the truncated model gives the whole model's embeddings (eval mode) on
        the first cached ``texts``."""
        import torch

        texts = list(texts)[:8]
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                whole = model(self.tokenize(texts))["sentence_embedding"]
                part = self.embed(model, np.arange(len(texts)), texts)
            return bool(torch.allclose(whole, part, atol=tolerance, rtol=0))
        except Exception:  # any failure means: train the whole model
            return False
        finally:
            model.train(was_training)

    def close(self) -> None:
        """Release the cache (and its temporary file)."""
        self.data = np.empty((0, self.data.shape[1]), dtype=np.float32)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
