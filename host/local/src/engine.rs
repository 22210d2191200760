//! The inference worker: one dedicated thread (with its own rayon pool for the kernels) that
//! owns the model, a bounded queue in front of it, generation with streaming detokenization
//! and stop sequences, and panic isolation per request.

use crate::model::{Compute, Llama};
use crate::sampling::Sampler;
use crate::structured::Constraint;
use crate::tokenizer::{StreamDecoder, TextCodec};
use crate::{FinishReason, GenerateEvent, GenerateRequest, LocalConfig, LocalError};
use burn::tensor::Device;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc as tokio_mpsc;

/// Prompt tokens run through the model per forward pass.
const PREFILL_CHUNK: usize = 512;
/// Events buffered per request before the worker waits for the reader.
const EVENT_BUFFER: usize = 64;

/// One queued request, already tokenized.
struct Job {
    prompt: Vec<u32>,
    request: GenerateRequest,
    /// The request's output format, compiled (`None`: free text).
    constraint: Option<Constraint>,
    events: tokio_mpsc::Sender<GenerateEvent>,
}

/// The device a config string names, and how the projections run there.
pub fn resolve_device(spec: &str) -> Result<(Device, Compute, String), LocalError> {
    let spec = spec.trim();
    let cpu = || (Device::flex(), Compute::HostQuantized, "cpu".to_string());
    match spec {
        "cpu" => Ok(cpu()),
        // The burn (GPU) forward pass on burn's CPU backend: slower than `cpu`, there to
        // run and test the burn path on machines without a GPU.
        "burn-cpu" => probe((Device::flex(), "burn-cpu (flex)".to_string())),
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        "ndarray" => Ok((
            Device::ndarray(),
            Compute::HostQuantized,
            "cpu (ndarray device)".to_string(),
        )),
        "auto" => Ok(gpu_candidates()
            .into_iter()
            .find_map(|d| probe(d).ok())
            .unwrap_or_else(cpu)),
        other => {
            let gpu = gpu_device(other)?;
            probe(gpu)
        }
    }
}

/// GPUs `auto` tries, in order of preference.
fn gpu_candidates() -> Vec<(Device, String)> {
    #[allow(unused_mut)]
    let mut out = Vec::new();
    #[cfg(feature = "cuda")]
    out.push((Device::cuda(0usize), "cuda:0".to_string()));
    #[cfg(feature = "wgpu")]
    out.push((
        Device::wgpu(burn::tensor::DeviceKind::default()),
        "wgpu".to_string(),
    ));
    out
}

fn gpu_device(spec: &str) -> Result<(Device, String), LocalError> {
    let unavailable = |why: &str| LocalError::Device(format!("device '{spec}': {why}"));
    if let Some(index) = spec
        .strip_prefix("cuda:")
        .or((spec == "cuda").then_some("0"))
    {
        let index: usize = index.parse().map_err(|_| unavailable("bad index"))?;
        #[cfg(feature = "cuda")]
        return Ok((Device::cuda(index), format!("cuda:{index}")));
        #[cfg(not(feature = "cuda"))]
        return Err(unavailable(&format!(
            "index {index}: this build has no CUDA support (cargo feature `cuda`)"
        )));
    }
    if spec == "wgpu" {
        #[cfg(feature = "wgpu")]
        return Ok((
            Device::wgpu(burn::tensor::DeviceKind::default()),
            "wgpu".to_string(),
        ));
        #[cfg(not(feature = "wgpu"))]
        return Err(unavailable(
            "this build has no wgpu support (cargo feature `wgpu`)",
        ));
    }
    Err(unavailable("expected auto, cpu, burn-cpu, cuda:N or wgpu"))
}

/// Checks that a burn device works (a small quantized matmul) without letting a backend
/// panic escape: 8-bit weights stored natively, else packed in `u32` (devices without `i8`).
fn probe((device, name): (Device, String)) -> Result<(Device, Compute, String), LocalError> {
    let mut failure = String::new();
    for packed in [false, true] {
        match probe_scheme(&device, packed) {
            Ok(()) => {
                let name = if packed {
                    format!("{name} (8-bit weights packed in u32)")
                } else {
                    name
                };
                return Ok((device, Compute::DeviceQuantized { packed }, name));
            }
            Err(why) => failure = why,
        }
    }
    Err(LocalError::Device(format!("{name}: {failure}")))
}

