//! The delivery record of one of our trade messages: who is still to reach, who refused,
//! which relays hold a sealed copy, its status (queued, delivered, failed with a reason), and
//! the retry schedule (backoff, attempt cap, lifetime).
//!
//! It owns the rules of that record as pure data: no store, no network, no clock of its own
//! (every time is passed in). Sending lives in `send.rs`.

use jangteo_protocol::ObjectId;
use serde::{Deserialize, Serialize};

use crate::store::DeliveryWrite;

/// First wait before a queued message is sent again; it doubles per attempt.
pub const RETRY_BACKOFF_MIN_MS: u64 = 3_000;
/// Longest wait between two attempts.
pub const RETRY_BACKOFF_MAX_MS: u64 = 10 * 60 * 1000;
/// Attempts after which a message to a key that never answered in its trade fails.
pub const DELIVERY_ATTEMPTS_MAX: u32 = 60;
/// Age after which any still-queued message fails (the relays' mailbox retention).
pub const DELIVERY_LIFETIME_MS: u64 = 14 * 24 * 3600 * 1000;
/// The delivery record of one of our messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Delivery {
    /// Relays holding a sealed copy for recipients we could not reach.
    #[serde(default)]
    pub(super) mailbox: Vec<String>,
    /// Recipients still to reach.
    pub(super) to: Vec<String>,
    /// Recipients that refused it, with their reasons.
    #[serde(default)]
    pub(super) refused: Vec<String>,
    pub(super) status: String,
    pub(super) reason: Option<String>,
    pub(super) attempts: u32,
    #[serde(default)]
    pub(super) created_at: u64,
    pub(super) updated_at: u64,
}

impl Delivery {
    pub(super) fn queued(to: Vec<String>, now: u64) -> Self {
        Self {
            mailbox: Vec::new(),
            to,
            refused: Vec::new(),
            status: "queued".into(),
            reason: None,
            attempts: 0,
            created_at: now,
            updated_at: now,
        }
    }

    pub(super) fn write(&self, message: ObjectId, now: u64) -> DeliveryWrite {
        let backoff = RETRY_BACKOFF_MIN_MS
            .saturating_mul(1u64 << self.attempts.min(20))
            .min(RETRY_BACKOFF_MAX_MS);
        DeliveryWrite {
            message,
            record: serde_json::to_vec(self).unwrap_or_default(),
            next_attempt: (self.status == "queued").then(|| {
                if self.attempts == 0 {
                    now
                } else {
                    now + backoff
                }
            }),
        }
    }
}
