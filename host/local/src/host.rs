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
use crate::simd::{Vectorized, run_vectorized};
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

/// One layer's keys and values, `[position, Hkv, hd]`: f16 values (as llama.cpp's F16
/// cache holds them) kept as f32, so attention reads them without conversions.
#[derive(Debug, Clone, Default)]
pub(crate) struct LayerKv {
    k: Vec<f32>,
    v: Vec<f32>,
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
#[inline(always)]
fn ggml_expf(x: f32) -> f32 {
    let c = f32::from_bits;
    let r = c(0x4b40_0000);
    let z = x.mul_add(c(0x3fb8_aa3b), r);
    let n = z - r;
    let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x));
    let u = b * b;
    let j = c(0x3c07_2010)
        .mul_add(b, c(0x3d2b_9f17))
        .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)))
        .mul_add(u, c(0x3f7f_fff6).mul_add(b, 1.0));
    // `scalef(j, n) = j · 2^n` in two exact steps (|n| ≤ 192 here), built from exponent bits.
    let k = n.clamp(-192.0, 192.0) as i32;
    let pow2 = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    let res = j * pow2(k / 2) * pow2(k - k / 2);
    if n.abs() > 192.0 {
        if n <= 0.0 { 0.0 } else { f32::INFINITY }
    } else {
        res
    }
}

/// `_mm512_reduce_add_ps` as GCC computes it: halves, quarters, then pairs.
#[inline(always)]
fn reduce16(a: &[f32; 16]) -> f32 {
    let t3: [f32; 8] = std::array::from_fn(|i| a[i + 8] + a[i]);
    let t6: [f32; 4] = std::array::from_fn(|i| t3[i + 4] + t3[i]);
    (t6[0] + t6[2]) + (t6[1] + t6[3])
}

/// How llama.cpp sums a dot product (AVX-512 build): `ggml_vec_dot_f16` for one token,
/// llamafile's `tinyBLAS` for several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DotOrder {
    /// Four 16-lane accumulators over steps of 64 (slot `i % 64`), folded pairwise then
    /// reduced; the tail (`len % 64`) added in f64.
    OneToken,
    /// One 16-lane accumulator (slot `i % 16`), then reduced; lengths are multiples of 16
    /// (llama.cpp takes the one-token path otherwise).
    Tiled,
}

impl DotOrder {
    const fn slots(self) -> usize {
        match self {
            DotOrder::OneToken => 64,
            DotOrder::Tiled => 16,
        }
    }

    /// The sum of `slots()` per-slot accumulators, in llama.cpp's order.
    #[inline(always)]
    fn fold(self, slot: impl Fn(usize) -> f32) -> f32 {
        let lanes: [f32; 16] = match self {
            DotOrder::OneToken => {
                std::array::from_fn(|l| (slot(l) + slot(32 + l)) + (slot(16 + l) + slot(48 + l)))
            }
            DotOrder::Tiled => std::array::from_fn(slot),
        };
        reduce16(&lanes)
    }

    /// The order llama.cpp sums a dot product of length `len` over `tokens` query tokens.
    fn of(tokens: usize, len: usize) -> Self {
        if tokens > 1 && len.is_multiple_of(16) {
            DotOrder::Tiled
        } else {
            DotOrder::OneToken
        }
    }

    /// `Σ x[i]·y[i]`: fused multiply-adds into slot `i % slots()` in order, `fold`, then
    /// the tail past the last full step in f64.
    #[inline(always)]
    fn dot(self, x: &[f32], y: &[f32]) -> f32 {
        match self {
            DotOrder::OneToken => self.dot_slots::<64>(x, y),
            DotOrder::Tiled => self.dot_slots::<16>(x, y),
        }
    }

