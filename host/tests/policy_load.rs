//! Loading policy components: every kind of bad input is refused with an error that names
//! the problem, and the compiled-component cache compiles a component once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod policy_support;

use policy_support::{require_policy, spec};
use switchyard::policy::{Compiler, EngineConfig, PolicyEngine, PolicyError};

fn engine() -> PolicyEngine {
    engine_with(EngineConfig {
        max_instances: 4,
        ..EngineConfig::default()
    })
}

fn engine_with(config: EngineConfig) -> PolicyEngine {
    PolicyEngine::new(config).expect("engine")
}

fn load_err(engine: &PolicyEngine, bytes: &[u8]) -> PolicyError {
    engine
        .load(spec("bad"), bytes)
        .expect_err("loading must fail")
}

/// Deterministic noise (xorshift), so a failure reproduces.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A valid component that exports a plain function `other` instead of the router.
const OTHER_WORLD: &str = r#"
(component
  (core module $m (func (export "f")))
  (core instance $i (instantiate $m))
  (func $f (canon lift (core func $i "f")))
  (export "other" (func $f)))
"#;

/// A component importing an interface the host does not provide.
const FOREIGN_IMPORT: &str = r#"
(component
  (import "evil:net/socket@1.0.0" (instance $net (export "connect" (func))))
)
"#;

