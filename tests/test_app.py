"""The running web app through its API (gradio_client): cited answers, uploads answered at once."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

gradio_client = pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def client(chat_app):
    return gradio_client.Client(chat_app, verbose=False)


def _last_answer(chat: list) -> str:
    content = chat[-1]["content"]
    if isinstance(content, list):
        content = " ".join(part.get("text", "") for part in content)
    return re.sub(r"\\(.)", r"\1", content)  # the chat shows Markdown-escaped text


def make_pdf(path: Path, lines: list[str]) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for i, text in enumerate(lines):
        if i == 0 or text == "<page>":
            pdf.add_page()
            if text == "<page>":
                continue
        pdf.multi_cell(0, 8, text, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))
    return path


def test_chat_answers_with_citations(client):
    _, chat, sources = client.predict("Who controls drug trafficking in the VRAEM?", [], api_name="/chat")
    answer = _last_answer(chat)
    assert "[1]" in answer and "Quispe Palomino" in answer
    assert "[1]" in sources and "vraem.md" in sources


def test_ask_api_returns_json(client):
    data = client.predict("¿Quién ganó el Mundial de 2018?", api_name="/ask")
    assert data["abstained"] and data["language"] == "es" and "no responden" in data["text"]
    data = client.predict("What did Operation Mercurio do?", api_name="/ask")
    assert not data["abstained"] and data["citations"][0]["source"].endswith("mining.txt")


def test_follow_up_in_the_chat(client):
    _, chat, _ = client.predict("Who controls drug trafficking in the VRAEM?", [], api_name="/chat")
    _, chat, _ = client.predict("and who finances them?", chat, api_name="/chat")
    assert "protection fees" in _last_answer(chat)


def test_uploaded_pdf_is_answered_at_once(client, tmp_path):
    pdf = make_pdf(tmp_path / "condor report.pdf", [
        "The Condor network",
        "<page>",
        "The Condor smuggling network hides cocaine inside shipments of frozen mangoes at the port of Paita.",
        "Its leader, known by the alias Tucan, pays dock workers to open the refrigerated containers.",
    ])
    results, docs, *_ = client.predict([gradio_client.handle_file(str(pdf))], api_name="/add_documents")
    assert "added: condor report.pdf" in results, results
    assert "condor report.pdf" in docs
    data = client.predict("How does the Condor network hide cocaine?", api_name="/ask")
    assert not data["abstained"], data["text"]
    assert "frozen mangoes" in data["text"]
    cited = data["citations"][0]
    assert cited["source"].endswith("condor report.pdf") and cited["page"] == 2
    assert Path(cited["source"]).parent.name == "uploads"
    # the same file again is reported unchanged
    results, *_ = client.predict([gradio_client.handle_file(str(pdf))], api_name="/add_documents")
    assert "unchanged: condor report.pdf" in results


def test_upload_rejects_bad_types_and_sizes(client, tmp_path, qa_kb, monkeypatch):
    bad = tmp_path / "tool.exe"
    bad.write_bytes(b"MZ")
    with pytest.raises(Exception, match="Invalid file type"):  # Gradio refuses it at the door
        client.predict([gradio_client.handle_file(str(bad))], api_name="/add_documents")
    from peru_qa.ui import ChatService

    service = ChatService(qa_kb)  # and so does the app's own check, for callers that bypass Gradio
    try:
        assert "not allowed" in service.stage(bad)[1].reason
        big = tmp_path / "big.txt"
        big.write_bytes(b"x" * 3 * 1024 * 1024)
        monkeypatch.setenv("PERU_QA_MAX_UPLOAD_MB", "2")
        target, failure = service.stage(big)
        assert target is None and "over the 2 MB limit" in failure.reason
    finally:
        service.close()


def test_sanitize_filename():
    from peru_qa.ui import MAX_NAME_CHARS, sanitize_filename

    assert sanitize_filename("../../etc/passwd.txt") == "passwd.txt"
    assert sanitize_filename("..\\..\\evil.md") == "evil.md"
    assert sanitize_filename("a\x00b.pdf") == "ab.pdf"
    assert sanitize_filename(".hidden.txt") == "hidden.txt"
    assert sanitize_filename("") == "document"
    long = sanitize_filename("x" * 500 + ".pdf")
    assert len(long) <= MAX_NAME_CHARS and long.endswith(".pdf")
    assert "/" not in sanitize_filename("a/b/c<d>.html")


def test_html_in_documents_is_escaped():
    from peru_qa.answer import Answer
    from peru_qa.retrieval import Passage
    from peru_qa.ui import answer_markdown, sources_html

    evil = 'Payload <script>window.__pwned=1</script> and <img src=x onerror="window.__pwned=1"> here.'
    passage = Passage(text=evil, chunk_id=1, doc_id="d", title="<b>T</b>", source="/x/<i>.txt", page=3,
                      section="", language="en", start=0, end=len(evil), score=1.0)
    answer = Answer("q", evil + " [1]", [passage], False, "en", unmatched=["<img src=x onerror=alert(1)>"])
    rendered = sources_html(answer) + answer_markdown(answer)
    assert "<script" not in rendered and "<img" not in rendered and "<b>T" not in rendered
    assert "&lt;script&gt;" in rendered and "p. 3" in rendered
    assert "The cited sources do not mention: &lt;img" in answer_markdown(answer)


def test_auth_and_upload_limit_enforced_by_the_server(tmp_path, embedder, monkeypatch):
    """PERU_QA_AUTH locks the app; an upload over the limit is refused while it streams in (413)."""
    import httpx
    from conftest import _free_port

    from peru_qa import KnowledgeBase
    from peru_qa.ui import launch

    monkeypatch.setenv("PERU_QA_AUTH", "ana:s3cret")
    monkeypatch.setenv("PERU_QA_MAX_UPLOAD_MB", "1")
    kb = KnowledgeBase(tmp_path / "idx", embedder=embedder)
    port = _free_port()
    demo, service = launch(kb, port=port, quiet=True, prevent_thread_lock=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            assert http.get("/config").status_code == 401
            assert http.post("/gradio_api/upload", files={"files": ("a.txt", b"x")}).status_code == 401
            assert http.post("/login", data={"username": "ana", "password": "nope"}).status_code != 200
            assert http.post("/login", data={"username": "ana", "password": "s3cret"}).status_code == 200
            assert http.post("/gradio_api/upload", files={"files": ("a.txt", b"small")}).status_code == 200
            big = http.post("/gradio_api/upload", files={"files": ("b.txt", b"x" * (3 * 1024 * 1024))})
            assert big.status_code == 413
    finally:
        demo.close()
        service.close()
        kb.close()


def test_chat_and_ask_api_take_filters(client):
    data = client.predict("Who controls drug trafficking in the VRAEM?", filters={"language": "es"}, api_name="/ask")
    assert data["filters"] == {"languages": ["es"]}
    assert data["citations"] and all(c["language"] == "es" for c in data["citations"])
    # the chat: only Spanish documents searched, and the answer says so
    _, chat, sources = client.predict("Who controls drug trafficking in the VRAEM?", [], [], ["es"], "", "",
                                      api_name="/chat")
    assert "Searched only language: es" in _last_answer(chat)
    assert "vraem-es.md" in sources and "vraem.md<" not in sources.replace(" ", "")
    # filters that leave nothing to search are named (not "the index is empty")
    data = client.predict("How much coca is grown in the VRAEM?", [], [], ["es"], "1990", "1991", api_name="/chat")
    assert "No indexed document matches the filters (language: es · checked: 1990 to 1991)" in _last_answer(data[1])
    # a malformed date is said in the chat, not a crash
    _, chat, _ = client.predict("coca", [], [], [], "last year", "", api_name="/chat")
    assert "is not a date" in _last_answer(chat)


def test_service_opens_citations_and_exports(qa_kb):
    from peru_qa.export import Turn
    from peru_qa.ui import ChatService

    service = ChatService(qa_kb)
    try:
        answer = qa_kb.ask("What did Operation Mercurio do?", llm=False)
        turns = [Turn(answer)]
        view, state, message = service.open_citation(turns, "0:1|1712345")
        assert view is not None and not message and view.file_name == "mining.txt"
        assert any("Operation Mercurio" in view.text[s:e] for s, e in view.marks)
        assert service.open_citation(turns, "3:1")[2] == "That citation is not in this conversation any more."
        assert service.open_citation(turns, "0:99")[0] is None
        assert service.open_citation(turns, "garbage")[0] is None
        md, js, last = service.export_files(turns)
        assert Path(md).read_text().count("[1] ") >= 1 and "mining.txt" in Path(md).read_text()
        assert json.loads(Path(js).read_text())["answers"][0]["question"] == "What did Operation Mercurio do?"
        assert Path(last).name == "peru-qa-answer.md"
    finally:
        service.close()
