"""Load benchmark of `zoo serve` (issue 13) against two peers on the same ONNX file: the server a user writes
by hand (bench/serve_fastapi.py: FastAPI, a `def` handler run in FastAPI's thread pool, an onnxruntime session
with its default options, one session.run per request; the issue's peer) and the same server tuned by hand
(Starlette without FastAPI's validation, --threads onnxruntime threads per call that do not spin). zoo serve
runs with its defaults unless --zoo-options says otherwise. An async HTTP/1.1 client on 127.0.0.1 (one
keep-alive connection per concurrent client) sends real tweets, one text per request, at each concurrency in
turn, the servers alternating, and stops each run after --requests requests or --time-limit seconds (--rounds
such passes; the table holds medians). Each of --files (fp32 and int8) is served in turn. Every answer must be
200 with the label onnxruntime gives that text on its own; the report counts errors and disagreements, and
the CPU time each server process used per request (user + system, all threads: what other jobs on a shared
machine change far less than the wall-clock figures).

    python bench/serve.py                              # the demo's model, fp32 and int8 (built once in --work)
    python bench/serve.py --export zoo-demo/export     # any export directory, e.g. the full demo's
    python bench/serve.py --requests 300 --concurrency 1 16 --time-limit 10   # a smoke run

The default export is `zoo demo` run cheaply (1,000 tweets, one epoch): the demo's MiniLM-L6 classifier, its
graphs and files, with less training. Writes bench/results/serve.json and prints a markdown table per file
(requests/s, p50/p95/p99 latency, server CPU ms per request, the mean rows per batch zoo ran, zoo / each peer),
with the CPU model and the load average.
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


# ---- the peers ------------------------------------------------------------------------------------------


def tuned_app(export: Path, threads: int):
    """The by-hand server (bench/serve_fastapi.py), tuned: Starlette without FastAPI's validation, the sync work in the thread pool
    FastAPI uses for `def` handlers, and a session with ``threads`` intra-op threads that do not spin."""
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


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used: what a request costs the server, which
    other jobs on the machine change far less than they change its wall-clock figures."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def default_export(work: Path) -> Path:
    """The demo's model, built cheaply once in ``work``: `zoo demo` (MiniLM-L6 fine-tuned on real tweets,
    exported to ONNX fp32 and int8) on 1,000 tweets for one epoch instead of 3,000 for two. The graphs are
    the demo's: only the weights' training differs, and with it nothing the servers' speed depends on."""
    export = work / "demo" / "export"
    if not (export / "manifest.json").is_file():
        demo = [sys.executable, "-m", "zoo", "demo", "-o", str(work / "demo"), "--samples", "1000"]
        subprocess.run([*demo, "--epochs", "1", "--overwrite"], check=True, stdout=subprocess.DEVNULL)
    return export


def serving(export: Path, file: str, work: Path) -> Path:
    """A view of ``export`` whose manifest serves ``file`` (links to its files): what each server loads."""
    manifest = json.loads((export / "manifest.json").read_text())
    if manifest.get("serve") == file:
        return export
    view = work / "views" / Path(file).stem
    view.mkdir(parents=True, exist_ok=True)
    for name in (file, "tokenizer.json"):
        link = view / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to((export / name).resolve())
    (view / "manifest.json").write_text(json.dumps({**manifest, "serve": file}))
    return view


def machine() -> str:
    model = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.partition(":")[2].strip()
            break
    return f"{model}, {os.cpu_count()} CPUs"


