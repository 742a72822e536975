"""Experiment (not shipped): would a trained cross-encoder read better than the fitted sentence ranker, and at what
cost? The first `--layers` layers of the default model (multilingual-e5-small, the converted folder) read the
question and a sentence together; low-rank adapters (LoRA, rank `--rank`) on every linear layer and a linear head
over the mean-pooled output are trained, the rest stays frozen. It re-ranks the ranker's best `--top` sentences.

Data: benchmarks/reader_dump.py's dump (dev questions only). One fifth of the questions — grouped by XQuAD id,
so a question's four directions fall on the same side — is held out; the logistic ranker is refitted on the
other four fifths (benchmarks/fit_reader.py's `fit`) so both are compared on unseen questions. Loss: softmax over
a question's candidates, the gold-bearing ones as targets. Prints held-out top-1 / top-3 (a question counts when
its best sentence holds a gold answer) for the ranker, the cross-encoder alone and their sums, and the time to
score one question's candidates.

    PYTHONPATH=src .venv/bin/python benchmarks/reader_dump.py --out /tmp/dump.jsonl --xquad-n 400
    .venv/bin/python benchmarks/cross_encoder.py /tmp/dump.jsonl --layers 12 --top 8 --epochs 1
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from fit_reader import fit, group_of, load  # noqa: E402


def _key(row: dict) -> str:
    return f"x{row['id']}" if row["set"] == "xquad" else f"d{row['id']}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dump", type=Path)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--top", type=int, default=8, help="candidates re-ranked per question")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank")
    parser.add_argument("--lr", type=float, default=5e-4)
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer, BertModel

    from peru_qa.e5convert import converted_model_path

    torch.manual_seed(0)
    rows = load(args.dump)
    keys = sorted({_key(r) for r in rows})
    random.Random(1).shuffle(keys)
    held = set(keys[: len(keys) // 5])
    train = [r for r in rows if _key(r) not in held]
    test = [r for r in rows if _key(r) in held]
    ranker = fit(train, 1.0, 3.0)

    def ranked(row: dict) -> tuple[np.ndarray, np.ndarray]:
        scores = np.array([s["features"] for s in row["sentences"]]) @ ranker.coef_[0] + ranker.intercept_[0]
        return scores, np.argsort(-scores, kind="stable")[: args.top]

    folder = converted_model_path()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    bert = BertModel.from_pretrained(folder, num_hidden_layers=args.layers, add_pooling_layer=False)
    for p in bert.parameters():
        p.requires_grad = False

    class LoRA(torch.nn.Module):
        def __init__(self, base: torch.nn.Linear):
            super().__init__()
            self.base = base
            self.a = torch.nn.Parameter(torch.randn(args.rank, base.in_features) * 0.01)
            self.b = torch.nn.Parameter(torch.zeros(base.out_features, args.rank))

        def forward(self, x):
            return self.base(x) + (x @ self.a.T) @ self.b.T * 2.0

    for layer in bert.encoder.layer:
        attention = layer.attention.self
        attention.query, attention.key, attention.value = (LoRA(attention.query), LoRA(attention.key),
                                                           LoRA(attention.value))
        layer.attention.output.dense = LoRA(layer.attention.output.dense)
        layer.intermediate.dense = LoRA(layer.intermediate.dense)
        layer.output.dense = LoRA(layer.output.dense)
    head = torch.nn.Linear(bert.config.hidden_size, 1)
    params = [p for p in bert.parameters() if p.requires_grad] + list(head.parameters())

    def score(question: str, texts: list[str]):
        batch = tokenizer([f"query: {question}"] * len(texts), [f"passage: {t}" for t in texts],
                          return_tensors="pt", padding=True, truncation=True, max_length=128)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            hidden = bert(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return head((hidden.float() * mask).sum(1) / mask.sum(1)).squeeze(-1)

    items = []
    for row in train:
        _, order = ranked(row)
        labels = [row["sentences"][i]["label"] for i in order]
        if any(labels) and not all(labels):
            items.append((row, order, labels))
    steps = int(len(items) * args.epochs)
    optimizer = torch.optim.AdamW(params, lr=args.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: min(1.0, (i + 1) / 50) * max(0.0, 1 - i / steps))
    print(f"{len(train)} training questions ({len(items)} with a gold and a non-gold candidate), {len(test)} held "
          f"out; {sum(p.numel() for p in params):,} trained parameters; {steps} steps", flush=True)
    bert.train()
    started, running, accumulate = time.time(), 0.0, 4
    for step in range(steps):
        if step % len(items) == 0:
            random.Random(step).shuffle(items)
        row, order, labels = items[step % len(items)]
        logits = score(row["question"], [row["sentences"][i]["text"] for i in order])
        gold = torch.tensor(labels)
        weight = 3.0 if row["set"] == "domain" else 1.0
        loss = weight * (torch.logsumexp(logits, 0) - torch.logsumexp(logits[gold], 0)) / accumulate
        loss.backward()
        running += loss.item() * accumulate
        if (step + 1) % accumulate == 0:
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad()
        schedule.step()
        if (step + 1) % 200 == 0:
            print(f"  step {step + 1}: loss {running / 200:.3f}, {time.time() - started:.0f} s", flush=True)
            running = 0.0

    bert.eval()
    scored = []
    started = time.time()
    with torch.inference_mode():
        for row in test:
            scores, order = ranked(row)
            scored.append((row, scores, order, score(row["question"], [row["sentences"][i]["text"]
                                                                         for i in order]).numpy()))
    print(f"scoring {args.top} candidates: {1000 * (time.time() - started) / len(test):.0f} ms per question")
    for name, mix in (("ranker", 0.0), ("ranker + 0.5 x CE", 0.5), ("ranker + CE", 1.0), ("ranker + 2 x CE", 2.0),
                      ("CE alone", None)):
        hits: dict[str, list[bool]] = defaultdict(list)
        for row, scores, order, ce in scored:
            combined = scores.copy()
            combined[order] = 1000 + (ce if mix is None else scores[order] + mix * ce)
            top = np.argsort(-combined, kind="stable")
            for group in (group_of(row), "all"):
                hits[f"{group} top-1"].append(row["sentences"][top[0]]["label"])
                hits[f"{group} top-3"].append(any(row["sentences"][i]["label"] for i in top[:3]))
        print(f"{name:18s}", {k: round(float(np.mean(v)), 3) for k, v in sorted(hits.items())})
    return 0


if __name__ == "__main__":
    sys.exit(main())
