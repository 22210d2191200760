//! The BERT encoder of all-MiniLM-L6-v2 in plain Rust on f32: weights from safetensors,
//! a packed forward pass (the batch's sequences laid end to end, no padding; attention stays
//! within each sequence), exact-erf GELU, LayerNorm, mean pooling and L2 normalisation.

use super::EmbedError;
use super::matmul::{View, matmul};
use rayon::prelude::*;
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

/// The fields of a Hugging Face BERT `config.json` the encoder reads.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f32,
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f32 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}

struct LayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

struct Linear {
    /// `[out, in]` row-major, as PyTorch stores it.
    weight: Vec<f32>,
    bias: Vec<f32>,
    input: usize,
    output: usize,
}

struct Layer {
    /// Query, key and value stacked: `[3 * hidden, hidden]`.
    qkv: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

/// The encoder's weights.
pub struct Bert {
    config: BertConfig,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
}

fn tensor(st: &SafeTensors<'_>, name: &str, shape: &[usize]) -> Result<Vec<f32>, EmbedError> {
    let view = st
        .tensor(name)
        .map_err(|_| EmbedError::Weights(format!("missing tensor {name}")))?;
    if view.dtype() != Dtype::F32 || view.shape() != shape {
        return Err(EmbedError::Weights(format!(
            "tensor {name}: expected F32 {shape:?}, found {:?} {:?}",
            view.dtype(),
            view.shape()
        )));
    }
    Ok(view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn linear(
    st: &SafeTensors<'_>,
    name: &str,
    input: usize,
    output: usize,
) -> Result<Linear, EmbedError> {
    Ok(Linear {
        weight: tensor(st, &format!("{name}.weight"), &[output, input])?,
        bias: tensor(st, &format!("{name}.bias"), &[output])?,
        input,
        output,
    })
}

fn layer_norm(st: &SafeTensors<'_>, name: &str, size: usize) -> Result<LayerNorm, EmbedError> {
    Ok(LayerNorm {
        weight: tensor(st, &format!("{name}.weight"), &[size])?,
        bias: tensor(st, &format!("{name}.bias"), &[size])?,
    })
}

impl Bert {
    /// Reads the weights from a safetensors buffer (names as `BertModel` saves them, with or
    /// without a `bert.` prefix).
    pub fn from_safetensors(config: BertConfig, bytes: &[u8]) -> Result<Self, EmbedError> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| EmbedError::Weights(format!("safetensors: {e}")))?;
        if config.hidden_act != "gelu" {
            return Err(EmbedError::Weights(format!(
                "unsupported activation {:?} (only exact gelu)",
                config.hidden_act
            )));
        }
        let h = config.hidden_size;
        if config.num_attention_heads == 0 || !h.is_multiple_of(config.num_attention_heads) {
            return Err(EmbedError::Weights(
                "hidden size not divisible by heads".into(),
            ));
        }
        let prefix = if st.tensor("bert.embeddings.word_embeddings.weight").is_ok() {
            "bert."
        } else {
            ""
        };
        let name = |n: &str| format!("{prefix}{n}");
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = name(&format!("encoder.layer.{i}"));
            let q = linear(&st, &format!("{p}.attention.self.query"), h, h)?;
            let k = linear(&st, &format!("{p}.attention.self.key"), h, h)?;
            let v = linear(&st, &format!("{p}.attention.self.value"), h, h)?;
            let qkv = Linear {
                weight: [q.weight, k.weight, v.weight].concat(),
                bias: [q.bias, k.bias, v.bias].concat(),
                input: h,
                output: 3 * h,
            };
            layers.push(Layer {
                qkv,
                attention_out: linear(&st, &format!("{p}.attention.output.dense"), h, h)?,
                attention_norm: layer_norm(&st, &format!("{p}.attention.output.LayerNorm"), h)?,
                intermediate: linear(
                    &st,
                    &format!("{p}.intermediate.dense"),
                    h,
                    config.intermediate_size,
                )?,
                output: linear(
                    &st,
                    &format!("{p}.output.dense"),
                    config.intermediate_size,
                    h,
                )?,
                output_norm: layer_norm(&st, &format!("{p}.output.LayerNorm"), h)?,
            });
        }
        Ok(Self {
            word: tensor(
                &st,
                &name("embeddings.word_embeddings.weight"),
                &[config.vocab_size, h],
            )?,
            position: tensor(
                &st,
                &name("embeddings.position_embeddings.weight"),
                &[config.max_position_embeddings, h],
            )?,
            token_type: tensor(
                &st,
                &name("embeddings.token_type_embeddings.weight"),
                &[config.type_vocab_size, h],
            )?,
            embedding_norm: layer_norm(&st, &name("embeddings.LayerNorm"), h)?,
            layers,
            config,
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// Encodes sequences of token ids (each already holding its special tokens and at most
    /// `max_position_embeddings` long) into L2-normalised mean-pooled embeddings. Runs on the
    /// current rayon pool with `threads`-way matmuls.
    pub fn embed(
        &self,
        sequences: &[Vec<u32>],
        threads: usize,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let h = self.config.hidden_size;
        let total: usize = sequences.iter().map(Vec::len).sum();
        // Embeddings: word + position + token type 0, then LayerNorm.
        let mut x = vec![0.0f32; total * h];
        let mut row = 0;
        for seq in sequences {
            if seq.len() > self.config.max_position_embeddings {
                return Err(EmbedError::Input(
                    "sequence longer than the position table".into(),
                ));
            }
            for (pos, &id) in seq.iter().enumerate() {
                let id = id as usize;
                if id >= self.config.vocab_size {
                    return Err(EmbedError::Input(format!(
                        "token id {id} out of vocabulary"
                    )));
                }
                let out = &mut x[row * h..(row + 1) * h];
                let w = &self.word[id * h..(id + 1) * h];
                let p = &self.position[pos * h..(pos + 1) * h];
                let t = &self.token_type[..h];
                for i in 0..h {
                    out[i] = w[i] + p[i] + t[i];
                }
                row += 1;
            }
        }
        let eps = self.config.layer_norm_eps;
        normalize_rows(&mut x, h, &self.embedding_norm, eps);
        let offsets: Vec<(usize, usize)> = sequences
            .iter()
            .scan(0, |start, s| {
                let here = *start;
                *start += s.len();
                Some((here, s.len()))
            })
            .collect();
        for layer in &self.layers {
            let qkv = self.project(&layer.qkv, &x, total, threads)?;
            let context = self.attention(&qkv, &offsets)?;
            let mut attended = self.project(&layer.attention_out, &context, total, threads)?;
            add_into(&mut attended, &x);
            normalize_rows(&mut attended, h, &layer.attention_norm, eps);
            let mut inner = self.project(&layer.intermediate, &attended, total, threads)?;
            inner
                .par_chunks_mut(4096)
                .for_each(|c| c.iter_mut().for_each(|v| *v = gelu(*v)));
            let mut out = self.project(&layer.output, &inner, total, threads)?;
            add_into(&mut out, &attended);
            normalize_rows(&mut out, h, &layer.output_norm, eps);
            x = out;
        }
        Ok(offsets
            .iter()
            .map(|&(start, len)| {
                let mut pooled = vec![0.0f32; h];
                for r in start..start + len {
                    for (p, v) in pooled.iter_mut().zip(&x[r * h..(r + 1) * h]) {
                        *p += v;
                    }
                }
                let count = (len as f32).max(1e-9);
                pooled.iter_mut().for_each(|p| *p /= count);
                let norm = pooled.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                pooled.iter_mut().for_each(|p| *p /= norm);
                pooled
            })
            .collect())
    }

    /// `input [rows, in] × weightᵀ + bias`.
    fn project(
        &self,
        linear: &Linear,
        input: &[f32],
        rows: usize,
        threads: usize,
    ) -> Result<Vec<f32>, EmbedError> {
        let mut out = Vec::with_capacity(rows * linear.output);
        for _ in 0..rows {
            out.extend_from_slice(&linear.bias);
        }
        let ok = matmul(
            View::rows(input, rows, linear.input, linear.input),
            View::transposed(&linear.weight, linear.input, linear.output, linear.input),
            &mut out,
            linear.output,
            true,
            threads,
        );
        if ok {
            Ok(out)
        } else {
            Err(EmbedError::Input("matmul shape mismatch".into()))
        }
    }

    /// Multi-head self-attention of each sequence over itself; `qkv` is `[tokens, 3 * hidden]`.
    fn attention(&self, qkv: &[f32], offsets: &[(usize, usize)]) -> Result<Vec<f32>, EmbedError> {
        let h = self.config.hidden_size;
        let heads = self.config.num_attention_heads;
        let d = h / heads;
        let stride = 3 * h;
        let scale = 1.0 / (d as f32).sqrt();
        let total: usize = offsets.iter().map(|o| o.1).sum();
        let jobs: Vec<(usize, usize, usize)> = offsets
            .iter()
            .flat_map(|&(start, len)| (0..heads).map(move |head| (start, len, head)))
            .collect();
        let parts: Vec<Option<Vec<f32>>> = jobs
            .par_iter()
            .map(|&(start, len, head)| {
                let base = &qkv[start * stride..(start + len) * stride];
                let q = &base[head * d..];
                let k = &base[h + head * d..];
                let v = &base[2 * h + head * d..];
                let mut scores = vec![0.0f32; len * len];
                if !matmul(
                    View::rows(q, len, d, stride),
                    View::transposed(k, d, len, stride),
                    &mut scores,
                    len,
                    false,
                    1,
                ) {
                    return None;
                }
                for row in scores.chunks_exact_mut(len) {
                    let max = row.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s * scale));
                    let mut sum = 0.0;
                    for s in row.iter_mut() {
                        *s = (*s * scale - max).exp();
                        sum += *s;
                    }
                    row.iter_mut().for_each(|s| *s /= sum);
                }
                let mut out = vec![0.0f32; len * d];
                matmul(
                    View::rows(&scores, len, len, len),
                    View::rows(v, len, d, stride),
                    &mut out,
                    d,
                    false,
                    1,
                )
                .then_some(out)
            })
            .collect();
        let mut context = vec![0.0f32; total * h];
        for (&(start, len, head), part) in jobs.iter().zip(parts) {
            let part = part.ok_or_else(|| EmbedError::Input("attention shape mismatch".into()))?;
            for r in 0..len {
                let dst = (start + r) * h + head * d;
                context[dst..dst + d].copy_from_slice(&part[r * d..(r + 1) * d]);
            }
        }
        Ok(context)
    }
}

fn add_into(dst: &mut [f32], src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
}

fn normalize_rows(x: &mut [f32], width: usize, norm: &LayerNorm, eps: f32) {
    x.par_chunks_mut(width * 64).for_each(|block| {
        for row in block.chunks_exact_mut(width) {
            let mean = row.iter().sum::<f32>() / width as f32;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / width as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(&norm.weight).zip(&norm.bias) {
                *v = (*v - mean) * inv * w + b;
            }
        }
    });
}

/// GELU with the exact error function (PyTorch's default `gelu`).
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
}
