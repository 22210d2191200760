//! Embeds what `switchyard policy new` writes (the project templates, the policy SDKs and
//! the WIT contract) as a generated table of files in `$OUT_DIR/new_project_files.rs`.

// Cargo reads a build script's directives from its stdout.
#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// (bundle, folder relative to the repository root, recursive).
const BUNDLES: &[(&str, &str, bool)] = &[
    ("template-rust", "policy-sdk/templates/rust", true),
    ("template-python", "policy-sdk/templates/python", true),
    ("template-js", "policy-sdk/templates/js", true),
    ("sdk-rust-src", "policy-sdk/src", true),
    ("sdk-rust-pii", "policy-sdk/pii", true),
    ("sdk-python", "policy-sdk/python", true),
    ("sdk-js", "policy-sdk/js", true),
    ("wit", "wit", false),
];

/// Never embedded: installed packages, caches, build output.
const SKIP: &[&str] = &[
    "node_modules",
    "__pycache__",
    ".venv",
    "target",
    ".pytest_cache",
    "dist",
    "build",
    ".mypy_cache",
];

fn walk(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if SKIP.contains(&name.as_str()) || name.ends_with(".pyc") || name.ends_with(".wasm") {
            continue;
        }
        if path.is_dir() {
            if recursive {
                walk(&path, recursive, out);
            }
        } else if path.is_file() {
            out.push(path);
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut table = String::from("pub static FILES: &[(&str, &str, &[u8])] = &[\n");
    for (bundle, folder, recursive) in BUNDLES {
        let dir = root.join(folder);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files = Vec::new();
        walk(&dir, *recursive, &mut files);
        files.sort();
        for file in files {
            let Ok(rel) = file.strip_prefix(&dir) else {
                continue;
            };
            let rel = rel.to_string_lossy().replace('\\', "/");
            let _ = writeln!(
                table,
                "    ({bundle:?}, {rel:?}, include_bytes!({:?})),",
                file.display().to_string()
            );
        }
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    if let Err(e) = std::fs::write(out.join("new_project_files.rs"), table) {
        println!("cargo:warning=writing the policy templates table failed: {e}");
    }
}
