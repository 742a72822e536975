"""Train the cross-encoder reader that re-ranks the sentence ranker's best sentences (issue 31), and write its
adapter into the package (src/peru_qa/reader_ce.safetensors + reader_ce.json).

Recipe (stop 25's `benchmarks/cross_encoder.py`): the first `--layers` layers of the default model
(multilingual-e5-small, `peru_qa.e5convert.converted_model_path()`) read "query: <question>" and
"passage: <sentence>" together; low-rank adapters (LoRA, rank `--rank`, scale 2) on every linear layer of those
layers and a linear head over the mean-pooled output are trained, the rest stays frozen. Loss: softmax over one
question's candidates (the fitted ranker's best `--top` sentences), the gold-bearing ones as targets; in-domain
questions weigh 3.

Training data, dev splits only (the test halves are never read):
* benchmarks/reader_dump.py's dump: XQuAD dev ids outside benchmarks/reader.py's former 150-id sample, in all four
  directions, and the dev half of tests/data/answers.jsonl over documents/;
* twin-brief positives: for each dev in-domain question, each gold-bearing sentence that sits in one of the
  corpus's Spanish/English twin briefs (documents/es-*.md and en-*.md on the same topic) gets its counterpart in
  the other language's brief as an extra positive (the counterpart: the twin's sentence closest in e5 cosine, at
  least TWIN_COSINE, stating the question's fact). It is added to the question's candidates (or relabelled, if the
  ranker already offered it without the fact string), and the question is asked a second time with the
  counterpart as the only positive among the same negatives (cross-lingual reading).

One fifth of the dump's questions (grouped by XQuAD id / in-domain id, so a question's four directions fall on
the same side; `held_out`) is held out unless `--all`: benchmarks/cross_encoder_eval.py measures on it.

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/reader_dump.py --out /tmp/dump.jsonl --xquad-n 400
    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/train_reader.py /tmp/dump.jsonl --write

The shipped adapter was trained in two halves of one epoch (the machine was shared; `--offset` continues the same
seeded item order, so the two halves see each training item once, as one `--epochs 1` run would, with the learning
rate schedule restarted at the half):

    ... train_reader.py /tmp/dump.jsonl --epochs 0.5 --out /tmp/half.safetensors
    ... train_reader.py /tmp/dump.jsonl --epochs 0.5 --init /tmp/half.safetensors --offset 659 --write
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from fit_reader import load  # noqa: E402
from reader import contains  # noqa: E402

#: The corpus's twin briefs: the same topic told in English and in Spanish.
TWIN_BRIEFS = (("en-coca-cocaine.md", "es-coca-cocaina.md"),
               ("en-extortion-contract-killing.md", "es-extorsion-sicariato.md"),
               ("en-illegal-gold-mining.md", "es-mineria-ilegal.md"),
               ("en-vraem-shining-path.md", "es-vraem-sendero.md"))
#: A sentence of the twin brief (one of the three closest) is the counterpart when its e5 cosine is at least this
#: (translations of corpus sentences score 0.88-0.93, reader.TWIN_SUPPORT_COSINE; the briefs retell rather than
#: translate, 0.85-0.93 on the dev questions' gold sentences) and it states the question's fact.
TWIN_COSINE = 0.85
#: ... or, for a fact without figures that the twin words differently, the gold sentence's figures at this cosine.
TWIN_COSINE_NO_FIGURES = 0.88
DOMAIN_WEIGHT = 3.0


def key_of(row: dict) -> str:
    return f"x{row['id']}" if row["set"] == "xquad" else f"d{row['id']}"


def held_out(rows: list[dict]) -> set[str]:
    """The held-out fifth of the question keys (benchmarks/cross_encoder.py's split: seed 1)."""
    keys = sorted({key_of(r) for r in rows})
    random.Random(1).shuffle(keys)
    return set(keys[: len(keys) // 5])


def figures(text: str) -> frozenset[str]:
    """The numbers of a sentence with thousands separators dropped and decimal commas as points ("2,304" and
    "2.304" are one figure; "0,4" is "0.4")."""
    out = set()
    for raw in re.findall(r"\d[\d.,]*\d|\d", text):
        raw = re.sub(r"[.,](?=\d{3}(?!\d))", "", raw)
        out.add(raw.replace(",", "."))
    return frozenset(out)


def brief_sentences() -> dict[str, list[str]]:
    """The quotable sentences of each twin brief, as the reader splits them."""
    from peru_qa.loaders import load as load_document
    from peru_qa.sentences import split_passage

    out = {}
    for pair in TWIN_BRIEFS:
        for name in pair:
            document = load_document(ROOT / "documents" / name)
            out[name] = [s.text for page in document.pages
                         for s in split_passage(page.text, 0, len(page.text), "", document.language)]
    return out


def twin_counterparts(rows: list[dict], embedder) -> dict[int, list[str]]:
    """Row index → counterpart sentences (in the other language's twin brief) of its gold-bearing sentences."""
    briefs = brief_sentences()
    vectors = {name: embedder.encode(texts) for name, texts in briefs.items()}
    twin_of = {a: b for pair in TWIN_BRIEFS for a, b in (pair, pair[::-1])}
    out: dict[int, list[str]] = {}
    for i, row in enumerate(rows):
        if row["set"] != "domain":
            continue
        found: list[str] = []
        asked = figures(" ".join(row["golds"]))
        for s in row["sentences"]:
            if not s["label"]:
                continue
            home = next((name for name, texts in briefs.items() if any(s["text"] in t for t in texts)), None)
            if home is None:
                continue
            twin = twin_of[home]
            cosines = vectors[twin] @ embedder.encode([s["text"]])[0]
            for j in np.argsort(-cosines)[:3]:
                text, cosine = briefs[twin][j], float(cosines[j])
                if cosine < TWIN_COSINE:
                    break
                # It states the question's fact: the fact's figures ("2,304" = "2.304"), else its words (names are
                # not translated), else the gold sentence's very figures at a translation's cosine.
                if (asked and asked <= figures(text)) or (not asked and contains(text, row["golds"])) or \
                        (not asked and cosine >= TWIN_COSINE_NO_FIGURES and figures(text) == figures(s["text"])):
                    if text not in found:
                        found.append(text)
                    break
        if found:
            out[i] = found
    return out


def ranker_order(row: dict, coef: np.ndarray, bias: float, top: int) -> list[int]:
    scores = np.array([s["features"] for s in row["sentences"]]) @ coef + bias
    return [int(i) for i in np.argsort(-scores, kind="stable")[:top]]


def training_items(rows: list[dict], twins: dict[int, list[str]], coef: np.ndarray, bias: float, top: int
                   ) -> list[tuple[str, list[str], list[bool], float]]:
    """(question, candidate texts, labels, weight) per question with a positive and a negative candidate."""
    items = []
    for i, row in enumerate(rows):
        order = ranker_order(row, coef, bias, top)
        texts = [row["sentences"][j]["text"] for j in order]
        labels = [bool(row["sentences"][j]["label"]) for j in order]
        weight = DOMAIN_WEIGHT if row["set"] == "domain" else 1.0
        extra = twins.get(i, [])
        for text in extra:
            if text in texts:
                labels[texts.index(text)] = True
            else:
                texts.append(text)
                labels.append(True)
        if any(labels) and not all(labels):
            items.append((row["question"], texts, labels, weight))
        if extra:  # the same question with the counterpart as the only positive
            negatives = [t for t, label in zip(texts, labels) if not label]
            if negatives:
                items.append((row["question"], negatives + extra, [False] * len(negatives) + [True] * len(extra),
                              weight))
    return items


LORA_TARGETS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                "intermediate.dense", "output.dense")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dump", type=Path)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--top", type=int, default=8, help="candidates per question (the ranker's best)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-twins", action="store_true", help="without the twin-brief positives")
    parser.add_argument("--all", action="store_true", help="train on every dump question (no held-out fifth)")
    parser.add_argument("--init", type=Path, help="start from this adapter (continue a run)")
    parser.add_argument("--offset", type=int, default=0,
                        help="start at this step of the seeded item order (with --init: where the earlier run stopped)")
    parser.add_argument("--write", action="store_true", help="write the adapter into src/peru_qa/")
    parser.add_argument("--out", type=Path, help="write the adapter here instead (a .safetensors path)")
    args = parser.parse_args()

    import torch
    from fit_reader import fit
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, BertModel

    from peru_qa.config import E5_MODEL
    from peru_qa.cross_encoder import ADAPTER_FILE, MAX_LENGTH, SCALE
    from peru_qa.e5convert import converted_model_path
    from peru_qa.embeddings import get_embedder

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rows = load(args.dump)
    held = set() if args.all else held_out(rows)
    train = [r for r in rows if key_of(r) not in held]
    ranker = fit(train, 1.0, DOMAIN_WEIGHT)
    twins = {} if args.no_twins else twin_counterparts(train, get_embedder(E5_MODEL))
    items = training_items(train, twins, ranker.coef_[0], float(ranker.intercept_[0]), args.top)
    print(f"{len(train)} training questions ({sum(r['set'] == 'domain' for r in train)} in-domain), {len(held)} "
          f"held-out keys; twin-brief counterparts for {len(twins)} in-domain questions "
          f"({sum(len(v) for v in twins.values())} sentences); {len(items)} training items", flush=True)

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
            return self.base(x) + (x @ self.a.T) @ self.b.T * SCALE

    adapters: dict[str, LoRA] = {}
    for i, layer in enumerate(bert.encoder.layer):
        for name in LORA_TARGETS:
            parent_name, attr = name.rsplit(".", 1)
            parent = layer.get_submodule(parent_name)
            adapters[f"layer.{i}.{name}"] = wrapped = LoRA(getattr(parent, attr))
            setattr(parent, attr, wrapped)
    head = torch.nn.Linear(bert.config.hidden_size, 1)
    if args.init:
        from safetensors.torch import load_file

        stored = load_file(str(args.init))
        with torch.no_grad():
            for name, lora in adapters.items():
                lora.a.copy_(stored[f"{name}.lora_a"].float())
                lora.b.copy_(stored[f"{name}.lora_b"].float())
            head.weight.copy_(stored["head.weight"])
            head.bias.copy_(stored["head.bias"])
    params = [p for p in bert.parameters() if p.requires_grad] + list(head.parameters())

    def score(question: str, texts: list[str]):
        batch = tokenizer([f"query: {question}"] * len(texts), [f"passage: {t}" for t in texts],
                          return_tensors="pt", padding=True, truncation=True, max_length=MAX_LENGTH)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            hidden = bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return head((hidden.float() * mask).sum(1) / mask.sum(1)).squeeze(-1)

    steps = int(len(items) * args.epochs)
    optimizer = torch.optim.AdamW(params, lr=args.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: min(1.0, (i + 1) / 50) * max(0.0, 1 - i / steps))
    print(f"{sum(p.numel() for p in params):,} trained parameters; {steps} steps", flush=True)
    bert.train()
    started, running, accumulate = time.time(), 0.0, 4
    for step in range(steps):
        at = step + args.offset
        if step == 0 or at % len(items) == 0:
            shuffler = random.Random(args.seed + at // len(items))
            shuffler.shuffle(order := list(range(len(items))))
        question, texts, labels, weight = items[order[at % len(items)]]
        logits = score(question, texts)
        gold = torch.tensor(labels)
        loss = weight * (torch.logsumexp(logits, 0) - torch.logsumexp(logits[gold], 0)) / accumulate
        loss.backward()
        running += loss.item() * accumulate
        if (step + 1) % accumulate == 0:
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad()
        schedule.step()
        if (step + 1) % 200 == 0:
            print(f"  step {step + 1}/{steps}: loss {running / 200:.3f}, {time.time() - started:.0f} s", flush=True)
            running = 0.0
    seconds = time.time() - started

    target = args.out or (ADAPTER_FILE if args.write else None)
    if target is None:
        print("trained; nothing written (--write or --out)")
        return 0
    tensors = {}
    for name, lora in adapters.items():
        tensors[f"{name}.lora_a"] = lora.a.detach().to(torch.float16).contiguous()
        tensors[f"{name}.lora_b"] = lora.b.detach().to(torch.float16).contiguous()
    tensors["head.weight"] = head.weight.detach().float().contiguous()
    tensors["head.bias"] = head.bias.detach().float().contiguous()
    save_file(tensors, str(target))
    digest = hashlib.sha256(args.dump.read_bytes()).hexdigest()[:16]
    config_path = target.with_suffix(".json")
    old = json.loads(config_path.read_text(encoding="utf-8")) if config_path.exists() else {}
    config = {
        "base": E5_MODEL, "layers": args.layers, "rank": args.rank, "scale": SCALE, "max_length": MAX_LENGTH,
        "targets": list(LORA_TARGETS), "pooling": "mean", "input": ["query: <question>", "passage: <sentence>"],
        # The reader's use of it (chosen on the held-out fifth by benchmarks/cross_encoder_eval.py): kept if set.
        "top": old.get("top", 6), "weight": old.get("weight", 2.0),
        "trained": {
            "script": "benchmarks/train_reader.py", "seed": args.seed, "epochs": args.epochs, "lr": args.lr,
            "continued": {"from": str(args.init), "offset": args.offset} if args.init else None,
            "candidates": args.top, "steps": steps, "seconds": round(seconds),
            "dump": f"benchmarks/reader_dump.py --xquad-n 400 (sha256 {digest}…)",
            "questions": len(train), "in_domain_questions": sum(r["set"] == "domain" for r in train),
            "held_out": "none (--all)" if args.all else "one fifth of the question keys (train_reader.held_out)",
            "twin_brief_counterparts": sum(len(v) for v in twins.values()),
            "twin_brief_questions": len(twins), "items": len(items),
            "data": "dev splits only: XQuAD dev ids outside benchmarks/reader.py's former 150-id sample (4 "
                    "directions), tests/data/answers.jsonl dev and its twin-brief counterparts; no test question",
        },
    }
    config_path.write_text(json.dumps(config, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {target} ({target.stat().st_size // 1024} KB) and {config_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