    /// `dot` with `N = slots()` known at compile time (so the slots stay in registers).
    #[inline(always)]
    fn dot_slots<const N: usize>(self, x: &[f32], y: &[f32]) -> f32 {
        let len = x.len().min(y.len());
        let (xs, x_tail) = x[..len].as_chunks::<N>();
        let (ys, y_tail) = y[..len].as_chunks::<N>();
        let mut acc = [0f32; N];
        for (xs, ys) in xs.iter().zip(ys) {
            for l in 0..N {
                acc[l] = xs[l].mul_add(ys[l], acc[l]);
            }
        }
        let mut sum = f64::from(self.fold(|s| acc[s]));
        for (&xv, &yv) in x_tail.iter().zip(y_tail) {
            sum += f64::from(xv * yv);
        }
        sum as f32
    }
}

/// Positions llama.cpp's attention spans: the cache length padded to 256. The padding is
/// masked (probability 0), so it only fixes the summation slots, which start at position 0.
const KV_PAD: usize = 256;

/// `f32 → f16 → f32`: the value an F16 tensor stores.
#[inline(always)]
fn round_f16(v: f32) -> f32 {
    f16::from_f32(v).to_f32()
}

impl HostWeights {
    /// Runs `tokens` at positions `kv_len..` given their embeddings `x: [T, D]`; appends to
    /// `cache` (one entry per layer) and returns the last token's logits (`x` holds at
    /// least one token: `Llama::forward` checks).
    pub(crate) fn forward(
        &self,
        c: &LlamaConfig,
        mut x: Vec<f32>,
        cache: &mut Vec<LayerKv>,
        kv_len: usize,
    ) -> Vec<f32> {
        let (d, hd, h, hkv) = (c.dim, c.head_dim, c.n_heads, c.n_kv_heads);
        let t = x.len() / d;
        cache.resize_with(self.layers.len(), LayerKv::default);
        // Buffers shared by the layers (allocating megabytes per layer costs page faults).
        let f = c.ffn_dim;
        let mut qkv = Vec::new();
        let mut proj = vec![0f32; t * d];
        let mut gu = vec![0f32; t * 2 * f];
        let mut act = vec![0f32; t * f];
        for (li, (layer, kv)) in self.layers.iter().zip(cache.iter_mut()).enumerate() {
            let hn = rms_norm(&x, &layer.attn_norm, c.rms_eps);
            let width = layer.qkv.rows();
            qkv.resize(t * width, 0.0);
            layer.qkv.matmul(&hn, t, &mut qkv);
            let mut queries = Vec::with_capacity(t * h * hd);
            for (i, row) in qkv.chunks_exact_mut(width).enumerate() {
                let angles = &self.rope[(kv_len + i) * (hd / 2)..][..hd / 2];
                for head in row[..(h + hkv) * hd].chunks_exact_mut(hd) {
                    for (pair, &(cos, sin)) in head.chunks_exact_mut(2).zip(angles) {
                        // As llama.cpp's compiled `rotate_pairs`: GCC fuses the `x0` products into FMAs.
                        let (x0, x1) = (pair[0], pair[1]);
                        pair[0] = x0.mul_add(cos, -(x1 * sin));
                        pair[1] = x0.mul_add(sin, x1 * cos);
                    }
                }
                queries.extend(row[..h * hd].iter().map(|&v| round_f16(v)));
                kv.k.extend(row[h * hd..(h + hkv) * hd].iter().map(|&v| round_f16(v)));
                kv.v.extend(row[(h + hkv) * hd..].iter().map(|&v| round_f16(v)));
            }
            // The last layer only feeds the last token's logits: its other rows are left
            // out after their keys and values are cached, as llama.cpp does (each row's
            // values do not depend on the others, only the summation order on `t`).
            let rows = if li + 1 == self.layers.len() { 1 } else { t };
            if rows < t {
                x.drain(..(t - rows) * d);
                queries.drain(..(t - rows) * h * hd);
            }
            let attn = attention(c, &queries, kv, kv_len + t - rows, t);
            let proj = &mut proj[..rows * d];
            layer.out.matmul(&attn, rows, proj);
            for (a, b) in x.iter_mut().zip(proj.iter()) {
                *a += b;
            }

            let hn = rms_norm(&x, &layer.ffn_norm, c.rms_eps);
            let (gu, act) = (&mut gu[..rows * 2 * f], &mut act[..rows * f]);
            layer.gate_up.matmul(&hn, rows, gu);
            run_vectorized(SwiGlu {
                ffn_dim: f,
                gate_up: gu,
                out: act,
            });
            layer.down.matmul(act, rows, proj);
            for (a, b) in x.iter_mut().zip(proj.iter()) {
                *a += b;
            }
        }
        let last = rms_norm(&x[x.len() - d..], &self.norm, c.rms_eps);
        let mut logits = vec![0f32; self.output.rows()];
        self.output.matmul(&last, 1, &mut logits);
        logits
    }
}

