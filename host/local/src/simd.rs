//! Dot-product kernels of the quantized matmul: weight rows (ggml blocks) against tokens'
//! 8-bit activation blocks, one (row, token) pair at a time or a tile of rows × tokens at
//! once (each weight block unpacked once per tile, each activation block loaded once).
//! AVX2/FMA/F16C versions chosen at run time where the CPU has them, portable
//! (autovectorised) versions elsewhere. The only unsafe code of the crate.
#![allow(unsafe_code)]

use crate::quant::{Q8Block, QFormat, QK};
use half::f16;

/// `Σ_i w[i] · a[i]` over one row: `w` holds `a.len()` weight blocks.
pub type DotFn = fn(&[u8], &[Q8Block]) -> f32;

/// Rows of a prefill tile.
pub const TILE_ROWS: usize = 2;
/// Tokens of a prefill tile.
pub const TILE_TOKENS: usize = 4;
/// Rows computed together for one token (decode).
pub const PAIR_ROWS: usize = 2;

/// `out[r][t] = dot(w[r], a[t])` for a `TILE_ROWS × TILE_TOKENS` tile; every `w[r]` holds
/// (at least) `a[t].len()` blocks and all `a[t]` have the same length.
pub type TileFn =
    fn([&[u8]; TILE_ROWS], [&[Q8Block]; TILE_TOKENS]) -> [[f32; TILE_TOKENS]; TILE_ROWS];
/// `out[r] = dot(w[r], a)` for `PAIR_ROWS` rows and one token.
pub type RowsFn = fn([&[u8]; PAIR_ROWS], [&[Q8Block]; 1]) -> [[f32; 1]; PAIR_ROWS];

/// The kernels of one weight format. Every kernel gives each (row, token) value
/// bit-identical to `dot`: same per-block products, same accumulation order.
#[derive(Clone, Copy)]
pub struct Kernels {
    pub dot: DotFn,
    pub tile: TileFn,
    pub rows: RowsFn,
}

/// The fastest single-pair kernel for `format` on this CPU.
#[cfg(test)]
pub fn kernel(format: QFormat) -> DotFn {
    kernels(format).dot
}

/// The fastest kernels for `format` on this CPU.
pub fn kernels(format: QFormat) -> Kernels {
    #[cfg(target_arch = "x86_64")]
    {
        if x86::vnni_available() {
            match format {
                QFormat::Q4_0 => {
                    return Kernels {
                        dot: x86::dot_q4_0_vnni,
                        tile: x86::tile_q4_0_vnni,
                        rows: x86::tile_q4_0_vnni,
                    };
                }
                QFormat::Q4_1 => {
                    return Kernels {
                        dot: x86::dot_q4_1_vnni,
                        tile: x86::tile_q4_1_vnni,
                        rows: x86::tile_q4_1_vnni,
                    };
                }
                QFormat::Q8_0 => {}
            }
        }
        if x86::available() {
            return match format {
                QFormat::Q8_0 => Kernels {
                    dot: x86::dot_q8_0,
                    tile: x86::tile_q8_0,
                    rows: x86::tile_q8_0,
                },
                QFormat::Q4_0 => Kernels {
                    dot: x86::dot_q4_0,
                    tile: x86::tile_q4_0,
                    rows: x86::tile_q4_0,
                },
                QFormat::Q4_1 => Kernels {
                    dot: x86::dot_q4_1,
                    tile: x86::tile_q4_1,
                    rows: x86::tile_q4_1,
                },
            };
        }
    }
    match format {
        QFormat::Q8_0 => Kernels {
            dot: dot_q8_0,
            tile: portable_tile::<TILE_ROWS, TILE_TOKENS, 0>,
            rows: portable_tile::<PAIR_ROWS, 1, 0>,
        },
        QFormat::Q4_0 => Kernels {
            dot: dot_q4_0,
            tile: portable_tile::<TILE_ROWS, TILE_TOKENS, 1>,
            rows: portable_tile::<PAIR_ROWS, 1, 1>,
        },
        QFormat::Q4_1 => Kernels {
            dot: dot_q4_1,
            tile: portable_tile::<TILE_ROWS, TILE_TOKENS, 2>,
            rows: portable_tile::<PAIR_ROWS, 1, 2>,
        },
    }
}

