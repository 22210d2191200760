//! Dot-product kernels of the quantized matmul: one weight row (ggml blocks) against one
//! token's 8-bit activation blocks. AVX2/FMA/F16C versions chosen at run time where the CPU
//! has them, portable (autovectorised) versions elsewhere. The only unsafe code of the crate.
#![allow(unsafe_code)]

use crate::quant::{Q8Block, QFormat, QK};
use half::f16;

/// `Σ_i w[i] · a[i]` over one row: `w` holds `a.len()` weight blocks.
pub type DotFn = fn(&[u8], &[Q8Block]) -> f32;

/// The fastest kernel for `format` on this CPU.
pub fn kernel(format: QFormat) -> DotFn {
    #[cfg(target_arch = "x86_64")]
    {
        if x86::available() {
            return match format {
                QFormat::Q8_0 => x86::dot_q8_0,
                QFormat::Q4_0 => x86::dot_q4_0,
                QFormat::Q4_1 => x86::dot_q4_1,
            };
        }
    }
    match format {
        QFormat::Q8_0 => dot_q8_0,
        QFormat::Q4_0 => dot_q4_0,
        QFormat::Q4_1 => dot_q4_1,
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// `Σ nibble_j · a_j` over one block (low nibbles are values 0..16, high ones 16..32).
fn nibble_dot(qs: &[u8], a: &[i8; QK]) -> i32 {
    let mut lo = 0i32;
    let mut hi = 0i32;
    for j in 0..16 {
        lo += i32::from(qs[j] & 0x0F) * i32::from(a[j]);
        hi += i32::from(qs[j] >> 4) * i32::from(a[j + 16]);
    }
    lo + hi
}

fn dot_q8_0(w: &[u8], a: &[Q8Block]) -> f32 {
    let mut sum = 0f32;
    for (b, x) in w.chunks_exact(34).zip(a) {
        let mut acc = 0i32;
        for (q, y) in b[2..34].iter().zip(&x.qs) {
            acc += i32::from(*q as i8) * i32::from(*y);
        }
        sum += f16_at(b, 0) * x.d * acc as f32;
    }
    sum
}

fn dot_q4_0(w: &[u8], a: &[Q8Block]) -> f32 {
    let mut sum = 0f32;
    for (b, x) in w.chunks_exact(18).zip(a) {
        let d = f16_at(b, 0);
        // Σ (n - 8)·q·d·dx = d·dx·Σ n·q − 8·d·s
        sum += d * x.d * nibble_dot(&b[2..18], &x.qs) as f32 - 8.0 * d * x.s;
    }
    sum
}

fn dot_q4_1(w: &[u8], a: &[Q8Block]) -> f32 {
    let mut sum = 0f32;
    for (b, x) in w.chunks_exact(20).zip(a) {
        sum += f16_at(b, 0) * x.d * nibble_dot(&b[4..20], &x.qs) as f32 + f16_at(b, 2) * x.s;
    }
    sum
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
        let ones = _mm256_set1_epi16(1);
        let mask = _mm_set1_epi8(0x0F);
        let mut acc = _mm256_setzero_ps();
        let mut offset = 0f32;
        for (b, x) in w.chunks_exact(bytes).zip(a) {
            let qs = &b[at..at + QK / 2];
            // SAFETY: `qs` is exactly 16 bytes and `x.qs` 32; unaligned loads.
            let (packed, qa) = unsafe {
                (
                    _mm_loadu_si128(qs.as_ptr().cast::<__m128i>()),
                    _mm256_loadu_si256(x.qs.as_ptr().cast::<__m256i>()),
                )
            };
            let lo = _mm_and_si128(packed, mask);
            let hi = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
            let nibbles = _mm256_set_m128i(hi, lo);
            let dot = _mm256_madd_epi16(_mm256_maddubs_epi16(nibbles, qa), ones);
            let d = scale(b);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * x.d), _mm256_cvtepi32_ps(dot), acc);
            offset += if at == 4 {
                scale(&b[2..4]) * x.s
            } else {
                -8.0 * d * x.s
            };
        }
        hsum(acc) + offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::quantize_activations;

    #[test]
    fn simd_and_portable_kernels_agree() {
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
            assert!(
                (fast - slow).abs() <= 1e-3 * slow.abs().max(1.0),
                "{format:?}: {fast} vs {slow}"
            );
        }
    }
}
