"""OCR quality, speed and retrieval on OCR'd pages (benchmarks/RESULTS.md, section "OCR").

    PYTHONPATH=src python benchmarks/ocr.py cer          # CER on rendered pages of documents/ (clean and degraded)
    PYTHONPATH=src python benchmarks/ocr.py speed        # pages/s: OpenMP threads, 1 vs 2 workers, tesserocr, OCRmyPDF
    PYTHONPATH=src python benchmarks/ocr.py retrieval    # gold questions over born-digital vs OCR'd shipped PDFs
    PYTHONPATH=src python benchmarks/ocr.py hard         # ../shared/samples/hard-pdfs through the loader

Pages are rendered from the Markdown documents of documents/ (their true text is known) with DejaVu Serif 11 pt on
A4 at 300 dpi (200 dpi as a variant), then degraded: Gaussian noise and specks, a 1.5° skew, JPEG quality 30, all
three at once (noise, 1° skew, JPEG 50), and "harsh" (150 dpi, 3° skew, double noise, JPEG 20).
CER = edit distance / reference length on whitespace-normalised text.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "documents"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"
#: One page of text from each of these (not used by tests/test_ocr.py).
PAGES = ["es-mineria-ilegal.md", "es-extorsion-sicariato.md", "en-coca-cocaine.md", "en-money-laundering-fiu.md"]


def page_text(name: str, chars: int = 2600) -> str:
    """Plain prose of a Markdown document: headings, emphasis, links and tables dropped."""
    lines = []
    for line in (DOCS / name).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "|", ">", "-", "*Redactado", "*Written")):
            continue
        line = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", line).replace("**", "").replace("*", "").replace("`", "")
        lines.append(line)
    text = " ".join(lines)
    return text[: text.rfind(" ", 0, chars)]


def render_page(text: str, dpi: int = 300):
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(FONT, round(11 / 72 * dpi))
    width, height = int(8.27 * dpi), int(11.69 * dpi)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    y = dpi
    lines = textwrap.wrap(text, 78)
    for line in lines:
        draw.text((dpi, y), line, font=font, fill=0)
        y += round(15 / 72 * dpi)
    return image, "\n".join(lines)


def degrade(image, kind: str, seed: int = 0):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)

    def noise(img):
        a = np.asarray(img, dtype=np.float32) + rng.normal(0, 25, (img.height, img.width))
        specks = rng.random((img.height, img.width))
        a[specks < 0.002] = 0
        a[specks > 0.998] = 255
        return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))

    def skew(img, degrees):
        return img.rotate(degrees, resample=Image.BICUBIC, fillcolor=255)

    def jpeg(img, quality):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality)
        return Image.open(io.BytesIO(buf.getvalue())).convert("L")

    if kind == "clean":
        return image
    if kind == "noise":
        return noise(image)
    if kind == "skew":
        return skew(image, 1.5)
    if kind == "jpeg":
        return jpeg(image, 30)
    if kind == "all":
        return jpeg(noise(skew(image, 1.0)), 50)
    if kind == "harsh":  # a poor fax or phone photo: 150 dpi, 3° skew, heavy noise, JPEG 20
        return jpeg(noise(noise(skew(image, 3.0))), 20)
    raise ValueError(kind)


def cmd_cer(args) -> dict:
    from peru_qa import ocr

    conditions = [("clean", 300), ("clean", 200), ("noise", 300), ("skew", 300), ("jpeg", 300), ("all", 300),
                  ("harsh", 150)]
    if args.conditions:
        conditions = [c for c in conditions if f"{c[0]}@{c[1]}" in args.conditions.split(",")]
    out: dict = {}
    for kind, dpi in conditions:
        rows = []
        for n, name in enumerate(PAGES):
            image, truth = render_page(page_text(name), dpi)
            image = degrade(image, kind, seed=n)
            started = time.perf_counter()
            page = ocr.recognize(image, dpi)
            seconds = time.perf_counter() - started
            rows.append((name[:2], ocr.character_error_rate(truth, page.text), page.confidence, seconds))
        label = f"{kind}@{dpi}"
        out[label] = {
            "cer_es": statistics.mean(r[1] for r in rows if r[0] == "es"),
            "cer_en": statistics.mean(r[1] for r in rows if r[0] == "en"),
            "cer_max": max(r[1] for r in rows),
            "confidence": statistics.mean(r[2] for r in rows),
            "seconds_per_page": statistics.mean(r[3] for r in rows),
        }
        print(label, json.dumps({k: round(v, 4) for k, v in out[label].items()}), flush=True)
    return out


def cmd_speed(args) -> dict:
    """Seconds per page for the ways of running Tesseract, measured in one run (ratios matter: the machine is
    shared)."""
    import pytesseract

    from peru_qa import ocr

    images = [render_page(page_text(name))[0] for name in PAGES]
    out: dict = {}
    ocr.NICENESS = 0  # every variant at the same priority; peru_qa runs Tesseract at nice 10 (yields to the chat)

    def timed(label, fn, pages):
        started = time.perf_counter()
        fn()
        out[label] = (time.perf_counter() - started) / pages
        print(f"{label}: {out[label]:.2f} s/page", flush=True)

    timed("pytesseract, 1 OpenMP thread (peru_qa.ocr)", lambda: [ocr.recognize(i, 300) for i in images], len(images))

    def omp_default():
        env = dict(os.environ)
        env.pop("OMP_THREAD_LIMIT", None)
        with tempfile.TemporaryDirectory() as tmp:
            for n, image in enumerate(images):
                path = Path(tmp) / f"{n}.png"
                image.save(path)
                subprocess.run(["tesseract", str(path), "-", "-l", "spa+eng", "--dpi", "300", "tsv"], env=env,
                               capture_output=True, check=True)
    timed("tesseract CLI, OpenMP default threads", omp_default, len(images))

    def two_workers():
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda i: ocr.recognize(i, 300), images))
    timed("pytesseract, 2 pages at a time", two_workers, len(images))

    try:
        import tesserocr

        def in_process():
            with tesserocr.PyTessBaseAPI(path="/usr/share/tesseract-ocr/5/tessdata", lang="spa+eng") as api:
                for image in images:
                    api.SetImage(image)
                    api.GetTSVText(0)
        timed(f"tesserocr {tesserocr.tesseract_version().split()[1]} in-process (bundled, no OpenMP)", in_process,
              len(images))
    except ImportError:
        print("tesserocr not installed: skipped")

    if shutil.which("ocrmypdf"):
        from peru_qa.loaders import load

        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / "scan.pdf"
            images[0].save(source, save_all=True, append_images=images[1:], resolution=300)
            target = Path(tmp) / "ocr.pdf"
            started = time.perf_counter()
            subprocess.run(["ocrmypdf", "-l", "spa+eng", "--jobs", "1", "--output-type", "pdf", "--quiet",
                            str(source), str(target)], check=True)
            out["ocrmypdf --jobs 1 (whole PDF)"] = (time.perf_counter() - started) / len(images)
            print(f"ocrmypdf --jobs 1: {out['ocrmypdf --jobs 1 (whole PDF)']:.2f} s/page", flush=True)
            doc = load(target)
            truths = [render_page(page_text(name))[1] for name in PAGES]
            out["ocrmypdf CER (its text layer via pypdf)"] = statistics.mean(
                ocr.character_error_rate(t, p.text) for t, p in zip(truths, doc.pages))
            started = time.perf_counter()
            ours = load(source)
            out["peru_qa loader on the same PDF (render + OCR)"] = (time.perf_counter() - started) / len(images)
            out["peru_qa CER"] = statistics.mean(ocr.character_error_rate(t, p.text)
                                                 for t, p in zip(truths, ours.pages))
            print(json.dumps({k: round(v, 4) for k, v in out.items()}, indent=1), flush=True)
    out["tesseract"] = str(pytesseract.get_tesseract_version())
    return out


def rasterise(source: Path, target: Path, dpi: int = 200, keep_title: bool = False) -> int:
    """An image-only copy of a PDF (each page rendered to a grey image; no text layer)."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(str(source))
    images = [document[i].render(scale=dpi / 72, grayscale=True).to_pil() for i in range(len(document))]
    document.close()
    images[0].save(target, save_all=True, append_images=images[1:], resolution=dpi)
    # --keep-title copies the title metadata (only the page text differs then); a real scan has none.
    from pypdf import PdfReader, PdfWriter

    title = (PdfReader(str(source)).metadata or {}).get("/Title")
    if title and keep_title:
        writer = PdfWriter(clone_from=str(target))
        writer.add_metadata({"/Title": str(title)})
        writer.write(str(target))
    return len(images)


