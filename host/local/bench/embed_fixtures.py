"""Generates the embedding parity fixtures (run once; the output is committed).

Reference: sentence-transformers' SentenceTransformer on the model directory fetched by
host/local/fetch-embed-model.sh (torch CPU), normalize_embeddings=True. Writes
host/local/tests/fixtures/embed/minilm.json: texts, the tokens each uses, their embeddings.

    python3 host/local/bench/embed_fixtures.py [MODEL_DIR]
"""

import json
import pathlib
import sys

import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
MODEL = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "models" / "all-minilm-l6-v2"
OUT = HERE.parent / "tests" / "fixtures" / "embed" / "minilm.json"

LONG = " ".join(
    f"Sentence {i} of a long document about gateways, routing policies and caching."
    for i in range(60)
)

TEXTS = [
    "",
    "hi",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "How do I reset my password if I no longer have access to my email?",
    "SELECT name, email FROM users WHERE created_at > NOW() - INTERVAL '7 days';",
    "fn main() { println!(\"{}\", (1..=10).map(|x| x * x).sum::<u32>()); }",
    "Café au lait, naïve résumé, jalapeño, Straße — accents and ß.",
    "東京は日本の首都です。人口は約千四百万人。",
    "Привет, как дела? Это тест на кириллице.",
    "مرحبا بالعالم، هذا اختبار للنص العربي.",
    "Emoji test 🚀🔥 with mixed content 👍🏽 and symbols ∑∫√∞.",
    "    leading and trailing whitespace\tand\ttabs\nand newlines    ",
    "UPPERCASE TEXT SHOULD BE LOWERCASED BY THE UNCASED TOKENIZER",
    "A" * 300,
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopic",
    "The invoice total is $1,234.56, due 2026-12-31; call +1 (555) 010-9999.",
    " ".join(["token"] * 62),
    LONG,
    LONG + " " + LONG,
]


def main() -> None:
    torch.set_num_threads(2)
    model = SentenceTransformer(str(MODEL), device="cpu")
    model.max_seq_length = 256
    embeddings = model.encode(TEXTS, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    tokenizer = model.tokenizer
    counts = [
        len(tokenizer(t, truncation=True, max_length=256)["input_ids"]) for t in TEXTS
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "reference": f"sentence-transformers {sentence_transformers.__version__}, "
                f"torch {torch.__version__} (CPU), normalize_embeddings=True, max_seq_length 256",
                "texts": TEXTS,
                "token_counts": counts,
                "embeddings": [[round(float(v), 7) for v in e] for e in embeddings],
            },
            ensure_ascii=False,
        )
        + "\n"
    )
    print(f"wrote {OUT} ({len(TEXTS)} texts, token counts {counts})")


if __name__ == "__main__":
    main()
