//! The llama architecture (RMSNorm, RoPE in the GGUF/llama.cpp layout, grouped-query
//! attention with a KV cache, SwiGLU MLP, tied or separate output head). On CPU devices the
//! weights stay in their GGUF 4/8-bit blocks and the forward pass is `host` (plain Rust with
//! llama.cpp's numerics, the quantized kernels of `quant`); on GPU devices it runs on burn
//! tensors with the projections as burn quantized tensors (8-bit, block 32).
//!
//! Shapes (one sequence, `T` new tokens, `L` cached + new positions): hidden `[T, D]`,
//! queries `[T, H, hd]`, keys/values `[T, Hkv, hd]`, cache `[Hkv, capacity, hd]`,
//! scores `[Hkv, g·T, L]` with `g = H / Hkv` query heads per KV head.

use crate::gguf::{GgufError, GgufFile};
use crate::host::{HostLayer, HostWeights, LayerKv, rope_table};
use crate::quant::{QMatrix, dequantize_tensor};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Bool, Device, Tensor, TensorData};

/// Positions the KV cache grows by.
const CACHE_STEP: usize = 256;

#[derive(Debug, Clone)]
pub struct LlamaConfig {
    pub n_layers: usize,
    pub dim: usize,
    pub ffn_dim: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub rope_base: f32,
    pub rms_eps: f32,
    pub context_length: usize,
    pub vocab_size: usize,
}

impl LlamaConfig {
    pub fn from_gguf(file: &GgufFile) -> Result<Self, GgufError> {
        let arch = file.str("general.architecture")?;
        if arch != "llama" {
            return Err(GgufError::Metadata {
                key: "general.architecture".into(),
                problem: format!("'{arch}' is not supported (only 'llama' models)"),
            });
        }
        let k = |s: &str| format!("llama.{s}");
        let usize_of = |key: &str| -> Result<usize, GgufError> {
            let v = file.u64(&k(key))?;
            usize::try_from(v)
                .ok()
                .filter(|&v| v > 0 && v < 1 << 24)
                .ok_or_else(|| GgufError::Metadata {
                    key: k(key),
                    problem: format!("implausible value {v}"),
                })
        };
        let dim = usize_of("embedding_length")?;
        let n_heads = usize_of("attention.head_count")?;
        let n_kv_heads = match file.opt_u64(&k("attention.head_count_kv"))? {
            Some(_) => usize_of("attention.head_count_kv")?,
            None => n_heads,
        };
        if dim % n_heads != 0 || n_heads % n_kv_heads != 0 {
            return Err(GgufError::Metadata {
                key: k("attention.head_count"),
                problem: format!(
                    "{n_heads} heads / {n_kv_heads} KV heads do not divide width {dim}"
                ),
            });
        }
        let head_dim = dim / n_heads;
        let tokens = file.str_array("tokenizer.ggml.tokens")?.len();
        Ok(Self {
            n_layers: usize_of("block_count")?,
            dim,
            ffn_dim: usize_of("feed_forward_length")?,
            n_heads,
            n_kv_heads,
            head_dim,
            rope_base: file.opt_f64(&k("rope.freq_base"))?.unwrap_or(10_000.0) as f32,
            rms_eps: file
                .opt_f64(&k("attention.layer_norm_rms_epsilon"))?
                .unwrap_or(1e-5) as f32,
            context_length: usize_of("context_length")?,
            vocab_size: tokens,
        })
    }
}

/// How the projections run on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compute {
    /// Weights in GGUF blocks on the host, quantized CPU kernels.
    HostQuantized,
    /// Weights as burn 8-bit quantized tensors on the device: native `i8` values, or
    /// (`packed`) four to a `u32` on devices without `i8` (WGSL, lavapipe).
    DeviceQuantized { packed: bool },
}

/// A projection `y = x · Wᵀ` on the device, `Wᵀ: [in, out]` quantized.
#[derive(Debug, Clone)]
struct DeviceLinear(Tensor<2>);

impl DeviceLinear {
    fn new(m: &QMatrix, device: &Device, packed: bool) -> Self {
        let (rows, cols) = (m.rows(), m.cols());
        let mut w = vec![0f32; rows * cols];
        for (r, out) in w.chunks_mut(cols).enumerate() {
            m.dequantize_row(r, out);
        }
        let t = Tensor::<2>::from_data(TensorData::new(w, [rows, cols]), device);
        DeviceLinear(t.transpose().quantize_dynamic(&device_scheme(packed)))
    }

    /// `x: [T, in]` → `[T, out]`.
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.0.clone())
    }
}

