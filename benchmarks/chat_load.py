"""Chat load: N concurrent chat clients for T seconds against a running peru-qa app (loopback only).

    .venv/bin/python app.py --port 7860 &            # extractive mode: PERU_QA_LLM_URL unset
    .venv/bin/python benchmarks/chat_load.py [--url http://127.0.0.1:7860/] [--clients 20] [--seconds 60]

Each client sends chat questions back to back (the ten below, then the 321 of tests/data/answers.jsonl, each
client starting at a different place, so that a question rarely repeats within the encoder's memory of recent
questions) through the app's /chat endpoint (the same
event the chat box triggers, streamed over Gradio's REST/SSE API), and the latency of each full answer is
recorded. Each client keeps one Gradio session for all its questions, as a browser tab does (`--no-session`:
every question a new session, as the first versions of this benchmark did; Gradio then rebuilds the page's
session state per question, which costs the server ~4 ms of Python per request). The clients are asyncio tasks
in one process, so the load generator itself stays light on the shared 2 cores (gradio_client threads used more
CPU than the app they measured).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

QUESTIONS = [
    "¿Qué grupos controlan el narcotráfico en el VRAEM?",
    "¿Qué es la Operación Mercurio?",
    "How does extortion affect public transport in Lima?",
    "What is the REINFO registry?",
    "¿Quiénes son los hermanos Quispe Palomino?",
    "Who are Los Pulpos?",
    "¿Qué son las rondas campesinas?",
    "How many hectares of coca did DEVIDA report for 2022?",
    "What is the capital of Australia?",
    "¿Quién ganó el Mundial de 2018?",
]


ANSWERS = Path(__file__).resolve().parents[1] / "tests" / "data" / "answers.jsonl"


def _questions(path: Path) -> list[str]:
    """The fixed questions, then those of the in-domain answer set (answerable, near misses, off-topic)."""
    questions = list(QUESTIONS)
    if path.exists():
        with path.open(encoding="utf-8") as handle:
            questions += [json.loads(line)["question"] for line in handle if line.strip()]
    return list(dict.fromkeys(questions))


def _loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _chat_defaults(http) -> list:
    """Default values of the /chat endpoint's inputs after (question, history): the chat's filters, none set."""
    info = (await http.get("/gradio_api/info")).json()
    params = info["named_endpoints"]["/chat"]["parameters"]
    return [p.get("parameter_default") for p in params[2:]]


async def _client(http, n: int, deadline: float, latencies: list[float], errors: list[str],
                  extra: list, session: bool, questions: list[str], clients: int) -> None:
    """One chat user: asks a question, reads the streamed answer to the end, asks the next one."""
    i = n * len(questions) // clients
    body: dict = {"session_hash": f"chat-load-{n}-{uuid.uuid4().hex[:8]}"} if session else {}
    while time.monotonic() < deadline:
        question = questions[i % len(questions)]
        i += 1
        t0 = time.monotonic()
        try:
            started = await http.post("/gradio_api/call/chat", json={"data": [question, [], *extra], **body})
            started.raise_for_status()
            final = None
            async with http.stream("GET", f"/gradio_api/call/chat/{started.json()['event_id']}") as stream:
                event = ""
                async for line in stream.aiter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event in ("complete", "error"):
                        final = (event, line[5:].strip())
            if final is None or final[0] != "complete":
                raise RuntimeError(f"no answer: {final}")
            _, chat, sources, *_ = json.loads(final[1])
            if not chat or chat[-1]["role"] != "assistant" or "pqa-sources" not in sources:
                raise RuntimeError("empty answer")
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {str(exc)[:100]}")
            continue
        latencies.append(time.monotonic() - t0)


async def _run(url: str, clients: int, seconds: float, session: bool = True,
               questions: list[str] = QUESTIONS) -> tuple[list[float], list[str], float]:
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=clients * 2)
    async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=60, limits=limits) as http:
        extra = await _chat_defaults(http)
        start = time.monotonic()
        await asyncio.gather(*(_client(http, n, start + seconds, latencies, errors, extra, session, questions, clients)
                               for n in range(clients)))
        return latencies, errors, time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:7860/")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--questions", type=Path, default=ANSWERS,
                        help="JSON lines with a 'question' each, asked after the fixed ones")
    parser.add_argument("--no-session", action="store_true", help="a new Gradio session for every question")
    args = parser.parse_args()
    if not _loopback(args.url):
        print("chat_load: only loopback addresses (127.0.0.0/8, ::1, localhost) may be targeted", file=sys.stderr)
        return 2
    latencies, errors, elapsed = asyncio.run(_run(args.url, args.clients, args.seconds,
                                                       not args.no_session, _questions(args.questions)))
    if not latencies:
        print(f"no answers; {len(errors)} errors: {errors[:3]}")
        return 1
    cuts = statistics.quantiles(latencies, n=100)
    print(f"{args.clients} clients, {elapsed:.0f} s: {len(latencies)} answers ({len(latencies) / elapsed:.1f}/s), "
          f"{len(errors)} errors")
    print(f"answer latency: p50 {cuts[49] * 1000:.0f} ms, p95 {cuts[94] * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms")
    for line in sorted(set(errors))[:5]:
        print(f"  error: {line}")
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
