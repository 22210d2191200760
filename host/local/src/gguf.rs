//! GGUF container reader: header, metadata key/values and tensor table, with errors that name
//! the field or tensor at fault. Tensor bytes stay in the one buffer the file was read into.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// `GGUF` in little-endian byte order.
const MAGIC: u32 = 0x4655_4747;
const DEFAULT_ALIGNMENT: u64 = 32;
/// Upper bounds that keep a corrupt header from asking for absurd allocations.
const MAX_TENSORS: u64 = 1 << 20;
const MAX_KV: u64 = 1 << 20;
const MAX_DIMS: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("not a GGUF file: bad magic {found:#010x} (expected \"GGUF\")")]
    BadMagic { found: u32 },
    #[error("unsupported GGUF version {0} (supported: 2, 3)")]
    UnsupportedVersion(u32),
    #[error("truncated or corrupt GGUF: {context} (offset {offset}, file size {size})")]
    Truncated {
        context: String,
        offset: usize,
        size: usize,
    },
    #[error("corrupt GGUF: {0}")]
    Corrupt(String),
    #[error("tensor '{tensor}' has unsupported type {type_name} (id {type_id})")]
    UnsupportedTensorType {
        tensor: String,
        type_id: u32,
        type_name: &'static str,
    },
    #[error(
        "tensor '{tensor}': data [{start}, {end}) lies beyond the end of the file ({size} bytes)"
    )]
    TensorOutOfBounds {
        tensor: String,
        start: u64,
        end: u64,
        size: usize,
    },
    #[error("metadata key '{key}': {problem}")]
    Metadata { key: String, problem: String },
    #[error("tensor '{0}' is missing")]
    MissingTensor(String),
    #[error("tensor '{tensor}': {problem}")]
    BadTensor { tensor: String, problem: String },
}

/// ggml tensor element types (the subset this crate can compute with or convert).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    Bf16,
    Q4_0,
    Q4_1,
    Q8_0,
    Q4K,
    Q6K,
}

impl GgmlType {
    fn from_id(id: u32) -> Result<Self, &'static str> {
        Ok(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            12 => Self::Q4K,
            14 => Self::Q6K,
            30 => Self::Bf16,
            6 => return Err("Q5_0"),
            7 => return Err("Q5_1"),
            9 => return Err("Q8_1"),
            10 => return Err("Q2_K"),
            11 => return Err("Q3_K"),
            13 => return Err("Q5_K"),
            15 => return Err("Q8_K"),
            16..=23 | 29 => return Err("IQ*"),
            24 => return Err("I8"),
            25 => return Err("I16"),
            26 => return Err("I32"),
            27 => return Err("I64"),
            28 => return Err("F64"),
            _ => return Err("unknown"),
        })
    }

    /// (elements per block, bytes per block).
    pub fn block(self) -> (usize, usize) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::Bf16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q8_0 => (32, 34),
            Self::Q4K => (256, 144),
            Self::Q6K => (256, 210),
        }
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U64(v) => Some(v),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
}

/// One entry of the tensor table. `dims[0]` is the fastest-varying (row length).
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Absolute byte range in the file buffer.
    pub start: usize,
    pub len: usize,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file; the whole file is held in one shared buffer.
