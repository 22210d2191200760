//! `switchyard local tokenize|chat`: use the local model directly.

use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use switchyard_local::gguf::GgufFile;
use switchyard_local::tokenizer::TextCodec;
use switchyard_local::{GenerateEvent, GenerateRequest, LocalConfig, LocalEngine};

#[derive(Debug, clap::Subcommand)]
pub enum LocalCommand {
    /// Print the token ids of TEXT as a JSON array (special tokens such as <|im_start|> parsed).
    Tokenize {
        #[command(flatten)]
        model: ModelArgs,
        text: String,
    },
    /// Chat with the local model; the reply streams to stdout, figures go to stderr.
    Chat {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, default_value_t = 256)]
        max_tokens: u32,
        /// 0 for greedy decoding.
        #[arg(long, default_value_t = 0.7)]
        temperature: f32,
        #[arg(long)]
        top_k: Option<usize>,
        #[arg(long)]
        top_p: Option<f32>,
        #[arg(long)]
        seed: Option<u64>,
        /// Stop sequence (repeatable).
        #[arg(long)]
        stop: Vec<String>,
        /// System prompt (otherwise the model's template default applies).
        #[arg(long)]
        system: Option<String>,
        prompt: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// GGUF model file [default: $SWITCHYARD_MODEL, else the models dir's SmolLM2 file]
    #[arg(long)]
    model: Option<PathBuf>,
    /// auto | cpu | burn-cpu | cuda:N | wgpu
    #[arg(long, default_value = "auto")]
    device: String,
    /// CPU threads [default: all cores]
    #[arg(long)]
    threads: Option<usize>,
}

impl ModelArgs {
    fn path(&self) -> PathBuf {
        self.model
            .clone()
            .unwrap_or_else(switchyard_local::default_model_path)
    }
}

pub fn run(cmd: LocalCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LocalCommand::Tokenize { model, text } => tokenize(&model, &text),
        LocalCommand::Chat {
            model,
            max_tokens,
            temperature,
            top_k,
            top_p,
            seed,
            stop,
            system,
            prompt,
        } => {
            let mut messages = Vec::new();
            if let Some(system) = system {
                messages.push(("system".to_string(), system));
            }
            messages.push(("user".to_string(), prompt));
            chat(
                &model,
                GenerateRequest {
                    messages,
                    max_tokens,
                    temperature,
                    top_k,
                    top_p,
                    seed,
                    stop,
                    format: None,
                },
            )
        }
    }
}

fn missing_model_hint(path: &std::path::Path) -> String {
    format!(
        "cannot use model {} (fetch the default one with host/local/fetch-model.sh, or pass --model)",
        path.display()
    )
}

#[allow(clippy::print_stdout)]
fn tokenize(model: &ModelArgs, text: &str) -> anyhow::Result<ExitCode> {
    let path = model.path();
    let file = GgufFile::open(&path).with_context(|| missing_model_hint(&path))?;
    let codec = TextCodec::from_gguf(&file)?;
    let ids = codec.encode(text, true)?;
    println!("{}", serde_json::to_string(&ids)?);
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn chat(model: &ModelArgs, request: GenerateRequest) -> anyhow::Result<ExitCode> {
    let path = model.path();
    let engine = LocalEngine::start(LocalConfig {
        model_path: path.clone(),
        device: model.device.clone(),
        threads: model.threads,
        ..LocalConfig::default()
    })
    .with_context(|| missing_model_hint(&path))?;
    eprintln!(
        "[{} on {}, loaded in {:.2?}]",
        engine.model_name(),
        engine.device_name(),
        engine.load_time()
    );
    let started = Instant::now();
    let mut first = None;
    let mut events = engine.submit(request)?;
    let mut stdout = std::io::stdout().lock();
    while let Some(event) = events.blocking_recv() {
        match event {
            GenerateEvent::Delta(text) => {
                first.get_or_insert_with(|| started.elapsed());
                stdout.write_all(text.as_bytes())?;
                stdout.flush()?;
            }
            GenerateEvent::Done {
                finish_reason,
                prompt_tokens,
                completion_tokens,
            } => {
                let total = started.elapsed();
                let decode = total.saturating_sub(first.unwrap_or_default());
                writeln!(stdout)?;
                eprintln!(
                    "[{finish_reason:?}: {prompt_tokens} prompt + {completion_tokens} completion tokens, first token {:.2?}, {:.1} tok/s decode]",
                    first.unwrap_or_default(),
                    f64::from(completion_tokens.saturating_sub(1)) / decode.as_secs_f64().max(1e-9)
                );
                return Ok(ExitCode::SUCCESS);
            }
            GenerateEvent::Error(message) => anyhow::bail!("generation failed: {message}"),
        }
    }
    anyhow::bail!("the local model stopped without finishing the reply")
}
