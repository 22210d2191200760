//! The `switchyard` command line: parses arguments, sets up tracing, runs one command.

use clap::Parser;

/// mimalloc instead of glibc's allocator: the gateway allocates on every thread for every
/// request, and glibc's malloc/free/consolidation took ~10 % of its CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = switchyard::cli::Cli::parse();
    switchyard::cli::init_tracing(cli.log_format);
    match switchyard::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {err:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
