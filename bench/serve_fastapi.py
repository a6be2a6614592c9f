"""The server a user writes by hand around an export (bench/serve.py's peer, issue 13): FastAPI, a `def`
handler (FastAPI runs it in its thread pool), an onnxruntime session with its default options, one
session.run per request. Written as a user would, at module level; the export directory comes from
ZOO_EXPORT. Run: ZOO_EXPORT=out uvicorn serve_fastapi:app --port 8000 (from bench/)."""

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel
from tokenizers import Tokenizer

EXPORT = Path(os.environ["ZOO_EXPORT"])
manifest = json.loads((EXPORT / "manifest.json").read_text())
labels = manifest["labels"]
session = ort.InferenceSession(str(EXPORT / manifest["serve"]))
tokenizer = Tokenizer.from_file(str(EXPORT / "tokenizer.json"))
tokenizer.enable_truncation(manifest["max_length"])
app = FastAPI()


class Body(BaseModel):
    inputs: str


@app.post("/predict")
def predict(body: Body) -> list[dict]:
    ids = np.array([tokenizer.encode(body.inputs).ids], dtype=np.int64)
    logits = session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    return sorted(({"label": n, "score": float(s)} for n, s in zip(labels, p)), key=lambda x: -x["score"])


@app.get("/health")
def health() -> dict:
    return {}