/// A tile from the portable dot of format `F` (0 Q8_0, 1 Q4_0, 2 Q4_1).
fn portable_tile<const R: usize, const T: usize, const F: u8>(
    w: [&[u8]; R],
    a: [&[Q8Block]; T],
) -> [[f32; T]; R] {
    let dot: DotFn = match F {
        0 => dot_q8_0,
        1 => dot_q4_0,
        _ => dot_q4_1,
    };
    std::array::from_fn(|r| std::array::from_fn(|t| dot(w[r], a[t])))
}

/// Scalar code to compile for AVX2/FMA/F16C where the CPU has them: `run` (which must be
/// `#[inline(always)]`, as the functions it calls) is then inlined into a `target_feature`
/// function, so `f32::mul_add` is one instruction and loops vectorise; elsewhere it is a
/// libm call. Results are the same either way (`mul_add` is fused in both).
pub trait Vectorized {
    type Output;
    fn run(self) -> Self::Output;
}

/// Runs `work` compiled for AVX2/FMA/F16C where the CPU has them, as is elsewhere.
pub fn run_vectorized<W: Vectorized>(work: W) -> W::Output {
    #[cfg(target_arch = "x86_64")]
    {
        if x86::available() {
            // SAFETY: CPU features checked just above.
            return unsafe { x86::run_vectorized(work) };
        }
    }
    work.run()
}

/// Quantizes one block of 32 activations (`chunk.len() == QK`).
pub fn quantize_block(chunk: &[f32]) -> Q8Block {
    #[cfg(target_arch = "x86_64")]
    {
        if x86::available() && chunk.len() == QK {
            // SAFETY: CPU features checked just above.
            if let Some(b) = unsafe { x86::quantize_block(chunk) } {
                return b;
            }
        }
    }
    quantize_block_portable(chunk)
}