/// Causal attention of new queries (`[n, H, hd]`, f16 values, at positions `first..`) over
/// the cache (which already holds their keys and values), in the summation order of a pass
/// of `batch` tokens, as llama.cpp without flash attention:
/// `softmax(K·q · scale)` in f32, probabilities rounded to f16, then `Σ p·V`. Returns
/// `[T, H·hd]`.
fn attention(
    c: &LlamaConfig,
    queries: &[f32],
    kv: &LayerKv,
    first: usize,
    batch: usize,
) -> Vec<f32> {
    let (hd, h, hkv) = (c.head_dim, c.n_heads, c.n_kv_heads);
    let group = h / hkv;
    let scale = 1.0 / (hd as f32).sqrt();
    let qk_order = DotOrder::of(batch, hd);
    // The value sums span the cache padded to 256 positions, a multiple of 16.
    let order = DotOrder::of(batch, KV_PAD);
    let mut out = vec![0f32; queries.len()];
    // One task per (token, head).
    let task = |(i, dst): (usize, &mut [f32])| {
        let (token, head) = (i / h, i % h);
        run_vectorized(HeadAttention {
            query: &queries[(token * h + head) * hd..][..hd],
            kv,
            kv_head: head / group,
            n_kv_heads: hkv,
            visible: first + token + 1,
            scale,
            qk_order,
            order,
            out: dst,
        });
    };
    if out.len() == h * hd {
        out.chunks_mut(hd).enumerate().for_each(task);
    } else {
        out.par_chunks_mut(hd).enumerate().for_each(task);
    }
    out
}

/// `out = silu(gate) · up` per row of `gate_up: [T, 2·F]` (`out: [T, F]`), as
/// `ggml_vec_swiglu_f32`.
struct SwiGlu<'a> {
    ffn_dim: usize,
    gate_up: &'a [f32],
    out: &'a mut [f32],
}

impl Vectorized for SwiGlu<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let f = self.ffn_dim;
        for (dst, row) in self
            .out
            .chunks_exact_mut(f)
            .zip(self.gate_up.chunks_exact(2 * f))
        {
            let (gate, up) = row.split_at(f);
            for ((y, &g), &u) in dst.iter_mut().zip(gate).zip(up) {
                *y = g / (1.0 + ggml_expf(-g)) * u;
            }
        }
    }
}

/// One query head of one token against the cache: `out = Σ_p round_f16(softmax(K·q ·
/// scale))_p · V_p` over the `visible` positions.
struct HeadAttention<'a> {
    query: &'a [f32],
    kv: &'a LayerKv,
    kv_head: usize,
    n_kv_heads: usize,
    visible: usize,
    scale: f32,
    qk_order: DotOrder,
    order: DotOrder,
    out: &'a mut [f32],
}

