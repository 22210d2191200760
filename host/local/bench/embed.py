"""Embedding benchmark: Switchyard's local embedder and sentence-transformers (torch CPU,
same thread count) on the same texts, in the same run. Prints both result lines and the
ratios (Switchyard / reference; > 1 is better).

    THREADS=2 EMBED_VENV=/path/to/venv-with-sentence-transformers python3 host/local/bench/embed.py

Needs `sentence-transformers` and `torch` importable (run it with that venv's python) and the
model fetched by host/local/fetch-embed-model.sh. Builds the Rust side with --release.
"""

import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from sentence_transformers import SentenceTransformer

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
MODEL = pathlib.Path(os.environ.get("SWITCHYARD_MODELS", REPO / "models")) / "all-minilm-l6-v2"
THREADS = int(os.environ.get("THREADS", "2"))
RUNS, BATCHES, BATCH = 50, 10, 32


def texts(model):
    """A 64-token text (specials included) and 32 ~64-token windows of bench/text.txt."""
    tok = model.tokenizer
    ids = tok((HERE / "text.txt").read_text(), add_special_tokens=False)["input_ids"]
    windows = [tok.decode(ids[i * 40 : i * 40 + 62]) for i in range(BATCH)]
    return windows[0], windows


def reference(model, single, batch):
    model.encode([single])
    lat = []
    for _ in range(RUNS):
        t = time.perf_counter()
        model.encode([single])
        lat.append((time.perf_counter() - t) * 1e3)
    model.encode(batch, batch_size=BATCH)
    t = time.perf_counter()
    for _ in range(BATCHES):
        model.encode(batch, batch_size=BATCH)
    tps = BATCHES * len(batch) / (time.perf_counter() - t)
    return {
        "engine": "sentence-transformers",
        "threads": THREADS,
        "single_tokens": len(model.tokenizer(single)["input_ids"]),
        "p50_ms": statistics.median(lat),
        "batch_size": len(batch),
        "texts_per_s": tps,
    }


def main():
    torch.set_num_threads(THREADS)
    model = SentenceTransformer(str(MODEL), device="cpu")
    single, batch = texts(model)
    ref = reference(model, single, batch)
    subprocess.run(
        ["cargo", "build", "--release", "-q", "-p", "switchyard-local", "--example", "embed_bench"],
        cwd=REPO, check=True,
    )
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump({"single": single, "batch": batch}, f)
        f.flush()
        out = subprocess.run(
            [str(target / "release" / "examples" / "embed_bench"), f.name,
             "--threads", str(THREADS), "--runs", str(RUNS), "--batches", str(BATCHES)],
            check=True, capture_output=True, text=True,
        ).stdout
    ours = json.loads(out)
    print(json.dumps(ref))
    print(json.dumps(ours))
    print(json.dumps({
        "latency_speedup": ref["p50_ms"] / ours["p50_ms"],
        "throughput_ratio": ours["texts_per_s"] / ref["texts_per_s"],
    }))


if __name__ == "__main__":
    sys.exit(main())
