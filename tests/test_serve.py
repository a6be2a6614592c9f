"""`zoo serve` (issue 13): a real server process on a free port of 127.0.0.1, serving a tiny model exported
here, checked route by route with bounded requests. Skipped when the serve extra is not installed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

import numpy as np
import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
prometheus_parser = pytest.importorskip("prometheus_client.parser")

from export_fixtures import sentences, trained_model, word_tokenizer  # noqa: E402

from zoo.data import Table  # noqa: E402
from zoo.export.pipeline import export_model  # noqa: E402
from zoo.export.runtime import OnnxModel  # noqa: E402
from zoo.inference import predict_table  # noqa: E402
from zoo.serve.batcher import Batcher, InferenceFailed, Overloaded  # noqa: E402

TIMEOUT = 30  # seconds for any one request


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    model, _ = trained_model(seed=1)
    out = tmp_path_factory.mktemp("serve") / "out"
    export_model(model, out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    def __init__(self, port: int, key: str | None = None):
        self.base, self.key = f"http://127.0.0.1:{port}", key

    def call(self, path: str, body=None, *, raw: bytes | None = None, key: str | None = None, method=None):
        """(status, decoded JSON or text)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(
            self.base + path, data=data, method=method or ("POST" if data is not None else "GET")
        )
        request.add_header("content-type", "application/json")
        if key or self.key:
            request.add_header("authorization", f"Bearer {key or self.key}")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode()
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text

    def metric(self, name: str) -> float:
        _, text = self.call("/metrics")
        for family in prometheus_parser.text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name:
                    return sample.value
        raise KeyError(name)


