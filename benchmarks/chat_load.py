"""Chat load: N concurrent chat clients for T seconds against a running peru-qa app (loopback only).

    .venv/bin/python app.py --port 7860 &            # extractive mode: PERU_QA_LLM_URL unset
    .venv/bin/python benchmarks/chat_load.py [--url http://127.0.0.1:7860/] [--clients 20] [--seconds 60]

Each client sends the chat questions below back to back through the app's /chat endpoint (the same
event the chat box triggers, streamed), and the latency of each full answer is recorded.
"""

from __future__ import annotations

import argparse
import ipaddress
import statistics
import sys
import threading
import time
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


def _loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:7860/")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    if not _loopback(args.url):
        print("chat_load: only loopback addresses (127.0.0.0/8, ::1, localhost) may be targeted", file=sys.stderr)
        return 2
    from gradio_client import Client

    clients = [Client(args.url, verbose=False) for _ in range(args.clients)]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = time.monotonic()
    deadline = start + args.seconds

    def run(n: int, client) -> None:
        i = n
        while time.monotonic() < deadline:
            question = QUESTIONS[i % len(QUESTIONS)]
            i += 1
            t0 = time.monotonic()
            try:
                _, chat, sources = client.predict(question, [], api_name="/chat")
                ok = chat and chat[-1]["role"] == "assistant" and "pqa-sources" in sources
                if not ok:
                    raise RuntimeError("empty answer")
            except Exception as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {str(exc)[:100]}")
                continue
            with lock:
                latencies.append(time.monotonic() - t0)

    threads = [threading.Thread(target=run, args=(n, c)) for n, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
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