SERVERS = ("zoo serve", "FastAPI peer", "tuned peer")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--export", type=Path, help="an export directory (default: the demo's, built in --work)"
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/zoo-bench-serve"))
    parser.add_argument(
        "--files", nargs="+", default=["model.onnx", "model.int8.onnx"], help="the export's files to serve"
    )
    parser.add_argument("--threads", type=int, default=1, help="the tuned peer's onnxruntime threads")
    parser.add_argument(
        "--zoo-options", default="", help="options for zoo serve, e.g. '--batch-workers 2' (default: none)"
    )
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--requests", type=int, default=2000, help="requests per run, at most")
    parser.add_argument("--rounds", type=int, default=1, help="runs per server and concurrency (medians)")
    parser.add_argument("--time-limit", type=float, default=40.0, help="seconds per run, at most")
    parser.add_argument("--out", type=Path, default=RESULTS / "serve.json")
    parser.add_argument("--peer-server", type=Path, help=argparse.SUPPRESS)  # run a peer on --port
    parser.add_argument("--peer", choices=SERVERS[1:], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.peer_server is not None:
        import uvicorn

        if args.peer == "FastAPI peer":  # bench/serve_fastapi.py, as its user would run it
            os.environ["ZOO_EXPORT"] = str(args.peer_server)
            sys.path.insert(0, str(HERE))
            from serve_fastapi import app
        else:
            app = tuned_app(args.peer_server, args.threads)
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
        return

    args.work.mkdir(parents=True, exist_ok=True)
    export = args.export or default_export(args.work)
    texts = tweets(max(args.requests, 1))
    load_before = os.getloadavg()[0]
    print(f"{machine()}; load average {load_before:.1f}", file=sys.stderr, flush=True)
    runs: list[dict] = []
    ceilings: dict[str, dict] = {}
    for file in args.files:
        if not (export / file).is_file():
            print(f"skipped {file}: not in {export}", file=sys.stderr)
            continue
        runs += serve_file(args, serving(export, file, args.work), file, texts)
        ceilings[file] = arithmetic(serving(export, file, args.work), texts[:600])

    report = {
        "cpu": machine(),
        "load_average_1m": {"start": load_before, "end": os.getloadavg()[0]},
        "export": str(export),
        "files": args.files,
        "tuned_peer_threads": args.threads,
        "zoo_options": args.zoo_options,
        "requests_per_run": args.requests,
        "time_limit_s": args.time_limit,
        "rounds": args.rounds,
        "results": medians(runs),
        "arithmetic": ceilings,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))


def serve_file(args: argparse.Namespace, export: Path, file: str, texts: list[str]) -> list[dict]:
    """Every server on ``export`` (which serves ``file``), each concurrency in turn, the servers alternating."""
    from zoo.export.runtime import OnnxModel

    reference = OnnxModel(export, warn=False)
    expected = []
    for text in texts:  # one at a time, as the peers run them: the label each text must get
        logits = reference.logits(*reference.encode([text]))[0]
        expected.append(reference.labels[int(logits.argmax())])
    del reference

    ports = {name: free_port() for name in args.servers}
    procs = {}
    runs: list[dict] = []
    try:
        for name, port in ports.items():
            if name == "zoo serve":
                command = [sys.executable, "-m", "zoo", "serve", str(export), "--port", str(port),
                           *args.zoo_options.split()]  # fmt: skip
            else:
                command = [sys.executable, __file__, "--peer-server", str(export), "--peer", name,
                           "--port", str(port), "--threads", str(args.threads)]  # fmt: skip
            procs[name] = start(command, port)
        for round_ in range(args.rounds):  # the servers alternate, so a change of load hits them all
            for concurrency in args.concurrency:
                for name, port in ports.items():
                    zoo = name == "zoo serve"
                    before = batch_rows(port) if zoo else None
                    cpu = cpu_seconds(procs[name].pid)
                    run = asyncio.run(load(port, texts, concurrency, args.requests, args.time_limit))
                    cpu = cpu_seconds(procs[name].pid) - cpu
                    row = {"file": file, "server": name, "concurrency": concurrency}
                    row.update(summarise(run, texts, expected))
                    row["server_cpu_ms_per_request"] = 1000 * cpu / max(row["requests"], 1)
                    if before is not None:
                        after = batch_rows(port)
                        row["mean_batch_rows"] = (after[0] - before[0]) / max(after[1] - before[1], 1)
                    row["round"] = round_
                    row["load_average_1m"] = os.getloadavg()[0]
                    print(json.dumps(row), file=sys.stderr, flush=True)
                    runs.append(row)
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=120)
    return runs


