//! `router.bin` layout, little-endian: magic `SYRM`, u32 version, u32 buckets,
//! u32 dense count, f32 bias, f32 weights[buckets + dense], f32 dense means[dense],
//! f32 dense scales[dense], u32 quantile count, f32 quantiles[count].

use super::{DENSE_FEATURES, RouterModel, RouterModelError};

const MAGIC: &[u8; 4] = b"SYRM";
const VERSION: u32 = 1;
/// Refuses absurd sizes before allocating (4 M buckets is far beyond any useful model).
const MAX_BUCKETS: u32 = 1 << 22;

pub(super) fn encode(model: &RouterModel) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + 4 * (model.weights.len() + 2 * DENSE_FEATURES + 101));
    out.extend_from_slice(MAGIC);
    for value in [VERSION, model.buckets, DENSE_FEATURES as u32] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out.extend_from_slice(&model.bias.to_le_bytes());
    for list in [&model.weights, &model.dense_mean, &model.dense_scale] {
        for value in list.iter() {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
    out.extend_from_slice(&(model.score_quantiles.len() as u32).to_le_bytes());
    for value in &model.score_quantiles {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out
}

pub(super) fn decode(bytes: &[u8]) -> Result<RouterModel, RouterModelError> {
    let mut reader = Reader { bytes, at: 0 };
    if reader.take(4)? != MAGIC {
        return Err(RouterModelError::Malformed("not a router model (magic)"));
    }
    if reader.u32()? != VERSION {
        return Err(RouterModelError::Malformed("unsupported version"));
    }
    let buckets = reader.u32()?;
    if buckets > MAX_BUCKETS {
        return Err(RouterModelError::Malformed("too many buckets"));
    }
    if reader.u32()? as usize != DENSE_FEATURES {
        return Err(RouterModelError::Malformed("dense feature count differs"));
    }
    let bias = reader.f32()?;
    let weights = reader.f32s(buckets as usize + DENSE_FEATURES)?;
    let dense_mean = reader.f32s(DENSE_FEATURES)?;
    let dense_scale = reader.f32s(DENSE_FEATURES)?;
    if dense_scale.iter().any(|s| !s.is_finite() || *s <= 0.0) {
        return Err(RouterModelError::Malformed("dense scale must be positive"));
    }
    let quantile_count = reader.u32()? as usize;
    if quantile_count > 10_001 {
        return Err(RouterModelError::Malformed("too many quantiles"));
    }
    let score_quantiles = reader.f32s(quantile_count)?;
    if reader.at != bytes.len() {
        return Err(RouterModelError::Malformed("trailing bytes"));
    }
    Ok(RouterModel {
        buckets,
        bias,
        weights,
        dense_mean,
        dense_scale,
        score_quantiles,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RouterModelError> {
        let end = self
            .at
            .checked_add(n)
            .ok_or(RouterModelError::Malformed("size overflow"))?;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or(RouterModelError::Malformed("truncated"))?;
        self.at = end;
        Ok(slice)
    }

    fn word(&mut self) -> Result<[u8; 4], RouterModelError> {
        let mut word = [0u8; 4];
        word.copy_from_slice(self.take(4)?);
        Ok(word)
    }

    fn u32(&mut self) -> Result<u32, RouterModelError> {
        Ok(u32::from_le_bytes(self.word()?))
    }

    fn f32(&mut self) -> Result<f32, RouterModelError> {
        Ok(f32::from_le_bytes(self.word()?))
    }

    fn f32s(&mut self, n: usize) -> Result<Vec<f32>, RouterModelError> {
        let raw = self.take(
            n.checked_mul(4)
                .ok_or(RouterModelError::Malformed("size overflow"))?,
        )?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}
