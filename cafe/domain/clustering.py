"""Sticky notes -> proposed themes (pure domain logic, offline, deterministic).

Pipeline:
1. Notes whose normalised text is identical ("more buses" / "More buses!!") are collapsed into
   one item, so they always land in the same theme.
2. Items are embedded with the chosen pipeline (see ``cafe.domain.embedders``).
3. When the harvest mixes languages (at least two languages with enough notes each), each
   language's mean vector is subtracted (language-agnostic centring) and the neighbour graph
   takes the same number of neighbours from every language, so themes form across languages
   instead of by language.
4. Spectral clustering of a k-nearest-neighbour graph (0.75*sqrt(n) neighbours) whose edges carry
   self-tuning Gaussian weights (local scale = distance to the 7th neighbour), for every theme
   count in an n-dependent range. The count is chosen by the cosine silhouette: the largest k
   whose silhouette is within 10% of the best up to the base cap (about sqrt(n/2), at most 15;
   fewer for small harvests). Up to about sqrt(n) themes (at most 20, i.e. from 400 notes on)
   are proposed only when that is at least 15% crisper than anything under the cap.
   The chosen split is then refined by a few spherical k-means steps in embedding space,
   and then by a leave-one-out kernel classifier: every note takes the theme that a classifier
   trained on all the other notes gives it, until nothing moves (``_relabel``), so that a theme
   may take the shape its notes give it rather than a ball around a centroid.
5. Each theme gets keywords (class-based TF-IDF over its notes, stop words removed), a label
   made of the top keywords, the representative note (closest to the theme centroid) and the
   count of distinct tables and rounds that raised it.

The models cache their vectors by text: ``prepare_embeddings`` embeds notes as they arrive
during the rounds, so that ``propose_themes`` at the harvest only clusters: step 2 is then a
look-up, and with ``use+e5`` that step is ~95% of a cold harvest's time.
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .embedders import (
    Embedder,
    EmbeddingCache,
    available_pipelines,
    content_tokens,
    get_embedder,
    tokenize,
)

__all__ = [
    "NoteText",
    "ProposedTheme",
    "Embedder",
    "available_pipelines",
    "get_embedder",
    "propose_themes",
    "prepare_embeddings",
    "cluster_vectors",
    "DEFAULT_MAX_THEMES",
]

DEFAULT_MAX_THEMES = 15
SMALL_HARVEST = 30  # distinct notes; below this fewer than 3 themes are allowed
MIN_NOTES_PER_LANGUAGE = 8  # a language needs this many notes to get its own centring
SILHOUETTE_TOLERANCE = 0.90  # pick the largest k with silhouette >= 90% of the best
MIN_SILHOUETTE_TO_SPLIT = 0.02  # below this, a small harvest stays one theme
NEIGHBOURS_PER_SQRT_N = 0.75  # kNN graph: 0.75 * sqrt(n) neighbours (at least 5)
LOCAL_SCALING = True  # self-tuning Gaussian weights on the kNN graph
LOCAL_SCALE_NEIGHBOUR = 7  # sigma_i = distance to the 7th neighbour (Zelnik-Manor & Perona)
REFINE_ITERATIONS = 5  # spherical k-means steps in embedding space after the spectral split
RELABEL_ITERATIONS = 30  # then leave-one-out kernel classifier passes (0: off), see _relabel
RELABEL_BANDWIDTH = 0.5  # its Gaussian kernel's width, times the median squared distance
RELABEL_RIDGE = 0.3  # ridge penalty of that classifier
EXTENDED_MAX_THEMES = 20  # hard ceiling for very large harvests
EXTEND_SILHOUETTE_GAIN = 1.15  # more than the base cap only when 15% crisper than any k <= cap
LABEL_KEYWORDS = 3
MAX_KEYWORDS = 6
PREPARE_BATCH = 256  # texts per model call in prepare_embeddings (bounded memory and latency)


@dataclass(frozen=True)
class NoteText:
    id: int
    text: str
    table: int | None = None
    round: int | None = None
    lang: str | None = None  # e.g. "en", "es", "fr", "rw", "ny", "st" (may be None)


@dataclass
class ProposedTheme:
    label: str  # short: a few key words
    keywords: list[str]
    representative_id: int  # the note that best represents the theme
    note_ids: list[int]
    tables: int  # distinct table numbers that raised it
    rounds: int  # distinct rounds that raised it


# --------------------------------------------------------------------------- helpers

_PUNCT_RE = re.compile(r"[^\w]+", re.UNICODE)


def _dedupe_key(text: str) -> str:
    """Text folded for near-duplicate detection: case, accents' composition, punctuation, spaces."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    key = _PUNCT_RE.sub(" ", folded).strip()
    return key or folded.strip()


