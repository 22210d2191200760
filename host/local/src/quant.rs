//! Quantized weights: ggml block formats, dequantization, and the CPU quantized matmul
//! (weights stay in their 4/8-bit GGUF blocks; activations are quantized to 8 bits per
//! 32-value block, as llama.cpp does). SIMD inner loops live in `simd`.

use crate::gguf::{GgmlType, GgufError, GgufFile, TensorInfo};
use crate::simd::{Kernels, PAIR_ROWS, TILE_ROWS, TILE_TOKENS};
use half::{bf16, f16};
use rayon::prelude::*;
use std::ops::Range;
use std::sync::Arc;

/// Values per quantization block.
pub const QK: usize = 32;

/// Bytes of one block of each compute format.
const Q8_0_BYTES: usize = 34;
const Q4_0_BYTES: usize = 18;
const Q4_1_BYTES: usize = 20;

/// The weight formats the matmul computes with directly. Other GGUF types are converted
/// to `Q8_0` at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QFormat {
    Q8_0,
    Q4_0,
    Q4_1,
}

impl QFormat {
    fn block_bytes(self) -> usize {
        match self {
            Self::Q8_0 => Q8_0_BYTES,
            Self::Q4_0 => Q4_0_BYTES,
            Self::Q4_1 => Q4_1_BYTES,
        }
    }
}

/// One block of quantized activations as llama.cpp's `block_q8_1`: `x[i] ≈ d * qs[i]`,
/// `d` and `s = d * Σ qs[i]` rounded to f16 (held as f32), plus the exact `Σ qs[i]`.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(8))]
pub struct Q8Block {
    pub d: f32,
    pub s: f32,
    pub sum: i32,
    pub qs: [i8; QK],
}

impl Q8Block {
    /// The block of `qs` quantized from values whose largest magnitude is `amax`.
    pub fn new(amax: f32, sum: i32, qs: [i8; QK]) -> Self {
        let d = amax / 127.0;
        Self {
            d: f16::from_f32(d).to_f32(),
            s: f16::from_f32(d * sum as f32).to_f32(),
            sum,
            qs,
        }
    }

    /// `d · Σ qs[i]` without the f16 rounding of `s` (Q4_0's offset, exact in llama.cpp).
    pub fn exact_sum(&self) -> f32 {
        self.d * self.sum as f32
    }
}

/// Bytes shared by many matrices: the GGUF file buffer, or a matrix's own converted copy.
#[derive(Debug, Clone)]
struct Bytes {
    buf: Arc<Vec<u8>>,
    start: usize,
    len: usize,
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

/// A quantized matrix `[rows, cols]`, row-major in ggml blocks (`cols` a multiple of 32).
#[derive(Debug, Clone)]
pub struct QMatrix {
    format: QFormat,
    rows: usize,
    cols: usize,
    data: Bytes,
}

impl QMatrix {
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn format(&self) -> QFormat {
        self.format
    }

    /// Bytes held per weight (for the ≤ 8 bits/weight budget and the RSS account).
    pub fn byte_len(&self) -> usize {
        self.data.len
    }

    fn row_bytes(&self) -> usize {
        self.cols / QK * self.format.block_bytes()
    }

    fn row(&self, r: usize) -> &[u8] {
        let rb = self.row_bytes();
        &self.data.as_slice()[r * rb..(r + 1) * rb]
    }

    /// Loads a 2-D GGUF tensor (`dims = [cols, rows]`) keeping Q8_0/Q4_0/Q4_1 blocks as they
    /// are in the file buffer and converting any other type to Q8_0.
    pub fn from_gguf(file: &GgufFile, info: &TensorInfo) -> Result<Self, GgufError> {
        let [cols, rows] = info.dims[..] else {
            return Err(GgufError::BadTensor {
                tensor: info.name.clone(),
                problem: format!("expected a matrix, got dimensions {:?}", info.dims),
            });
        };
        let (cols, rows) = (cols as usize, rows as usize);
        if cols % QK != 0 {
            return Err(GgufError::BadTensor {
                tensor: info.name.clone(),
                problem: format!("row length {cols} is not a multiple of {QK}"),
            });
        }
        let format = match info.ty {
            GgmlType::Q8_0 => Some(QFormat::Q8_0),
            GgmlType::Q4_0 => Some(QFormat::Q4_0),
            GgmlType::Q4_1 => Some(QFormat::Q4_1),
            _ => None,
        };
        let data = match format {
            Some(format) => {
                return Ok(Self {
                    format,
                    rows,
                    cols,
                    data: Bytes {
                        buf: file.buffer(),
                        start: info.start,
                        len: info.len,
                    },
                });
            }
            None => {
                let raw = file.tensor_bytes(info);
                let mut out = Vec::with_capacity(rows * cols / QK * Q8_0_BYTES);
                let mut row = vec![0f32; cols];
                let row_bytes = raw.len() / rows.max(1);
                for r in 0..rows {
                    dequantize(info.ty, &raw[r * row_bytes..(r + 1) * row_bytes], &mut row);
                    quantize_q8_0_row(&row, &mut out);
                }
                out
            }
        };
        let len = data.len();
        Ok(Self {
            format: QFormat::Q8_0,
            rows,
            cols,
            data: Bytes {
                buf: Arc::new(data),
                start: 0,
                len,
            },
        })
    }

