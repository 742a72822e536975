"""Chat load against a running peru-qa app (loopback only): open-loop users (the target) or closed-loop clients.

Start the app on the shipped corpus (extractive mode: PERU_QA_LLM_URL unset), then run the load:

    .venv/bin/python app.py --port 7860 &            # or: PERU_QA_INDEX=DIR .venv/bin/peru-qa serve --port 7860
    .venv/bin/python benchmarks/chat_load.py                          # open loop: --users 20 --mean-gap 10
                                                                      #   --seconds 120 --seed 0
    .venv/bin/python benchmarks/chat_load.py --mode closed --clients 20 --seconds 60    # capacity figure

`--mode open` (default; the target of issue 31): `--users` users ask at random, each on average one question every
`--mean-gap` seconds: every user draws exponential gaps between question ARRIVALS (a Poisson process, seeded by
`--seed` and the user's number, so a run is reproducible) for `--seconds`; the answers still streaming then are
waited for. Open loop: a question is sent at its arrival time even when that user's previous answer is still
streaming. A browser tab cannot do that (Gradio ignores a second submit while the chat event is pending), so the
user asks it in a second tab: each user keeps its tabs, each one Gradio session, reuses an idle tab and opens a new
one only when all are busy (the count of extra tabs is reported). Latency is measured from the ARRIVAL time (not
from when the request went out, should the load generator fall behind) to the full answer received. Reported:
questions, errors, p50/p95/max latency, the achieved arrival rate (target users / mean gap) and the generator's
worst lateness, and a one-line verdict against the targets (p95 ≤ `--p95-target` 1.5 s, 0 errors).

`--mode closed` (capacity): `--clients` clients send questions back to back, each keeping one Gradio session for all
its questions, as a browser tab does; answers/s is the capacity figure.

Questions come from one pool: the ten below, then the 321 of tests/data/answers.jsonl (answerable, near misses,
off-topic). Closed-loop clients walk it from different places; open-loop users walk a seeded shuffle of it from
different places, so that a question rarely repeats within the encoder's memory of recent questions (20 users ×
120 s at one question per 10 s ask ~240 of the 331). Every question goes through the app's /chat endpoint (the same
event the chat box triggers, streamed over Gradio's REST/SSE API). `--no-session`: every question a new session,
as the first versions of this benchmark did (Gradio then rebuilds the page's session state per question, ~4 ms of
server Python per request). The users are asyncio tasks in one process, so the load generator stays light on the
shared cores (gradio_client threads used more CPU than the app they measured). A JSON with the settings, the
figures and every question's record is written to benchmarks/out/ (gitignored; `--out` to choose the file).
On a freshly started app, warm it up first (e.g. `--mode closed --clients 2 --seconds 10`). The generator drops
idle keep-alive connections after 2 s, before the server does (see `_http`), so that an error is the app's.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import random
import statistics
import sys
import time
import uuid
from datetime import datetime, timezone
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


ROOT = Path(__file__).resolve().parents[1]
ANSWERS = ROOT / "tests" / "data" / "answers.jsonl"
OUT = ROOT / "benchmarks" / "out"


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


def _session() -> str:
    return f"chat-load-{uuid.uuid4().hex[:12]}"


async def _chat_defaults(http) -> list:
    """Default values of the /chat endpoint's inputs after (question, history): the chat's filters, none set."""
    info = (await http.get("/gradio_api/info")).json()
    params = info["named_endpoints"]["/chat"]["parameters"]
    return [p.get("parameter_default") for p in params[2:]]


class AskError(Exception):
    """A failed question, with the step that failed: post (joining the queue) or stream (reading the answer)."""

    def __init__(self, step: str, cause: Exception):
        super().__init__(f"{step}: {type(cause).__name__}: {str(cause)[:100]}")


async def _ask(http, question: str, extra: list, session: str | None) -> None:
    """One chat question through /chat, its streamed answer read to the end; raises unless a full answer came."""
    body: dict = {"session_hash": session} if session else {}
    step = "post"
    try:
        started = await http.post("/gradio_api/call/chat", json={"data": [question, [], *extra], **body})
        started.raise_for_status()
        step = "stream"
        final = None
        async with http.stream("GET", f"/gradio_api/call/chat/{started.json()['event_id']}") as stream:
            event = ""
            async for line in stream.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    final = (event, line[5:].strip())
    except Exception as exc:
        raise AskError(step, exc) from exc
    if final is None or final[0] != "complete":
        raise RuntimeError(f"no answer: {final}")
    _, chat, sources, *_ = json.loads(final[1])
    if not chat or chat[-1]["role"] != "assistant" or "pqa-sources" not in sources:
        raise RuntimeError("empty answer")


def _error(exc: Exception) -> str:
    return str(exc) if isinstance(exc, AskError) else f"{type(exc).__name__}: {str(exc)[:100]}"


def _http(url: str, connections: int):
    """The load generator's HTTP client. Idle keep-alive connections are dropped after 2 s, before the server's
    own 5 s (uvicorn's default): with both at 5 s a question sent on a connection idle for ~5 s can meet the server
    closing it (ReadError / "Server disconnected without sending a response"), an artefact of the client that
    browsers hide by retrying on a fresh connection; open-loop users, idle between questions, hit it."""
    import httpx

    limits = httpx.Limits(max_connections=connections, keepalive_expiry=2.0)
    return httpx.AsyncClient(base_url=url.rstrip("/"), timeout=60, limits=limits)


# --- closed loop: the capacity figure -------------------------------------------------------------------------

async def _client(http, n: int, deadline: float, latencies: list[float], errors: list[str],
                  extra: list, session: bool, questions: list[str], clients: int) -> None:
    """One chat client: asks a question, reads the streamed answer to the end, asks the next one."""
    i = n * len(questions) // clients
    tab = _session() if session else None
    while time.monotonic() < deadline:
        question = questions[i % len(questions)]
        i += 1
        t0 = time.monotonic()
        try:
            await _ask(http, question, extra, tab)
        except Exception as exc:
            errors.append(_error(exc))
            continue
        latencies.append(time.monotonic() - t0)


async def _run(url: str, clients: int, seconds: float, session: bool = True,
               questions: list[str] = QUESTIONS) -> tuple[list[float], list[str], float]:
    """Closed loop: `clients` clients back to back for `seconds`; (latencies, errors, elapsed)."""
    latencies: list[float] = []
    errors: list[str] = []
    async with _http(url, clients * 2) as http:
        extra = await _chat_defaults(http)
        start = time.monotonic()
        await asyncio.gather(*(_client(http, n, start + seconds, latencies, errors, extra, session, questions, clients)
                               for n in range(clients)))
        return latencies, errors, time.monotonic() - start


# --- open loop: the target -------------------------------------------------------------------------------------

def plan(users: int, mean_gap: float, seconds: float, seed: int, questions: list[str]) -> list[list[tuple[float, str]]]:
    """Each user's (arrival time in s from the start, question): Poisson arrivals, reproducible from `seed`.

    A user's arrival times depend only on the seed and the user's number (not on --seconds or --users); the
    questions are a seeded shuffle of the pool, each user walking it from a different place."""
    order = list(questions)
    random.Random(seed).shuffle(order)
    schedule = []
    for u in range(users):
        rng = random.Random(seed * 1_000_003 + u + 1)
        i = u * len(order) // users
        t = rng.expovariate(1 / mean_gap)
        mine = []
        while t < seconds:
            mine.append((t, order[i % len(order)]))
            i += 1
            t += rng.expovariate(1 / mean_gap)
        schedule.append(mine)
    return schedule


async def _user(http, u: int, arrivals: list[tuple[float, str]], start: float, extra: list, session: bool,
                records: list[dict]) -> int:
    """One user: each question sent at its arrival time through an idle tab (a new one if all are busy).

    Returns how many tabs the user opened."""
    idle: list[str | None] = [_session() if session else None]
    tabs = 1
    pending = []

    async def one(arrival: float, question: str, tab: str | None) -> None:
        sent = time.monotonic()
        record = {"user": u, "arrival_s": round(arrival, 3), "late_ms": round((sent - start - arrival) * 1000, 1),
                  "question": question}
        try:
            await _ask(http, question, extra, tab)
            record["latency_s"] = round(time.monotonic() - (start + arrival), 4)
        except Exception as exc:
            record["error"] = _error(exc)
        records.append(record)
        if session:
            idle.append(tab)

    for arrival, question in arrivals:
        await asyncio.sleep(max(0.0, start + arrival - time.monotonic()))
        if not session:
            tab = None
        elif idle:
            tab = idle.pop()
        else:
            tab, tabs = _session(), tabs + 1
        pending.append(asyncio.create_task(one(arrival, question, tab)))
    await asyncio.gather(*pending)
    return tabs


async def _run_open(url: str, schedule: list[list[tuple[float, str]]], session: bool = True
                    ) -> tuple[list[dict], list[int], float]:
    """Open loop over `schedule`; (records, tabs per user, seconds until the last answer)."""
    records: list[dict] = []
    async with _http(url, max(100, 4 * len(schedule))) as http:
        extra = await _chat_defaults(http)
        start = time.monotonic() + 0.2
        tabs = await asyncio.gather(*(_user(http, u, arrivals, start, extra, session, records)
                                      for u, arrivals in enumerate(schedule)))
        return records, list(tabs), time.monotonic() - start


# --- report ----------------------------------------------------------------------------------------------------

def _pct(values: list[float], p: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100)[p - 1]


def _num(x: float) -> float | None:
    return None if x != x else round(x, 4)


def _write(out: Path | None, mode: str, result: dict) -> Path:
    if out is None:
        out = OUT / f"chat_load_{mode}_{datetime.now(timezone.utc):%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:7860/")
    parser.add_argument("--mode", choices=("open", "closed"), default="open",
                        help="open: Poisson arrivals, the target (default); closed: clients back to back, capacity")
    parser.add_argument("--users", type=int, default=20, help="open loop: users")
    parser.add_argument("--mean-gap", type=float, default=10.0,
                        help="open loop: mean seconds between one user's question arrivals")
    parser.add_argument("--seed", type=int, default=0, help="open loop: arrival times and question order")
    parser.add_argument("--p95-target", type=float, default=1.5, help="open loop: p95 latency target, seconds")
    parser.add_argument("--clients", type=int, default=20, help="closed loop: clients")
    parser.add_argument("--seconds", type=float, default=None,
                        help="arrival window (open, default 120) or run length (closed, default 60)")
    parser.add_argument("--questions", type=Path, default=ANSWERS,
                        help="JSON lines with a 'question' each, asked after the fixed ones")
    parser.add_argument("--no-session", action="store_true", help="a new Gradio session for every question")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON of the figures (default benchmarks/out/chat_load_<mode>_<UTC time>.json)")
    args = parser.parse_args()
    if not _loopback(args.url):
        print("chat_load: only loopback addresses (127.0.0.0/8, ::1, localhost) may be targeted", file=sys.stderr)
        return 2
    questions = _questions(args.questions)
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")

    if args.mode == "closed":
        seconds = 60.0 if args.seconds is None else args.seconds
        latencies, errors, elapsed = asyncio.run(_run(args.url, args.clients, seconds, not args.no_session,
                                                      questions))
        if not latencies:
            print(f"no answers; {len(errors)} errors: {errors[:3]}")
            return 1
        p50, p95 = _pct(latencies, 50), _pct(latencies, 95)
        print(f"closed loop, {args.clients} clients, {elapsed:.0f} s: {len(latencies)} answers "
              f"({len(latencies) / elapsed:.1f}/s, the capacity figure), {len(errors)} errors")
        print(f"answer latency: p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")
        for line in sorted(set(errors))[:5]:
            print(f"  error: {line}")
        out = _write(args.out, "closed", {
            "mode": "closed", "when_utc": when, "url": args.url, "clients": args.clients, "seconds": seconds,
            "session": not args.no_session, "elapsed_s": round(elapsed, 2), "answers": len(latencies),
            "answers_per_s": round(len(latencies) / elapsed, 2), "errors": len(errors),
            "error_kinds": sorted(set(errors)), "p50_s": round(p50, 4), "p95_s": round(p95, 4),
            "max_s": round(max(latencies), 4)})
        print(f"wrote {out}")
        return 0 if not errors else 1

    seconds = 120.0 if args.seconds is None else args.seconds
    schedule = plan(args.users, args.mean_gap, seconds, args.seed, questions)
    records, tabs, elapsed = asyncio.run(_run_open(args.url, schedule, not args.no_session))
    records.sort(key=lambda r: (r["arrival_s"], r["user"]))
    latencies = [r["latency_s"] for r in records if "latency_s" in r]
    errors = [r["error"] for r in records if "error" in r]
    asked = len(records)
    rate, target_rate = asked / seconds, args.users / args.mean_gap
    late = max((r["late_ms"] for r in records), default=0.0)
    print(f"open loop, {args.users} users, one question per {args.mean_gap:g} s each on average, seed {args.seed}, "
          f"{seconds:g} s of arrivals (last answer at {elapsed:.1f} s): {asked} questions, "
          f"{rate:.2f}/s (target {target_rate:.2f}/s), {len(errors)} errors")
    if latencies:
        p50, p95, worst = _pct(latencies, 50), _pct(latencies, 95), max(latencies)
        print(f"latency arrival → full answer: p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
              f"max {worst * 1000:.0f} ms")
    else:
        p50 = p95 = worst = float("nan")
    extra_tabs = sum(tabs) - len(tabs) if not args.no_session else 0
    print(f"second tabs opened (a question while the user's previous answer streamed): {extra_tabs}; "
          f"generator lateness max {late:.0f} ms")
    for line in sorted(set(errors))[:5]:
        print(f"  error: {line}")
    ok = bool(latencies) and not errors and p95 <= args.p95_target
    print(f"verdict: {'PASS' if ok else 'FAIL'} (p95 {p95:.2f} s {'≤' if p95 <= args.p95_target else '>'} "
          f"{args.p95_target:g} s, {len(errors)} errors {'=' if not errors else '>'} 0)")
    out = _write(args.out, "open", {
        "mode": "open", "when_utc": when, "url": args.url, "users": args.users, "mean_gap_s": args.mean_gap,
        "seconds": seconds, "seed": args.seed, "session": not args.no_session, "questions": asked,
        "answers": len(latencies), "errors": len(errors), "error_kinds": sorted(set(errors)),
        "arrival_rate_per_s": round(rate, 3), "target_rate_per_s": round(target_rate, 3),
        "p50_s": _num(p50), "p95_s": _num(p95), "max_s": _num(worst), "p95_target_s": args.p95_target,
        "verdict": "PASS" if ok else "FAIL", "extra_tabs": extra_tabs,
        "generator_late_max_ms": late, "last_answer_s": round(elapsed, 2), "records": records})
    print(f"wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
