//! The compiled-component cache: entry paths keyed by digest and engine fingerprint,
//! deserializing entries, writing them (temp file + rename), compiling a miss in a child
//! process (`switchyard policy compile-cache`) or in process, and the component header
//! check that runs before any compile.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use wasmtime::Engine;
use wasmtime::component::Component;

use super::loaded::digest_of;
use super::{Compiler, EngineConfig, PolicyEngine, PolicyError};

/// Names an engine's cache entries: the wasmtime version, its compatibility hash, and the
/// settings that change compiled code (memory limit, pool size).
pub(super) fn fingerprint(engine: &Engine, config: &EngineConfig) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    config.memory_limit_bytes.hash(&mut hasher);
    config.max_instances.max(1).hash(&mut hasher);
    format!("wt{}-{:016x}", wasmtime_version(), hasher.finish())
}

impl PolicyEngine {
    fn cache_path(&self, digest: &str) -> Option<PathBuf> {
        let dir = self.inner.config.cache_dir.as_ref()?;
        Some(dir.join(format!("{digest}-{}.cwasm", self.inner.fingerprint)))
    }

    /// The compiled component for `bytes`: from the cache, else compiled (in a child
    /// process when so configured) and stored in the cache.
    pub(super) fn component(&self, bytes: &[u8], digest: &str) -> Result<Component, PolicyError> {
        let cache = self.cache_path(digest);
        if let Some(path) = cache.as_deref().filter(|p| p.is_file())
            && let Some(component) = self.cached(path)
        {
            return Ok(component);
        }
        self.inner.compiles.fetch_add(1, Ordering::Relaxed);
        if let (Compiler::Child(exe), Some(path)) = (&self.inner.config.compiler, &cache) {
            match self.compile_in_child(exe, bytes, path) {
                Ok(()) => {
                    if let Some(component) = self.cached(path) {
                        return Ok(component);
                    }
                }
                Err(ChildCompile::Failed(message)) => return Err(PolicyError::Compile(message)),
                Err(ChildCompile::Unavailable(why)) => {
                    tracing::warn!(exe = %exe.display(), error = %why,
                        "compiling the policy in a child process failed; compiling in process");
                }
            }
        }
        let component = Component::new(&self.inner.engine, bytes)
            .map_err(|e| PolicyError::Compile(format!("{e:#}")))?;
        if let Some(path) = cache
            && let Err(e) = store_cache(&component, &path)
        {
            tracing::warn!(path = %path.display(), error = %e,
                "writing the compiled policy cache failed");
        }
        Ok(component)
    }

    /// The compiled component in cache entry `path`, if it loads.
    fn cached(&self, path: &Path) -> Option<Component> {
        // SAFETY: `path` lies in our own cache directory, named by the sha256 of the
        // source bytes and this engine's compatibility fingerprint, and is only ever
        // written by `store_cache` (temp file + rename, here or in a `compile-cache` child
        // running this same executable), so it holds an artifact this wasmtime version
        // serialized from a component we compiled.
        #[allow(unsafe_code)]
        let cached = unsafe { Component::deserialize_file(&self.inner.engine, path) };
        match cached {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %format!("{e:#}"),
                    "compiled policy cache entry unusable; recompiling");
                None
            }
        }
    }

    /// Runs `exe policy compile-cache` on `bytes`, which writes the cache entry `path`.
    fn compile_in_child(&self, exe: &Path, bytes: &[u8], path: &Path) -> Result<(), ChildCompile> {
        use std::io::Write as _;
        let config = &self.inner.config;
        let dir = path
            .parent()
            .ok_or_else(|| ChildCompile::Unavailable("cache path has no parent".into()))?;
        let unavailable = |e: std::io::Error| ChildCompile::Unavailable(e.to_string());
        let mut child = std::process::Command::new(exe)
            .args(["policy", "compile-cache", "--cache-dir"])
            .arg(dir)
            .arg("--memory-limit-bytes")
            .arg(config.memory_limit_bytes.to_string())
            .arg("--max-instances")
            .arg(config.max_instances.to_string())
            .env("RUST_LOG", "error")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(unavailable)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(bytes).map_err(unavailable)?;
        }
        let output = child.wait_with_output().map_err(unavailable)?;
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        match output.status.code() {
            Some(0) if path.is_file() => Ok(()),
            Some(0) => Err(ChildCompile::Unavailable(format!(
                "it wrote no cache entry {}",
                path.display()
            ))),
            Some(COMPILE_FAILED_EXIT) => Err(ChildCompile::Failed(stderr)),
            _ => Err(ChildCompile::Unavailable(format!(
                "{}: {stderr}",
                output.status
            ))),
        }
    }

    /// Compiles `bytes` into the cache (the `compile-cache` child's side).
    pub fn compile_to_cache(&self, bytes: &[u8]) -> Result<PathBuf, PolicyError> {
        check_component_header(bytes)?;
        let digest = digest_of(bytes);
        let path = self
            .cache_path(&digest)
            .ok_or_else(|| PolicyError::Engine("no compiled-policy cache directory".into()))?;
        let component = Component::new(&self.inner.engine, bytes)
            .map_err(|e| PolicyError::Compile(format!("{e:#}")))?;
        store_cache(&component, &path)
            .map_err(|e| PolicyError::Engine(format!("writing {}: {e}", path.display())))?;
        Ok(path)
    }
}

/// Exit status of `switchyard policy compile-cache` when the component does not compile.
pub const COMPILE_FAILED_EXIT: i32 = 3;

/// Why compiling in a child process did not give a component.
enum ChildCompile {
    /// The component does not compile (the child's message).
    Failed(String),
    /// The child could not do the job (spawn, I/O, crash): compile in process instead.
    Unavailable(String),
}

fn wasmtime_version() -> &'static str {
    // The cache key also carries `precompile_compatibility_hash`, which covers the version.
    "48"
}

fn store_cache(component: &Component, path: &Path) -> Result<(), String> {
    let bytes = component.serialize().map_err(|e| format!("{e:#}"))?;
    let dir = path.parent().ok_or("cache path has no parent")?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}

/// Rejects core modules and non-wasm bytes with a clear message before compiling.
pub(super) fn check_component_header(bytes: &[u8]) -> Result<(), PolicyError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(PolicyError::NotComponent(
            "missing the \\0asm magic header (not a wasm file, or empty/truncated)".into(),
        ));
    }
    // Core modules carry version 1 (layer 0); components carry layer 1 in bytes 6..8.
    if bytes[6..8] == [0, 0] {
        return Err(PolicyError::NotComponent(
            "this is a core wasm module; build the policy as a component (wasm32-wasip2)".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_check_tells_modules_and_junk_from_components() {
        let junk = check_component_header(b"hello world");
        assert!(matches!(junk, Err(PolicyError::NotComponent(m)) if m.contains("magic")));
        let module = check_component_header(b"\0asm\x01\0\0\0");
        assert!(
            matches!(module, Err(PolicyError::NotComponent(m)) if m.contains("core wasm module"))
        );
        assert!(check_component_header(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