def cmd_retrieval(args) -> dict:
    """Gold questions over documents/ twice: as shipped, and with its PDFs replaced by image-only scans of them
    (OCR'd on indexing). Also a chat question's latency while the OCR runs in a worker thread."""
    from peru_qa import KnowledgeBase
    from peru_qa.embeddings import get_embedder
    from peru_qa.evaluation import evaluate

    embedder = get_embedder()
    work = Path(tempfile.mkdtemp(prefix="ocr-bench-"))
    born, scanned = work / "born" / "documents", work / "scanned" / "documents"
    shutil.copytree(DOCS, born)
    shutil.copytree(DOCS, scanned)
    pdfs = sorted(p.name for p in DOCS.glob("*.pdf"))
    pages = sum(rasterise(DOCS / name, scanned / name, keep_title=args.keep_title) for name in pdfs)
    gold = ROOT / "tests" / "gold" / "questions.jsonl"
    subset = work / "pdf-questions.jsonl"
    lines = [line for line in gold.read_text(encoding="utf-8").splitlines()
             if line.strip() and set(json.loads(line)["documents"]) & set(pdfs)]
    subset.write_text("\n".join(lines) + "\n", encoding="utf-8")

    with KnowledgeBase(work / "born" / "index", embedder=embedder) as kb:
        kb.add([born], exclude=("README.md",))
        question = "¿Qué grupos controlan el narcotráfico en el VRAEM?"
        idle = []
        for _ in range(10):
            started = time.perf_counter()
            kb.retrieve(question, k=5)
            idle.append(time.perf_counter() - started)
        busy: list[float] = []
        report: dict = {}

        def index_scans():
            with KnowledgeBase(work / "scanned" / "index", embedder=embedder) as other:
                started = time.perf_counter()
                report["add"] = other.add([scanned], exclude=("README.md",))
                report["seconds"] = time.perf_counter() - started

        worker = threading.Thread(target=index_scans)
        worker.start()
        time.sleep(5)
        while worker.is_alive() and len(busy) < 40:
            started = time.perf_counter()
            kb.retrieve(question, k=5)
            busy.append(time.perf_counter() - started)
            time.sleep(0.5)
        worker.join()
    ocr_lines = [r.line() for r in report["add"].results if "OCR" in r.reason]
    # How far the OCR'd page texts are from the born-digital ones (pypdf's text layer), page by page.
    from peru_qa import ocr
    from peru_qa.loaders import load

    with KnowledgeBase(work / "scanned" / "index", embedder=embedder) as other:
        cers = []
        titles = {Path(d.source).name: d.title for d in other.documents() if d.source.endswith(".pdf")}
        for record in other.documents():
            if record.source.endswith(".pdf"):
                truth = {p.number: p.text for p in load(DOCS / Path(record.source).name).pages}
                cers += [ocr.character_error_rate(truth[number], text)
                         for number, text, _, _ in other.store.pages(record.id)]
    out: dict = {"pdfs": pdfs, "scanned_pages": pages, "scan_titles": titles,
                 "index_seconds_with_ocr": report["seconds"],
                 "ocr_results": ocr_lines,
                 "cer_vs_text_layer_mean": statistics.mean(cers), "cer_vs_text_layer_max": max(cers),
                 "retrieve_latency_idle_ms": 1000 * statistics.median(idle),
                 "retrieve_latency_during_ocr_ms": 1000 * statistics.median(busy) if busy else None,
                 "retrieve_latency_during_ocr_max_ms": 1000 * max(busy) if busy else None}
    for label, folder in (("born_digital", work / "born" / "index"), ("ocr", work / "scanned" / "index")):
        for setname, path in (("all", gold), ("pdf_questions", subset)):
            result = evaluate(path, index=folder, embedder=embedder)
            out[f"{label}/{setname}"] = {k: round(v, 4) for k, v in result.metrics.items()} | {
                "queries": result.queries}
    print(json.dumps(out, indent=1, ensure_ascii=False))
    shutil.rmtree(work, ignore_errors=True)
    return out