/// 8-bit symmetric, one f32 scale per 32 values along the input dimension; stored as `i8`
/// or, `packed`, four values per `u32`.
pub(crate) fn device_scheme(packed: bool) -> burn::tensor::quantization::QuantScheme {
    use burn::tensor::quantization::{QuantScheme, QuantStore, QuantValue, ScaleDtype};
    QuantScheme::default()
        .with_value(QuantValue::Q8F)
        .with_store(if packed {
            QuantStore::PackedU32(0)
        } else {
            QuantStore::Native
        })
        .per_block([32], ScaleDtype::F32)
}

#[derive(Debug, Clone)]
struct Layer {
    attn_norm: Tensor<1>,
    /// Q, K and V stacked: `[H·hd + 2·Hkv·hd, D]`.
    qkv: DeviceLinear,
    out: DeviceLinear,
    ffn_norm: Tensor<1>,
    /// Gate and up stacked: `[2·F, D]`.
    gate_up: DeviceLinear,
    down: DeviceLinear,
}

/// The weights of the burn (GPU) path but the embeddings.
#[derive(Debug, Clone)]
struct DeviceWeights {
    layers: Vec<Layer>,
    norm: Tensor<1>,
    output: DeviceLinear,
    /// RoPE angle tables `[context, hd/2]`.
    cos: Tensor<2>,
    sin: Tensor<2>,
}

impl DeviceWeights {
    /// The host weights on `device`; `half` is the rotated pairs per head.
    fn new(host: HostWeights, half: usize, device: &Device, packed: bool) -> Self {
        let vector = |v: Vec<f32>| {
            let len = v.len();
            Tensor::<1>::from_data(TensorData::new(v, [len]), device)
        };
        let ctx = host.rope.len() / half.max(1);
        let layers = host
            .layers
            .into_iter()
            .map(|l| Layer {
                attn_norm: vector(l.attn_norm),
                qkv: DeviceLinear::new(&l.qkv, device, packed),
                out: DeviceLinear::new(&l.out, device, packed),
                ffn_norm: vector(l.ffn_norm),
                gate_up: DeviceLinear::new(&l.gate_up, device, packed),
                down: DeviceLinear::new(&l.down, device, packed),
            })
            .collect();
        let (cos, sin): (Vec<f32>, Vec<f32>) = host.rope.into_iter().unzip();
        Self {
            layers,
            norm: vector(host.norm),
            output: DeviceLinear::new(&host.output, device, packed),
            cos: Tensor::from_data(TensorData::new(cos, [ctx, half]), device),
            sin: Tensor::from_data(TensorData::new(sin, [ctx, half]), device),
        }
    }
}

#[derive(Debug, Clone)]
enum Weights {
    Host(HostWeights),
    Device(Box<DeviceWeights>),
}

/// Keys and values of one layer, `[Hkv, capacity, hd]`, positions `0..len` filled.
#[derive(Debug, Clone)]
struct LayerCache {
    k: Tensor<3>,
    v: Tensor<3>,
}

/// The KV cache of one sequence (device tensors or host F16 buffers, per the model's path).
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    host: Vec<LayerKv>,
    len: usize,
}

