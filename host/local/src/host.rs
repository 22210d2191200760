//! The CPU forward pass (`Compute::HostQuantized`) in plain Rust on `f32` slices, with
//! llama.cpp's CPU numerics where they move this model's greedy choices (its logit gaps are
//! often below 0.1): RMSNorm summed in f64, RoPE angles as llama.cpp's running product, an
//! F16 KV cache, queries and attention probabilities rounded to f16 before their matmuls
//! (llama.cpp's defaults: F16 cache, no flash attention), ggml's `expf` approximation in
//! softmax and SiLU, and its summation orders (`ggml_vec_dot_f16` for one token, llamafile's
//! 16-lane `tinyBLAS` for several, as built with AVX-512). The projections are the
//! quantized matmul of `quant`.

use crate::model::LlamaConfig;
use crate::quant::QMatrix;
use half::f16;
use rayon::prelude::*;

/// One transformer block's weights.
#[derive(Debug, Clone)]
pub(crate) struct HostLayer {
    pub attn_norm: Vec<f32>,
    /// Q, K and V stacked: `[H·hd + 2·Hkv·hd, D]`.
    pub qkv: QMatrix,
    pub out: QMatrix,
    pub ffn_norm: Vec<f32>,
    /// Gate and up stacked: `[2·F, D]`.
    pub gate_up: QMatrix,
    pub down: QMatrix,
}

/// All weights of the CPU path but the embeddings.
#[derive(Debug, Clone)]
pub(crate) struct HostWeights {
    pub layers: Vec<HostLayer>,
    pub norm: Vec<f32>,
    pub output: QMatrix,
    /// `(cos, sin)` per position and rotated pair, `[context, hd/2]`.
    pub rope: Vec<(f32, f32)>,
}

/// One layer's F16 keys and values, `[position, Hkv, hd]`.
#[derive(Debug, Clone, Default)]
pub(crate) struct LayerKv {
    k: Vec<f16>,
    v: Vec<f16>,
}

/// llama.cpp's RoPE table (`ggml_rope_cache_init`, "normal" mode): for position `p` the
/// angle of pair `i` is `p · s^i` accumulated as a running f32 product, `s = base^(−2/hd)`,
/// divided by the pair's frequency factor.
pub(crate) fn rope_table(config: &LlamaConfig, factors: &[f32]) -> Vec<(f32, f32)> {
    let half = config.head_dim / 2;
    let step = config.rope_base.powf(-2.0 / config.head_dim as f32);
    let mut table = Vec::with_capacity(config.context_length * half);
    for pos in 0..config.context_length {
        let mut theta = pos as f32;
        for i in 0..half {
            let angle = theta / factors.get(i).copied().unwrap_or(1.0);
            table.push((angle.cos(), angle.sin()));
            theta *= step;
        }
    }
    table
}

/// `y = x / rms(x) · w` per row of `x: [T, D]`, the sum of squares in f64 as llama.cpp.
fn rms_norm(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let d = weight.len();
    let mut out = vec![0f32; x.len()];
    for (row, dst) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let sum: f64 = row.iter().map(|v| f64::from(v * v)).sum();
        let mean = (sum / d as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((y, v), w) in dst.iter_mut().zip(row).zip(weight) {
            *y = (v * scale) * w;
        }
    }
    out
}

/// ggml's vectorised `expf` (`ggml_v_expf`, AVX-512 version), one lane.
fn ggml_expf(x: f32) -> f32 {
    let c = f32::from_bits;
    let r = c(0x4b40_0000);
    let z = x.mul_add(c(0x3fb8_aa3b), r);
    let n = z - r;
    let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    let u = b * b;
    let j = c(0x3c07_2010)
        .mul_add(b, c(0x3d2b_9f17))
        .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)))
        .mul_add(u, c(0x3f7f_fff6).mul_add(b, 1.0));
    // `scalef(j, n) = j · 2^n`, in two exact steps (|n| ≤ 192).
    let n = n as i32;
    j * 2f32.powi(n / 2) * 2f32.powi(n - n / 2)
}

/// `_mm512_reduce_add_ps` as GCC computes it: halves, quarters, then pairs.
fn reduce16(a: &[f32; 16]) -> f32 {
    let t3: [f32; 8] = std::array::from_fn(|i| a[i + 8] + a[i]);
    let t6: [f32; 4] = std::array::from_fn(|i| t3[i + 4] + t3[i]);
    (t6[0] + t6[2]) + (t6[1] + t6[3])
}

