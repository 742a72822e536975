"""Accounts with roles (PERU_QA_AUTH) and the audit log: parsing, permissions, both backends, the CLI, and the
running app refusing a reader's changes through its API."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import QA_DOCS

from peru_qa import KnowledgeBase
from peru_qa.auth import EDITOR, READER, PermissionDenied, accounts_from_env, can, parse_accounts, require
from peru_qa.cli import main
from peru_qa.errors import PeruQAError
from peru_qa.records import DocumentRecord, now

# --- accounts ------------------------------------------------------------------------------------------------


def test_accounts_with_roles_and_the_default_editor():
    accounts = parse_accounts(" ana:s3cret , luis:pw2:reader,eva:x:y:Editor")
    assert accounts is not None
    assert {u: a.role for u, a in accounts.by_user.items()} == {"ana": EDITOR, "luis": READER, "eva": EDITOR}
    assert accounts.login("ana", "s3cret") and accounts.login("luis", "pw2")
    assert accounts.login("eva", "x:y")  # a password holding ':' ends with its role
    assert not accounts.login("ana", "wrong") and not accounts.login("nobody", "s3cret")
    assert "s3cret" not in repr(accounts)


def test_today_single_login_is_an_editor():
    accounts = parse_accounts("ana:s3cret")
    assert accounts.role("ana") == EDITOR
    assert all(accounts.can("ana", action) for action in ("ask", "view", "export", "add", "replace", "remove"))


def test_no_accounts_means_no_login_and_everything_allowed(monkeypatch):
    monkeypatch.delenv("PERU_QA_AUTH", raising=False)
    assert accounts_from_env() is None
    assert parse_accounts("  ") is None
    assert can(None, None, "remove") and can(None, None, "add")
    require(None, None, "remove")  # no error


def test_a_reader_may_ask_view_and_export_only():
    accounts = parse_accounts("luis:pw:reader,ana:pw:editor")
    assert [a for a in ("ask", "view", "export", "add", "replace", "remove") if accounts.can("luis", a)] == [
        "ask", "view", "export"]
    assert accounts.can("ana", "remove")
    assert not accounts.can(None, "ask") and not accounts.can("stranger", "ask")
    with pytest.raises(PermissionDenied, match="luis is a reader, and removing documents needs an editor"):
        require(accounts, "luis", "remove")
    with pytest.raises(PermissionDenied, match="adding documents needs a logged-in editor"):
        require(accounts, None, "add")
    with pytest.raises(ValueError, match="unknown action 'delete'"):
        can(accounts, "ana", "delete")


@pytest.mark.parametrize(("value", "message"), [
    ("ana", r"^PERU_QA_AUTH entry 1 has no password: write it as user:password\[:role\]$"),
    ("ana:pw,luis:pw2:raeder", r"entry 2 \(luis:…\) does not end with a role: end it with :reader or :editor"),
    ("ana:pw:2", r"entry 1 \(ana:…\) does not end with a role"),  # a password with ':' and no role: not shown
    ("ana:pw,,luis:pw2", r"entry 2 is empty"),
    (":pw:reader", r"entry 1 has no user name"),
    ("ana:", r"entry 1 \(ana:…\) has an empty password"),
    ("ana::reader", r"entry 1 \(ana:…\) has an empty password"),
    ("ana:pw,ana:pw2:reader", r"entry 2 \(ana:…\): user 'ana' is given twice"),
])
def test_malformed_accounts_name_the_bad_entry_not_its_password(value, message, monkeypatch):
    with pytest.raises(PeruQAError, match=message) as caught:
        parse_accounts(value)
    assert "pw" not in str(caught.value) and "raeder" not in str(caught.value)  # never a part of a password
    monkeypatch.setenv("PERU_QA_AUTH", value)
    with pytest.raises(PeruQAError, match=message):
        accounts_from_env()


def test_serve_refuses_malformed_accounts_at_once(tmp_path):
    env = {**os.environ, "PERU_QA_AUTH": "ana:s3cret,luis:pw2:admin"}
    run = subprocess.run([sys.executable, "-m", "peru_qa.cli", "serve", "--index", str(tmp_path / "idx")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip() == ("peru-qa: error: PERU_QA_AUTH entry 2 (luis:…) does not end with a role: end it "
                                  "with :reader or :editor (a password holding ':' needs the role after it, "
                                  "user:pa:ss:editor)")
    assert not (tmp_path / "idx").exists()


# --- the audit log, both backends -----------------------------------------------------------------------------


@pytest.fixture(params=["embedded", "postgres"])
def location(request, tmp_path):
    if request.param == "embedded":
        return str(tmp_path / "index")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in QA_DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_audit_log_records_who_added_replaced_and_removed(location, docs, embedder):
    from peru_qa import TextDocument

    with KnowledgeBase(location, embedder=embedder) as kb:
        assert kb.log() == []
        assert kb.add(docs, user="ana").ok
        mining = docs / "mining.txt"
        mining.write_text(QA_DOCS["mining.txt"] + "\nA new paragraph about dredges on the Inambari river.\n",
                          encoding="utf-8")
        report = kb.add([mining], user="bob")
        assert report.count("replaced") == 1
        removed = kb.remove("extorsion.txt", user="carla")
        (docs / "extorsion.txt").unlink()
        kb.add_texts([TextDocument(source="note-1", title="A note", text="Una nota sobre la minería en Pataz.")])
        kb.add(docs, user="ana")  # nothing changed: nothing recorded
    with KnowledgeBase(location, embedder=embedder) as kb:  # kept in the index, read back after reopening
        log = kb.log()
        assert [(e.user, e.action, Path(e.file).name) for e in log[:3]] == [
            ("local", "added", "note-1"), ("carla", "removed", "extorsion.txt"), ("bob", "replaced", "mining.txt")]
        assert log[1].doc_id == removed.id and log[1].title == removed.title and log[1].file == removed.source
        assert sorted((e.user, e.action, Path(e.file).name) for e in log[3:]) == sorted(
            ("ana", "added", name) for name in QA_DOCS)
        assert all(e.time.endswith("+00:00") and e.time[:4].isdigit() for e in log)
        assert [e.time for e in log] == sorted((e.time for e in log), reverse=True)
        assert [e.to_dict() for e in kb.log(limit=2)] == [e.to_dict() for e in log[:2]]
        assert {"time", "user", "action", "file", "doc_id", "title"} <= set(log[0].to_dict())


def test_audit_entry_is_part_of_the_write_it_records(location, embedder):
    """A document write that fails leaves no audit entry behind: both are one transaction."""
    with KnowledgeBase(location, embedder=embedder) as kb:
        record = DocumentRecord(id="d1", source="/tmp/x.txt", title="x", language="en", content_hash="h1",
                                paged=False, n_pages=2, n_chunks=0, file_size=None, file_mtime=None,
                                added_at=now(), notes="")
        pages = [(1, "one", [], {}), (1, "the same page number again", [], {})]  # breaks the pages' primary key
        with kb.store.writer(), pytest.raises(Exception, match="(?i)unique|duplicate"):
            kb.store.write_document(record, pages, [], np.zeros((0, embedder.dim), np.float32), user="ana")
        assert kb.log() == [] and kb.documents() == []
        kb.store.write_document(record, pages[:1], [], np.zeros((0, embedder.dim), np.float32))
        assert kb.log() == []  # no user (re-embedding, copying): not a person's change, nothing recorded


def test_an_index_from_before_the_audit_log_gains_it(tmp_path, docs, embedder):
    index = tmp_path / "old"
    with KnowledgeBase(index, embedder=embedder) as kb:
        kb.add([docs / "vraem.md"])
    db = sqlite3.connect(index / "peru_qa.sqlite")
    # as an index written before migration 4 (the audit log): the later migrations' tables go too
    db.executescript("DROP TABLE audit; DROP TABLE mentions; DROP TABLE entity_runs; PRAGMA user_version=3;")
    db.close()
    with KnowledgeBase(index, embedder=embedder) as kb:
        assert kb.log() == []
        kb.remove("vraem.md", user="ana")
        assert [(e.user, e.action) for e in kb.log()] == [("ana", "removed")]


def test_cli_log_json_and_lines(tmp_path, docs, embedder, capsys):
    index = str(tmp_path / "idx")
    assert main(["log", "--index", index]) == 2  # no index there yet: an error, not a new empty index
    assert "no index at" in capsys.readouterr().err
    assert main(["add", str(docs / "mining.txt"), str(docs / "vraem.md"), "--index", index]) == 0
    assert main(["remove", "vraem.md", "--index", index]) == 0
    capsys.readouterr()
    assert main(["log", "--json", "--index", index]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [(e["user"], e["action"], Path(e["file"]).name) for e in entries[:1]] == [("local", "removed", "vraem.md")]
    assert sorted(Path(e["file"]).name for e in entries[1:]) == ["mining.txt", "vraem.md"]
    assert all(e["user"] == "local" and e["time"] and e["action"] for e in entries)
    assert main(["log", "--limit", "1", "--index", index]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "  local  removed " in lines[0] and lines[0].endswith(str(docs / "vraem.md"))


# --- the app with a reader and an editor -----------------------------------------------------------------------

READER_LOGIN = ("rita", "r3ad-only")
EDITOR_LOGIN = ("ed", "3dit:s")  # a password with ':' (the entry ends with its role)


@pytest.fixture(scope="module")
def team_app(tmp_path_factory, qa_docs, embedder):
    """The app with two accounts, a reader and an editor, over its own small index: (url, kb)."""
    from peru_qa.ui import launch

    before = os.environ.get("PERU_QA_AUTH")
    os.environ["PERU_QA_AUTH"] = (f"{READER_LOGIN[0]}:{READER_LOGIN[1]}:reader,"
                                  f"{EDITOR_LOGIN[0]}:{EDITOR_LOGIN[1]}:editor")
    kb = KnowledgeBase(tmp_path_factory.mktemp("team-index") / "index", embedder=embedder)
    try:
        assert kb.add([qa_docs]).ok
        port = _free_port()
        demo, service = launch(kb, port=port, quiet=True, prevent_thread_lock=True)
    finally:
        if before is None:
            os.environ.pop("PERU_QA_AUTH", None)
        else:
            os.environ["PERU_QA_AUTH"] = before
    yield f"http://127.0.0.1:{port}/", kb
    demo.close()
    service.close()
    kb.close()


@pytest.fixture(scope="module")
def gradio_client():
    return pytest.importorskip("gradio_client")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _doc_id(kb: KnowledgeBase, name: str) -> str:
    return next(d.id for d in kb.documents() if Path(d.source).name == name)


def test_a_reader_cannot_change_documents_through_the_api(team_app, gradio_client, tmp_path):
    url, kb = team_app
    reader = gradio_client.Client(url, auth=READER_LOGIN, verbose=False)
    target = _doc_id(kb, "mining.txt")
    with pytest.raises(Exception, match="not allowed: rita is a reader, and removing documents needs an editor"):
        reader.predict(target, api_name="/remove_document")
    assert any(d.id == target for d in kb.documents())
    note = tmp_path / "reader-note.txt"
    note.write_text("The Puma clan smuggles timber from Ucayali on river barges.", encoding="utf-8")
    with pytest.raises(Exception, match="not allowed: rita is a reader, and adding documents needs an editor"):
        reader.predict([gradio_client.handle_file(str(note))], api_name="/add_documents")
    assert not any(Path(d.source).name == "reader-note.txt" for d in kb.documents())
    assert all(e.user != "rita" for e in kb.log())
    # what a reader may do still works
    data = reader.predict("What did Operation Mercurio do?", api_name="/ask")
    assert not data["abstained"] and data["citations"][0]["source"].endswith("mining.txt")


def test_an_editor_can_remove_and_add_and_is_recorded(team_app, gradio_client, tmp_path):
    url, kb = team_app
    editor = gradio_client.Client(url, auth=EDITOR_LOGIN, verbose=False)
    target = _doc_id(kb, "extorsion.txt")
    line, *_ = editor.predict(target, api_name="/remove_document")
    assert line.startswith("removed: ") and target in line
    assert not any(d.id == target for d in kb.documents())
    note = tmp_path / "editor-note.txt"
    note.write_text("The Puma clan smuggles timber from Ucayali on river barges.", encoding="utf-8")
    results, *_ = editor.predict([gradio_client.handle_file(str(note))], api_name="/add_documents")
    assert "added: editor-note.txt" in results
    log = kb.log()
    assert [(e.user, e.action, Path(e.file).name) for e in log[:2]] == [
        ("ed", "added", "editor-note.txt"), ("ed", "removed", "extorsion.txt")]


def test_without_accounts_the_app_changes_as_local(qa_kb):
    """No PERU_QA_AUTH: no login, anyone on this machine may change documents, recorded as `local`."""
    from peru_qa.ui import ChatService

    service = ChatService(qa_kb)
    try:
        assert service.may(None, "remove") and service.may(None, "add")
        assert "No documents added" not in service.audit_html() and ">local<" in service.audit_html()
    finally:
        service.close()


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium is not installed")
def test_the_page_shows_a_reader_no_remove_and_no_add(team_app):
    """In the browser: after logging in, a reader's Library has no Remove and there is no Add documents tab; an
    editor has both; both see the audit log."""
    sync_api = pytest.importorskip("playwright.sync_api")
    url, _ = team_app
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])
        try:
            for (user, password), editor in ((READER_LOGIN, False), (EDITOR_LOGIN, True)):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                page.set_default_timeout(60_000)  # the 2-core machine may be busy with other work
                page.goto(url)
                page.get_by_label("username").fill(user)
                page.get_by_label("password").fill(password)
                page.get_by_role("button", name="Login").click()
                page.get_by_text("Answers come").first.wait_for()
                page.get_by_role("tab", name="Library").click()
                page.locator("#pqa-audit").get_by_text("Time (UTC)").wait_for()
                add_tab = page.get_by_role("tab", name="Add documents")
                if editor:
                    page.locator("#pqa-remove").wait_for(state="visible")
                    add_tab.wait_for(state="visible")
                else:  # hidden once the page has loaded who is logged in
                    page.locator("#pqa-remove").wait_for(state="hidden")
                    add_tab.wait_for(state="hidden")
                    assert not page.locator("#pqa-remove").is_visible() and not add_tab.is_visible()
                context.close()
        finally:
            browser.close()