    /// Stacks matrices with the same format and width into one (e.g. Q, K and V).
    pub fn concat_rows(parts: &[&QMatrix]) -> Option<QMatrix> {
        let first = parts.first()?;
        if parts
            .iter()
            .any(|p| p.format != first.format || p.cols != first.cols)
        {
            return None;
        }
        let mut data = Vec::with_capacity(parts.iter().map(|p| p.data.len).sum());
        for p in parts {
            data.extend_from_slice(p.data.as_slice());
        }
        let len = data.len();
        Some(QMatrix {
            format: first.format,
            rows: parts.iter().map(|p| p.rows).sum(),
            cols: first.cols,
            data: Bytes {
                buf: Arc::new(data),
                start: 0,
                len,
            },
        })
    }

    /// Dequantizes row `r` into `out` (`cols` values).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let ty = match self.format {
            QFormat::Q8_0 => GgmlType::Q8_0,
            QFormat::Q4_0 => GgmlType::Q4_0,
            QFormat::Q4_1 => GgmlType::Q4_1,
        };
        dequantize(ty, self.row(r), out);
    }

    /// `out[t, r] = Σ_c x[t, c] · W[r, c]` for `x: [tokens, cols]`, `out: [tokens, rows]`.
    /// Split over the current rayon pool: by tokens for long inputs (prefill), by rows
    /// otherwise. Several tokens are done in tiles of rows × tokens so a weight block is
    /// unpacked once per tile and both operands are reused from L1 (`block`); one token
    /// (decode) row by row with the single-pair kernel (measured faster than 2-row tiles).
    /// Each value is bit-identical to `simd::kernel(format)(row, token)`.
    pub fn matmul(&self, x: &[f32], tokens: usize, out: &mut [f32]) {
        debug_assert_eq!(x.len(), tokens * self.cols);
        debug_assert_eq!(out.len(), tokens * self.rows);
        let (rows, nb) = (self.rows, self.cols / QK);
        if rows == 0 || nb == 0 {
            out.fill(0.0);
            return;
        }
        let acts = quantize_activations(x, self.cols);
        let tokens = tokens.min(acts.len() / nb).min(out.len() / rows);
        let k = crate::simd::kernels(self.format);
        let threads = rayon::current_num_threads().max(1);
        if tokens >= 2 * TILE_TOKENS * threads {
            // Each task takes a run of tokens against all rows: the weights are read from
            // memory once per task, the task's activations stay in L2.
            let chunk = tokens
                .div_ceil(threads)
                .next_multiple_of(TILE_TOKENS)
                .min(TOKEN_CHUNK);
            out[..tokens * rows]
                .par_chunks_mut(chunk * rows)
                .enumerate()
                .for_each(|(c, dst)| {
                    let t0 = c * chunk;
                    let toks = t0..t0 + dst.len() / rows;
                    self.block(&k, &acts, nb, 0..rows, toks, |r, t, v| {
                        dst[(t - t0) * rows + r] = v;
                    });
                });
            return;
        }
        if tokens == 1 {
            // A few tasks per thread: enough to balance, few enough that rayon's per-task
            // cost stays small next to the rows' dots (the output head has 49k rows).
            let chunk = rows
                .div_ceil(threads * DECODE_TASKS_PER_THREAD)
                .max(DECODE_ROWS);
            out[..rows]
                .par_chunks_mut(chunk)
                .enumerate()
                .for_each(|(c, dst)| {
                    let r0 = c * chunk;
                    for (i, y) in dst.iter_mut().enumerate() {
                        *y = (k.dot)(self.row(r0 + i), &acts);
                    }
                });
            return;
        }
        // A few tokens: split rows, all tokens per task, written transposed.
        let mut transposed = vec![0f32; tokens * rows];
        transposed
            .par_chunks_mut(ROWS * tokens)
            .enumerate()
            .for_each(|(chunk, dst)| {
                let r0 = chunk * ROWS;
                let rs = r0..r0 + dst.len() / tokens;
                self.block(&k, &acts, nb, rs, 0..tokens, |r, t, v| {
                    dst[(r - r0) * tokens + t] = v;
                });
            });
        for (r, col) in transposed.chunks(tokens).enumerate() {
            for (t, v) in col.iter().enumerate() {
                out[t * rows + r] = *v;
            }
        }
    }

    /// Computes `put(r, t, W[r] · a[t])` for `r` in `rows`, `t` in `toks` (`a[t]` the `nb`
    /// activation blocks of token `t`): blocks of `ROW_BLOCK` rows, within one a tile of
    /// `TILE_TOKENS` tokens against `TILE_ROWS` rows at a time, so the block's weights and
    /// the tile's activations stay in L1; leftover rows and tokens one at a time.
    fn block(
        &self,
        k: &Kernels,
        acts: &[Q8Block],
        nb: usize,
        rows: Range<usize>,
        toks: Range<usize>,
        mut put: impl FnMut(usize, usize, f32),
    ) {
        let act = |t: usize| &acts[t * nb..(t + 1) * nb];
        let mut rb = rows.start;
        while rb < rows.end {
            let re = (rb + ROW_BLOCK).min(rows.end);
            let mut t = toks.start;
            while t + TILE_TOKENS <= toks.end {
                let a: [&[Q8Block]; TILE_TOKENS] = std::array::from_fn(|j| act(t + j));
                let mut r = rb;
                while r + TILE_ROWS <= re {
                    let y = (k.tile)(std::array::from_fn(|i| self.row(r + i)), a);
                    for (i, ys) in y.iter().enumerate() {
                        for (j, v) in ys.iter().enumerate() {
                            put(r + i, t + j, *v);
                        }
                    }
                    r += TILE_ROWS;
                }
                for r in r..re {
                    for (j, a) in a.iter().enumerate() {
                        put(r, t + j, (k.dot)(self.row(r), a));
                    }
                }
                t += TILE_TOKENS;
            }
            for t in t..toks.end {
                let a = [act(t)];
                let mut r = rb;
                while r + PAIR_ROWS <= re {
                    let y = (k.rows)(std::array::from_fn(|i| self.row(r + i)), a);
                    for (i, v) in y.iter().enumerate() {
                        put(r + i, t, v[0]);
                    }
                    r += PAIR_ROWS;
                }
                for r in r..re {
                    put(r, t, (k.dot)(self.row(r), a[0]));
                }
            }
            rb = re;
        }
    }
}