/// `Σ x[i]·y[i]` for `i < len` as `ggml_vec_dot_f16` with AVX-512 (one token): four
/// 16-lane accumulators over steps of 64, folded pairwise, the tail (`len % 64`) added in
/// f64. Terms from `nonzero` on are zero (padding), so they are skipped: adding `+0` to an
/// accumulator changes nothing.
fn dot_one(x: impl Fn(usize) -> f32, y: impl Fn(usize) -> f32, len: usize, nonzero: usize) -> f32 {
    let mut acc = [[0f32; 16]; 4];
    let full = len - len % 64;
    for base in (0..full.min(nonzero)).step_by(64) {
        for (j, acc) in acc.iter_mut().enumerate() {
            for (l, a) in acc.iter_mut().enumerate() {
                let i = base + 16 * j + l;
                if i < nonzero {
                    *a = x(i).mul_add(y(i), *a);
                }
            }
        }
    }
    let folded: [f32; 16] =
        std::array::from_fn(|l| (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]));
    let mut sum = f64::from(reduce16(&folded));
    for i in full..len.min(nonzero) {
        sum += f64::from(x(i) * y(i));
    }
    sum as f32
}

/// `Σ x[i]·y[i]` for `i < len` as llamafile's `tinyBLAS` with AVX-512 (several tokens): one
/// 16-lane accumulator over steps of 16 (lengths are multiples of 16 there), then reduced.
/// Zero terms at the end (padding) are left out as they change nothing.
fn dot_many(x: impl Fn(usize) -> f32, y: impl Fn(usize) -> f32, len: usize) -> f32 {
    let mut acc = [0f32; 16];
    for base in (0..len).step_by(16) {
        for (l, a) in acc.iter_mut().enumerate() {
            let i = base + l;
            if i < len {
                *a = x(i).mul_add(y(i), *a);
            }
        }
    }
    reduce16(&acc)
}

/// Positions llama.cpp's attention spans: the cache length padded to 256 (the padding is
/// masked; it only fixes the summation blocks).
fn padded(len: usize) -> usize {
    len.next_multiple_of(256)
}

impl HostWeights {
    /// Runs `tokens` at positions `kv_len..` given their embeddings `x: [T, D]`; appends to
    /// `cache` (one entry per layer) and returns the last token's logits.
    pub(crate) fn forward(
        &self,
        c: &LlamaConfig,
        mut x: Vec<f32>,
        cache: &mut Vec<LayerKv>,
        kv_len: usize,
    ) -> Vec<f32> {
        let (d, hd, h, hkv) = (c.dim, c.head_dim, c.n_heads, c.n_kv_heads);
        let t = x.len() / d;
        let total = kv_len + t;
        cache.resize_with(self.layers.len(), LayerKv::default);
        for (layer, kv) in self.layers.iter().zip(cache.iter_mut()) {
            let hn = rms_norm(&x, &layer.attn_norm, c.rms_eps);
            let width = layer.qkv.rows();
            let mut qkv = vec![0f32; t * width];
            layer.qkv.matmul(&hn, t, &mut qkv);
            let mut queries = Vec::with_capacity(t * h * hd);
            for (i, row) in qkv.chunks_exact_mut(width).enumerate() {
                let angles = &self.rope[(kv_len + i) * (hd / 2)..][..hd / 2];
                for head in row[..(h + hkv) * hd].chunks_exact_mut(hd) {
                    for (pair, &(cos, sin)) in head.chunks_exact_mut(2).zip(angles) {
                        let (x0, x1) = (pair[0], pair[1]);
                        pair[0] = x0 * cos - x1 * sin;
                        pair[1] = x0 * sin + x1 * cos;
                    }
                }
                queries.extend(row[..h * hd].iter().map(|&v| f16::from_f32(v)));
                kv.k.extend(
                    row[h * hd..(h + hkv) * hd]
                        .iter()
                        .map(|&v| f16::from_f32(v)),
                );
                kv.v.extend(row[(h + hkv) * hd..].iter().map(|&v| f16::from_f32(v)));
            }
            let attn = attention(c, &queries, kv, kv_len, t);
            let mut proj = vec![0f32; t * d];
            layer.out.matmul(&attn, t, &mut proj);
            for (a, b) in x.iter_mut().zip(&proj) {
                *a += b;
            }

            let hn = rms_norm(&x, &layer.ffn_norm, c.rms_eps);
            let f = c.ffn_dim;
            let mut gu = vec![0f32; t * 2 * f];
            layer.gate_up.matmul(&hn, t, &mut gu);
            let act: Vec<f32> = gu
                .chunks_exact(2 * f)
                .flat_map(|row| {
                    let (gate, up) = row.split_at(f);
                    gate.iter()
                        .zip(up)
                        .map(|(&g, &u)| g / (1.0 + ggml_expf(-g)) * u)
                })
                .collect();
            layer.down.matmul(&act, t, &mut proj);
            for (a, b) in x.iter_mut().zip(&proj) {
                *a += b;
            }
        }
        debug_assert!(cache.iter().all(|kv| kv.k.len() == total * hkv * hd));
        let last = rms_norm(&x[(t - 1) * d..], &self.norm, c.rms_eps);
        let mut logits = vec![0f32; self.output.rows()];
        self.output.matmul(&last, 1, &mut logits);
        logits
    }
}