@contextmanager
def server(export_dir, *args: str, env: dict[str, str] | None = None):
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_")}
    environ.update(env or {}, TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoo", "serve", str(export_dir), "--port", str(port), "--threads", "1", *args],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    client = Client(port, (env or {}).get("ZOO_API_KEY"))
    client.port, client.health_seen = port, []
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                client.health_seen.append(client.call("/health")[0])
                if client.health_seen[-1] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline, "the server did not become healthy"
            time.sleep(0.2)
        client.proc = proc
        yield client
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def in_threads(calls):
    """Run each zero-argument call in its own thread; returns their results in order, once all are done."""
    results = [None] * len(calls)

    def work(i, fn):
        results[i] = fn()

    threads = [threading.Thread(target=work, args=(i, fn)) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    return threads, results


def wait_for(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# ---- routes -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(export_dir):
    with server(export_dir, "--payload-limit", "4096", "--max-client-batch-size", "8") as c:
        yield c


@pytest.mark.slow
def test_predict_equals_onnx_model_and_predict_table(client, export_dir):
    texts, _ = sentences(8, seed=7)
    model = OnnxModel(export_dir, warn=False)
    expected = predict_table(model, Table("t", texts, None, None, list(range(len(texts)))), top_k=3)
    status, one = client.call("/predict", {"inputs": texts[0]})
    assert status == 200 and [x["label"] for x in one] == [t["label"] for t in expected[0]["top"]]
    assert [x["score"] for x in one] == pytest.approx(
        [t["probability"] for t in expected[0]["top"]], abs=1e-5
    )
    status, batch = client.call("/predict", {"inputs": texts})
    assert status == 200 and len(batch) == len(texts)
    for served, want in zip(batch, expected):
        assert served[0]["label"] == want["label"]
        assert served[0]["score"] == pytest.approx(want["probability"], abs=1e-5)
        assert sorted(x["score"] for x in served)[::-1] == [x["score"] for x in served]
    status, raw = client.call("/predict", {"inputs": texts[:2], "raw_scores": True})
    logits = model.logits(*model.encode(texts[:2]))
    for row, scores in zip(logits, raw):
        assert {x["label"]: x["score"] for x in scores} == pytest.approx(
            dict(zip(model.labels, row.tolist())), abs=1e-4
        )
    status, pairs = client.call("/predict", {"inputs": [[texts[0], texts[1]]]})
    assert status == 200 and len(pairs) == 1 and len(pairs[0]) == 3


@pytest.mark.slow
def test_health_info_tokenize_and_metrics(client, export_dir):
    assert client.call("/health") == (200, None)
    status, info = client.call("/info")
    assert status == 200 and info["task"] == "classification" and info["labels"] == ["neg", "pos", "neu"]
    assert info["max_input_length"] == 32 and info["max_client_batch_size"] == 8 and info["embeds"] is False
    assert info["window_length"] is None and info["long_text"]["mode"] == "truncate"
    assert info["batch_workers"] == 1 and info["max_batch_requests"] is None  # --threads 1: one worker
    status, tokens = client.call("/tokenize", {"inputs": "pos1 w3"})
    ids = OnnxModel(export_dir, warn=False).encode(["pos1 w3"])[0][0].tolist()
    assert status == 200 and [t["id"] for t in tokens[0]] == ids
    assert [t["text"] for t in tokens[0] if not t["special"]] == ["pos1", "w3"]
    client.call("/predict", {"inputs": ["neg1 w2", "pos2"]})
    _, text = client.call("/metrics")
    families = {f.name: f for f in prometheus_parser.text_string_to_metric_families(text)}
    assert {
        "zoo_requests",
        "zoo_request_duration_seconds",
        "zoo_queue_duration_seconds",
        "zoo_batch_size",
        "zoo_batch_tokens",
        "zoo_queue_depth",
        "zoo_in_flight_requests",
        "zoo_inference_duration_seconds",
    } <= set(families)
    ok = [s for s in families["zoo_requests"].samples if s.labels == {"route": "/predict", "status": "200"}]
    assert ok and ok[0].value >= 1
    assert client.metric("zoo_batch_size_count") >= 2  # the warm-up and the request above


@pytest.mark.slow
@pytest.mark.parametrize(
    "body, status, error_type",
    [
        ({"inputs": ""}, 400, "empty"),
        ({"inputs": []}, 400, "empty"),
        ({"inputs": ["a", ""]}, 400, "empty"),
        ({"inputs": 3}, 422, "validation"),
        ({"inputs": ["a", 3]}, 422, "validation"),
        ({"text": "a"}, 422, "validation"),
        ({"inputs": "a", "truncate": "yes"}, 422, "validation"),
        ({"inputs": ["w1"] * 9}, 422, "validation"),  # over --max-client-batch-size 8
        ({"inputs": " ".join(["w1"] * 40)}, 422, "validation"),  # over the model's 32 tokens
        ({"inputs": "a"}, 422, "validation"),  # /embed on a classifier
    ],
    ids=[
        "empty-str",
        "empty-list",
        "empty-item",
        "number",
        "mixed",
        "no-inputs",
        "bad-flag",
        "big-batch",
        "too-long",
        "embed-classifier",
    ],
)
def test_client_mistakes_get_json_errors(client, body, status, error_type, request):
    route = "/embed" if request.node.callspec.id == "embed-classifier" else "/predict"
    got, answer = client.call(route, body)
    assert (got, answer["error_type"]) == (status, error_type) and answer["error"]


@pytest.mark.slow
def test_payload_limit_bad_json_truncate_and_unknown_route(client):
    status, answer = client.call("/predict", {"inputs": "w1 " * 2000})
    assert status == 413 and answer["error_type"] == "payload_too_large"
    status, answer = client.call("/predict", raw=b"{not json")
    assert status == 422 and answer["error_type"] == "validation"
    assert client.call("/predict", {"inputs": " ".join(["w1"] * 40), "truncate": True})[0] == 200
    status, answer = client.call("/nowhere")
    assert status == 404 and answer["error_type"] == "not_found"
    status, answer = client.call("/predict")
    assert status == 405 and "error" in answer


@pytest.mark.slow
def test_openapi_schema_and_docs_list_every_route(client):
    status, spec = client.call("/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.")
    routes = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    assert {
        ("POST", "/predict"),
        ("POST", "/embed"),
        ("POST", "/tokenize"),
        ("GET", "/health"),
        ("GET", "/info"),
        ("GET", "/metrics"),
    } <= routes
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["inputs"] and {"raw_scores", "truncate"} <= set(body["properties"])
    assert "security" not in spec["paths"]["/health"]["get"] and spec["paths"]["/info"]["get"]["security"]
    status, page = client.call("/docs")
    assert status == 200 and "POST /predict" in page and "/openapi.json" in page


@pytest.mark.slow
def test_a_client_that_disconnects_leaves_no_work_behind(export_dir):
    with server(export_dir, "--batch-delay-s", "3", "--max-batch-requests", "4") as c:
        assert c.call("/info")[1]["max_batch_requests"] == 4
        batches = c.metric("zoo_batch_size_count")
        threads, results = in_threads([lambda: c.call("/predict", {"inputs": "pos1"})])
        wait_for(lambda: c.metric("zoo_batch_size_count") == batches + 1)  # its batch holds the worker
        body = json.dumps({"inputs": ["neg1 w2", "neu3"]}).encode()
        head = f"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len(body)}"
        with socket.create_connection(("127.0.0.1", c.port)) as gone:
            gone.sendall(head.encode() + b"\r\n\r\n" + body)
            wait_for(lambda: c.metric("zoo_queue_depth") == 2)
        wait_for(lambda: c.metric("zoo_skipped_rows_total") == 2)  # both rows left the queue uncomputed
        assert c.metric("zoo_queue_depth") == 0 and c.metric("zoo_in_flight_requests") == 1
        for t in threads:
            t.join(TIMEOUT)
        assert results[0][0] == 200 and results[0][1][0]["label"] == "pos"
        assert c.metric("zoo_batch_size_count") == batches + 1 and c.metric("zoo_batch_size_sum") == 2
        _, text = c.call("/metrics")
        assert 'zoo_requests_total{route="/predict",status="499"} 1.0' in text


@pytest.mark.slow
def test_embed_serves_an_embedding_export_as_onnx_and_eager_do(tmp_path):
    from test_embedding import embed

    from zoo.model import build_model

    tokenizer = word_tokenizer()
    model = build_model(
        "transformer",
        "embedding",
        d_model=16,
        num_layers=1,
        num_heads=2,
        vocab_size=tokenizer.get_vocab_size(),
        max_length=32,
        seed=0,
        head_options={"pooling": "mean"},
    )
    model.tokenizer = tokenizer
    export_model(model, tmp_path / "x")
    texts, _ = sentences(6, seed=5)
    onnx = OnnxModel(tmp_path / "x", warn=False)
    expected = np.concatenate([onnx.logits(*onnx.encode([t])) for t in texts])
    with server(tmp_path / "x") as c:
        assert c.call("/info")[1]["embeds"] is True
        status, raw = c.call("/embed", {"inputs": texts, "normalize": False})
        assert status == 200 and np.abs(np.array(raw) - expected).max() < 1e-5
        assert np.abs(np.array(raw) - embed(model, texts)).max() < 1e-4
        status, unit = c.call("/embed", {"inputs": texts[0]})
        want = expected[0] / np.linalg.norm(expected[0])
        assert status == 200 and np.abs(np.array(unit[0]) - want).max() < 1e-5
        status, answer = c.call("/embed", {"inputs": [["a", "b"]]})
        assert (status, answer["error_type"]) == (422, "validation")


@pytest.mark.slow
def test_503_until_warm_and_424_when_the_model_fails(export_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(export_dir, broken)
    vocab = json.loads((broken / "tokenizer.json").read_text())
    vocab["model"]["vocab"]["beyond"] = 10_000  # an id past the model's embedding table
    (broken / "tokenizer.json").write_text(json.dumps(vocab))
    with server(broken, "--batch-delay-s", "2") as c:  # the warm-up batch takes 2 s
        assert 503 in c.health_seen and c.health_seen[-1] == 200
        status, answer = c.call("/predict", {"inputs": "pos1 beyond"})
        assert (status, answer["error_type"]) == (424, "backend") and "inference failed" in answer["error"]
        assert c.call("/predict", {"inputs": "pos1"})[0] == 200  # the server goes on


@pytest.mark.slow
def test_api_key(export_dir):
    with server(export_dir, env={"ZOO_API_KEY": "s3cret"}) as c:
        assert c.call("/predict", {"inputs": "w1"})[0] == 200
        assert c.call("/metrics")[0] == 200
        c.key = None
        assert c.call("/health")[0] == 200  # open to load balancers
        for key in (None, "wrong"):
            for path, body in (("/predict", {"inputs": "w1"}), ("/info", None), ("/metrics", None)):
                status, answer = c.call(path, body, key=key)
                assert status == 401 and answer["error_type"] == "unauthorized", path


# ---- backpressure and shutdown ----------------------------------------------------------------------


@pytest.mark.slow
def test_429_at_once_beyond_the_concurrency_limit(export_dir):
    with server(export_dir, "--max-concurrent-requests", "1", "--batch-delay-s", "1.5") as c:
        threads, results = in_threads([lambda: c.call("/predict", {"inputs": "pos1"})])
        wait_for(lambda: c.metric("zoo_in_flight_requests") == 1)
        for body in ({"inputs": "w1"}, {"inputs": ["w1", "w2"]}):
            started = time.monotonic()
            status, answer = c.call("/predict", body)
            assert (status, answer["error_type"]) == (429, "overloaded") and time.monotonic() - started < 1.0
        for t in threads:
            t.join(TIMEOUT)
        assert results[0][0] == 200 and results[0][1][0]["label"] == "pos"


@pytest.mark.slow
def test_sigterm_answers_every_accepted_request_and_exits_0(export_dir):
    with server(export_dir, "--batch-delay-s", "1.0", "--max-batch-tokens", "8") as c:
        texts, _ = sentences(6, seed=3)
        threads, results = in_threads([lambda t=t: c.call("/predict", {"inputs": t}) for t in texts])
        wait_for(lambda: c.metric("zoo_in_flight_requests") == len(texts))
        c.proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(TIMEOUT)
        assert [r[0] for r in results] == [200] * len(texts)
        assert c.proc.wait(timeout=TIMEOUT) == 0
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            c.call("/health")


def test_help_imports_no_serve_stack_and_a_missing_extra_is_one_line(export_dir):
    code = (
        "import sys\nfrom zoo.cli import cli\ntry:\n    cli(['--help'], prog_name='zoo')\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('uvicorn', 'starlette', 'prometheus_client', 'torch') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "serve" in result.stdout and result.stdout.strip().splitlines()[-1] == "[]"
    code = "import sys\nsys.modules['uvicorn'] = None\nfrom zoo.cli import main\nsys.argv = ['zoo', 'serve', sys.argv[1]]\nmain()"
    result = subprocess.run(
        [sys.executable, "-c", code, str(export_dir)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and result.stderr.strip() == (
        "error: zoo serve needs the serve extra (uvicorn missing): pip install 'zoo[serve]'"
    )


# ---- the batcher on its own -------------------------------------------------------------------------


def test_batches_respect_the_token_budget_and_failures_reach_every_request():
    shapes = []

    def run(ids, mask):
        shapes.append(ids.shape)
        if ids.shape[1] == 7:
            raise RuntimeError("boom")
        return ids.sum(axis=1, keepdims=True).astype(np.float32)

    async def main():
        batcher = Batcher(run, pad_value=0, max_batch_tokens=12, max_concurrent=2)
        rows = [np.arange(1, n + 1) for n in (3, 3, 3, 5, 2)]
        results = await asyncio.gather(*(batcher.submit([r]) for r in rows))
        with pytest.raises(InferenceFailed, match="boom"):
            await batcher.submit([np.ones(7, dtype=np.int64)])
        with batcher.admit(), batcher.admit():
            with pytest.raises(Overloaded):
                with batcher.admit():
                    pass
        await batcher.stop()
        return results

    results = asyncio.run(main())
    assert [float(r[0][0]) for r in results] == [6, 6, 6, 15, 3]
    # windows of what fits 12 padded tokens in arrival order, (3, 3, 3) then (5, 2); the second is cut in
    # two, as (2, 5) would pad 7 real tokens to 10
    assert shapes == [(3, 3), (1, 2), (1, 5), (1, 7)]


def run_batches(lengths, *, block_first: bool = True, cancel=(), **options):
    """Submit one request per length while the worker is busy with a first request (so that all of them
    wait together), cancel the requests at the indices in ``cancel``, and return (the shapes the model ran,
    the results, the batcher)."""
    shapes, gate = [], threading.Event()

    def run(ids, mask):
        shapes.append(ids.shape)
        if block_first and len(shapes) == 1:
            gate.wait(TIMEOUT)
        return (ids * mask).sum(axis=1, keepdims=True).astype(np.float32)

    async def main():
        batcher = Batcher(run, pad_value=0, max_concurrent=100, **options)
        first = asyncio.ensure_future(batcher.submit([np.ones(1, dtype=np.int64)]))
        while not shapes:  # the worker holds the first request
            await asyncio.sleep(0.01)
        tasks = [asyncio.ensure_future(batcher.submit([np.arange(1, n + 1)])) for n in lengths]
        await asyncio.sleep(0)  # every request is in the queue
        for i in cancel:
            tasks[i].cancel()
        await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(first, *tasks, return_exceptions=True)
        await batcher.stop()
        return results[1:], batcher

    results, batcher = asyncio.run(main())
    return shapes[1:], results, batcher


def test_waiting_rows_are_grouped_by_length_to_pad_less():
    shapes, results, _ = run_batches([2, 8, 2, 8, 2, 8], max_batch_tokens=10_000, max_batch_requests=6)
    assert shapes == [(3, 2), (3, 8)]  # 6 + 24 padded tokens; in arrival order 6 x 8 = 48
    assert [float(r[0][0]) for r in results] == [3, 36] * 3  # every request has its own row's answer


def test_rows_of_unlike_length_go_in_separate_batches_unless_padding_is_allowed():
    shapes, _, _ = run_batches([3, 3, 12, 2], max_batch_tokens=10_000)
    assert shapes == [(3, 3), (1, 12)]  # (4, 12) would pad 20 real tokens to 48
    shapes, _, _ = run_batches([3, 3, 12, 2], max_batch_tokens=10_000, max_padding=None)
    assert shapes == [(4, 12)]


def test_max_batch_requests_bounds_the_rows_of_a_batch():
    shapes, results, _ = run_batches([3, 3, 3, 5, 2], max_batch_tokens=10_000, max_batch_requests=2)
    assert shapes == [(2, 3), (2, 5), (1, 2)]  # windows of two rows in arrival order
    assert [float(r[0][0]) for r in results] == [6, 6, 6, 15, 3]


def test_a_cancelled_request_leaves_the_queue_uncomputed():
    shapes, results, batcher = run_batches([4, 5, 6], cancel=[1], max_batch_tokens=10_000)
    assert shapes == [(2, 6)] and batcher.skipped == 1  # the row of 5 tokens never ran
    assert isinstance(results[1], asyncio.CancelledError)
    assert [float(results[i][0][0]) for i in (0, 2)] == [10, 21]


def test_a_delay_window_gathers_rows_that_arrive_while_the_worker_is_idle():
    def batches(**options):
        shapes = []

        def run(ids, mask):
            shapes.append(ids.shape)
            return ids.sum(axis=1, keepdims=True).astype(np.float32)

        async def main():
            batcher = Batcher(run, pad_value=0, max_batch_tokens=100, max_concurrent=10, **options)
            first = asyncio.ensure_future(batcher.submit([np.ones(2, dtype=np.int64)]))
            await asyncio.sleep(0.05)  # the worker is idle: without a window, the first row has gone alone
            await asyncio.gather(first, batcher.submit([np.ones(3, dtype=np.int64)]))
            await batcher.stop()

        asyncio.run(main())
        return shapes

    assert batches() == [(1, 2), (1, 3)]
    # a long window that ends early, as soon as the batch is full (two rows)
    assert batches(max_batch_delay_s=60, max_batch_requests=2) == [(2, 3)]


def test_batch_workers_run_batches_at_once():
    def shapes_run(workers: int):
        barrier, shapes = threading.Barrier(2, timeout=5), []

        def run(ids, mask):
            barrier.wait()  # passes only when a second batch runs beside this one
            shapes.append(ids.shape)
            return ids.sum(axis=1, keepdims=True).astype(np.float32)

        async def main():
            batcher = Batcher(run, pad_value=0, max_batch_tokens=100, max_concurrent=10, workers=workers)
            rows = [np.ones(2, dtype=np.int64), np.ones(9, dtype=np.int64)]  # too unlike to share a batch
            results = await asyncio.gather(*(batcher.submit([r]) for r in rows), return_exceptions=True)
            await batcher.stop()
            return results

        return asyncio.run(main()), shapes

    results, shapes = shapes_run(2)
    assert [float(r[0][0]) for r in results] == [2, 9] and sorted(shapes) == [(1, 2), (1, 9)]
    results, _ = shapes_run(1)  # one worker: the first batch waits for a second that never comes
    assert all(isinstance(r, InferenceFailed) for r in results[:1])


def test_workers_take_their_next_batches_while_the_event_loop_is_busy():
    """The worker threads take batch after batch from the queue themselves: a loop that is busy (here
    blocked outright) with other requests' HTTP work never leaves a worker waiting for its next batch."""
    shapes = []

    def run(ids, mask):
        shapes.append(ids.shape)
        return ids.sum(axis=1, keepdims=True).astype(np.float32)

    async def main():
        batcher = Batcher(run, pad_value=0, max_batch_tokens=100, max_concurrent=10, max_batch_requests=1)
        futures = [batcher.enqueue([np.ones(n, dtype=np.int64)]) for n in (2, 3, 4)]
        deadline = time.monotonic() + TIMEOUT
        while len(shapes) < 3 and time.monotonic() < deadline:  # blocks the loop: none of its callbacks run
            time.sleep(0.01)
        ran_while_blocked = list(shapes)
        results = await asyncio.gather(*futures)
        await batcher.stop()
        return ran_while_blocked, results

    ran, results = asyncio.run(main())
    assert ran == [(1, 2), (1, 3), (1, 4)]
    assert [float(r[0][0]) for r in results] == [2, 3, 4]


def test_a_batch_that_is_all_the_work_runs_on_every_thread():
    """A lone request (nothing queued, no other batch running) runs on ``run_alone`` (the session with every
    worker's threads); a batch taken while another runs, or with more work behind it, on its worker's own."""
    calls, gate = [], threading.Event()

    def runner(name):
        def run(ids, mask):
            calls.append((name, ids.shape))
            if len(calls) == 2:  # the second batch holds its worker while more requests arrive
                gate.wait(TIMEOUT)
            return ids.sum(axis=1, keepdims=True).astype(np.float32)

        return run

    async def main():
        batcher = Batcher(
            runner("shared"),
            run_alone=runner("alone"),
            pad_value=0,
            max_batch_tokens=100,
            max_concurrent=10,
            max_batch_requests=1,
            workers=2,
        )
        lone = await batcher.submit([np.ones(2, dtype=np.int64)])
        held = asyncio.ensure_future(batcher.submit([np.ones(3, dtype=np.int64)]))  # alone, then held
        while len(calls) < 2:
            await asyncio.sleep(0.01)
        beside = await batcher.submit([np.ones(4, dtype=np.int64)])  # another batch runs: one worker's share
        gate.set()
        results = [lone, await held, beside]
        await batcher.stop()
        return results, batcher.alone

    results, alone = asyncio.run(main())
    assert [float(r[0][0]) for r in results] == [2, 3, 4]
    assert calls == [("alone", (1, 2)), ("alone", (1, 3)), ("shared", (1, 4))] and alone == 2


@pytest.mark.slow
def test_a_dynamically_quantised_file_is_served_a_row_per_batch(tmp_path):
    """onnxruntime's dynamic int8 takes one activation scale over a whole batch, so a row's outputs depend on
    the rows batched with it; served alone, each answer equals OnnxModel's on that text alone."""
    model, _ = trained_model(seed=1)
    texts, _ = sentences(12, seed=3)
    out = tmp_path / "int8"
    manifest = export_model(model, out, quantize="int8", calibration_texts=texts)
    assert manifest["serve"] == "model.int8.onnx" and manifest["int8"]["method"] == "per-token+gptq"
    reference = OnnxModel(out, warn=False)
    alone = np.concatenate([reference.logits(*reference.encode([t])) for t in texts])
    together = reference.logits(*reference.encode(texts))
    assert not np.allclose(alone, together, atol=1e-6)  # why: batched rows change each other's outputs
    with server(out, "--threads", "2", "--max-batch-delay-ms", "50") as c:
        status, info = c.call("/info")
        assert status == 200 and info["max_batch_requests"] == 1 and info["batch_workers"] == 2
        threads, results = in_threads(
            [lambda t=t: c.call("/predict", {"inputs": t, "raw_scores": True}) for t in texts]
        )
        for t in threads:
            t.join(TIMEOUT)
        for (status, scores), row in zip(results, alone):
            assert status == 200
            assert {x["label"]: x["score"] for x in scores} == pytest.approx(
                dict(zip(reference.labels, row.tolist())), abs=1e-5
            )
        assert c.metric("zoo_batch_size_sum") == c.metric("zoo_batch_size_count")  # one row per batch


@pytest.mark.parametrize(
    "method, served, interact",
    [
        ("dynamic", "model.int8.onnx", True),
        ("dynamic+outliers", "model.int8.onnx", True),
        ("per-token", "model.int8.onnx", True),  # its other MatMuls are quantised at run time
        ("static-minmax+outliers", "model.int8.onnx", False),  # fixed scales: rows stay independent
        ("dynamic", "model.onnx", False),  # the fp32 file of an export with an int8 one
    ],
)
def test_which_files_are_served_a_row_per_batch(method, served, interact):
    from types import SimpleNamespace

    from zoo.serve.service import rows_interact

    predictor = SimpleNamespace(
        path=f"/x/{served}", manifest={"int8": {"file": "model.int8.onnx", "method": method}}
    )
    assert rows_interact(predictor) is interact
