//! `switchyard local tokenize|chat`: use the local model directly.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum LocalCommand {}

pub fn run(cmd: LocalCommand) -> anyhow::Result<ExitCode> {
    match cmd {}
}