/// Causal attention of the `t` new queries (`[T, H, hd]`, f16) over the cache (which
/// already holds them), as llama.cpp without flash attention: `softmax(K·q · scale)` in f32,
/// probabilities rounded to f16, then `Σ p·V`. Returns `[T, H·hd]`.
fn attention(c: &LlamaConfig, queries: &[f16], kv: &LayerKv, kv_len: usize, t: usize) -> Vec<f32> {
    let (hd, h, hkv) = (c.head_dim, c.n_heads, c.n_kv_heads);
    let group = h / hkv;
    let scale = 1.0 / (hd as f32).sqrt();
    let span = padded(kv_len + t);
    let mut out = vec![0f32; t * h * hd];
    // One task per (token, head).
    let task = |(i, dst): (usize, &mut [f32])| {
        let (token, head) = (i / h, i % h);
        let kvh = head / group;
        let visible = kv_len + token + 1;
        let q = &queries[(token * h + head) * hd..][..hd];
        let key = |p: usize| &kv.k[(p * hkv + kvh) * hd..][..hd];
        let value = |p: usize, e: usize| kv.v[(p * hkv + kvh) * hd + e].to_f32();
        let mut scores: Vec<f32> = (0..visible)
            .map(|p| {
                let k = key(p);
                let qk = if t == 1 {
                    dot_one(|e| k[e].to_f32(), |e| q[e].to_f32(), hd, hd)
                } else {
                    dot_many(|e| k[e].to_f32(), |e| q[e].to_f32(), hd)
                };
                qk * scale
            })
            .collect();
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f64;
        for block in scores.chunks_mut(16) {
            let mut lanes = [0f32; 16];
            for (lane, s) in lanes.iter_mut().zip(block.iter_mut()) {
                *s = ggml_expf(*s - max);
                *lane = *s;
            }
            sum += f64::from(reduce16(&lanes));
        }
        let inv = (1.0 / sum) as f32;
        let probs: Vec<f32> = scores
            .iter()
            .map(|e| f16::from_f32(e * inv).to_f32())
            .collect();
        let prob = |p: usize| probs.get(p).copied().unwrap_or(0.0);
        for (e, y) in dst.iter_mut().enumerate() {
            let val = |p: usize| value(p, e);
            *y = if t == 1 {
                dot_one(val, prob, span, visible)
            } else {
                dot_many(val, prob, visible)
            };
        }
    };
    if t == 1 {
        out.chunks_mut(hd).enumerate().for_each(task);
    } else {
        out.par_chunks_mut(hd).enumerate().for_each(task);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ggml_expf_is_close_to_exp() {
        // Normal results (below about −87 they are subnormal and lose relative precision).
        for i in -1700..=200 {
            let x = i as f32 * 0.05;
            let (ours, exact) = (ggml_expf(x), x.exp());
            assert!(
                (ours - exact).abs() <= 4.0 * f32::EPSILON * exact,
                "{x}: {ours} vs {exact}"
            );
        }
        assert_eq!(ggml_expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(ggml_expf(-1000.0), 0.0);
    }

    #[test]
    fn dots_sum_products() {
        let x: Vec<f32> = (0..300).map(|i| (i % 7) as f32 - 3.0).collect();
        let y: Vec<f32> = (0..300).map(|i| (i % 5) as f32 * 0.5).collect();
        let exact: f32 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        assert_eq!(dot_one(|i| x[i], |i| y[i], 300, 300), exact);
        assert_eq!(
            dot_many(|i| x[i], |i| y[i], 288),
            x[..288].iter().zip(&y).map(|(a, b)| a * b).sum::<f32>()
        );
    }
}