#[test]
fn core_module_is_not_a_component() {
    let module = wat::parse_str(r#"(module (func (export "route")))"#).unwrap();
    let err = load_err(&engine(), &module);
    assert!(matches!(err, PolicyError::NotComponent(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("not a WebAssembly component"), "{text}");
    assert!(text.contains("core wasm module"), "{text}");
    assert!(text.contains("wasm32-wasip2"), "{text}");
}

#[test]
fn random_and_empty_bytes_are_not_wasm() {
    let engine = engine();
    for bytes in [noise(4096), Vec::new(), b"\0as".to_vec()] {
        let err = load_err(&engine, &bytes);
        assert!(matches!(err, PolicyError::NotComponent(_)), "{err:?}");
        assert!(err.to_string().contains("magic header"), "{err}");
    }
}

#[test]
fn garbage_after_a_component_header_fails_to_compile() {
    let mut bytes = b"\0asm\x0d\x00\x01\x00".to_vec();
    bytes.extend(noise(512));
    let err = load_err(&engine(), &bytes);
    assert!(matches!(err, PolicyError::Compile(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("compiling the policy component failed"),
        "{err}"
    );
}

#[test]
fn component_for_another_world_is_refused() {
    let bytes = wat::parse_str(OTHER_WORLD).unwrap();
    let err = load_err(&engine(), &bytes);
    assert!(matches!(err, PolicyError::WrongWorld(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("does not fit world `switchyard:policy/policy`"),
        "{text}"
    );
    assert!(text.contains("switchyard:policy/router"), "{text}");
}

#[test]
fn component_with_a_foreign_import_is_refused() {
    let bytes = wat::parse_str(FOREIGN_IMPORT).unwrap();
    let err = load_err(&engine(), &bytes);
    assert!(matches!(err, PolicyError::WrongWorld(_)), "{err:?}");
    assert!(err.to_string().contains("evil:net/socket@1.0.0"), "{err}");
}

#[test]
fn truncated_components_fail_to_compile() {
    let engine = engine();
    let other = wat::parse_str(OTHER_WORLD).unwrap();
    let real = require_policy("misbehave");
    for (what, bytes) in [("wat component", other), ("misbehave.wasm", real)] {
        for cut in [bytes.len() / 2, bytes.len() - 1, 9] {
            let err = load_err(&engine, &bytes[..cut]);
            assert!(
                matches!(err, PolicyError::Compile(_)),
                "{what} cut at {cut}: {err:?}"
            );
            assert!(err.to_string().contains("truncated or invalid"), "{err}");
        }
    }
}

#[test]
fn component_over_the_size_cap_is_refused_before_reading() {
    let engine = engine_with(EngineConfig {
        max_component_bytes: 1024,
        max_instances: 2,
        ..EngineConfig::default()
    });
    let mut bytes = b"\0asm\x0d\x00\x01\x00".to_vec();
    bytes.resize(4096, 0);
    let err = load_err(&engine, &bytes);
    assert!(
        matches!(
            err,
            PolicyError::TooLarge {
                size: 4096,
                limit: 1024
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("4096 bytes, over the 1024-byte limit"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.wasm");
    std::fs::write(&path, &bytes).unwrap();
    let err = engine.load_file(spec("big"), &path).unwrap_err();
    assert!(
        matches!(err, PolicyError::TooLarge { size: 4096, .. }),
        "{err:?}"
    );
}

#[test]
fn missing_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.wasm");
    let err = engine().load_file(spec("absent"), &path).unwrap_err();
    assert!(matches!(err, PolicyError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("absent.wasm"), "{err}");
}

#[test]
fn cache_compiles_the_same_bytes_once() {
    let bytes = require_policy("misbehave");
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        cache_dir: Some(dir.path().to_owned()),
        max_instances: 4,
        ..EngineConfig::default()
    };
    let cached = engine_with(config.clone());
    let first = cached.load(spec("a"), &bytes).unwrap();
    assert_eq!(cached.compile_count(), 1);
    let second = cached.load(spec("b"), &bytes).unwrap();
    assert_eq!(cached.compile_count(), 1, "second load must hit the cache");
    assert_eq!(first.digest(), second.digest());
    assert_eq!(first.info(), second.info());
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].starts_with(first.digest()), "{entries:?}");
    assert!(entries[0].ends_with(".cwasm"), "{entries:?}");

    // A new engine with the same settings reuses the artifact.
    let again = engine_with(config);
    again.load(spec("c"), &bytes).unwrap();
    assert_eq!(again.compile_count(), 0);

    // Without a cache every load compiles.
    let uncached = engine();
    uncached.load(spec("d"), &bytes).unwrap();
    uncached.load(spec("e"), &bytes).unwrap();
    assert_eq!(uncached.compile_count(), 2);
}

#[test]
fn corrupt_cache_entry_is_recompiled() {
    let bytes = require_policy("misbehave");
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        cache_dir: Some(dir.path().to_owned()),
        max_instances: 4,
        ..EngineConfig::default()
    };
    let engine = engine_with(config.clone());
    engine.load(spec("a"), &bytes).unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        std::fs::write(entry.unwrap().path(), b"not a cwasm").unwrap();
    }
    let fresh = engine_with(config);
    fresh.load(spec("b"), &bytes).unwrap();
    assert_eq!(fresh.compile_count(), 1);
}

/// An engine whose cache misses compile in a `switchyard policy compile-cache` child.
fn child_compiling(dir: &std::path::Path, exe: &str) -> (EngineConfig, PolicyEngine) {
    let config = EngineConfig {
        cache_dir: Some(dir.to_owned()),
        max_instances: 4,
        compiler: Compiler::Child(exe.into()),
        ..EngineConfig::default()
    };
    (config.clone(), engine_with(config))
}

#[test]
fn a_child_process_compiles_into_the_cache_this_process_maps() {
    let bytes = require_policy("misbehave");
    let dir = tempfile::tempdir().unwrap();
    let (config, engine) = child_compiling(dir.path(), env!("CARGO_BIN_EXE_switchyard"));
    let policy = engine.load(spec("a"), &bytes).unwrap();
    assert_eq!(policy.info().name, "misbehave");
    assert_eq!(engine.compile_count(), 1);
    // The child's artifact is the one an in-process engine with the same settings expects.
    let in_process = engine_with(EngineConfig {
        compiler: Compiler::InProcess,
        ..config
    });
    in_process.load(spec("b"), &bytes).unwrap();
    assert_eq!(
        in_process.compile_count(),
        0,
        "the child's cache entry must be reused"
    );
}

#[test]
fn a_child_compile_error_names_the_problem() {
    let mut bytes = b"\0asm\x0d\x00\x01\x00".to_vec();
    bytes.extend(noise(512));
    let dir = tempfile::tempdir().unwrap();
    let (_, engine) = child_compiling(dir.path(), env!("CARGO_BIN_EXE_switchyard"));
    let err = load_err(&engine, &bytes);
    assert!(
        matches!(&err, PolicyError::Compile(m) if !m.is_empty()),
        "{err:?}"
    );
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

#[test]
fn without_a_usable_compiler_executable_it_compiles_in_process() {
    let bytes = require_policy("misbehave");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-switchyard");
    let (_, engine) = child_compiling(dir.path(), missing.to_str().unwrap());
    let policy = engine.load(spec("a"), &bytes).unwrap();
    assert_eq!(policy.info().name, "misbehave");
    assert_eq!(engine.compile_count(), 1);
}