def cmd_hard(args) -> dict:
    from peru_qa.errors import ExtractionError
    from peru_qa.loaders import load

    folder = ROOT.parent / "shared" / "samples" / "hard-pdfs"
    if not folder.is_dir():
        folder = Path("/work/shared/samples/hard-pdfs")
    out = {}
    for path in sorted(folder.glob("*.pdf")):
        started = time.perf_counter()
        try:
            doc = load(path)
            ocred = [p for p in doc.pages if p.metadata.get("ocr")]
            out[path.name] = (f"{len(doc.pages)} pages, {len(ocred)} OCR'd"
                              + (f" (confidence {min(p.metadata['confidence'] for p in ocred):.0f}-"
                                 f"{max(p.metadata['confidence'] for p in ocred):.0f}%)" if ocred else "")
                              + (f"; {'; '.join(doc.notes)}" if doc.notes else ""))
        except ExtractionError as exc:
            out[path.name] = f"failed: {exc}"
        out[path.name] += f" [{time.perf_counter() - started:.1f} s]"
        print(f"{path.name}: {out[path.name]}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("cer", "speed", "retrieval", "hard"))
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--keep-title", action="store_true", help="retrieval: copy PDF titles to the scans")
    parser.add_argument("--conditions", help="cer: only these, e.g. clean@300,harsh@150")
    args = parser.parse_args()
    result = {"cer": cmd_cer, "speed": cmd_speed, "retrieval": cmd_retrieval, "hard": cmd_hard}[args.what](args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, ensure_ascii=False, default=str), encoding="utf-8")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
