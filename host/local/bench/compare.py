"""Reads benchmark JSON lines (llama.cpp last) from stdin; prints a table and the ratios."""
import json
import sys

rows = [json.loads(line) for line in sys.stdin if line.strip()]
ref = rows[-1]
for r in rows:
    print(json.dumps(r))
print()
print(f"{'engine':<36} {'load s':>7} {'pp100':>8} {'pp500':>8} {'tg128':>8} {'RSS MiB':>8}")
for r in rows:
    p = r["prefill_tok_s"]
    name = f"{r['engine']} ({r['device']}, {r['threads']}t)"
    print(f"{name:<36} {r['load_s']:>7.3f} {p['100']:>8.1f} {p['500']:>8.1f} "
          f"{r['decode_tok_s']:>8.1f} {r['peak_rss_mib']:>8.1f}")
q = ref["prefill_tok_s"]
for r in rows[:-1]:
    p = r["prefill_tok_s"]
    print(f"ratio {r['device']} / llama.cpp: prefill100 {p['100'] / q['100']:.2f}x, "
          f"prefill500 {p['500'] / q['500']:.2f}x, decode {r['decode_tok_s'] / ref['decode_tok_s']:.2f}x, "
          f"load time {r['load_s'] / ref['load_s']:.2f}x, peak RSS {r['peak_rss_mib'] / ref['peak_rss_mib']:.2f}x")