/// llama.cpp's x86 `quantize_row_q8_1`: `d = max|x| / 127` stored as f16, `q = x · 127 /
/// max|x|` rounded half to even, `s = d · Σ q` (with the f32 `d`) stored as f16.
fn quantize_block_portable(chunk: &[f32]) -> Q8Block {
    let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut qs = [0i8; QK];
    let mut sum = 0i32;
    for (q, v) in qs.iter_mut().zip(chunk) {
        let r = (v * id).round_ties_even() as i32;
        *q = r as i8;
        sum += r;
    }
    Q8Block::new(amax, sum, qs)
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

// The portable dots compute what the AVX2 kernels (and llama.cpp's) compute, bit for bit:
// per block, 8 integer lanes of 4 adjacent byte products each, accumulated per lane with a
// fused multiply-add by the block's scale product, then summed as `hsum` does.

/// Lane `k` of a 4-bit block's byte dot: nibbles `4k..4k+4` of the low halves (`k < 4`) or
/// of the high halves (`k ≥ 4`, against activations `16 + …`).
fn nibble_lanes(qs: &[u8], a: &[i8; QK]) -> [i32; 8] {
    std::array::from_fn(|k| {
        (0..4)
            .map(|j| {
                let i = 4 * (k % 4) + j;
                let n = if k < 4 { qs[i] & 0x0F } else { qs[i] >> 4 };
                i32::from(n) * i32::from(a[i + 16 * (k / 4)])
            })
            .sum()
    })
}

/// `hsum` of the AVX2 kernels: halves, then pairs.
fn hsum8(v: &[f32; 8]) -> f32 {
    let s: [f32; 4] = std::array::from_fn(|i| v[i] + v[i + 4]);
    (s[0] + s[2]) + (s[1] + s[3])
}

fn dot_q8_0(w: &[u8], a: &[Q8Block]) -> f32 {
    let mut acc = [0f32; 8];
    for (b, x) in w.chunks_exact(34).zip(a) {
        let d = f16_at(b, 0) * x.d;
        for (k, acc) in acc.iter_mut().enumerate() {
            let lane: i32 = (4 * k..4 * k + 4)
                .map(|i| i32::from(b[2 + i] as i8) * i32::from(x.qs[i]))
                .sum();
            *acc = d.mul_add(lane as f32, *acc);
        }
    }
    hsum8(&acc)
}

fn dot_q4_0(w: &[u8], a: &[Q8Block]) -> f32 {
    let mut acc = [0f32; 8];
    let mut offset = 0f32;
    for (b, x) in w.chunks_exact(18).zip(a) {
        let d = f16_at(b, 0);
        // Σ (n - 8)·q·d·dx = d·dx·Σ n·q − 8·d·dx·Σ q
        for (acc, lane) in acc.iter_mut().zip(nibble_lanes(&b[2..18], &x.qs)) {
            *acc = (d * x.d).mul_add(lane as f32, *acc);
        }
        offset += -8.0 * d * x.exact_sum();
    }
    hsum8(&acc) + offset
}

fn dot_q4_1(w: &[u8], a: &[Q8Block]) -> f32 {
    let mut acc = [0f32; 8];
    let mut offset = 0f32;
    for (b, x) in w.chunks_exact(20).zip(a) {
        for (acc, lane) in acc.iter_mut().zip(nibble_lanes(&b[4..20], &x.qs)) {
            *acc = (f16_at(b, 0) * x.d).mul_add(lane as f32, *acc);
        }
        offset = f16_at(b, 2).mul_add(x.s, offset);
    }
    hsum8(&acc) + offset
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Q8Block, QK};
    use std::arch::x86_64::*;

    pub fn available() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }

    /// AVX-512 VNNI on top of `available()` (for the 4-bit kernels).
    pub fn vnni_available() -> bool {
        available()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni")
    }

    // The `*_vnni` wrappers are only handed out after `vnni_available()` said the CPU has
    // AVX-512 F/VL/VNNI as well.

    pub fn dot_q4_0_vnni(w: &[u8], a: &[Q8Block]) -> f32 {
        // SAFETY: CPU features checked by `vnni_available()` before this fn pointer is
        // handed out.
        unsafe { q4_vnni(w, a, 18, 2) }
    }
    pub fn dot_q4_1_vnni(w: &[u8], a: &[Q8Block]) -> f32 {
        // SAFETY: as above.
        unsafe { q4_vnni(w, a, 20, 4) }
    }
    pub fn tile_q4_0_vnni<const R: usize, const T: usize>(
        w: [&[u8]; R],
        a: [&[Q8Block]; T],
    ) -> [[f32; T]; R] {
        // SAFETY: as above.
        unsafe { q4_tile_vnni::<R, T, 18, 2>(w, a) }
    }
    pub fn tile_q4_1_vnni<const R: usize, const T: usize>(
        w: [&[u8]; R],
        a: [&[Q8Block]; T],
    ) -> [[f32; T]; R] {
        // SAFETY: as above.
        unsafe { q4_tile_vnni::<R, T, 20, 4>(w, a) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub fn run_vectorized<W: super::Vectorized>(work: W) -> W::Output {
        work.run()
    }

    // The safe wrappers below are only handed out by `kernel` after `available()` said
    // the CPU has AVX2, FMA and F16C, which is what the `target_feature` functions need.

    pub fn dot_q8_0(w: &[u8], a: &[Q8Block]) -> f32 {
        // SAFETY: CPU features checked by `available()` before this fn pointer is handed out.
        unsafe { q8_0(w, a) }
    }
    pub fn dot_q4_0(w: &[u8], a: &[Q8Block]) -> f32 {
        // SAFETY: as above.
        unsafe { q4(w, a, 18, 2) }
    }
    pub fn dot_q4_1(w: &[u8], a: &[Q8Block]) -> f32 {
        // SAFETY: as above.
        unsafe { q4(w, a, 20, 4) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn scale(b: &[u8]) -> f32 {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(
            u16::from_le_bytes([b[0], b[1]]),
        ))))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn q8_0(w: &[u8], a: &[Q8Block]) -> f32 {
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        for (b, x) in w.chunks_exact(34).zip(a) {
            let qs = &b[2..34];
            // SAFETY: `qs` and `x.qs` are exactly 32 bytes; unaligned loads.
            let (qw, qa) = unsafe {
                (
                    _mm256_loadu_si256(qs.as_ptr().cast::<__m256i>()),
                    _mm256_loadu_si256(x.qs.as_ptr().cast::<__m256i>()),
                )
            };
            // |w| · (a · sign(w)) = w · a, with the unsigned×signed byte multiply.
            let aw = _mm256_sign_epi8(qw, qw);
            let sa = _mm256_sign_epi8(qa, qw);
            let dot = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sa), ones);
            let d = _mm256_set1_ps(scale(b) * x.d);
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot), acc);
        }
        hsum(acc)
    }

    /// Q4_0 (`bytes` 18, nibbles at 2, value = d·(n − 8)) and Q4_1 (`bytes` 20, nibbles at
    /// 4, value = d·n + m).
    #[target_feature(enable = "avx2,fma,f16c")]
    fn q4(w: &[u8], a: &[Q8Block], bytes: usize, at: usize) -> f32 {
        // SAFETY: this function has the features `q4_body::<false>` uses.
        unsafe { q4_body::<false>(w, a, bytes, at) }
    }

    /// `q4` with the AVX-512 VNNI byte dot product (same integer sums, so the same result).
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    fn q4_vnni(w: &[u8], a: &[Q8Block], bytes: usize, at: usize) -> f32 {
        // SAFETY: this function has the features `q4_body::<true>` uses.
        unsafe { q4_body::<true>(w, a, bytes, at) }
    }

    /// `Σ_j u[j]·s[j]` over each group of 4 bytes (unsigned × signed, as `i32` lanes): one
    /// `vpdpbusd` with VNNI, `vpmaddubsw` + `vpmaddwd` without (no saturation: the unsigned
    /// operands are nibbles or absolute int8 values, |products| · 2 ≤ 32512).
    ///
    /// # Safety
    /// The CPU must have AVX2, and AVX-512 F/VL/VNNI when `VNNI`.
    #[inline(always)]
    unsafe fn byte_dot<const VNNI: bool>(u: __m256i, s: __m256i) -> __m256i {
        // SAFETY: the caller guarantees the features.
        unsafe {
            if VNNI {
                _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
            } else {
                _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
            }
        }
    }

    /// The body of `q4` / `q4_vnni`.
    ///
    /// # Safety
    /// The CPU must have AVX2/FMA/F16C, and AVX-512 F/VL/VNNI when `VNNI`.
    #[inline(always)]
    unsafe fn q4_body<const VNNI: bool>(w: &[u8], a: &[Q8Block], bytes: usize, at: usize) -> f32 {
        // SAFETY: the caller guarantees the CPU features; the loads are commented below.
        unsafe {
            let mask = _mm_set1_epi8(0x0F);
            let mut acc = _mm256_setzero_ps();
            let mut offset = 0f32;
            for (b, x) in w.chunks_exact(bytes).zip(a) {
                let qs = &b[at..at + QK / 2];
                // `qs` is exactly 16 bytes and `x.qs` 32; unaligned loads.
                let packed = _mm_loadu_si128(qs.as_ptr().cast::<__m128i>());
                let qa = _mm256_loadu_si256(x.qs.as_ptr().cast::<__m256i>());
                let lo = _mm_and_si128(packed, mask);
                let hi = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
                let nibbles = _mm256_set_m128i(hi, lo);
                let dot = byte_dot::<VNNI>(nibbles, qa);
                let d = scale(b);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * x.d), _mm256_cvtepi32_ps(dot), acc);
                // llama.cpp's compiled loop fuses Q4_1's `summs += m · s` into one FMA.
                offset = if at == 4 {
                    scale(&b[2..4]).mul_add(x.s, offset)
                } else {
                    offset + -8.0 * d * x.exact_sum()
                };
            }
            hsum(acc) + offset
        }
    }

    /// `quantize_block_portable` for a finite block, bit for bit (max and products are
    /// exact in any order, rounding half to even as `round_ties_even`); `None` for blocks
    /// with a NaN or infinity.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub fn quantize_block(chunk: &[f32]) -> Option<Q8Block> {
        let x = &chunk[..QK];
        let sign = _mm256_set1_ps(-0.0);
        let mut v = [_mm256_setzero_ps(); 4];
        for (i, v) in v.iter_mut().enumerate() {
            // SAFETY: `x[8 * i..]` holds at least 8 floats; unaligned load.
            *v = unsafe { _mm256_loadu_ps(x[8 * i..].as_ptr()) };
        }
        // `max(|v|, m)` keeps `m` when `|v|` is NaN, as `f32::max` does.
        let mut m = _mm256_setzero_ps();
        for v in v {
            m = _mm256_max_ps(_mm256_andnot_ps(sign, v), m);
        }
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
        if !amax.is_finite() || x.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
        let mut q = [_mm256_setzero_si256(); 4];
        for (q, v) in q.iter_mut().zip(v) {
            let y = _mm256_mul_ps(v, id);
            let r = _mm256_round_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            *q = _mm256_cvttps_epi32(r);
        }
        let total = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let s = _mm_add_epi32(
            _mm256_castsi256_si128(total),
            _mm256_extracti128_si256(total, 1),
        );
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        let sum = _mm_cvtsi128_si32(s);
        let packed = _mm256_packs_epi16(
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        );
        let packed = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        let mut qs = [0i8; QK];
        // SAFETY: `qs` is exactly 32 bytes; unaligned store.
        unsafe { _mm256_storeu_si256(qs.as_mut_ptr().cast::<__m256i>(), packed) };
        Some(Q8Block::new(amax, sum, qs))
    }

    pub fn tile_q8_0<const R: usize, const T: usize>(
        w: [&[u8]; R],
        a: [&[Q8Block]; T],
    ) -> [[f32; T]; R] {
        // SAFETY: CPU features checked by `available()` before this fn pointer is handed out.
        unsafe { q8_0_tile(w, a) }
    }
    pub fn tile_q4_0<const R: usize, const T: usize>(
        w: [&[u8]; R],
        a: [&[Q8Block]; T],
    ) -> [[f32; T]; R] {
        // SAFETY: as above.
        unsafe { q4_tile::<R, T, 18, 2>(w, a) }
    }
    pub fn tile_q4_1<const R: usize, const T: usize>(
        w: [&[u8]; R],
        a: [&[Q8Block]; T],
    ) -> [[f32; T]; R] {
        // SAFETY: as above.
        unsafe { q4_tile::<R, T, 20, 4>(w, a) }
    }

    /// Blocks common to all rows and tokens of a tile.
    fn tile_blocks<const R: usize, const T: usize>(
        w: &[&[u8]; R],
        a: &[&[Q8Block]; T],
        bytes: usize,
    ) -> usize {
        let nb = a.iter().map(|a| a.len()).min().unwrap_or(0);
        w.iter().map(|w| w.len() / bytes).fold(nb, usize::min)
    }

    /// `q8_0` for `R` rows × `T` tokens: per (row, token) the same block products in the
    /// same order, so each value equals `q8_0(w[r], a[t])` bit for bit.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn q8_0_tile<const R: usize, const T: usize>(
        w: [&[u8]; R],
        a: [&[Q8Block]; T],
    ) -> [[f32; T]; R] {
        let nb = tile_blocks(&w, &a, 34);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        for i in 0..nb {
            let mut qw = [_mm256_setzero_si256(); R];
            let mut aw = [_mm256_setzero_si256(); R];
            let mut d = [0f32; R];
            for r in 0..R {
                let b = &w[r][i * 34..i * 34 + 34];
                // SAFETY: `b[2..34]` is exactly 32 bytes; unaligned load.
                qw[r] = unsafe { _mm256_loadu_si256(b[2..34].as_ptr().cast::<__m256i>()) };
                aw[r] = _mm256_sign_epi8(qw[r], qw[r]);
                d[r] = scale(b);
            }
            for t in 0..T {
                let x = &a[t][i];
                // SAFETY: `x.qs` is exactly 32 bytes; unaligned load.
                let qa = unsafe { _mm256_loadu_si256(x.qs.as_ptr().cast::<__m256i>()) };
                for r in 0..R {
                    let sa = _mm256_sign_epi8(qa, qw[r]);
                    let dot = _mm256_madd_epi16(_mm256_maddubs_epi16(aw[r], sa), ones);
                    let s = _mm256_set1_ps(d[r] * x.d);
                    acc[r][t] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(dot), acc[r][t]);
                }
            }
        }
        let mut out = [[0f32; T]; R];
        for (out, acc) in out.iter_mut().zip(&acc) {
            for (o, a) in out.iter_mut().zip(acc) {
                *o = hsum(*a);
            }
        }
        out
    }

    /// `q4` for `R` rows × `T` tokens (`BYTES`/`AT` as in `q4`): each weight block is
    /// unpacked once per tile; per (row, token) the same block products and offsets in the
    /// same order, so each value equals `q4(w[r], a[t], BYTES, AT)` bit for bit.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn q4_tile<const R: usize, const T: usize, const BYTES: usize, const AT: usize>(
        w: [&[u8]; R],
        a: [&[Q8Block]; T],
    ) -> [[f32; T]; R] {
        // SAFETY: this function has the features `q4_tile_body::<false>` uses.
        unsafe { q4_tile_body::<R, T, BYTES, AT, false>(w, a) }
    }

    /// `q4_tile` with the AVX-512 VNNI byte dot product (same results).
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    fn q4_tile_vnni<const R: usize, const T: usize, const BYTES: usize, const AT: usize>(
        w: [&[u8]; R],
        a: [&[Q8Block]; T],
    ) -> [[f32; T]; R] {
        // SAFETY: this function has the features `q4_tile_body::<true>` uses.
        unsafe { q4_tile_body::<R, T, BYTES, AT, true>(w, a) }
    }

    /// The body of `q4_tile` / `q4_tile_vnni`.
    ///
    /// # Safety
    /// The CPU must have AVX2/FMA/F16C, and AVX-512 F/VL/VNNI when `VNNI`.
    #[inline(always)]
    unsafe fn q4_tile_body<
        const R: usize,
        const T: usize,
        const BYTES: usize,
        const AT: usize,
        const VNNI: bool,
    >(
        w: [&[u8]; R],
        a: [&[Q8Block]; T],
    ) -> [[f32; T]; R] {
        // SAFETY: the caller guarantees the CPU features; the loads are commented below.
        unsafe {
            let nb = tile_blocks(&w, &a, BYTES);
            let mask = _mm_set1_epi8(0x0F);
            let mut acc = [[_mm256_setzero_ps(); T]; R];
            let mut offset = [[0f32; T]; R];
            for i in 0..nb {
                let mut nibbles = [_mm256_setzero_si256(); R];
                let mut d = [0f32; R];
                let mut m = [0f32; R];
                for r in 0..R {
                    let b = &w[r][i * BYTES..i * BYTES + BYTES];
                    let qs = &b[AT..AT + QK / 2];
                    // `qs` is exactly 16 bytes; unaligned load.
                    let packed = _mm_loadu_si128(qs.as_ptr().cast::<__m128i>());
                    let lo = _mm_and_si128(packed, mask);
                    let hi = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
                    nibbles[r] = _mm256_set_m128i(hi, lo);
                    if T == 1 {
                        // Decode: scale and (Q4_1) min are the block's first two f16s, one
                        // 4-byte load and one conversion for both (measured faster for one
                        // token, slower in the prefill tile).
                        let head = &b[..4];
                        // `head` is exactly 4 bytes; unaligned load.
                        let dm = _mm_cvtph_ps(_mm_loadu_si32(head.as_ptr()));
                        d[r] = _mm_cvtss_f32(dm);
                        m[r] = if AT == 4 {
                            _mm_cvtss_f32(_mm_movehdup_ps(dm))
                        } else {
                            -8.0 * d[r]
                        };
                    } else {
                        d[r] = scale(b);
                        m[r] = if AT == 4 {
                            scale(&b[2..4])
                        } else {
                            -8.0 * d[r]
                        };
                    }
                }
                for t in 0..T {
                    let x = &a[t][i];
                    // `x.qs` is exactly 32 bytes; unaligned load.
                    let qa = _mm256_loadu_si256(x.qs.as_ptr().cast::<__m256i>());
                    for r in 0..R {
                        let dot = byte_dot::<VNNI>(nibbles[r], qa);
                        let s = _mm256_set1_ps(d[r] * x.d);
                        acc[r][t] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(dot), acc[r][t]);
                        offset[r][t] = if AT == 4 {
                            m[r].mul_add(x.s, offset[r][t])
                        } else {
                            offset[r][t] + m[r] * x.exact_sum()
                        };
                    }
                }
            }
            let mut out = [[0f32; T]; R];
            for ((out, acc), offset) in out.iter_mut().zip(&acc).zip(&offset) {
                for ((o, a), m) in out.iter_mut().zip(acc).zip(offset) {
                    *o = hsum(*a) + m;
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::quantize_activations;

    #[test]
    fn simd_and_portable_kernels_agree_bit_for_bit() {
        let x: Vec<f32> = (0..128)
            .map(|i| ((i * 13 % 31) as f32 - 15.0) / 4.0)
            .collect();
        let a = quantize_activations(&x, 128);
        let mut q8 = Vec::new();
        let mut q4_0 = Vec::new();
        let mut q4_1 = Vec::new();
        for b in 0..4u8 {
            q8.extend_from_slice(&f16::from_f32(0.02).to_le_bytes());
            q8.extend(
                (0..32u8).map(|j| ((i16::from(j) * 7 + i16::from(b)) % 127 - 63) as i8 as u8),
            );
            q4_0.extend_from_slice(&f16::from_f32(0.3).to_le_bytes());
            q4_0.extend((0..16u8).map(|j| j ^ (b << 4)));
            q4_1.extend_from_slice(&f16::from_f32(0.1).to_le_bytes());
            q4_1.extend_from_slice(&f16::from_f32(-0.7).to_le_bytes());
            q4_1.extend((0..16u8).map(|j| (15 - j) | (b << 4)));
        }
        for (format, w, portable) in [
            (QFormat::Q8_0, &q8, dot_q8_0 as DotFn),
            (QFormat::Q4_0, &q4_0, dot_q4_0),
            (QFormat::Q4_1, &q4_1, dot_q4_1),
        ] {
            let (fast, slow) = (kernel(format)(w, &a), portable(w, &a));
            assert_eq!(
                fast.to_bits(),
                slow.to_bits(),
                "{format:?}: {fast} vs {slow}"
            );
        }
    }

    #[test]
    fn tiles_equal_single_dots_bit_for_bit() {
        let nb = 5;
        let x: Vec<f32> = (0..TILE_TOKENS * nb * QK)
            .map(|i| ((i * 29 % 37) as f32 - 18.0) / 5.0)
            .collect();
        let acts = quantize_activations(&x, nb * QK);
        let tokens: [&[Q8Block]; TILE_TOKENS] =
            std::array::from_fn(|t| &acts[t * nb..(t + 1) * nb]);
        for format in [QFormat::Q8_0, QFormat::Q4_0, QFormat::Q4_1] {
            let bytes = match format {
                QFormat::Q8_0 => 34,
                QFormat::Q4_0 => 18,
                QFormat::Q4_1 => 20,
            };
            let rows: Vec<Vec<u8>> = (0..TILE_ROWS.max(PAIR_ROWS))
                .map(|r| {
                    let mut w = Vec::new();
                    for b in 0..nb {
                        w.extend_from_slice(
                            &f16::from_f32(0.01 * (r + b + 1) as f32).to_le_bytes(),
                        );
                        if format == QFormat::Q4_1 {
                            w.extend_from_slice(
                                &f16::from_f32(-0.3 + 0.1 * b as f32).to_le_bytes(),
                            );
                        }
                        let n = bytes - w.len() % bytes;
                        w.extend((0..n).map(|j| ((j * 11 + r * 5 + b * 3) % 251) as u8));
                    }
                    w
                })
                .collect();
            let k = kernels(format);
            let tile = (k.tile)(std::array::from_fn(|r| &rows[r][..]), tokens);
            for (r, row) in tile.iter().enumerate() {
                for (t, v) in row.iter().enumerate() {
                    let want = (k.dot)(&rows[r], tokens[t]);
                    assert_eq!(v.to_bits(), want.to_bits(), "{format:?} tile {r},{t}");
                }
            }
            let pair = (k.rows)(std::array::from_fn(|r| &rows[r][..]), [tokens[1]]);
            for (r, v) in pair.iter().enumerate() {
                let want = (k.dot)(&rows[r], tokens[1]);
                assert_eq!(v[0].to_bits(), want.to_bits(), "{format:?} rows {r}");
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vnni_kernels_equal_avx2_kernels_bit_for_bit() {
        // Nothing to compare on CPUs without AVX-512 VNNI (the AVX2 kernels are tested above).
        if !x86::vnni_available() {
            return;
        }
        let nb = 7;
        // Activations reaching ±127 and weights with every nibble value.
        let x: Vec<f32> = (0..TILE_TOKENS * nb * QK)
            .map(|i| {
                if i % 13 == 0 {
                    -9.0
                } else {
                    ((i * 29 % 37) as f32 - 18.0) / 5.0
                }
            })
            .collect();
        let acts = quantize_activations(&x, nb * QK);
        let tokens: [&[Q8Block]; TILE_TOKENS] =
            std::array::from_fn(|t| &acts[t * nb..(t + 1) * nb]);
        for (bytes, at) in [(18, 2), (20, 4)] {
            let rows: Vec<Vec<u8>> = (0..TILE_ROWS)
                .map(|r| {
                    let mut w = Vec::new();
                    for b in 0..nb {
                        w.extend_from_slice(
                            &f16::from_f32(0.02 * (r + b + 1) as f32).to_le_bytes(),
                        );
                        if at == 4 {
                            w.extend_from_slice(
                                &f16::from_f32(-0.3 + 0.1 * b as f32).to_le_bytes(),
                            );
                        }
                        w.extend((0..16).map(|j| ((j * 37 + r * 5 + b * 3) % 256) as u8));
                    }
                    w
                })
                .collect();
            let w: [&[u8]; TILE_ROWS] = std::array::from_fn(|r| &rows[r][..]);
            let (tile, tile_vnni) = if at == 4 {
                (x86::tile_q4_1(w, tokens), x86::tile_q4_1_vnni(w, tokens))
            } else {
                (x86::tile_q4_0(w, tokens), x86::tile_q4_0_vnni(w, tokens))
            };
            for r in 0..TILE_ROWS {
                for t in 0..TILE_TOKENS {
                    let (dot, dot_vnni) = if at == 4 {
                        (
                            x86::dot_q4_1(w[r], tokens[t]),
                            x86::dot_q4_1_vnni(w[r], tokens[t]),
                        )
                    } else {
                        (
                            x86::dot_q4_0(w[r], tokens[t]),
                            x86::dot_q4_0_vnni(w[r], tokens[t]),
                        )
                    };
                    assert_eq!(dot.to_bits(), dot_vnni.to_bits(), "dot {bytes} {r},{t}");
                    assert_eq!(
                        tile[r][t].to_bits(),
                        tile_vnni[r][t].to_bits(),
                        "tile {r},{t}"
                    );
                    assert_eq!(tile[r][t].to_bits(), dot.to_bits(), "tile vs dot {r},{t}");
                }
            }
        }
    }

    #[test]
    fn simd_quantization_equals_portable_bit_for_bit() {
        let mut x: Vec<f32> = (0..32 * 64)
            .map(|i| ((i * 7919 % 2003) as f32 - 1001.0) / 37.0)
            .collect();
        // Exact ties of round-half-away-from-zero: max 127 makes `id` 1.
        for (i, v) in x[..32].iter_mut().enumerate() {
            *v = if i == 0 {
                127.0
            } else {
                (i as f32 - 16.0) + 0.5
            };
        }
        x[32..64].fill(0.0);
        x[64..96].fill(-0.0);
        x[100] = 1e-30;
        for chunk in x.chunks_exact(QK) {
            let (a, b) = (quantize_block(chunk), quantize_block_portable(chunk));
            assert_eq!(a.qs, b.qs);
            assert_eq!(
                (a.d.to_bits(), a.s.to_bits()),
                (b.d.to_bits(), b.s.to_bits())
            );
        }
        let mut bad = [1.0f32; QK];
        bad[3] = f32::NAN;
        bad[5] = f32::INFINITY;
        let (a, b) = (quantize_block(&bad), quantize_block_portable(&bad));
        assert_eq!(a.qs, b.qs);
    }
}
