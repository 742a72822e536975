"""Whatever files people feed it: a specific one-line outcome each, the batch goes on, nothing is lost."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import shared_path
from helpers import make_pdf

from peru_qa import KnowledgeBase, ocr

# Expected outcome per shared hard PDF: (status, words in the reason), from their SOURCE files.
HARD_PDFS = {
    "GeoBase_NHNC1_Data_Model_UML_EN.pdf": ("added", ""),
    "GeoTopo-komprimiert.pdf": ("added", ""),
    "Seige_of_Vicksburg_Sample_OCR.pdf": ("added", ""),
    "crazyones-encrypted-256.pdf": ("failed", "encrypted: password required (use --password)"),
    "encrypted_doc_no_id.pdf": ("added", "OCR'd 1 page(s)"),  # a scanned patent page
    "grayscale-image.pdf": ("failed", "no text found: 1 scanned page(s), OCR recognised no text"),  # a drawing
    "habibi-rotated.pdf": ("added", ""),
    "imagemagick-CCITTFaxDecode.pdf": ("failed", "no text found: 1 scanned page(s), OCR recognised no text"),
    "issue-297.pdf": ("added", ""),
    "libreoffice-writer-password.pdf": ("failed", "encrypted: password required (use --password)"),
    "multicolumn.pdf": ("added", ""),
    "r4-aes-user-password.pdf": ("failed", "encrypted: password required (use --password)"),
    "r6-empty-password.pdf": ("added", ""),
    "unreadablemetadata.pdf": ("failed", "unreadable PDF: page tree is damaged"),
}
if not ocr.available():  # without Tesseract the scanned ones fail, naming what to install
    HARD_PDFS.update({name: ("failed", "OCR needs Tesseract") for name in
                      ("encrypted_doc_no_id.pdf", "grayscale-image.pdf", "imagemagick-CCITTFaxDecode.pdf")})
PASSWORDS = {"crazyones-encrypted-256.pdf": "password", "r4-aes-user-password.pdf": "asdfzxcv",
             "libreoffice-writer-password.pdf": "openpassword"}


def _snapshot(kb: KnowledgeBase) -> dict:
    rows = kb.store.db.execute("SELECT id, doc_id, text, vector FROM chunks ORDER BY id").fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


@pytest.mark.slow
def test_shared_hard_pdfs(tmp_path, embedder):
    folder = shared_path("samples", "hard-pdfs")
    files = sorted(folder.glob("*.pdf"))
    assert {f.name for f in files} == set(HARD_PDFS)
    kb = KnowledgeBase(tmp_path / "idx")
    baseline = tmp_path / "baseline.txt"
    baseline.write_text("A baseline note on extortion of market traders in Lima.")
    kb.add([baseline])
    before = _snapshot(kb)
    report = kb.add(files)
    assert not report.ok
    for result in report.results:
        status, reason = HARD_PDFS[result.path.rsplit("/", 1)[-1]]
        assert result.status == status, result.line()
        assert reason in result.reason, result.line()
        assert "\n" not in result.line()
    after = _snapshot(kb)
    assert all(after[cid] == value for cid, value in before.items()), "earlier chunks changed"
    added = {r.doc_id for r in report.results if r.status == "added"}
    assert {v[0] for k, v in after.items() if k not in before} == added, "only added files have chunks"
    assert kb.check().ok
    # --password opens the protected ones.
    for name, password in PASSWORDS.items():
        result = kb.add([folder / name], password=password).results[0]
        assert result.status == "added", result.line()
    assert kb.add([folder / "r4-aes-user-password.pdf"], password="wrong").results[0].status == "unchanged"
    wrong = shutil.copy(folder / "libreoffice-writer-password.pdf", tmp_path / "copy.pdf")
    kb.remove("libreoffice-writer-password.pdf")
    assert kb.add([wrong], password="nope").results[0].reason == "encrypted: wrong password"
    assert kb.check().ok


def test_made_up_bad_inputs(tmp_path, embedder):
    good = make_pdf(tmp_path / "good.pdf", ["Page one on coca.", "Page two on cocaine routes via Paita."])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.txt").write_bytes(b"")
    data = good.read_bytes()
    (bad / "truncated.pdf").write_bytes(data[: len(data) // 3])
    (bad / "binary.txt").write_bytes(bytes(range(256)) * 200)
    (bad / "utf16.txt").write_text("La extorsión golpea a los mototaxistas de Piura.", encoding="utf-16")
    (bad / "latin1.txt").write_bytes("Los cañeros de Chiclayo denunciaron cobros de cupos.".encode("latin-1"))
    (bad / "notzip.docx").write_bytes(b"PK\x03\x04 but not really a zip archive")
    (bad / "scripts.html").write_text(
        "<html><body><script>document.write('x')</script><script src='evil.js'></script>"
        "<p>Callao port <b>seizures</b> rose.</p><style>*{}</style><img src=x onerror=alert(1)></body></html>")
    (bad / "one.md").write_text("# Rondas\n\nLas rondas campesinas patrullan en Cajamarca.\n")
    (bad / "two.md").write_text("# Rondas\n\nLas rondas campesinas patrullan en Cajamarca.\n")
    (bad / "photo.jpeg").write_bytes(b"\xff\xd8\xff\xe0")  # a truncated JPEG: images are OCR'd, this one is broken
    (bad / "data.xyz").write_bytes(b"whatever")
    kb = KnowledgeBase(tmp_path / "idx")
    kb.add([good])
    before = _snapshot(kb)
    report = kb.add([bad, bad / "photo.jpeg", bad / "data.xyz"])
    outcome = {r.path.rsplit("/", 1)[-1]: (r.status, r.reason) for r in report.results}
    assert outcome["empty.txt"] == ("failed", "empty file (0 bytes)")
    assert outcome["truncated.pdf"][0] == "failed" and outcome["truncated.pdf"][1].startswith(
        ("unreadable PDF", "no extractable text"))
    assert outcome["binary.txt"] == ("failed", "not a text file: binary data")
    assert outcome["utf16.txt"][0] == outcome["latin1.txt"][0] == "added"
    assert outcome["notzip.docx"][0] == "failed" and "not a valid .docx" in outcome["notzip.docx"][1]
    assert outcome["scripts.html"][0] == "added"
    assert outcome["one.md"][0] == "added"
    assert outcome["two.md"] == ("unchanged", "same content as 'one.md'")
    assert outcome["photo.jpeg"][0] == "failed" and outcome["photo.jpeg"][1].startswith(
        ("unreadable image: ", "OCR needs Tesseract")), outcome["photo.jpeg"]  # a truncated JPEG
    assert outcome["data.xyz"][0] == "failed" and "unsupported file type '.xyz'" in outcome["data.xyz"][1]
    assert _snapshot(kb).items() >= before.items()
    html = kb.retrieve("Callao port seizures", k=1)[0]
    assert "document.write" not in html.text and "onerror" not in html.text
    assert "cañeros" in kb.retrieve("cupos Chiclayo", k=1)[0].text
    assert "mototaxistas" in kb.retrieve("extorsión mototaxistas Piura", k=1)[0].text
    assert kb.check().ok


def test_huge_single_line_text_is_refused_with_bounded_memory(tmp_path):
    huge = tmp_path / "huge.txt"
    with open(huge, "wb") as fh:
        for _ in range(50):
            fh.write(b"palabra " * 131072)  # 1 MiB, no newline
    code = (
        "import re, sys\n"
        "from peru_qa.cli import main\n"
        f"rc = main(['add', {str(huge)!r}, '--index', {str(tmp_path / 'idx')!r}])\n"
        # VmHWM (peak RSS) is reset by exec, unlike ru_maxrss, which inherits the forking parent's peak
        "print('MAXRSS', re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
        "sys.exit(rc)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 1
    assert "failed: " in run.stdout and "too large: 52.4 MB exceeds the 20 MB text limit" in run.stdout
    maxrss_mb = int(run.stdout.split("MAXRSS")[1]) / 1024
    assert maxrss_mb < 250, f"peak memory {maxrss_mb:.0f} MB (the 52 MB file must not be read whole)"