#[derive(Debug)]
pub struct GgufFile {
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: BTreeMap<String, TensorInfo>,
    data: Arc<Vec<u8>>,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, context: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(GgufError::Truncated {
                context: context(),
                offset: self.pos,
                size: self.buf.len(),
            }),
        }
    }
    fn array<const N: usize>(
        &mut self,
        context: &dyn Fn() -> String,
    ) -> Result<[u8; N], GgufError> {
        let s = self.take(N, context)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }
    fn u32(&mut self, context: &dyn Fn() -> String) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(context)?))
    }
    fn u64(&mut self, context: &dyn Fn() -> String) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(context)?))
    }
    fn string(&mut self, context: &dyn Fn() -> String) -> Result<String, GgufError> {
        let len = self.u64(context)?;
        let len = usize::try_from(len)
            .map_err(|_| GgufError::Corrupt(format!("{}: length {len}", context())))?;
        let bytes = self.take(len, context)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
    fn value(
        &mut self,
        ty: u32,
        context: &dyn Fn() -> String,
        depth: u32,
    ) -> Result<Value, GgufError> {
        Ok(match ty {
            0 => Value::U64(u64::from(self.array::<1>(context)?[0])),
            1 => Value::I64(i64::from(i8::from_le_bytes(self.array(context)?))),
            2 => Value::U64(u64::from(u16::from_le_bytes(self.array(context)?))),
            3 => Value::I64(i64::from(i16::from_le_bytes(self.array(context)?))),
            4 => Value::U64(u64::from(self.u32(context)?)),
            5 => Value::I64(i64::from(i32::from_le_bytes(self.array(context)?))),
            6 => Value::F64(f64::from(f32::from_le_bytes(self.array(context)?))),
            7 => Value::Bool(self.array::<1>(context)?[0] != 0),
            8 => Value::Str(self.string(context)?),
            9 if depth == 0 => {
                let inner = self.u32(context)?;
                let count = self.u64(context)?;
                // Every element takes at least one byte: a count beyond the rest of the
                // file is corrupt, and checking it first bounds the allocation.
                if count > (self.buf.len() - self.pos) as u64 {
                    return Err(GgufError::Truncated {
                        context: format!("{}: array of {count} elements", context()),
                        offset: self.pos,
                        size: self.buf.len(),
                    });
                }
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(inner, context, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(context)?),
            11 => Value::I64(i64::from_le_bytes(self.array(context)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(context)?)),
            other => {
                return Err(GgufError::Corrupt(format!(
                    "{}: unknown value type {other}",
                    context()
                )));
            }
        })
    }
}

impl GgufFile {
    /// Reads and parses a GGUF file.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let data = std::fs::read(path).map_err(|source| GgufError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(data)
    }

    /// Parses a GGUF file held in memory.
    pub fn parse(data: Vec<u8>) -> Result<Self, GgufError> {
        let mut c = Cursor { buf: &data, pos: 0 };
        let magic = c.u32(&|| "header magic".to_string())?;
        if magic != MAGIC {
            return Err(GgufError::BadMagic { found: magic });
        }
        let version = c.u32(&|| "header version".to_string())?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let n_tensors = c.u64(&|| "header tensor count".to_string())?;
        let n_kv = c.u64(&|| "header metadata count".to_string())?;
        if n_tensors > MAX_TENSORS || n_kv > MAX_KV {
            return Err(GgufError::Corrupt(format!(
                "header claims {n_tensors} tensors and {n_kv} metadata entries"
            )));
        }
        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            let key = c.string(&|| format!("metadata entry {i} key"))?;
            let ctx = || format!("metadata '{key}'");
            let ty = c.u32(&ctx)?;
            let value = c.value(ty, &ctx, 0)?;
            metadata.insert(key, value);
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a,
                _ => {
                    return Err(GgufError::Metadata {
                        key: "general.alignment".into(),
                        problem: format!("must be a power of two, got {v:?}"),
                    });
                }
            },
        };
        let mut raw = Vec::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let name = c.string(&|| format!("tensor {i} name"))?;
            let ctx = || format!("tensor '{name}' info");
            let n_dims = c.u32(&ctx)?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(GgufError::BadTensor {
                    tensor: name,
                    problem: format!("{n_dims} dimensions (1 to {MAX_DIMS} supported)"),
                });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.u64(&ctx)?);
            }
            let type_id = c.u32(&ctx)?;
            let offset = c.u64(&ctx)?;
            raw.push((name, dims, type_id, offset));
        }
        let data_start = (c.pos as u64).div_ceil(alignment) * alignment;
        let mut tensors = BTreeMap::new();
        for (name, dims, type_id, offset) in raw {
            let ty = GgmlType::from_id(type_id).map_err(|type_name| {
                GgufError::UnsupportedTensorType {
                    tensor: name.clone(),
                    type_id,
                    type_name,
                }
            })?;
            let elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| GgufError::BadTensor {
                    tensor: name.clone(),
                    problem: format!("dimensions {dims:?} overflow"),
                })?;
            let (block_elems, block_bytes) = ty.block();
            if dims[0] % block_elems as u64 != 0 {
                return Err(GgufError::BadTensor {
                    tensor: name,
                    problem: format!(
                        "row length {} is not a multiple of the {ty:?} block size {block_elems}",
                        dims[0]
                    ),
                });
            }
            let len = elements / block_elems as u64 * block_bytes as u64;
            let start = data_start.checked_add(offset);
            let end = start.and_then(|s| s.checked_add(len));
            let (Some(start), Some(end)) = (start, end) else {
                return Err(GgufError::Corrupt(format!(
                    "tensor '{name}': offset {offset} overflows"
                )));
            };
            if end > data.len() as u64 {
                return Err(GgufError::TensorOutOfBounds {
                    tensor: name,
                    start,
                    end,
                    size: data.len(),
                });
            }
            let info = TensorInfo {
                name: name.clone(),
                dims,
                ty,
                start: start as usize,
                len: len as usize,
            };
            tensors.insert(name, info);
        }
        Ok(Self {
            version,
            metadata,
            tensors,
            data: Arc::new(data),
        })
    }

    /// The whole file buffer, shared with tensors that keep their bytes in place.
    pub fn buffer(&self) -> Arc<Vec<u8>> {
        Arc::clone(&self.data)
    }

    /// The raw bytes of a tensor.
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &[u8] {
        &self.data[info.start..info.start + info.len]
    }

    pub fn tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.tensors
            .get(name)
            .ok_or_else(|| GgufError::MissingTensor(name.to_string()))
    }

    fn get(&self, key: &str) -> Result<&Value, GgufError> {
        self.metadata.get(key).ok_or_else(|| GgufError::Metadata {
            key: key.into(),
            problem: "missing".into(),
        })
    }

    fn type_error(key: &str, expected: &str, v: &Value) -> GgufError {
        let shown = match v {
            Value::Array(items) => format!("an array of {} items", items.len()),
            other => format!("{other:?}"),
        };
        GgufError::Metadata {
            key: key.into(),
            problem: format!("expected {expected}, found {shown}"),
        }
    }

    pub fn u64(&self, key: &str) -> Result<u64, GgufError> {
        let v = self.get(key)?;
        v.as_u64()
            .ok_or_else(|| Self::type_error(key, "an unsigned integer", v))
    }

    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        if self.metadata.contains_key(key) {
            self.u64(key).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn f64(&self, key: &str) -> Result<f64, GgufError> {
        match self.get(key)? {
            Value::F64(v) => Ok(*v),
            v => Err(Self::type_error(key, "a float", v)),
        }
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, GgufError> {
        if self.metadata.contains_key(key) {
            self.f64(key).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn str(&self, key: &str) -> Result<&str, GgufError> {
        match self.get(key)? {
            Value::Str(s) => Ok(s),
            v => Err(Self::type_error(key, "a string", v)),
        }
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        if self.metadata.contains_key(key) {
            self.str(key).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        match self.get(key)? {
            Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    Value::Str(s) => Ok(s.as_str()),
                    other => Err(Self::type_error(key, "an array of strings", other)),
                })
                .collect(),
            v => Err(Self::type_error(key, "an array of strings", v)),
        }
    }

    pub fn opt_i64_array(&self, key: &str) -> Result<Option<Vec<i64>>, GgufError> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match *v {
                    Value::I64(x) => Ok(x),
                    Value::U64(x) => {
                        i64::try_from(x).map_err(|_| Self::type_error(key, "integers", v))
                    }
                    _ => Err(Self::type_error(key, "an array of integers", v)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(v) => Err(Self::type_error(key, "an array of integers", v)),
        }
    }
}

/// Helpers that write GGUF files, for tests that craft small (and broken) files.
pub mod write {
    /// A metadata value to write.
    #[derive(Debug, Clone)]
    pub enum W {
        U32(u32),
        F32(f32),
        Str(String),
        StrArray(Vec<String>),
        I32Array(Vec<i32>),
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    /// Serialises a GGUF v3 file: metadata, then tensors `(name, dims, type id, bytes)`.
    pub fn gguf(metadata: &[(&str, W)], tensors: &[(&str, Vec<u64>, u32, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        for (key, value) in metadata {
            string(&mut out, key);
            match value {
                W::U32(v) => {
                    out.extend_from_slice(&4u32.to_le_bytes());
                    out.extend_from_slice(&v.to_le_bytes());
                }
                W::F32(v) => {
                    out.extend_from_slice(&6u32.to_le_bytes());
                    out.extend_from_slice(&v.to_le_bytes());
                }
                W::Str(s) => {
                    out.extend_from_slice(&8u32.to_le_bytes());
                    string(&mut out, s);
                }
                W::StrArray(items) => {
                    out.extend_from_slice(&9u32.to_le_bytes());
                    out.extend_from_slice(&8u32.to_le_bytes());
                    out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                    for s in items {
                        string(&mut out, s);
                    }
                }
                W::I32Array(items) => {
                    out.extend_from_slice(&9u32.to_le_bytes());
                    out.extend_from_slice(&5u32.to_le_bytes());
                    out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                    for v in items {
                        out.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
        }
        let mut offset = 0u64;
        for (name, dims, ty, bytes) in tensors {
            string(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset = (offset + bytes.len() as u64).div_ceil(32) * 32;
        }
        // The data section and every tensor in it start on a 32-byte boundary.
        for (_, _, _, bytes) in tensors {
            out.resize(out.len().div_ceil(32) * 32, 0);
            out.extend_from_slice(bytes);
        }
        out.resize(out.len().div_ceil(32) * 32, 0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::write::{W, gguf};
    use super::*;

    #[test]
    fn parses_metadata_and_tensors() {
        let bytes = gguf(
            &[
                ("general.architecture", W::Str("llama".into())),
                ("x.n", W::U32(7)),
            ],
            &[
                ("a", vec![4, 2], 0, vec![0u8; 32]),
                ("b", vec![32], 8, vec![1u8; 34]),
            ],
        );
        let f = GgufFile::parse(bytes).unwrap();
        assert_eq!(f.str("general.architecture").unwrap(), "llama");
        assert_eq!(f.u64("x.n").unwrap(), 7);
        let b = f.tensor("b").unwrap();
        assert_eq!(b.ty, GgmlType::Q8_0);
        assert_eq!(f.tensor_bytes(b), &[1u8; 34][..]);
        assert_eq!(f.tensor("a").unwrap().elements(), 8);
    }

    #[test]
    fn wrong_metadata_type_names_the_key() {
        let bytes = gguf(&[("x.n", W::Str("seven".into()))], &[]);
        let f = GgufFile::parse(bytes).unwrap();
        let err = f.u64("x.n").unwrap_err().to_string();
        assert!(err.contains("x.n"), "{err}");
    }
}