def arithmetic(export: Path, texts: list[str], rows: int = 10) -> dict:
    """The model's own CPU time per text, one onnxruntime thread, in this process: run alone (as the peers
    run each request) and in length-sorted batches of ``rows`` (zoo serve's batches at 64 clients). On a
    machine the servers keep busy, the peer's CPU ms per request over the batched figure bounds what any
    batching server can gain over it, even one whose HTTP costs nothing."""
    import time

    import numpy as np

    from zoo.export.runtime import OnnxModel

    model = OnnxModel(export, threads=1, warn=False)
    ids, mask = model.encode(texts)
    lengths = mask.sum(axis=1)
    for i in range(20):  # warm-up
        model.logits(ids[i : i + 1, : lengths[i]], mask[i : i + 1, : lengths[i]])
    start = time.thread_time()
    for i in range(len(texts)):
        model.logits(ids[i : i + 1, : lengths[i]], mask[i : i + 1, : lengths[i]])
    alone = (time.thread_time() - start) / len(texts)
    order = np.argsort(lengths, kind="stable")
    start = time.thread_time()
    for s in range(0, len(order), rows):
        chosen = order[s : s + rows]
        longest = lengths[chosen].max()
        model.logits(ids[chosen, :longest], mask[chosen, :longest])
    batched = (time.thread_time() - start) / len(texts)
    return {"texts": len(texts), "ms_per_text_alone": 1000 * alone, "rows": rows,
            "ms_per_text_sorted_batches": 1000 * batched}  # fmt: skip


def medians(runs: list[dict]) -> list[dict]:
    """Per file, server and concurrency: the median of each figure over the rounds; counts summed."""
    out = []
    for key in dict.fromkeys((r["file"], r["server"], r["concurrency"]) for r in runs):
        rows = [r for r in runs if (r["file"], r["server"], r["concurrency"]) == key]
        row = dict(zip(("file", "server", "concurrency"), key))
        for field in rows[0]:
            if field in ("errors", "label_mismatches", "requests"):
                row[field] = sum(r[field] for r in rows)
            elif field not in row and field != "round":
                row[field] = statistics.median(r[field] for r in rows)
        out.append(row)
    return out


def markdown(report: dict) -> str:
    """One table per file: each server's row per concurrency, then zoo serve over each peer."""
    load = report["load_average_1m"]
    lines = [
        f"{report['cpu']}, load average {load['start']:.1f} at the start, {load['end']:.1f} at the end; "
        f"medians of {report['rounds']} round(s); zoo serve {report['zoo_options'] or 'with its defaults'}; "
        f"the tuned peer {report['tuned_peer_threads']} onnxruntime thread(s) per call",
    ]
    for file in dict.fromkeys(r["file"] for r in report["results"]):
        by = {(r["server"], r["concurrency"]): r for r in report["results"] if r["file"] == file}
        servers = [s for s in SERVERS if any(k[0] == s for k in by)]
        lines += [
            "",
            f"{file}:",
            "",
            "| concurrency | server | requests | req/s | p50 ms | p95 ms | p99 ms | CPU ms/req | rows/batch | "
            "errors | label ≠ onnxruntime |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for concurrency in sorted({c for _, c in by}):
            for name in servers:
                r = by[(name, concurrency)]
                rows = f"{r['mean_batch_rows']:.1f}" if "mean_batch_rows" in r else "1"
                lines.append(
                    f"| {concurrency} | {name} | {r['requests']} | {r['requests_per_s']:.1f} | "
                    f"{r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | "
                    f"{r['server_cpu_ms_per_request']:.1f} | {rows} | {r['errors']} | "
                    f"{r['label_mismatches']} |"
                )
            z = by.get(("zoo serve", concurrency))
            for peer in servers[1:] if z else []:
                p = by[(peer, concurrency)]
                lines.append(
                    f"| {concurrency} | **zoo / {peer}** | | **{z['requests_per_s'] / p['requests_per_s']:.2f}×** | "
                    f"{z['p50_ms'] / p['p50_ms']:.2f}× | {z['p95_ms'] / p['p95_ms']:.2f}× | "
                    f"{z['p99_ms'] / p['p99_ms']:.2f}× | "
                    f"{z['server_cpu_ms_per_request'] / p['server_cpu_ms_per_request']:.2f}× | | | |"
                )
        work = report.get("arithmetic", {}).get(file)
        busiest = max(c for _, c in by)
        peer = by.get(("FastAPI peer", busiest))
        if work and peer:
            alone, batched = work["ms_per_text_alone"], work["ms_per_text_sorted_batches"]
            lines += [
                "",
                f"The model's arithmetic (one thread, {work['texts']} texts): {alone:.2f} ms per text alone, "
                f"{batched:.2f} ms in length-sorted batches of {work['rows']} (batching saves "
                f"{alone / batched:.2f}×). The FastAPI peer used {peer['server_cpu_ms_per_request']:.2f} CPU ms "
                f"per request at {busiest} clients, so a server whose HTTP cost nothing would serve at most "
                f"{peer['server_cpu_ms_per_request'] / batched:.2f}× its requests/s on the same cores.",
            ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
