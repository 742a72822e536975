"""Retrieval quality on BEIR-format folders and on the corpus gold set (`peru-qa eval`).

BEIR folder: `corpus.jsonl` ({"_id","title","text"}), `queries.jsonl` ({"_id","text"}), `qrels/<split>.tsv`
(query-id, corpus-id, score). A split such as `test_en` also picks `corpus_en.jsonl` / `queries_en.jsonl` when
they exist (XQuAD keeps its English twin that way). The corpus is indexed once into a cached index keyed by a
hash of the corpus file and of every setting that changes what is stored, so re-running is cheap.

Gold set: `*.jsonl` lines {"id","lang","question","documents":[file names]} evaluated against the default index
(or `index=`), a document being relevant when its file name is listed.

Scores are per document: a document's score is that of its best chunk. Metrics follow trec_eval/BEIR
definitions and are implemented here (a few lines each, tested against hand-computed values) so that no
extra dependency is needed.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .config import is_url
from .errors import PeruQAError
from .progress import progress_bar

#: Cutoffs reported for every run (hit@5: share of queries with a relevant document in the top 5).
METRIC_NAMES = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "hit@5")
#: The split that runs a bilingual BEIR folder across languages (queries of one language, corpus of the other).
CROSS_SPLIT = "cross"
#: Chunks asked of the retriever per query: several chunks can belong to one document, and Recall@100 needs
#: at least 100 distinct documents.
CHUNK_DEPTH = 300
#: Bump when the way a dataset is turned into TextDocuments changes (invalidates cached indexes).
EVAL_INDEX_VERSION = 1


# --- metrics ---------------------------------------------------------------------------------------
def dcg(gains: Sequence[float]) -> float:
    """Discounted cumulative gain with trec_eval's discount: gain / log2(rank + 1), rank from 1."""
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def ndcg_at_k(ranking: Sequence[str], relevant: dict[str, int], k: int = 10) -> float:
    """nDCG@k with graded gains (the qrels score); 0 when the query has no relevant document."""
    ideal = dcg(sorted((g for g in relevant.values() if g > 0), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg([max(relevant.get(d, 0), 0) for d in ranking[:k]]) / ideal


def recall_at_k(ranking: Sequence[str], relevant: dict[str, int], k: int) -> float:
    """Share of the relevant documents found in the top k."""
    rel = {d for d, g in relevant.items() if g > 0}
    if not rel:
        return 0.0
    return len(rel.intersection(ranking[:k])) / len(rel)


def mrr_at_k(ranking: Sequence[str], relevant: dict[str, int], k: int = 10) -> float:
    """1 / rank of the first relevant document in the top k, else 0."""
    for i, d in enumerate(ranking[:k]):
        if relevant.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def hit_at_k(ranking: Sequence[str], relevant: dict[str, int], k: int = 5) -> float:
    """1 when a relevant document is in the top k, else 0."""
    return float(any(relevant.get(d, 0) > 0 for d in ranking[:k]))


def score_run(run: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """Mean of every metric in METRIC_NAMES over the queries of `qrels` (a query missing from `run` scores 0)."""
    if not qrels:
        return {name: 0.0 for name in METRIC_NAMES}
    totals = dict.fromkeys(METRIC_NAMES, 0.0)
    for qid, relevant in qrels.items():
        ranking = run.get(qid, [])
        totals["ndcg@10"] += ndcg_at_k(ranking, relevant, 10)
        totals["recall@10"] += recall_at_k(ranking, relevant, 10)
        totals["recall@100"] += recall_at_k(ranking, relevant, 100)
        totals["mrr@10"] += mrr_at_k(ranking, relevant, 10)
        totals["hit@5"] += hit_at_k(ranking, relevant, 5)
    return {name: value / len(qrels) for name, value in totals.items()}


# --- datasets --------------------------------------------------------------------------------------
@dataclass
class EvalSet:
    """Queries with their relevant documents, and (for BEIR) the corpus file to index."""

    name: str
    split: str
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    corpus_path: Path | None = None
    #: Language of each query when the set says so (gold set); otherwise detected at search time.
    languages: dict[str, str] = field(default_factory=dict)


def _read_jsonl(path: Path) -> Iterable[dict]:
    with path.open(encoding="utf-8") as handle:
        for n, line in enumerate(handle, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise PeruQAError(f"{path}:{n}: not valid JSON ({exc.msg})") from exc


def _split_files(folder: Path, split: str) -> tuple[Path, Path, Path]:
    """corpus, queries and qrels files for a split; `test_en` picks `corpus_en.jsonl` etc. when present."""
    qrels = folder / "qrels" / f"{split}.tsv"
    if not qrels.is_file():
        have = sorted(p.stem for p in (folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
        raise PeruQAError(f"no qrels/{split}.tsv in {folder}" + (f" (splits: {', '.join(have)})" if have else ""))
    corpus, queries = folder / "corpus.jsonl", folder / "queries.jsonl"
    if "_" in split:
        suffix = split.rsplit("_", 1)[1]
        if (folder / f"corpus_{suffix}.jsonl").is_file():
            corpus = folder / f"corpus_{suffix}.jsonl"
        if (folder / f"queries_{suffix}.jsonl").is_file():
            queries = folder / f"queries_{suffix}.jsonl"
    for path in (corpus, queries):
        if not path.is_file():
            raise PeruQAError(f"{folder} is not a BEIR folder: {path.name} is missing")
    return corpus, queries, qrels


def load_beir(folder: str | Path, split: str = "test") -> EvalSet:
    """Queries and qrels of one split; the corpus is read later, when it has to be indexed."""
    folder = Path(folder).expanduser()
    corpus, queries_path, qrels_path = _split_files(folder, split)
    qrels: dict[str, dict[str, int]] = {}
    with qrels_path.open(encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle, delimiter="\t"):
            if len(row) < 3 or row[0] == "query-id":
                continue
            qrels.setdefault(row[0], {})[row[1]] = int(float(row[2]))
    queries = {str(q["_id"]): q["text"] for q in _read_jsonl(queries_path) if str(q["_id"]) in qrels}
    qrels = {q: rel for q, rel in qrels.items() if q in queries and any(g > 0 for g in rel.values())}
    return EvalSet(folder.resolve().name, split, queries, qrels, corpus)


def load_cross(folder: str | Path) -> list[EvalSet]:
    """The two cross-lingual directions of a bilingual BEIR folder such as XQuAD (corpus/queries.jsonl in one
    language, corpus/queries_<xx>.jsonl in the other, query ids shared): each language's queries against the
    other language's corpus, judged by the qrels of that corpus (`test.tsv` / `test_<xx>.tsv`)."""
    folder = Path(folder).expanduser()
    twins = sorted(p.stem.split("_", 1)[1] for p in folder.glob("corpus_*.jsonl"))
    if not twins:
        raise PeruQAError(f"{folder} has no second language (corpus_<lang>.jsonl) for the cross-lingual split")
    suffix = twins[0]
    base = load_beir(folder, "test")
    twin = load_beir(folder, f"test_{suffix}")
    base_lang = _language_of(base.queries.values())
    twin_lang = _language_of(twin.queries.values())
    out = []
    # base-language queries over the twin corpus (qrels of the twin), and the reverse
    for queries, target, name in ((base, twin, f"{base_lang}->{twin_lang}"), (twin, base, f"{twin_lang}->{base_lang}")):
        qrels = {q: rel for q, rel in target.qrels.items() if q in queries.queries}
        evalset = EvalSet(base.name, f"{CROSS_SPLIT}:{name}", {q: queries.queries[q] for q in qrels}, qrels,
                          target.corpus_path)
        out.append(evalset)
    return out


def _language_of(texts: Iterable[str]) -> str:
    from .text import detect_language

    sample = list(texts)[:50]
    votes = [detect_language(t) for t in sample]
    return max(set(votes), key=votes.count) if votes else "xx"


def load_gold(paths: str | Path | Iterable[str | Path]) -> EvalSet:
    """The corpus gold set: one or more `.jsonl` files, or a folder of them."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        files += sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    if not files:
        raise PeruQAError("no gold .jsonl files found")
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    languages: dict[str, str] = {}
    for path in files:
        for n, item in enumerate(_read_jsonl(path), 1):
            try:
                qid, question, docs = str(item["id"]), item["question"], item["documents"]
            except KeyError as exc:
                raise PeruQAError(f"{path}:{n}: gold line lacks {exc}") from exc
            if isinstance(docs, str):
                docs = [docs]
            queries[qid] = question
            qrels[qid] = {Path(d).name: 1 for d in docs}
            if item.get("lang"):
                languages[qid] = item["lang"]
    name = files[0].parent.name if len(files) > 1 else files[0].stem
    return EvalSet(name, "gold", queries, qrels, None, languages)


def is_beir_folder(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "qrels").is_dir()


def load_corpus(path: Path) -> list:
    """The corpus as TextDocuments (source = BEIR doc id)."""
    from .kb import TextDocument

    docs = []
    for item in _read_jsonl(path):
        text = (item.get("text") or "").strip()
        title = (item.get("title") or "").strip()
        if not text and not title:
            continue
        # An empty title would make the knowledge base use the source (a bare id, a hash for XQuAD) as title,
        # and the id would then be embedded and indexed with the text: a single space keeps it out.
        docs.append(TextDocument(source=str(item["_id"]), text=text or title, title=title))
    return docs


# --- indexing --------------------------------------------------------------------------------------
def cache_root() -> Path:
    env = os.environ.get("PERU_QA_CACHE")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "peru-qa"
    return base / "eval"


def index_key(corpus_path: Path, model: str) -> str:
    """Hash of everything that decides what the index stores: corpus bytes, model, chunking and analysis code."""
    from . import chunking, text

    digest = hashlib.sha256()
    with corpus_path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    digest.update(model.encode())
    digest.update(f"v{EVAL_INDEX_VERSION}".encode())
    for module in (chunking, text):
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()[:16]


@dataclass
class IndexInfo:
    path: str
    cached: bool
    #: Time spent now (opening a cached index, or building it).
    seconds: float
    documents: int
    chunks: int
    #: How long building the index took when it was built (kept with the cached index).
    build_seconds: float | None = None


def open_index(evalset: EvalSet, model: str | None = None, cache_dir: str | Path | None = None,
               progress: Callable[[int, int, str], None] | None = None, embedder=None):
    """A KnowledgeBase holding the set's corpus, built on first use and reused while nothing changed."""
    from .config import DEFAULT_MODEL
    from .embeddings import canonical_model_name
    from .kb import KnowledgeBase
    from .keyword import BM25_PARAMS

    if evalset.corpus_path is None:
        raise PeruQAError("this set has no corpus to index")
    model_name = embedder.name if embedder is not None else canonical_model_name(model or DEFAULT_MODEL)
    root = Path(cache_dir).expanduser() if cache_dir else cache_root()
    safe_model = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_name)[-40:]
    key = index_key(evalset.corpus_path, model_name)
    folder = root / f"{evalset.name}-{evalset.corpus_path.stem}-{safe_model}-{key}"
    done_marker = folder / "eval-complete.json"
    started = time.perf_counter()
    kb = KnowledgeBase(folder, model=model_name, embedder=embedder)
    cached = done_marker.is_file()
    if not cached:
        docs = load_corpus(evalset.corpus_path)
        report = kb.add_texts(docs, progress=progress or progress_bar("doc", f"indexing {evalset.name}"))
        if report.failed:
            first = report.failed[0]
            raise PeruQAError(f"{len(report.failed)} documents failed to index, e.g. {first.path}: {first.reason}")
        build_seconds = time.perf_counter() - started
        done_marker.write_text(json.dumps({"documents": len(docs), "model": model_name,
                                           "build_seconds": round(build_seconds, 1)}) + "\n")
    else:
        if _stale_keyword_params(kb, BM25_PARAMS) or kb.lacks_companion:
            # BM25 parameters changed since the index was built, or it predates companion vectors: re-index
            # terms and fill those in, keep the vectors
            kb.rebuild(progress=progress or progress_bar("chunk", f"completing {evalset.name}"))
        try:
            build_seconds = json.loads(done_marker.read_text()).get("build_seconds")
        except (OSError, ValueError):
            build_seconds = None
    stats = kb.stats()
    return kb, IndexInfo(str(folder), cached, time.perf_counter() - started, stats["documents"], stats["chunks"],
                         build_seconds)


def open_index_at(evalset: EvalSet, location: str, model: str | None = None, embedder=None):
    """The set's corpus in the index at `location` (e.g. a postgresql:// URL), indexed there on first use; an
    index holding other documents is refused rather than mixed."""
    from .config import DEFAULT_MODEL
    from .embeddings import canonical_model_name
    from .kb import KnowledgeBase

    if evalset.corpus_path is None:
        raise PeruQAError("this set has no corpus to index")
    model_name = embedder.name if embedder is not None else canonical_model_name(model or DEFAULT_MODEL)
    key = index_key(evalset.corpus_path, model_name)
    started = time.perf_counter()
    kb = KnowledgeBase(location, model=model, embedder=embedder)
    cached = kb.meta("eval_corpus") == key
    build_seconds = None
    if not cached:
        if kb.stats()["documents"]:
            kb.close()
            raise PeruQAError(f"index {kb.shown} holds other documents: evaluate {evalset.name} in an empty one")
        docs = load_corpus(evalset.corpus_path)
        report = kb.add_texts(docs, progress=progress_bar("doc", f"indexing {evalset.name}"))
        if report.failed:
            kb.close()
            raise PeruQAError(f"{len(report.failed)} documents failed to index, e.g. {report.failed[0].path}")
        kb.set_meta("eval_corpus", key)
        build_seconds = time.perf_counter() - started
    stats = kb.stats()
    return kb, IndexInfo(kb.shown, cached, time.perf_counter() - started, stats["documents"], stats["chunks"],
                         build_seconds)


def _stale_keyword_params(kb, params: dict) -> bool:
    manifest = kb.manifest()
    try:
        saved = json.loads((kb.path / manifest["derived"] / "keyword" / "keyword.json").read_text())["params"]
    except (KeyError, OSError, ValueError):
        return True
    return saved != params


# --- running ---------------------------------------------------------------------------------------
@dataclass
class EvalResult:
    dataset: str
    split: str
    mode: str
    model: str
    metrics: dict[str, float]
    queries: int
    query_seconds: float
    index: IndexInfo | None = None
    #: Metrics per query language when the set gives languages (the gold set).
    by_language: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [f"{self.dataset} [{self.split}] mode={self.mode} model={self.model}"]
        out += [f"  {name:<11} {self.metrics[name]:.4f}" for name in METRIC_NAMES]
        out.append(f"  {'queries':<11} {self.queries}")
        for lang, metrics in sorted(self.by_language.items()):
            out.append(f"  {lang}: " + "  ".join(f"{n} {metrics[n]:.4f}" for n in METRIC_NAMES)
                       + f"  ({int(metrics['queries'])} queries)")
        if self.index is not None:
            how = "reused" if self.index.cached else "built"
            built = f" (built in {self.index.build_seconds:.0f}s)" if self.index.cached and \
                self.index.build_seconds else ""
            out.append(f"  index       {how} in {self.index.seconds:.1f}s{built}: {self.index.documents} documents, "
                       f"{self.index.chunks} chunks ({self.index.path})")
        out.append(f"  querying    {self.query_seconds:.1f}s "
                   f"({1000 * self.query_seconds / max(self.queries, 1):.0f} ms/query)")
        return out


def run_queries(kb, evalset: EvalSet, mode: str, key: Callable[[str], str],
                depth: int = CHUNK_DEPTH) -> tuple[dict[str, list[str]], float]:
    """Document rankings (top 100) for every query of the set, and the seconds spent.

    Runs `KnowledgeBase.rank`, the ranking behind `KnowledgeBase.retrieve`, with the query embeddings computed in
    one batch and chunks mapped to documents without fetching their text. `key` maps a document's source to
    the id the qrels use."""
    started = time.perf_counter()
    doc_of = {cid: key(source) for cid, source in kb.chunk_sources().items()}
    qids = [q for q in evalset.qrels if evalset.queries[q].strip()]
    texts = [evalset.queries[q].strip() for q in qids]
    embedder = kb.embedder if mode != "keyword" and doc_of else None
    qvecs = embedder.encode(texts, kind="query", batch_size=64) if embedder is not None else [None] * len(texts)
    companion = kb.companion if mode == "hybrid" and embedder is not None else None
    cvecs = (companion.encode(texts, kind="query", batch_size=64) if companion is not None
             else [None] * len(texts))
    run: dict[str, list[str]] = {}
    for qid, text, qvec, cvec in zip(qids, texts, qvecs, cvecs):
        run[qid] = document_ranking(kb.rank(text, depth, mode, qvec=qvec, companion_qvec=cvec).ids, doc_of)
    return run, time.perf_counter() - started


def document_ranking(chunk_ids: Iterable[int], doc_of: dict[int, str], limit: int = 100) -> list[str]:
    """A chunk ranking as documents (each at its best chunk), the first `limit` of them; chunks `doc_of` does not
    know (removed meanwhile) are skipped."""
    docs: dict[str, None] = {}
    for cid in chunk_ids:
        doc = doc_of.get(int(cid))
        if doc is not None:
            docs.setdefault(doc, None)
            if len(docs) == limit:
                break
    return list(docs)


def _by_language(run: dict[str, list[str]], evalset: EvalSet) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for lang in sorted(set(evalset.languages.values())):
        qrels = {q: r for q, r in evalset.qrels.items() if evalset.languages.get(q) == lang}
        out[lang] = score_run(run, qrels) | {"queries": float(len(qrels))}
    return out


def evaluate(dataset: str | Path, split: str = "test", mode: str = "hybrid", model: str | None = None,
             index: str | Path | None = None, cache_dir: str | Path | None = None, embedder=None) -> EvalResult:
    """Evaluate a BEIR folder (indexed into the eval cache) or gold `.jsonl` file(s) (against `index`, or the
    default index built from documents/)."""
    from .retrieval import MODES

    if mode not in MODES:
        raise PeruQAError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    path = Path(dataset).expanduser()
    if not path.exists():
        raise PeruQAError(f"no such dataset: {path}")
    if split == CROSS_SPLIT and is_beir_folder(path):
        return _evaluate_cross(path, mode, model, cache_dir, embedder)
    if is_beir_folder(path):
        evalset = load_beir(path, split)
        if index is not None and is_url(index):  # a database index: the corpus is indexed there
            kb, info = open_index_at(evalset, str(index), model=model, embedder=embedder)
        else:
            kb, info = open_index(evalset, model=model, cache_dir=cache_dir, embedder=embedder)
        key: Callable[[str], str] = str  # the source is the BEIR doc id
    else:
        evalset = load_gold(path)
        info = None
        if index is not None:
            from .kb import KnowledgeBase

            kb = KnowledgeBase(index, model=model, create=False)
        else:
            from . import open_default

            kb = open_default(model=model)
        key = lambda source: Path(source).name  # noqa: E731
    with kb:
        if not evalset.qrels:
            raise PeruQAError(f"{path}: no queries with relevant documents in split {split!r}")
        run, seconds = run_queries(kb, evalset, mode, key)
        model_name = kb.model_name
    return EvalResult(evalset.name, evalset.split, mode, model_name, score_run(run, evalset.qrels),
                      len(evalset.qrels), seconds, info, _by_language(run, evalset))


def _evaluate_cross(path: Path, mode: str, model: str | None, cache_dir, embedder) -> EvalResult:
    """Both cross-lingual directions; overall metrics over all their queries, each direction under
    `by_language` ("es->en": Spanish queries over the English corpus)."""
    run: dict[str, list[str]] = {}
    qrels: dict[str, dict[str, int]] = {}
    directions: dict[str, dict[str, float]] = {}
    seconds = 0.0
    info = None
    model_name = ""
    for evalset in load_cross(path):
        if not evalset.qrels:
            raise PeruQAError(f"{path}: no shared query ids between the two languages")
        kb, info = open_index(evalset, model=model, cache_dir=cache_dir, embedder=embedder)
        with kb:
            part, spent = run_queries(kb, evalset, mode, str)
            model_name = kb.model_name
        seconds += spent
        direction = evalset.split.split(":", 1)[1]
        directions[direction] = score_run(part, evalset.qrels) | {"queries": float(len(evalset.qrels))}
        run.update({f"{direction}/{q}": r for q, r in part.items()})
        qrels.update({f"{direction}/{q}": r for q, r in evalset.qrels.items()})
    name = Path(path).resolve().name
    return EvalResult(name, CROSS_SPLIT, mode, model_name, score_run(run, qrels), len(qrels), seconds, info,
                      directions)


__all__ = ["load_cross", "hit_at_k", "CROSS_SPLIT", "EvalResult", "EvalSet", "evaluate", "load_beir",
           "load_gold", "ndcg_at_k", "recall_at_k", "mrr_at_k", "score_run", "open_index", "METRIC_NAMES"]