impl KvCache {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[derive(Debug, Clone)]
pub struct Llama {
    pub config: LlamaConfig,
    device: Device,
    /// Token embeddings `[V, D]`, kept quantized; rows are dequantized on lookup.
    embeddings: QMatrix,
    weights: Weights,
}

fn vector(file: &GgufFile, name: &str, len: usize) -> Result<Vec<f32>, GgufError> {
    let info = file.tensor(name)?;
    if info.elements() != len as u64 || info.dims.len() != 1 {
        return Err(GgufError::BadTensor {
            tensor: name.into(),
            problem: format!("expected [{len}], got {:?}", info.dims),
        });
    }
    Ok(dequantize_tensor(file, info))
}

fn matrix(file: &GgufFile, name: &str, rows: usize, cols: usize) -> Result<QMatrix, GgufError> {
    let info = file.tensor(name)?;
    if info.dims != [cols as u64, rows as u64] {
        return Err(GgufError::BadTensor {
            tensor: name.into(),
            problem: format!("expected dimensions [{cols}, {rows}], got {:?}", info.dims),
        });
    }
    QMatrix::from_gguf(file, info)
}

fn stack(parts: &[&QMatrix], name: &str) -> Result<QMatrix, GgufError> {
    QMatrix::concat_rows(parts).ok_or_else(|| GgufError::BadTensor {
        tensor: name.into(),
        problem: "projections of one layer mix quantization formats".into(),
    })
}

impl Llama {
    /// Loads the weights; `context` caps the RoPE tables and the usable context.
    pub fn load(
        file: &GgufFile,
        device: &Device,
        compute: Compute,
        context: usize,
    ) -> Result<Self, GgufError> {
        let mut config = LlamaConfig::from_gguf(file)?;
        config.context_length = context.min(config.context_length).max(1);
        let c = &config;
        let (d, hd) = (c.dim, c.head_dim);
        let embeddings = matrix(file, "token_embd.weight", c.vocab_size, d)?;
        let mut layers = Vec::with_capacity(c.n_layers);
        for i in 0..c.n_layers {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            let q = matrix(file, &n("attn_q"), c.n_heads * hd, d)?;
            let k = matrix(file, &n("attn_k"), c.n_kv_heads * hd, d)?;
            let v = matrix(file, &n("attn_v"), c.n_kv_heads * hd, d)?;
            let gate = matrix(file, &n("ffn_gate"), c.ffn_dim, d)?;
            let up = matrix(file, &n("ffn_up"), c.ffn_dim, d)?;
            layers.push(HostLayer {
                attn_norm: vector(file, &n("attn_norm"), d)?,
                qkv: stack(&[&q, &k, &v], &n("attn_q"))?,
                out: matrix(file, &n("attn_output"), d, c.n_heads * hd)?,
                ffn_norm: vector(file, &n("ffn_norm"), d)?,
                gate_up: stack(&[&gate, &up], &n("ffn_gate"))?,
                down: matrix(file, &n("ffn_down"), d, c.ffn_dim)?,
            });
        }
        let output = if file.tensors.contains_key("output.weight") {
            matrix(file, "output.weight", c.vocab_size, d)?
        } else {
            embeddings.clone()
        };
        // llama.cpp's "normal" RoPE: rotate adjacent pairs (x[2i], x[2i+1]) by pos·θ_i,
        // θ_i = base^(−2i/hd) (GGUF stores Q/K rows permuted for this layout), optionally
        // divided by per-frequency factors (`rope_freqs.weight`, Llama 3.1 scaling).
        let half = hd / 2;
        let factors = match file.tensors.get("rope_freqs.weight") {
            Some(info) if info.elements() == half as u64 => dequantize_tensor(file, info),
            _ => vec![1.0; half],
        };
        let host = HostWeights {
            layers,
            norm: vector(file, "output_norm.weight", d)?,
            output,
            rope: rope_table(c, &factors),
        };
        let weights = match compute {
            Compute::HostQuantized => Weights::Host(host),
            Compute::DeviceQuantized { packed } => {
                Weights::Device(Box::new(DeviceWeights::new(host, hd / 2, device, packed)))
            }
        };
        Ok(Self {
            config,
            device: device.clone(),
            embeddings,
            weights,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// An empty cache for one sequence.
    pub fn new_cache(&self) -> KvCache {
        KvCache::default()
    }

    /// Runs `tokens` at positions `cache.len()..`; returns the logits of the last one (none
    /// for no tokens). The caller checks that the positions fit in the context.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Vec<f32> {
        if tokens.is_empty() {
            return Vec::new();
        }
        let c = &self.config;
        let d = c.dim;
        let mut emb = vec![0f32; tokens.len() * d];
        for (row, &id) in emb.chunks_mut(d).zip(tokens) {
            self.embeddings
                .dequantize_row((id as usize).min(c.vocab_size - 1), row);
        }
        let logits = match &self.weights {
            Weights::Host(w) => w.forward(c, emb, &mut cache.host, cache.len),
            Weights::Device(w) => self.device_forward(w, emb, cache),
        };
        cache.len += tokens.len();
        logits
    }

    fn rms_norm(&self, x: Tensor<2>, weight: &Tensor<1>) -> Tensor<2> {
        let scale = (x.clone().square().mean_dim(1) + self.config.rms_eps)
            .sqrt()
            .recip();
        x * scale * weight.clone().unsqueeze::<2>()
    }

    /// Rotates `x: [T, heads, hd]` for positions `start..start+T`.
    fn rope(&self, w: &DeviceWeights, x: Tensor<3>, start: usize) -> Tensor<3> {
        let [t, heads, hd] = x.dims();
        let half = hd / 2;
        let cos = w.cos.clone().narrow(0, start, t).reshape([t, 1, half, 1]);
        let sin = w.sin.clone().narrow(0, start, t).reshape([t, 1, half, 1]);
        let pairs = x.reshape([t, heads, half, 2]);
        let x0 = pairs.clone().narrow(3, 0, 1);
        let x1 = pairs.narrow(3, 1, 1);
        let r0 = x0.clone() * cos.clone() - x1.clone() * sin.clone();
        let r1 = x0 * sin + x1 * cos;
        Tensor::cat(vec![r0, r1], 3).reshape([t, heads, hd])
    }

    /// Appends `k, v: [Hkv, T, hd]` to a layer's cache; returns the filled `[Hkv, L, hd]`.
    fn append(
        &self,
        cache: &mut KvCache,
        layer: usize,
        k: Tensor<3>,
        v: Tensor<3>,
    ) -> (Tensor<3>, Tensor<3>) {
        let [hkv, t, hd] = k.dims();
        let (start, end) = (cache.len, cache.len + t);
        if cache.layers.len() <= layer {
            let cap = end.div_ceil(CACHE_STEP) * CACHE_STEP;
            let zeros = || Tensor::<3>::zeros([hkv, cap, hd], &self.device);
            cache.layers.push(LayerCache {
                k: zeros(),
                v: zeros(),
            });
        }
        let entry = &mut cache.layers[layer];
        let cap = entry.k.dims()[1];
        if end > cap {
            let grown = end.div_ceil(CACHE_STEP) * CACHE_STEP;
            let grow = |old: Tensor<3>| {
                Tensor::cat(
                    vec![
                        old,
                        Tensor::<3>::zeros([hkv, grown - cap, hd], &self.device),
                    ],
                    1,
                )
            };
            entry.k = grow(entry.k.clone());
            entry.v = grow(entry.v.clone());
        }
        entry.k = entry.k.clone().slice_assign([0..hkv, start..end, 0..hd], k);
        entry.v = entry.v.clone().slice_assign([0..hkv, start..end, 0..hd], v);
        (
            entry.k.clone().narrow(1, 0, end),
            entry.v.clone().narrow(1, 0, end),
        )
    }

    /// The burn forward pass of `emb: [T, D]`; does not advance `cache.len`.
    fn device_forward(&self, w: &DeviceWeights, emb: Vec<f32>, cache: &mut KvCache) -> Vec<f32> {
        let c = &self.config;
        let (d, hd) = (c.dim, c.head_dim);
        let t = emb.len() / d;
        let (h, hkv) = (c.n_heads, c.n_kv_heads);
        let g = h / hkv;
        let start = cache.len;
        let total = start + t;
        let mut x = Tensor::<2>::from_data(TensorData::new(emb, [t, d]), &self.device);

        // Causal mask `[g·T, L]`: row j·T + i is query token i (position start + i).
        let mask = (t > 1).then(|| {
            let mut m = Vec::with_capacity(g * t * total);
            for _ in 0..g {
                for i in 0..t {
                    m.extend((0..total).map(|p| p > start + i));
                }
            }
            Tensor::<2, Bool>::from_data(TensorData::new(m, [g * t, total]), &self.device)
        });
        let scale = 1.0 / (hd as f32).sqrt();

        for (li, layer) in w.layers.iter().enumerate() {
            let hn = self.rms_norm(x.clone(), &layer.attn_norm);
            let qkv = layer.qkv.forward(hn);
            let q = qkv.clone().narrow(1, 0, h * hd).reshape([t, h, hd]);
            let k = qkv
                .clone()
                .narrow(1, h * hd, hkv * hd)
                .reshape([t, hkv, hd]);
            let v = qkv
                .narrow(1, (h + hkv) * hd, hkv * hd)
                .reshape([t, hkv, hd]);
            let q = self.rope(w, q, start);
            let k = self.rope(w, k, start);
            let (keys, values) = self.append(cache, li, k.swap_dims(0, 1), v.swap_dims(0, 1));
            // [T, H, hd] → [H, T, hd] → [Hkv, g·T, hd]: query head kv·g + j shares KV head kv.
            let q = q.swap_dims(0, 1).reshape([hkv, g * t, hd]);
            let mut scores = q.matmul(keys.swap_dims(1, 2)) * scale;
            if let Some(mask) = &mask {
                scores = scores.mask_fill(
                    mask.clone().unsqueeze::<3>().expand([hkv, g * t, total]),
                    f32::NEG_INFINITY,
                );
            }
            let attn = softmax(scores, 2).matmul(values);
            let attn = attn
                .reshape([h, t, hd])
                .swap_dims(0, 1)
                .reshape([t, h * hd]);
            x = x + layer.out.forward(attn);

            let hn = self.rms_norm(x.clone(), &layer.ffn_norm);
            let gu = layer.gate_up.forward(hn);
            let f = c.ffn_dim;
            let act = silu(gu.clone().narrow(1, 0, f)) * gu.narrow(1, f, f);
            x = x + layer.down.forward(act);
        }
        let last = self.rms_norm(x.narrow(0, t - 1, 1), &w.norm);
        let logits = w.output.forward(last);
        let data = logits.into_data();
        match data.as_slice::<f32>() {
            Ok(v) => v.to_vec(),
            Err(_) => data.iter::<f32>().collect(),
        }
    }
}