impl Vectorized for HeadAttention<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let hd = self.query.len();
        let (kvh, hkv) = (self.kv_head, self.n_kv_heads);
        let row_at = |p: usize| (p * hkv + kvh) * hd..(p * hkv + kvh + 1) * hd;
        let mut probs = vec![0f32; self.visible];
        for (p, s) in probs.iter_mut().enumerate() {
            *s = self.qk_order.dot(&self.kv.k[row_at(p)], self.query) * self.scale;
        }
        let max = probs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f64;
        for block in probs.chunks_mut(16) {
            let mut lanes = [0f32; 16];
            for (lane, s) in lanes.iter_mut().zip(block.iter_mut()) {
                *s = ggml_expf(*s - max);
                *lane = *s;
            }
            sum += f64::from(reduce16(&lanes));
        }
        let inv = (1.0 / sum) as f32;
        for p in probs.iter_mut() {
            *p = round_f16(*p * inv);
        }
        // Slot accumulators `[slots, hd]`: position `p` goes to slot `p % slots`.
        let slots = self.order.slots();
        let mut acc = vec![0f32; slots * hd];
        for (p, &prob) in probs.iter().enumerate() {
            let a = &mut acc[(p % slots) * hd..][..hd];
            for (a, &v) in a.iter_mut().zip(&self.kv.v[row_at(p)]) {
                *a = prob.mul_add(v, *a);
            }
        }
        for (e, y) in self.out.iter_mut().enumerate() {
            *y = self.order.fold(|s| acc[s * hd + e]);
        }
    }
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

    /// Deterministic values in about [-2, 2) with all mantissa bits in use.
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 22) as f32 - 2.0
            })
            .collect()
    }

    #[test]
    fn vectorized_and_scalar_paths_agree_bit_for_bit() {
        let (hd, hkv, positions) = (64, 3, 300);
        let kv = LayerKv {
            k: values(positions * hkv * hd, 1)
                .into_iter()
                .map(round_f16)
                .collect(),
            v: values(positions * hkv * hd, 2)
                .into_iter()
                .map(round_f16)
                .collect(),
        };
        let query: Vec<f32> = values(hd, 3).into_iter().map(round_f16).collect();
        for (batch, visible) in [(1, 1), (1, 300), (7, 77), (7, 300)] {
            let run = |vectorized: bool| {
                let mut out = vec![0f32; hd];
                let work = HeadAttention {
                    query: &query,
                    kv: &kv,
                    kv_head: 1,
                    n_kv_heads: hkv,
                    visible,
                    scale: 0.125,
                    qk_order: DotOrder::of(batch, hd),
                    order: DotOrder::of(batch, KV_PAD),
                    out: &mut out,
                };
                if vectorized {
                    run_vectorized(work);
                } else {
                    work.run();
                }
                out
            };
            let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
            assert_eq!(bits(run(true)), bits(run(false)), "batch {batch}");
        }
        let gate_up = values(2 * 2 * 96, 4);
        let run = |vectorized: bool| {
            let mut out = vec![0f32; 2 * 96];
            let work = SwiGlu {
                ffn_dim: 96,
                gate_up: &gate_up,
                out: &mut out,
            };
            if vectorized {
                run_vectorized(work);
            } else {
                work.run();
            }
            out.into_iter().map(f32::to_bits).collect::<Vec<_>>()
        };
        assert_eq!(run(true), run(false));
    }

    #[test]
    fn dots_sum_products() {
        let x: Vec<f32> = (0..300).map(|i| (i % 7) as f32 - 3.0).collect();
        let y: Vec<f32> = (0..300).map(|i| (i % 5) as f32 * 0.5).collect();
        let exact: f32 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        // Small integers: every order gives the exact sum.
        assert_eq!(DotOrder::OneToken.dot(&x, &y), exact);
        assert_eq!(DotOrder::Tiled.dot(&x[..288], &y[..288]), {
            let exact: f32 = x[..288].iter().zip(&y).map(|(a, b)| a * b).sum();
            exact
        });
        assert_eq!(DotOrder::of(1, 64), DotOrder::OneToken);
        assert_eq!(DotOrder::of(5, 64), DotOrder::Tiled);
        assert_eq!(DotOrder::of(5, 72), DotOrder::OneToken);
    }
}