/// Rows per task when a matmul is split by rows.
const ROWS: usize = 16;
/// Fewest rows per task for one token (decode).
const DECODE_ROWS: usize = 16;
/// Tasks per thread for one token (decode).
const DECODE_TASKS_PER_THREAD: usize = 4;
/// Rows whose weights a task keeps hot (in L1) while it runs tiles of tokens over them.
const ROW_BLOCK: usize = 16;
/// Most tokens per task when a matmul is split by tokens (their activations stay in L2).
const TOKEN_CHUNK: usize = 64;

/// Quantizes `x: [tokens, cols]` into 8-bit blocks (`cols / 32` per token); long inputs
/// (prefill) split over the current rayon pool.
pub fn quantize_activations(x: &[f32], cols: usize) -> Vec<Q8Block> {
    debug_assert_eq!(cols % QK, 0);
    /// Values from which splitting pays for the rayon tasks.
    const PARALLEL: usize = 16 * 1024;
    if x.len() >= PARALLEL {
        x.par_chunks_exact(QK)
            .map(crate::simd::quantize_block)
            .collect()
    } else {
        x.chunks_exact(QK)
            .map(crate::simd::quantize_block)
            .collect()
    }
}

/// Appends one row quantized to Q8_0 blocks.
pub fn quantize_q8_0_row(row: &[f32], out: &mut Vec<u8>) {
    for chunk in row.chunks_exact(QK) {
        let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        out.extend(chunk.iter().map(|v| ((v * id).round() as i8) as u8));
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantizes `raw` (whole blocks of `ty`) into `out`.
pub fn dequantize(ty: GgmlType, raw: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::F32 => {
            for (o, b) in out.iter_mut().zip(raw.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, b) in out.iter_mut().zip(raw.chunks_exact(2)) {
                *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlType::Bf16 => {
            for (o, b) in out.iter_mut().zip(raw.chunks_exact(2)) {
                *o = bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlType::Q8_0 => {
            for (o, b) in out.chunks_exact_mut(QK).zip(raw.chunks_exact(Q8_0_BYTES)) {
                let d = f16_at(b, 0);
                for (v, q) in o.iter_mut().zip(&b[2..]) {
                    *v = d * f32::from(*q as i8);
                }
            }
        }
        GgmlType::Q4_0 => {
            for (o, b) in out.chunks_exact_mut(QK).zip(raw.chunks_exact(Q4_0_BYTES)) {
                let d = f16_at(b, 0);
                for (j, q) in b[2..].iter().enumerate() {
                    o[j] = d * (f32::from(q & 0x0F) - 8.0);
                    o[j + 16] = d * (f32::from(q >> 4) - 8.0);
                }
            }
        }
        GgmlType::Q4_1 => {
            for (o, b) in out.chunks_exact_mut(QK).zip(raw.chunks_exact(Q4_1_BYTES)) {
                let d = f16_at(b, 0);
                let m = f16_at(b, 2);
                for (j, q) in b[4..].iter().enumerate() {
                    o[j] = d * f32::from(q & 0x0F) + m;
                    o[j + 16] = d * f32::from(q >> 4) + m;
                }
            }
        }
        GgmlType::Q4K => {
            for (o, b) in out.chunks_exact_mut(256).zip(raw.chunks_exact(144)) {
                let d = f16_at(b, 0);
                let dmin = f16_at(b, 2);
                let scales = &b[4..16];
                let qs = &b[16..144];
                for (g, o64) in o.chunks_exact_mut(64).enumerate() {
                    let (sc1, m1) = scale_min_k4(2 * g, scales);
                    let (sc2, m2) = scale_min_k4(2 * g + 1, scales);
                    let (d1, m1) = (d * f32::from(sc1), dmin * f32::from(m1));
                    let (d2, m2) = (d * f32::from(sc2), dmin * f32::from(m2));
                    let q = &qs[32 * g..32 * g + 32];
                    for l in 0..32 {
                        o64[l] = d1 * f32::from(q[l] & 0x0F) - m1;
                        o64[l + 32] = d2 * f32::from(q[l] >> 4) - m2;
                    }
                }
            }
        }
        GgmlType::Q6K => {
            for (o, b) in out.chunks_exact_mut(256).zip(raw.chunks_exact(210)) {
                let d = f16_at(b, 208);
                for half_block in 0..2 {
                    let ql = &b[64 * half_block..64 * half_block + 64];
                    let qh = &b[128 + 32 * half_block..128 + 32 * half_block + 32];
                    let sc = &b[192 + 8 * half_block..192 + 8 * half_block + 8];
                    let y = &mut o[128 * half_block..128 * half_block + 128];
                    for l in 0..32 {
                        let is = l / 16;
                        let q1 = i32::from((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32;
                        let q2 = i32::from((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                        let q3 = i32::from((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                        let q4 = i32::from((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                        let s = |k: usize| d * f32::from(sc[k] as i8);
                        y[l] = s(is) * q1 as f32;
                        y[l + 32] = s(is + 2) * q2 as f32;
                        y[l + 64] = s(is + 4) * q3 as f32;
                        y[l + 96] = s(is + 6) * q4 as f32;
                    }
                }
            }
        }
    }
}

/// The 6-bit scale and min of sub-block `j` of a Q4_K block.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Dequantizes a whole GGUF tensor to f32.
pub fn dequantize_tensor(file: &GgufFile, info: &TensorInfo) -> Vec<f32> {
    let mut out = vec![0f32; info.elements() as usize];
    dequantize(info.ty, file.tensor_bytes(info), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q4_1_block(d: f32, m: f32, nibbles: &[u8; 32]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        b.extend_from_slice(&f16::from_f32(m).to_le_bytes());
        for j in 0..16 {
            b.push(nibbles[j] | (nibbles[j + 16] << 4));
        }
        b
    }

    fn matrix(format: QFormat, rows: usize, cols: usize, data: Vec<u8>) -> QMatrix {
        let len = data.len();
        QMatrix {
            format,
            rows,
            cols,
            data: Bytes {
                buf: Arc::new(data),
                start: 0,
                len,
            },
        }
    }

    /// `(Σ w·x, Σ |w·x|)` per output with dequantized weights and the given activations.
    fn reference(m: &QMatrix, x: &[f32], tokens: usize) -> Vec<(f32, f32)> {
        let mut w = vec![0f32; m.cols];
        let mut out = vec![(0f32, 0f32); tokens * m.rows];
        for r in 0..m.rows {
            m.dequantize_row(r, &mut w);
            for t in 0..tokens {
                let xs = &x[t * m.cols..(t + 1) * m.cols];
                out[t * m.rows + r] = w
                    .iter()
                    .zip(xs)
                    .fold((0.0, 0.0), |(s, a), (w, x)| (s + w * x, a + (w * x).abs()));
            }
        }
        out
    }

    fn check(format: QFormat, data: Vec<u8>, rows: usize, cols: usize) {
        let m = matrix(format, rows, cols, data);
        let dot = crate::simd::kernel(format);
        for tokens in [1, 3, 9, 21, 70] {
            let x: Vec<f32> = (0..tokens * cols)
                .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
                .collect();
            let mut out = vec![0f32; tokens * rows];
            m.matmul(&x, tokens, &mut out);
            // The kernels see the activations after 8-bit quantization: against those
            // they are exact up to float rounding, against f32 within quantization error.
            let xq: Vec<f32> = quantize_activations(&x, cols)
                .iter()
                .flat_map(|b| b.qs.map(|q| b.d * f32::from(q)))
                .collect();
            let acts = quantize_activations(&x, cols);
            for t in 0..tokens {
                for r in 0..rows {
                    let want = dot(m.row(r), &acts[t * cols / QK..(t + 1) * cols / QK]);
                    let got = out[t * rows + r];
                    assert_eq!(got.to_bits(), want.to_bits(), "{format:?} {tokens} tok");
                }
            }
            let exact = reference(&m, &xq, tokens);
            let approx = reference(&m, &x, tokens);
            for ((a, (e, mag)), (f, _)) in out.iter().zip(&exact).zip(&approx) {
                assert!(
                    (a - e).abs() <= 1e-4 * mag.max(1.0),
                    "{format:?}: {a} vs {e}"
                );
                assert!(
                    (a - f).abs() <= 1e-2 * mag.max(1.0),
                    "{format:?}: {a} vs f32 {f}"
                );
            }
        }
    }

    #[test]
    fn q4_1_matmul_matches_dequantized_reference() {
        let (rows, cols) = (40, 64);
        let mut data = Vec::new();
        for r in 0..rows {
            for b in 0..cols / QK {
                let nib: [u8; 32] = std::array::from_fn(|j| ((j * 7 + r + b) % 16) as u8);
                data.extend(q4_1_block(
                    0.1 + r as f32 * 0.01,
                    -0.5 + b as f32 * 0.1,
                    &nib,
                ));
            }
        }
        check(QFormat::Q4_1, data, rows, cols);
    }

    #[test]
    fn q8_0_and_q4_0_matmul_match_reference() {
        let (rows, cols) = (33, 96);
        let mut q8 = Vec::new();
        let mut q4 = Vec::new();
        for r in 0..rows {
            let row: Vec<f32> = (0..cols)
                .map(|c| (((r * 31 + c * 17) % 29) as f32 - 14.0) / 9.0)
                .collect();
            quantize_q8_0_row(&row, &mut q8);
            for b in 0..cols / QK {
                q4.extend_from_slice(&f16::from_f32(0.05 * (r + 1) as f32).to_le_bytes());
                q4.extend(
                    (0..16).map(|j| ((j + r + b) % 16) as u8 | ((((j * 3 + r) % 16) as u8) << 4)),
                );
            }
        }
        check(QFormat::Q8_0, q8, rows, cols);
        check(QFormat::Q4_0, q4, rows, cols);
    }

    #[test]
    fn q8_0_roundtrip_is_close() {
        let row: Vec<f32> = (0..64).map(|i| (i as f32 - 30.0) / 3.0).collect();
        let mut bytes = Vec::new();
        quantize_q8_0_row(&row, &mut bytes);
        let mut back = vec![0f32; 64];
        dequantize(GgmlType::Q8_0, &bytes, &mut back);
        for (a, b) in row.iter().zip(&back) {
            assert!((a - b).abs() < 0.06, "{a} vs {b}");
        }
    }
}