/// One quantized matmul in the `packed` or native 8-bit layout on `device`.
fn probe_scheme(device: &Device, packed: bool) -> Result<(), String> {
    use burn::tensor::{Tensor, TensorData};
    let check = catch_unwind(AssertUnwindSafe(|| {
        let w = Tensor::<2>::from_data(TensorData::new(vec![0.5f32; 64 * 32], [64, 32]), device);
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32; 64], [1, 64]), device);
        let w = w.quantize_dynamic(&crate::model::device_scheme(packed));
        let y: Vec<f32> = x.matmul(w).into_data().iter::<f32>().collect();
        y.first().copied()
    }));
    match check {
        Ok(Some(v)) if (v - 32.0).abs() < 0.5 => Ok(()),
        Ok(other) => Err(format!("probe computed {other:?}, expected 32")),
        Err(_) => Err("the backend failed to start".to_owned()),
    }
}

/// Shared state between the handles and the worker.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Requests queued or running.
    pub depth: AtomicU32,
}

/// Starts the worker thread; returns the queue's sending side.
pub(crate) fn spawn_worker(
    model: Llama,
    codec: Arc<TextCodec>,
    config: &LocalConfig,
    shared: Arc<Shared>,
) -> Result<mpsc::SyncSender<JobHandle>, LocalError> {
    let threads = config
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("switchyard-local-{i}"))
        .build()
        .map_err(|e| LocalError::Device(format!("thread pool: {e}")))?;
    run_worker(config.queue_capacity, shared, move |job| {
        pool.install(|| generate(&model, &codec, job))
    })
}

/// The worker loop: runs jobs one at a time; a panic fails only the job it happened in.
fn run_worker(
    capacity: usize,
    shared: Arc<Shared>,
    mut run: impl FnMut(Job) + Send + 'static,
) -> Result<mpsc::SyncSender<JobHandle>, LocalError> {
    let (tx, rx) = mpsc::sync_channel::<JobHandle>(capacity.max(1));
    std::thread::Builder::new()
        .name("switchyard-local".into())
        .spawn(move || {
            for JobHandle(job) in rx {
                let events = job.events.clone();
                if !events.is_closed()
                    && let Err(panic) = catch_unwind(AssertUnwindSafe(|| run(job)))
                {
                    let why = panic
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| panic.downcast_ref::<&str>().copied())
                        .unwrap_or("unknown panic");
                    tracing::error!(error = why, "local model failed on a request");
                    let _ = events
                        .blocking_send(GenerateEvent::Error(format!("local model failed: {why}")));
                }
                shared.depth.fetch_sub(1, Ordering::SeqCst);
            }
        })
        .map_err(|e| LocalError::Device(format!("cannot spawn the inference thread: {e}")))?;
    Ok(tx)
}

/// A queued job (opaque outside this module).
pub(crate) struct JobHandle(Job);

impl JobHandle {
    pub(crate) fn new(
        prompt: Vec<u32>,
        request: GenerateRequest,
        constraint: Option<Constraint>,
        events: tokio_mpsc::Sender<GenerateEvent>,
    ) -> Self {
        JobHandle(Job {
            prompt,
            request,
            constraint,
            events,
        })
    }
}

pub(crate) fn event_channel() -> (
    tokio_mpsc::Sender<GenerateEvent>,
    tokio_mpsc::Receiver<GenerateEvent>,
) {
    tokio_mpsc::channel(EVENT_BUFFER)
}

fn default_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0x5eed, |d| d.as_nanos() as u64)
}

/// Holds back text that could be the start of a stop sequence.
struct StopFilter<'a> {
    stops: &'a [String],
    held: String,
}

impl StopFilter<'_> {
    /// Adds text; returns what can be sent and whether a stop sequence was hit.
    fn push(&mut self, piece: &str) -> (String, bool) {
        self.held.push_str(piece);
        if let Some(at) = self
            .stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let out = self.held[..at].to_string();
            self.held.clear();
            return (out, true);
        }
        let keep = self
            .stops
            .iter()
            .flat_map(|s| {
                (1..s.len())
                    .filter(|&n| s.is_char_boundary(n))
                    .map(move |n| &s[..n])
            })
            .filter(|prefix| self.held.ends_with(prefix))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        (out, false)
    }
}

