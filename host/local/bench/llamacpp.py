"""llama.cpp side of the local-model benchmark (llama-cpp-python, same GGUF, same threads).

Prints one JSON object with the same fields as `cargo run --example bench`.
"""
import argparse, json, resource, time

import numpy as np
from llama_cpp import Llama

TEXT = open(__file__.replace("llamacpp.py", "text.txt")).read()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--decode", type=int, default=128)
    p.add_argument("--prefill", default="100,500")
    a = p.parse_args()

    t0 = time.perf_counter()
    llm = Llama(model_path=a.model, n_ctx=4096, n_batch=512, n_ubatch=512, n_threads=a.threads,
                n_threads_batch=a.threads, verbose=False)
    load_s = time.perf_counter() - t0

    n_vocab = llm.n_vocab()

    def greedy():
        # Llama.scores is only filled with logits_all=True (which would slow prefill down):
        # read the last token's logits from the context instead.
        logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(n_vocab,))
        return int(np.argmax(logits))

    corpus = llm.tokenize((TEXT * 8).encode(), add_bos=False, special=False)
    llm.reset(); llm.eval(corpus[:16])
    for _ in range(4):
        llm.eval([greedy()])

    prefill = {}
    for n in [int(x) for x in a.prefill.split(",")]:
        best = 1e9
        for _ in range(3):
            llm.reset()
            t = time.perf_counter()
            llm.eval(corpus[:n])
            best = min(best, time.perf_counter() - t)
        prefill[str(n)] = round(n / best, 1)

    prompt = llm.tokenize(
        b"<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        b"<|im_start|>user\nWrite a long story about a lighthouse keeper.<|im_end|>\n<|im_start|>assistant\n",
        add_bos=False, special=True)
    llm.reset()
    llm.eval(prompt)
    tok = greedy()
    t = time.perf_counter()
    for _ in range(a.decode):
        llm.eval([tok])
        tok = greedy()
    decode_s = time.perf_counter() - t
    print(json.dumps({
        "engine": "llama.cpp", "device": "cpu", "threads": a.threads, "load_s": round(load_s, 3),
        "prefill_tok_s": prefill, "decode_tok_s": round(a.decode / decode_s, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    main()