def _norm_lang(lang: str | None) -> str | None:
    if not lang:
        return None
    return lang.strip().lower().replace("-", "_").split("_")[0] or None


def _l2(x: np.ndarray, blocks: Sequence[int] | None = None) -> np.ndarray:
    """Row L2 normalisation; with ``blocks`` (column widths), each block is normalised first
    and the concatenation is scaled so that blocks weigh equally."""
    if blocks and len(blocks) > 1 and sum(blocks) == x.shape[1]:
        parts, start = [], 0
        for width in blocks:
            part = x[:, start : start + width]
            parts.append(part / np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12))
            start += width
        x = np.hstack(parts)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _language_groups(langs: Sequence[str | None]) -> np.ndarray | None:
    """Group ids per item when >= 2 languages have enough items each, else None."""
    counts = Counter(l for l in langs if l)
    big = sorted(l for l, c in counts.items() if c >= MIN_NOTES_PER_LANGUAGE)
    if len(big) < 2:
        return None
    ids = {l: i for i, l in enumerate(big)}
    other = len(big)
    return np.array([ids.get(l, other) if l else other for l in langs], dtype=np.int64)


def _center_by_group(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    out = x.astype(np.float64, copy=True)
    for g in np.unique(groups):
        m = groups == g
        out[m] -= out[m].mean(axis=0)
    return out


def _knn_graph(sim: np.ndarray, nn: int, groups: np.ndarray | None) -> np.ndarray:
    """Symmetric k-nearest-neighbour graph (0/1). With language ``groups``, every item takes the
    same number of neighbours from each language."""
    n = sim.shape[0]
    s = sim.copy()
    np.fill_diagonal(s, -np.inf)
    w = np.zeros((n, n), dtype=np.float64)
    rows = np.arange(n)
    if groups is None:
        k = min(nn, n - 1)
        idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
        w[np.repeat(rows, k), idx.ravel()] = 1.0
    else:
        ug = np.unique(groups)
        per = max(1, int(round(nn / len(ug))))
        for g in ug:
            cols = np.where(groups == g)[0]
            k = min(per, len(cols))
            if k == 0:
                continue
            sub = s[:, cols]
            idx = cols[np.argsort(-sub, axis=1, kind="stable")[:, :k]]
            w[np.repeat(rows, k), idx.ravel()] = 1.0
        np.fill_diagonal(w, 0.0)
    return np.maximum(w, w.T)


def _affinity(sim: np.ndarray, nn: int, groups: np.ndarray | None) -> np.ndarray:
    """kNN graph weighted with the self-tuning Gaussian kernel (Zelnik-Manor & Perona 2004):
    w_ij = exp(-d_ij^2 / (sigma_i sigma_j)), d = cosine distance and sigma_i the distance from i
    to its LOCAL_SCALE_NEIGHBOUR-th nearest neighbour. Edges inside dense regions keep weight
    ~1 while edges reaching across a sparse gap are damped, whatever the embedding's scale."""
    n = sim.shape[0]
    graph = _knn_graph(sim, nn, groups)
    if not LOCAL_SCALING or n < 3:
        return graph
    dist = np.maximum(1.0 - sim, 0.0)
    d = dist.copy()
    np.fill_diagonal(d, np.inf)
    m = min(LOCAL_SCALE_NEIGHBOUR, n - 1) - 1
    sigma = np.maximum(np.partition(d, m, axis=1)[:, m], 1e-6)
    return graph * np.exp(-(dist**2) / (sigma[:, None] * sigma[None, :]))


def _kmeans(x: np.ndarray, k: int, seed: int, n_init: int = 6, max_iter: int = 100) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding; best of ``n_init`` by inertia. Deterministic."""
    n = x.shape[0]
    if k <= 1 or n <= k:
        return np.arange(n) if n <= k else np.zeros(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    sq = (x * x).sum(axis=1)
    best_inertia, best = math.inf, np.zeros(n, dtype=np.int64)
    for _ in range(n_init):
        centers = [int(rng.integers(n))]
        d2 = np.maximum(sq - 2 * x @ x[centers[0]] + sq[centers[0]], 0.0)
        for _ in range(k - 1):
            total = d2.sum()
            i = int(rng.choice(n, p=d2 / total)) if total > 0 else int(rng.integers(n))
            centers.append(i)
            d2 = np.minimum(d2, np.maximum(sq - 2 * x @ x[i] + sq[i], 0.0))
        c = x[centers].copy()
        labels = np.full(n, -1, dtype=np.int64)
        for _ in range(max_iter):
            dist = sq[:, None] - 2 * x @ c.T + (c * c).sum(axis=1)[None, :]
            new = dist.argmin(axis=1)
            if np.array_equal(new, labels):
                break
            labels = new
            onehot = np.zeros((n, k))
            onehot[np.arange(n), labels] = 1.0
            counts = onehot.sum(axis=0)
            sums = onehot.T @ x
            empty = counts == 0
            c = np.where(empty[:, None], c, sums / np.maximum(counts, 1)[:, None])
        inertia = float(dist[np.arange(n), labels].sum())
        if inertia < best_inertia - 1e-9:
            best_inertia, best = inertia, labels.copy()
    # relabel compactly
    _, best = np.unique(best, return_inverse=True)
    return best


def _refine(z: np.ndarray, labels: np.ndarray, weights: np.ndarray, iters: int) -> np.ndarray:
    """A few spherical k-means steps in embedding space, started from ``labels``.

    The spectral split sees only the neighbour graph; re-assigning every item to the nearest
    (weighted, normalised) theme centroid fixes items the graph placed by a few stray edges.
    Themes that empty out are dropped, so k never grows."""
    labels = labels.copy()
    for _ in range(iters):
        k = int(labels.max()) + 1
        onehot = np.zeros((len(labels), k))
        onehot[np.arange(len(labels)), labels] = weights
        cent = onehot.T @ z
        cent /= np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)
        new = (z @ cent.T).argmax(axis=1)
        _, new = np.unique(new, return_inverse=True)
        if np.array_equal(new, labels):
            break
        labels = new
    return labels


def _relabel(z: np.ndarray, labels: np.ndarray, iters: int, min_k: int) -> np.ndarray:
    """Give every item the theme that a classifier trained on all the *other* items gives it,
    until nothing moves (at most ``iters`` passes).

    The classifier is kernel ridge regression on one-hot themes, one example per distinct note,
    with a Gaussian kernel on the unit vectors whose width is ``RELABEL_BANDWIDTH`` times the
    median squared distance between items (so it adapts to each model's spread: USE's median
    is ~1.8, e5's ~0.45). Its leave-one-out predictions come in closed form from one matrix
    inverse, M = (K + lambda I)^-1: the hat matrix is H = K M = I - lambda M and the prediction
    for item i without item i is (f_i - H_ii y_i) / (1 - H_ii), so each pass is one product.

    Why: nearest-centroid refinement makes every theme a ball around its centroid, while a
    topic is often several kinds of note (on health: clinics, medicines, epidemics); the
    kernel classifier lets a theme take the shape its notes give it. A theme that no item
    keeps is dropped; the count never goes below ``min_k``.

    Passes are asynchronous (each move updates the votes the next note sees), which is what
    makes them settle: on the evaluation sets within 10 passes, with at most one note still
    moving at the cap. All-at-once passes flipped 10-28 notes back and forth for 60 passes.

    Measured with ``python -m cafe.bench clustering``'s data, on random subsets (60% to 95%) of
    each set, default pipeline, this step against none, mean NMI change in two runs of 18 and
    30 subsets: SIB-200 English +0.053/+0.061, Polis +0.001/+0.003, Stack Overflow
    +0.001/+0.004, the six-language set -0.001/-0.003. With ``e5`` vectors alone: +0.02 to
    +0.06 on all four sets.
    """
    n = len(labels)
    if iters <= 0 or n < 3 or int(labels.max()) < 1:
        return labels
    sq = np.maximum(2.0 - 2.0 * (z @ z.T), 0.0)
    scale = RELABEL_BANDWIDTH * float(np.median(sq[np.triu_indices(n, 1)]))
    kernel = np.exp(-sq / max(scale, 1e-6))
    try:
        m = np.linalg.inv(kernel + RELABEL_RIDGE * np.eye(n))
    except np.linalg.LinAlgError:
        return labels
    hat = np.eye(n) - RELABEL_RIDGE * m
    np.fill_diagonal(hat, 0.0)  # leave-one-out: item i's own label never votes for itself
    row = hat.sum(axis=1)
    labels = labels.copy()
    k = int(labels.max()) + 1
    onehot = np.zeros((n, k))
    onehot[np.arange(n), labels] = 1.0
    votes = hat @ onehot  # votes[i, c] = sum over j != i of H_ij [label_j == c]
    size = onehot.sum(axis=0)
    for _ in range(iters):
        moved = 0
        for i in range(n):
            # centred targets (one-hot minus theme shares): the score of theme c for item i is
            # (votes[i, c] - row[i] * share_c) / (1 - H_ii); the positive factor cannot change
            # which theme wins, so it is left out.
            score = votes[i] - row[i] * (size / n)
            score[size == 0] = -np.inf
            old = labels[i]
            if size[old] == 1 and int((size > 0).sum()) <= min_k:
                continue  # moving it would empty a theme and go below the allowed count
            new = int(score.argmax())
            if new == old or score[new] <= score[old] + 1e-12:
                continue
            labels[i] = new
            size[old] -= 1.0
            size[new] += 1.0
            votes[:, old] -= hat[:, i]
            votes[:, new] += hat[:, i]
            moved += 1
        if not moved:
            break
    _, labels = np.unique(labels, return_inverse=True)
    return labels


def _silhouette(dist: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """Weighted mean silhouette for a precomputed distance matrix."""
    n = len(labels)
    ks = np.unique(labels)
    if len(ks) < 2:
        return -1.0
    onehot = (labels[:, None] == ks[None, :]).astype(np.float64) * weights[:, None]
    size = onehot.sum(axis=0)
    sums = dist @ onehot
    own = np.searchsorted(ks, labels)
    own_size = size[own] - weights
    a = sums[np.arange(n), own] / np.maximum(own_size, 1e-12)
    other = sums / np.maximum(size, 1e-12)[None, :]
    other[np.arange(n), own] = np.inf
    b = other.min(axis=1)
    s = (b - a) / np.maximum(np.maximum(a, b), 1e-12)
    s[own_size <= 1e-9] = 0.0
    return float((s * weights).sum() / weights.sum())


def theme_count_range(n_items: int, min_themes: int | None = None, max_themes: int | None = None) -> tuple[int, int]:
    """Range of theme counts tried for ``n_items`` distinct notes: about sqrt(n/2), at most 15."""
    if n_items <= 0:
        return 0, 0
    hi = int(round(math.sqrt(n_items / 2.0)))
    hi = min(DEFAULT_MAX_THEMES, max(2 if n_items >= 3 else 1, hi))
    # a room reads about 3..15 themes; a small harvest may have 2, or stay a single theme
    lo = 3 if n_items >= SMALL_HARVEST else 1
    if min_themes is not None:
        lo = max(1, min_themes)
        if max_themes is None:
            hi = max(hi, lo)
    if max_themes is not None:
        hi = max(1, max_themes)
        lo = min(lo, hi)
    hi = min(hi, n_items)
    lo = min(lo, hi)
    return lo, hi


def extended_max_themes(n_items: int) -> int:
    """Ceiling for very large harvests: about sqrt(n), at most ``EXTENDED_MAX_THEMES`` (20 from
    400 distinct notes on). Counts above the ``theme_count_range`` cap are proposed only when
    they are markedly crisper (see ``cluster_vectors``)."""
    return max(0, min(EXTENDED_MAX_THEMES, int(round(math.sqrt(max(n_items, 0))))))


def _select(candidates: list[tuple[int, float, np.ndarray]], base_hi: int) -> tuple[int, float, np.ndarray]:
    """Pick a theme count from (k, silhouette, labels) candidates.

    Within the base range (k <= base_hi): the largest k whose silhouette is within 10% of the
    best there (finer themes when separation is equally weak). Above the base range, only when
    the best silhouette there beats the base range's best by ``EXTEND_SILHOUETTE_GAIN``: many
    genuinely distinct fine topics make the silhouette keep rising with k, while on diffuse
    data it stays flat, and a longer list is harder for a room to read.
    """
    base = [c for c in candidates if c[0] <= base_hi] or candidates
    pool = base
    base_best = max(c[1] for c in base)
    extra = [c for c in candidates if c[0] > base_hi]
    if extra and base_best > 0 and max(c[1] for c in extra) >= EXTEND_SILHOUETTE_GAIN * base_best:
        pool = extra
    best = max(c[1] for c in pool)
    threshold = best * SILHOUETTE_TOLERANCE if best > 0 else best
    return max((c for c in pool if c[1] >= threshold - 1e-12), key=lambda c: c[0])


def cluster_vectors(
    vectors: np.ndarray,
    *,
    langs: Sequence[str | None] | None = None,
    weights: Sequence[float] | None = None,
    blocks: Sequence[int] | None = None,
    seed: int = 0,
    min_themes: int | None = None,
    max_themes: int | None = None,
) -> np.ndarray:
    """Cluster row vectors; returns a label per row (0..k-1). The number of clusters is automatic."""
    x = np.asarray(vectors, dtype=np.float64)
    n = x.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    lo, hi = theme_count_range(n, min_themes, max_themes)
    if hi <= 1:
        return np.zeros(n, dtype=np.int64)
    base_hi = hi
    if max_themes is None:
        hi = max(hi, min(extended_max_themes(n), n))
    with np.errstate(all="ignore"):
        x = np.nan_to_num(x)
        groups = _language_groups([_norm_lang(l) for l in langs]) if langs is not None else None
        if groups is not None:
            x = _center_by_group(x, groups)
        z = _l2(x, blocks)
        sim = np.clip(z @ z.T, -1.0, 1.0)
        dist = 1.0 - sim
        if n >= 20:
            nn = min(n - 1, max(5, int(round(NEIGHBOURS_PER_SQRT_N * math.sqrt(n)))))
            graph = _affinity(sim, nn, groups)
            deg = graph.sum(axis=1)
            dinv = 1.0 / np.sqrt(np.maximum(deg, 1e-12))
            lap = dinv[:, None] * graph * dinv[None, :]
            _, vecs = np.linalg.eigh(lap)
            vecs = vecs[:, ::-1]

            def run(k: int) -> np.ndarray:
                return _kmeans(_l2(vecs[:, :k]), k, seed)
        else:

            def run(k: int) -> np.ndarray:
                return _kmeans(z, k, seed)

        candidates: list[tuple[int, float, np.ndarray]] = []
        for k in range(max(lo, 2), hi + 1):
            labels = run(k)
            candidates.append((k, _silhouette(dist, labels, w), labels))
    if lo <= 1:
        # A small harvest splits only when the split is clearly better than noise.
        if not candidates or max(s for _, s, _ in candidates) < MIN_SILHOUETTE_TO_SPLIT:
            return np.zeros(n, dtype=np.int64)
    labels = _select(candidates, base_hi)[2]
    if n >= 20:
        with np.errstate(all="ignore"):
            if REFINE_ITERATIONS > 0:
                labels = _refine(z, labels, w, REFINE_ITERATIONS)
            labels = _relabel(z, labels, RELABEL_ITERATIONS, max(lo, 1))
    return labels


# --------------------------------------------------------------------------- labels


def _keywords(
    members: list[list[int]], item_tokens: list[list[str]], weights: np.ndarray
) -> list[list[str]]:
    """Class-based TF-IDF keywords per cluster (document frequency inside vs across clusters)."""
    total_items = float(weights.sum())
    global_df: Counter = Counter()
    cluster_df: list[Counter] = []
    for mem in members:
        df: Counter = Counter()
        for i in mem:
            for t in set(item_tokens[i]):
                df[t] += float(weights[i])
        cluster_df.append(df)
        global_df.update(df)
    out: list[list[str]] = []
    for mem, df in zip(members, cluster_df):
        size = float(weights[mem].sum())
        scored = []
        for t, c in df.items():
            # bigrams only when they repeat within the theme
            if " " in t and c < 2:
                continue
            tf = c / size
            idf = math.log(1.0 + total_items / global_df[t])
            support = 1.0 if (c >= 2 or size <= 2) else 0.5
            scored.append((-(tf * idf * support), -c, t))
        scored.sort()
        words: list[str] = []
        for _, _, t in scored:
            parts = t.split(" ")
            # skip a word already covered by a chosen bigram and vice versa
            if any(p in words for p in parts) or any(t in w.split(" ") for w in words):
                continue
            words.append(t)
            if len(words) >= MAX_KEYWORDS:
                break
        out.append(words)
    return out


def _item_tokens(text: str) -> list[str]:
    toks = content_tokens(text)
    bigrams = [f"{a} {b}" for a, b in zip(toks, toks[1:])]
    return toks + bigrams


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _embedder_for(pipeline: str | Embedder | None) -> Embedder:
    return pipeline if (pipeline is not None and not isinstance(pipeline, str)) else get_embedder(pipeline)


def _collapse(notes: list[NoteText]) -> tuple[list[list[int]], list[str], list[str | None], np.ndarray]:
    """Near-duplicate notes -> items: the notes (positions) of each item, its text (its first
    note's), its language (the most common among its notes) and its weight (how many notes)."""
    keys: dict[str, int] = {}
    item_notes: list[list[int]] = []
    for pos, note in enumerate(notes):
        key = _dedupe_key(note.text)
        item = keys.setdefault(key, len(item_notes))
        if item == len(item_notes):
            item_notes.append([])
        item_notes[item].append(pos)
    item_texts = [notes[m[0]].text for m in item_notes]
    item_langs: list[str | None] = []
    for m in item_notes:
        langs = Counter(_norm_lang(notes[p].lang) for p in m if notes[p].lang)
        item_langs.append(min(langs, key=lambda l: (-langs[l], l)) if langs else None)
    weights = np.array([len(m) for m in item_notes], dtype=np.float64)
    return item_notes, item_texts, item_langs, weights


def prepare_embeddings(notes: Sequence[NoteText], *, pipeline: str | Embedder | None = None) -> int:
    """Embed notes ahead of the harvest, so that ``propose_themes`` on them only clusters.

    Meant to be called as notes arrive during the rounds, with all the café's notes so far (the
    ones already embedded cost a dictionary look-up): ``auto`` picks its models from the mix of
    languages of the whole harvest, exactly as ``propose_themes`` will. Every distinct text is
    embedded, so the harvest finds its vectors whichever duplicate it keeps. Returns how many
    texts were embedded now (0 for ``tfidf`` or an embedder without a cache). The first call
    loads the model(s); run it off the event loop, like the harvest.
    """
    notes = list(notes)
    if not notes:
        return 0
    embedder = _embedder_for(pipeline)
    if hasattr(embedder, "resolve"):
        _items, _texts, item_langs, _w = _collapse(notes)
        embedder = embedder.resolve(item_langs)
    caches = [getattr(p, "cache", None) for p in getattr(embedder, "parts", [embedder])]
    if not caches or not all(isinstance(c, EmbeddingCache) and c.maxsize for c in caches):
        return 0
    todo = [t for t in dict.fromkeys(n.text for n in notes) if not all(t in c for c in caches)]
    for start in range(0, len(todo), PREPARE_BATCH):
        batch = todo[start : start + PREPARE_BATCH]
        embedder.embed(batch, [None] * len(batch))
    return len(todo)


# --------------------------------------------------------------------------- API


def propose_themes(
    notes: Sequence[NoteText],
    *,
    pipeline: str | Embedder | None = None,
    seed: int = 0,
    min_themes: int | None = None,
    max_themes: int | None = None,
) -> list[ProposedTheme]:
    """Group notes into themes. Every note lands in exactly one theme; sorted by size descending.

    ``pipeline`` is a pipeline name (see ``available_pipelines``), an ``Embedder`` object, or
    ``None`` for the default pipeline. The result is deterministic for the same input and seed.
    """
    notes = list(notes)
    if not notes:
        return []
    embedder = _embedder_for(pipeline)

    # 1. collapse near-duplicates
    item_notes, item_texts, item_langs, weights = _collapse(notes)

    # 2-4. embed and cluster
    if hasattr(embedder, "resolve"):
        embedder = embedder.resolve(item_langs)
    if len(item_notes) == 1:
        labels = np.zeros(1, dtype=np.int64)
        vectors = np.ones((1, 1))
    else:
        vectors = np.asarray(embedder.embed(item_texts, item_langs), dtype=np.float64)
        if vectors.ndim != 2 or vectors.shape[0] != len(item_texts):
            raise ValueError(f"embedder {getattr(embedder, 'name', embedder)!r} returned shape {vectors.shape}")
        blocks = getattr(embedder, "block_sizes", None)
        labels = cluster_vectors(
            vectors, langs=item_langs, weights=weights, blocks=blocks, seed=seed, min_themes=min_themes, max_themes=max_themes
        )

    # 5. describe themes
    k = int(labels.max()) + 1 if len(labels) else 0
    members = [sorted(np.where(labels == c)[0].tolist()) for c in range(k)]
    members = [m for m in members if m]
    with np.errstate(all="ignore"):
        groups = _language_groups(item_langs) if len(item_langs) > 1 else None
        x = np.nan_to_num(vectors)
        if groups is not None:
            x = _center_by_group(x, groups)
        z = _l2(x, getattr(embedder, "block_sizes", None))
    tokens = [_item_tokens(t) for t in item_texts]
    keywords = _keywords(members, tokens, weights)

    themes: list[tuple[tuple, ProposedTheme]] = []
    for mem, kws in zip(members, keywords):
        positions = sorted(p for i in mem for p in item_notes[i])
        centroid = (z[mem] * weights[mem, None]).sum(axis=0)
        scores = z[mem] @ centroid
        # best: closest to centroid; ties -> more duplicates, then earliest note
        rep_item = min(mem, key=lambda i: (-round(float(scores[mem.index(i)]), 6), -weights[i], item_notes[i][0]))
        rep_note = notes[item_notes[rep_item][0]]
        label_words = kws[:LABEL_KEYWORDS]
        label = ", ".join(label_words) if label_words else (_short(rep_note.text, 40) or "…")
        tables = {notes[p].table for p in positions if notes[p].table is not None}
        rounds = {notes[p].round for p in positions if notes[p].round is not None}
        theme = ProposedTheme(
            label=label,
            keywords=list(kws) if kws else [w for w in tokenize(rep_note.text)[:LABEL_KEYWORDS]],
            representative_id=rep_note.id,
            note_ids=[notes[p].id for p in positions],
            tables=len(tables),
            rounds=len(rounds),
        )
        themes.append(((-len(positions), positions[0]), theme))
    themes.sort(key=lambda t: t[0])
    return [t for _, t in themes]
