"""``python -m cafe.bench clustering FILE.jsonl ... [--out DIR] [--pipelines a,b] [--repeat N]``

Clusters labelled notes (one JSON object a line: ``{"text", "label", "lang"?}``) with the default
theme pipeline and every other installed one, and prints NMI, ARI, themes found vs labels and
times, with the model already loaded:

- ``time_s``: cold, notes to themes with no cached embedding (the median of ``--repeat`` runs);
- ``s/600``: the same scaled to 600 notes (the embedding cost grows linearly with the notes);
- ``warm_s``: notes to themes when every note was already embedded during the rounds
  (``prepare_embeddings``), i.e. what the harvest itself then costs.

The load average is printed before and after: on a busy machine times grow, so compare the
pipelines of one run with each other. With ``--out DIR`` writes ``DIR/<file>.<pipeline>.json``
(theme index per input line, in input order) and, for the default pipeline,
``DIR/<file>.default.json`` as well.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from cafe.domain.clustering import NoteText, available_pipelines, get_embedder, prepare_embeddings, propose_themes
from cafe.domain.embedders import clear_caches

# ISO 639-3 (as in SIB-200 / FLORES codes like "fra_Latn") -> the 2-letter codes notes carry.
_ISO3_TO_2 = {
    "eng": "en", "spa": "es", "fra": "fr", "kin": "rw", "nya": "ny", "sot": "st", "deu": "de",
    "por": "pt", "ita": "it", "nld": "nl", "swh": "sw", "swa": "sw", "arb": "ar", "ara": "ar",
    "zho": "zh", "cmn": "zh", "amh": "am", "rus": "ru", "jpn": "ja", "kor": "ko", "hin": "hi",
    "yor": "yo", "hau": "ha", "ibo": "ig", "zul": "zu", "xho": "xh", "som": "so", "lug": "lg",
}


def normalize_lang(lang: str | None) -> str | None:
    if not lang:
        return None
    code = str(lang).strip().lower().replace("-", "_").split("_")[0]
    if len(code) == 3:
        return _ISO3_TO_2.get(code, code)
    return code or None


# --------------------------------------------------------------------------- metrics


def _contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    _, ai = np.unique(np.asarray(a), return_inverse=True)
    _, bi = np.unique(np.asarray(b), return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1), dtype=np.float64)
    np.add.at(table, (ai, bi), 1.0)
    return table


def nmi(labels_true, labels_pred) -> float:
    """Normalised mutual information, arithmetic-mean normalisation (scikit-learn's default)."""
    table = _contingency(labels_true, labels_pred)
    n = table.sum()
    if n == 0:
        return 1.0
    p = table / n
    pa, pb = p.sum(axis=1), p.sum(axis=0)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz])).sum())
    ha = float(-(pa[pa > 0] * np.log(pa[pa > 0])).sum())
    hb = float(-(pb[pb > 0] * np.log(pb[pb > 0])).sum())
    if ha == 0.0 and hb == 0.0:
        return 1.0
    denom = (ha + hb) / 2.0
    return max(0.0, mi / denom) if denom > 0 else 0.0


def ari(labels_true, labels_pred) -> float:
    """Adjusted Rand index."""
    table = _contingency(labels_true, labels_pred)
    n = table.sum()

    def comb2(x):
        return x * (x - 1) / 2.0

    index = comb2(table).sum()
    sum_a = comb2(table.sum(axis=1)).sum()
    sum_b = comb2(table.sum(axis=0)).sum()
    total = comb2(n)
    if total == 0:
        return 1.0
    expected = sum_a * sum_b / total
    max_index = (sum_a + sum_b) / 2.0
    if max_index == expected:
        return 1.0
    return float((index - expected) / (max_index - expected))


# --------------------------------------------------------------------------- runner


def load_jsonl(path: str | Path) -> tuple[list[NoteText], list[str]]:
    notes, labels = [], []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            line = line.strip()
            if not line:
                continue
            row = json.loads(line)
            notes.append(NoteText(id=i, text=str(row["text"]), lang=normalize_lang(row.get("lang"))))
            labels.append(str(row.get("label")))
    return notes, labels


def assignments(notes: list[NoteText], themes) -> list[int]:
    theme_of = {}
    for t_index, theme in enumerate(themes):
        for nid in theme.note_ids:
            theme_of[nid] = t_index
    return [theme_of[n.id] for n in notes]


def _load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # not available on this platform
        return "n/a"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m cafe.bench clustering", description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", help="labelled notes, JSON lines")
    parser.add_argument("--out", help="directory for theme assignments")
    parser.add_argument("--pipelines", help="comma-separated pipelines (default: all installed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="cold runs per file and pipeline (median time)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    installed = available_pipelines()
    default = installed[0]
    pipelines = [p.strip() for p in args.pipelines.split(",")] if args.pipelines else installed
    print(f"pipelines: {', '.join(pipelines)} (default: {default})")
    print(f"load average (1, 5, 15 min): {_load_average()} on {os.cpu_count()} cores")
    load_times = {}
    for name in pipelines:
        t0 = time.perf_counter()
        emb = get_embedder(name)
        if hasattr(emb, "load"):
            emb.load()
        load_times[name] = time.perf_counter() - t0
        print(f"  loaded {name} in {load_times[name]:.2f}s")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)

    header = (
        f"{'file':28} {'pipeline':9} {'notes':>5} {'NMI':>6} {'ARI':>6} {'themes':>6} {'labels':>6} "
        f"{'time_s':>7} {'s/600':>6} {'warm_s':>6}"
    )
    print(header)
    print("-" * len(header))
    for path in args.files:
        notes, labels = load_jsonl(path)
        stem = Path(path).name
        if stem.endswith(".jsonl"):
            stem = stem[: -len(".jsonl")]
        n_labels = len(set(labels))
        for name in pipelines:
            times = []
            for _ in range(max(1, args.repeat)):
                clear_caches()  # cold: nothing embedded before, not even by another pipeline
                t0 = time.perf_counter()
                themes = propose_themes(notes, pipeline=name, seed=args.seed)
                times.append(time.perf_counter() - t0)
            elapsed = statistics.median(times)
            prepare_embeddings(notes, pipeline=name)  # as if embedded during the rounds
            t0 = time.perf_counter()
            warm_themes = propose_themes(notes, pipeline=name, seed=args.seed)
            warm = time.perf_counter() - t0
            clear_caches()
            pred = assignments(notes, themes)
            if assignments(notes, warm_themes) != pred:
                print(f"  note: {name} on {stem} gave other themes from cached vectors")
            tag = f"{name}*" if name == default else name
            print(
                f"{stem:28} {tag:9} {len(notes):5d} {nmi(labels, pred):6.3f} {ari(labels, pred):6.3f} "
                f"{len(themes):6d} {n_labels:6d} {elapsed:7.2f} {elapsed * 600 / max(1, len(notes)):6.2f} {warm:6.2f}",
                flush=True,
            )
            if args.out:
                safe = name.replace("+", "_")
                outs = [f"{stem}.{safe}.json"] + ([f"{stem}.default.json"] if name == default else [])
                for fname in outs:
                    (Path(args.out) / fname).write_text(json.dumps(pred))
    print(f"load average (1, 5, 15 min): {_load_average()}")
    print("(* = default pipeline; times with the model already loaded: time_s cold, s/600 scaled to 600")
    print(" notes, warm_s with every note embedded beforehand as during the rounds)")
    return 0