fn generate(model: &Llama, codec: &TextCodec, job: Job) {
    let Job {
        prompt,
        request,
        mut constraint,
        events,
    } = job;
    let context = model.config.context_length;
    let send = |e: GenerateEvent| events.blocking_send(e).is_ok();
    let fail = |why: String| {
        send(GenerateEvent::Error(format!("output format: {why}")));
    };
    let mut cache = model.new_cache();
    let mut logits = Vec::new();
    for chunk in prompt.chunks(PREFILL_CHUNK) {
        if events.is_closed() {
            return;
        }
        logits = model.forward(chunk, &mut cache);
    }
    let mut sampler = Sampler::new(
        request.temperature,
        request.top_k,
        request.top_p,
        request.seed.unwrap_or_else(default_seed),
    );
    let mut decoder = StreamDecoder::default();
    let mut stop = StopFilter {
        stops: &request.stop,
        held: String::new(),
    };
    let mut completion = 0u32;
    let mut finish = FinishReason::Length;
    let mut hit_stop_sequence = false;
    'decode: while completion < request.max_tokens {
        if let Some(constraint) = constraint.as_mut()
            && let Err(why) = constraint.mask(&mut logits)
        {
            return fail(why);
        }
        let id = sampler.sample(&logits);
        if codec.is_end_of_generation(id) {
            finish = FinishReason::Stop;
            break;
        }
        // This token, then any the output format forces after it (within max_tokens).
        let mut step = vec![id];
        if let Some(constraint) = constraint.as_mut() {
            if let Err(why) = constraint.accept(id) {
                return fail(why);
            }
            let room = (request.max_tokens - completion - 1) as usize;
            step.extend(constraint.forced().into_iter().take(room));
        }
        for &token in &step {
            completion += 1;
            let (text, stopped) = stop.push(&decoder.push(codec, token));
            if !text.is_empty() && !send(GenerateEvent::Delta(text)) {
                return;
            }
            if stopped {
                finish = FinishReason::Stop;
                hit_stop_sequence = true;
                break 'decode;
            }
        }
        if constraint.as_ref().is_some_and(Constraint::is_complete) {
            finish = FinishReason::Stop;
            break;
        }
        // The next forward pass stores these tokens: prompt + completion stay within the context.
        if completion >= request.max_tokens || cache.len() + step.len() >= context {
            break;
        }
        logits = model.forward(&step, &mut cache);
    }
    if !hit_stop_sequence {
        let (text, hit) = stop.push(&decoder.finish());
        let rest = if hit { text } else { text + &stop.held };
        if hit {
            finish = FinishReason::Stop;
        }
        if !rest.is_empty() && !send(GenerateEvent::Delta(rest)) {
            return;
        }
    }
    send(GenerateEvent::Done {
        finish_reason: finish,
        prompt_tokens: prompt.len() as u32,
        completion_tokens: completion,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> GenerateRequest {
        GenerateRequest {
            messages: vec![("user".into(), "hi".into())],
            max_tokens: 4,
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: None,
            stop: Vec::new(),
            format: None,
        }
    }

    #[test]
    fn a_panicking_job_fails_alone_and_the_worker_survives() {
        let shared = Arc::new(Shared { depth: 0.into() });
        let queue = run_worker(4, Arc::clone(&shared), |job: Job| {
            if job.prompt == [666] {
                panic!("boom in the model");
            }
            let _ = job.events.blocking_send(GenerateEvent::Delta("ok".into()));
        })
        .unwrap();
        let mut receivers = Vec::new();
        for prompt in [vec![666], vec![1]] {
            let (tx, rx) = event_channel();
            shared.depth.fetch_add(1, Ordering::SeqCst);
            queue
                .try_send(JobHandle::new(prompt, request(), None, tx))
                .ok()
                .unwrap();
            receivers.push(rx);
        }
        let first = receivers[0].blocking_recv().unwrap();
        assert!(
            matches!(&first, GenerateEvent::Error(m) if m.contains("boom in the model")),
            "{first:?}"
        );
        assert_eq!(
            receivers[1].blocking_recv(),
            Some(GenerateEvent::Delta("ok".into()))
        );
        while shared.depth.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
    }

    #[test]
    fn stop_filter_holds_back_partial_matches() {
        let stops = vec!["\n\nUser:".to_string()];
        let mut f = StopFilter {
            stops: &stops,
            held: String::new(),
        };
        assert_eq!(f.push("Hello"), ("Hello".to_string(), false));
        assert_eq!(f.push(" there\n"), (" there".to_string(), false));
        assert_eq!(f.push("\nUs"), (String::new(), false));
        assert_eq!(f.push("er: hi"), (String::new(), true));
    }

    #[test]
    fn stop_filter_releases_false_alarms() {
        let stops = vec!["END".to_string()];
        let mut f = StopFilter {
            stops: &stops,
            held: String::new(),
        };
        assert_eq!(f.push("the EN"), ("the ".to_string(), false));
        assert_eq!(f.push("D"), (String::new(), true));
        let mut f = StopFilter {
            stops: &stops,
            held: String::new(),
        };
        assert_eq!(f.push("E"), (String::new(), false));
        assert_eq!(f.push("gg"), ("Egg".to_string(), false));
    }
}
