//! `switchyard policy new NAME --lang rust|python|js`: a standalone policy project (the
//! language's template, its SDK and the WIT contract, all embedded in this binary) that
//! builds and passes its unit tests and case file on the first run.

use std::path::{Path, PathBuf};

use anyhow::Context;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/new_project_files.rs"));
}

/// A policy language `policy new` has a template for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

impl Lang {
    fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }

    /// Embedded bundles and where each lands in the project.
    fn bundles(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Lang::Rust => &[
                ("template-rust", ""),
                ("sdk-rust-src", "sdk/src/"),
                ("sdk-rust-pii", "sdk/pii/"),
                ("wit", "wit/"),
            ],
            Lang::Python => &[
                ("template-python", ""),
                ("sdk-python", "sdk/"),
                ("wit", "wit/"),
            ],
            Lang::Js => &[("template-js", ""), ("sdk-js", "sdk/"), ("wit", "wit/")],
        }
    }
}

/// The names a template's placeholders take: `__TITLE__` is the name as typed,
/// `__NAME__` an identifier every language and build tool accepts.
#[derive(Debug, PartialEq, Eq)]
struct Names {
    title: String,
    ident: String,
}

impl Names {
    fn parse(name: &str) -> anyhow::Result<Self> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && name.chars().any(|c| c.is_ascii_alphabetic());
        anyhow::ensure!(
            ok,
            "policy name {name:?}: use 1 to 64 ASCII letters, digits, '-' or '_', with at least one letter"
        );
        let mut ident: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        if ident.starts_with(|c: char| c.is_ascii_digit() || c == '_') {
            ident.insert_str(0, "policy_");
        }
        Ok(Self {
            title: name.to_owned(),
            ident,
        })
    }
}

/// Template files whose text takes the placeholders (SDK and WIT files are copied as they are).
fn fill(bytes: &[u8], names: &Names) -> Vec<u8> {
    match std::str::from_utf8(bytes) {
        Ok(text) => text
            .replace("__NAME__", &names.ident)
            .replace("__TITLE__", &names.title)
            .into_bytes(),
        Err(_) => bytes.to_vec(),
    }
}

/// A template's path in the project: placeholders filled, `gitignore` made `.gitignore`
/// (a dotfile in the repository's template folder would apply to the repository itself).
fn project_path(rel: &str, names: &Names) -> String {
    let rel = rel.replace("__NAME__", &names.ident);
    match rel.rsplit_once('/') {
        Some((dir, "gitignore")) => format!("{dir}/.gitignore"),
        None if rel == "gitignore" => ".gitignore".to_owned(),
        _ => rel,
    }
}

/// Writes the project for `name` in `dir` (default `./NAME`); returns the folder.
pub fn create(name: &str, lang: Lang, dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let names = Names::parse(name)?;
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() {
        let empty = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_none();
        anyhow::ensure!(
            empty,
            "{} already exists and is not empty: choose another --dir",
            dir.display()
        );
    }
    let mut written = 0usize;
    for (bundle, prefix) in lang.bundles() {
        let files: Vec<_> = embedded::FILES
            .iter()
            .filter(|(b, _, _)| b == bundle)
            .collect();
        anyhow::ensure!(
            !files.is_empty(),
            "this switchyard was built without the {} policy template ({bundle})",
            lang.name()
        );
        let template = bundle.starts_with("template-");
        for (_, rel, bytes) in files {
            let path = dir.join(format!("{prefix}{}", project_path(rel, &names)));
            let contents = if template {
                fill(bytes, &names)
            } else {
                bytes.to_vec()
            };
            write_file(&path, &contents)?;
            written += 1;
        }
    }
    tracing::debug!(files = written, dir = %dir.display(), "policy project written");
    Ok(dir)
}

fn write_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    if path.extension().is_some_and(|e| e == "sh") {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable", path.display()))?;
    }
    Ok(())
}

/// What to run next in a new project.
pub fn next_steps(lang: Lang, dir: &Path) -> String {
    let d = dir.display();
    match lang {
        Lang::Rust => format!(
            "cd {d} && cargo test && bash build.sh && switchyard policy test --warm *.wasm cases.json"
        ),
        Lang::Python | Lang::Js => format!(
            "cd {d} && bash test.sh && bash build.sh && switchyard policy test --warm *.wasm cases.json"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_identifiers() {
        let n = Names::parse("Team-Router").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (n.title.as_str(), n.ident.as_str()),
            ("Team-Router", "team_router")
        );
        let n = Names::parse("2fast").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n.ident, "policy_2fast");
        for bad in ["", "a b", "../x", "---", "ünï", &"x".repeat(65)] {
            assert!(Names::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn placeholders_and_gitignore() {
        let n = Names::parse("team-router").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            fill(b"name = \"__NAME__\" # __TITLE__", &n),
            b"name = \"team_router\" # team-router"
        );
        assert_eq!(project_path("gitignore", &n), ".gitignore");
        assert_eq!(project_path("tests/gitignore", &n), "tests/.gitignore");
        assert_eq!(project_path("__NAME__.py", &n), "team_router.py");
    }

    #[test]
    fn the_rust_template_and_sdk_are_embedded() {
        let has = |bundle: &str, rel: &str| {
            embedded::FILES
                .iter()
                .any(|(b, r, _)| *b == bundle && *r == rel)
        };
        assert!(has("template-rust", "Cargo.toml"));
        assert!(has("template-rust", "sdk/Cargo.toml"));
        assert!(has("sdk-rust-src", "lib.rs"));
        assert!(has("sdk-rust-pii", "patterns.json"));
        assert!(has("wit", "world.wit"));
        assert!(
            !embedded::FILES
                .iter()
                .any(|(_, r, _)| r.contains("node_modules"))
        );
    }
}
