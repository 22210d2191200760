//! Caps on what one decision may hold (targets, replacement messages, reason, labels),
//! checked before the host uses it: a legal but huge decision is a policy failure.

use crate::domain::{Decision, Rejection};

/// The most a decision may hold; over any cap the decision is refused
/// ([`super::FailureKind::OverLimit`]) and the fallback used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionLimits {
    /// Targets in one decision.
    pub max_targets: usize,
    /// Bytes of a target's backend or model name.
    pub max_name_bytes: usize,
    /// Total bytes of the replacement messages' contents.
    pub max_message_bytes: usize,
    /// Replacement messages.
    pub max_messages: usize,
    /// Bytes of the reason.
    pub max_reason_bytes: usize,
    /// Labels on the decision.
    pub max_labels: usize,
    /// Bytes of one label key.
    pub max_label_key_bytes: usize,
    /// Bytes of one label value.
    pub max_label_value_bytes: usize,
    /// Bytes of a rejection's message (it reaches the client and the decision log).
    pub max_rejection_bytes: usize,
}

impl Default for DecisionLimits {
    fn default() -> Self {
        Self {
            max_targets: 16,
            max_name_bytes: 256,
            max_message_bytes: 1 << 20,
            max_messages: 1024,
            max_reason_bytes: 256,
            max_labels: 32,
            max_label_key_bytes: 64,
            max_label_value_bytes: 256,
            max_rejection_bytes: 1024,
        }
    }
}

impl DecisionLimits {
    /// How `rejection` exceeds its cap, described; `None` when it fits.
    pub fn rejection_exceeded(&self, rejection: &Rejection) -> Option<String> {
        (rejection.message.len() > self.max_rejection_bytes).then(|| {
            format!(
                "rejection message bytes {} over the cap of {}",
                rejection.message.len(),
                self.max_rejection_bytes
            )
        })
    }

    /// The first cap `decision` exceeds, described; `None` when it fits.
    pub fn exceeded(&self, decision: &Decision) -> Option<String> {
        let over = |what: &str, n: usize, cap: usize| format!("{what} {n} over the cap of {cap}");
        if decision.targets.len() > self.max_targets {
            return Some(over("targets", decision.targets.len(), self.max_targets));
        }
        let longest_name = decision
            .targets
            .iter()
            .map(|t| t.backend.len().max(t.model.as_deref().map_or(0, str::len)))
            .max()
            .unwrap_or(0);
        if longest_name > self.max_name_bytes {
            return Some(over("target name bytes", longest_name, self.max_name_bytes));
        }
        if let Some(messages) = &decision.messages {
            if messages.len() > self.max_messages {
                return Some(over(
                    "replacement messages",
                    messages.len(),
                    self.max_messages,
                ));
            }
            let bytes = messages
                .iter()
                .fold(0usize, |n, m| n.saturating_add(m.content.len()));
            if bytes > self.max_message_bytes {
                return Some(over(
                    "replacement message bytes",
                    bytes,
                    self.max_message_bytes,
                ));
            }
        }
        if decision.reason.len() > self.max_reason_bytes {
            return Some(over(
                "reason bytes",
                decision.reason.len(),
                self.max_reason_bytes,
            ));
        }
        if decision.labels.len() > self.max_labels {
            return Some(over("labels", decision.labels.len(), self.max_labels));
        }
        for (key, value) in &decision.labels {
            if key.len() > self.max_label_key_bytes {
                return Some(over("label key bytes", key.len(), self.max_label_key_bytes));
            }
            if value.len() > self.max_label_value_bytes {
                return Some(over(
                    "label value bytes",
                    value.len(),
                    self.max_label_value_bytes,
                ));
            }
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::{ChatMessage, Role, Target};

    fn decision(targets: usize) -> Decision {
        Decision {
            targets: (0..targets)
                .map(|_| Target {
                    backend: "local".into(),
                    model: None,
                })
                .collect(),
            reason: "ok".into(),
            messages: None,
            max_tokens: None,
            labels: Default::default(),
        }
    }

    fn message(bytes: usize) -> ChatMessage {
        ChatMessage {
            role: Role::User,
            content: "x".repeat(bytes),
        }
    }

    #[test]
    fn every_cap_is_enforced_at_its_edge() {
        let limits = DecisionLimits::default();
        assert_eq!(limits.exceeded(&decision(16)), None);
        assert!(
            limits
                .exceeded(&decision(17))
                .unwrap()
                .contains("targets 17")
        );

        let mut d = decision(1);
        d.targets[0].model = Some("m".repeat(257));
        assert!(limits.exceeded(&d).unwrap().contains("target name"));

        let mut d = decision(1);
        d.messages = Some(vec![message(512 << 10), message(512 << 10)]);
        assert_eq!(limits.exceeded(&d), None);
        d.messages = Some(vec![message(512 << 10), message((512 << 10) + 1)]);
        assert!(limits.exceeded(&d).unwrap().contains("message bytes"));
        d.messages = Some((0..1025).map(|_| message(0)).collect());
        assert!(
            limits
                .exceeded(&d)
                .unwrap()
                .contains("replacement messages")
        );

        let mut d = decision(1);
        d.reason = "r".repeat(257);
        assert!(limits.exceeded(&d).unwrap().contains("reason"));

        let mut d = decision(1);
        d.labels = (0..33).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(limits.exceeded(&d).unwrap().contains("labels 33"));
        d.labels = [("k".repeat(65), String::new())].into();
        assert!(limits.exceeded(&d).unwrap().contains("label key"));
        d.labels = [("k".into(), "v".repeat(257))].into();
        assert!(limits.exceeded(&d).unwrap().contains("label value"));

        let rejection = |bytes| Rejection {
            status: 403,
            message: "m".repeat(bytes),
        };
        assert_eq!(limits.rejection_exceeded(&rejection(1024)), None);
        assert!(
            limits
                .rejection_exceeded(&rejection(1025))
                .unwrap()
                .contains("rejection message bytes 1025")
        );
    }
}
