//! `/v1/embeddings` for upstream models: the backends that serve the requested model, in
//! name order, each attempt reserved in the ledger at the model's input price and settled
//! with the tokens it used; a failover error tries the next backend.

use serde_json::{Map, Value};

use super::attempt::refused_upstream;
use super::settle::HeldReservation;
use super::{Attempt, AttemptError, DispatchError, Dispatcher};
use crate::backends::{BackendError, EmbedRequest, EmbedResponse, Usage};

/// Embeddings an upstream served.
#[derive(Debug)]
pub struct Embedded {
    pub request_id: String,
    pub backend: String,
    pub cost_usd: f64,
    pub response: EmbedResponse,
}

impl Dispatcher {
    /// Whether a configured backend serves `model` (the embeddings it is asked for go
    /// upstream).
    pub fn serves_model(&self, model: &str) -> bool {
        self.backends
            .values()
            .any(|b| b.backend.backend().models().iter().any(|m| m == model))
    }

    /// Embeddings of `model` for `tenant`: the client's body `fields` (without `model`)
    /// sent to each backend serving `model` until one answers. `estimate_tokens`: the
    /// input's tokens as estimated, for the rate limit and the reservation.
    pub async fn embed(
        &self,
        tenant: &str,
        model: &str,
        fields: Map<String, Value>,
        estimate_tokens: u32,
    ) -> Result<Embedded, DispatchError> {
        let serving: Vec<_> = self
            .backends
            .values()
            .filter(|b| b.backend.backend().models().iter().any(|m| m == model))
            .collect();
        if serving.is_empty() {
            return Err(DispatchError::UnknownModel(model.to_owned()));
        }
        let charge = self.admit_tokens(tenant, estimate_tokens).await?;
        let request_id = self.new_request_id();
        let request = EmbedRequest {
            model: model.to_owned(),
            fields: fields.into(),
        };
        let mut attempts = Vec::new();
        let mut last = None;
        for (number, target) in (1u32..).zip(serving) {
            let backend = target.backend.name().to_owned();
            let facts = target.backend.facts();
            let usd_per_mtok = facts
                .capabilities
                .iter()
                .find(|c| c.model == model)
                .map_or(facts.usd_per_mtok_in, |c| c.usd_per_mtok_in);
            let held = match &self.ledger {
                Some(ledger) => Some(
                    HeldReservation::hold(
                        ledger,
                        tenant,
                        &request_id,
                        number,
                        &backend,
                        f64::from(estimate_tokens) * usd_per_mtok / 1e6,
                    )
                    .await?,
                ),
                None => None,
            };
            match target.backend.embed(request.clone()).await {
                Ok(response) => {
                    let cost_usd = f64::from(response.prompt_tokens) * usd_per_mtok / 1e6;
                    if let Some(held) = &held {
                        held.close(Some(cost_usd));
                    }
                    if let Some(charge) = charge {
                        charge.used(&Usage {
                            prompt_tokens: response.prompt_tokens,
                            completion_tokens: 0,
                        });
                    }
                    return Ok(Embedded {
                        request_id,
                        backend,
                        cost_usd,
                        response,
                    });
                }
                Err(err) => {
                    if let Some(held) = &held {
                        held.close(None);
                    }
                    tracing::warn!(backend = %backend, error = %err, "embeddings attempt failed");
                    attempts.push(Attempt {
                        backend: backend.clone(),
                        error: Some(AttemptError::Backend(err.clone())),
                    });
                    if !err.is_failover() {
                        return Err(refused_upstream(backend, err));
                    }
                    last = Some(err);
                }
            }
        }
        let all_unsupported = attempts.iter().all(|a| {
            matches!(
                a.error,
                Some(AttemptError::Backend(BackendError::Unsupported(_)))
            )
        });
        match last {
            Some(BackendError::Unsupported(message)) if all_unsupported => {
                Err(DispatchError::Unsupported(message))
            }
            _ => Err(DispatchError::AllFailed {
                unavailable: attempts.iter().all(|a| {
                    matches!(
                        a.error,
                        Some(AttemptError::Backend(BackendError::Unavailable(_)))
                    )
                }),
                attempts,
            }),
        }
    }
}
