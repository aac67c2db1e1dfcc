//! The delivery record of one of our trade messages: who is still to reach, who refused,
//! which relays hold a sealed copy, its status (queued, delivered, failed with a reason), and
//! the retry schedule (backoff, attempt cap, lifetime).
//!
//! It owns the rules of that record as pure data: no store, no network, no clock of its own
//! (every time is passed in), so every rule is unit-tested here. Sending lives in `send.rs`;
//! only a queued record changes: delivered and failed are final.

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

/// Where a message stands (stored as its lowercase name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum DeliveryStatus {
    /// Some recipient is still to reach; it is tried again.
    Queued,
    /// Every recipient took it.
    Delivered,
    /// Given up, with a reason.
    Failed,
}

impl From<DeliveryStatus> for crate::api::types::DeliveryStatus {
    fn from(s: DeliveryStatus) -> Self {
        match s {
            DeliveryStatus::Queued => Self::Queued,
            DeliveryStatus::Delivered => Self::Delivered,
            DeliveryStatus::Failed => Self::Failed,
        }
    }
}

/// The wait after `attempts` attempts before the next one: [`RETRY_BACKOFF_MIN_MS`] after the
/// first, doubling, at most [`RETRY_BACKOFF_MAX_MS`].
pub(super) fn backoff_ms(attempts: u32) -> u64 {
    RETRY_BACKOFF_MIN_MS
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(20))
        .min(RETRY_BACKOFF_MAX_MS)
}

/// What one attempt found, recipient by recipient.
#[derive(Debug, Default)]
pub(super) struct Attempt {
    /// Recipients that answered (took it or refused it).
    pub(super) reached: Vec<String>,
    /// Refusals, each with its recipient and reason.
    pub(super) refused: Vec<String>,
    /// Why each recipient not reached was not.
    pub(super) pending: Vec<String>,
}

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
    pub(super) status: DeliveryStatus,
    pub(super) reason: Option<String>,
    pub(super) attempts: u32,
    /// When it was queued (unix ms; 0 in records older than this field: no lifetime).
    #[serde(default)]
    pub(super) created_at: u64,
    pub(super) updated_at: u64,
}

impl Delivery {
    /// A new record for a message to `to`, due at once.
    pub(super) fn queued(to: Vec<String>, now: u64) -> Self {
        Self {
            mailbox: Vec::new(),
            to,
            refused: Vec::new(),
            status: DeliveryStatus::Queued,
            reason: None,
            attempts: 0,
            created_at: now,
            updated_at: now,
        }
    }

    /// Whether it is still to be sent.
    pub(super) fn is_queued(&self) -> bool {
        self.status == DeliveryStatus::Queued
    }

    /// When to try next: at once before the first attempt, then after [`backoff_ms`]; None
    /// once it is no longer queued.
    pub(super) fn next_attempt(&self, now: u64) -> Option<u64> {
        self.is_queued().then(|| {
            if self.attempts == 0 {
                now
            } else {
                now.saturating_add(backoff_ms(self.attempts))
            }
        })
    }

    /// The store's write of this record for `message`.
    pub(super) fn write(&self, message: ObjectId, now: u64) -> DeliveryWrite {
        DeliveryWrite {
            message,
            record: serde_json::to_vec(self).unwrap_or_default(),
            next_attempt: self.next_attempt(now),
        }
    }

    /// Marks a queued record delivered (the other side sent the message back). Returns
    /// whether it changed.
    pub(super) fn mark_delivered(&mut self, now: u64) -> bool {
        if !self.is_queued() {
            return false;
        }
        self.status = DeliveryStatus::Delivered;
        self.reason = None;
        self.updated_at = now;
        true
    }

    /// Marks a queued record failed with `reason`. Returns whether it changed.
    pub(super) fn fail(&mut self, reason: String, now: u64) -> bool {
        if !self.is_queued() {
            return false;
        }
        self.status = DeliveryStatus::Failed;
        self.reason = Some(reason);
        self.updated_at = now;
        true
    }

    /// Why a queued message must fail rather than be tried again, if it must: it outlived
    /// [`DELIVERY_LIFETIME_MS`], or it was tried [`DELIVERY_ATTEMPTS_MAX`] times towards a
    /// key that never `answered` in its trade. An `escalation` (a dispute or resolution)
    /// waits for its moderator as long as the mailboxes keep it: no attempt cap.
    pub(super) fn give_up(
        &self,
        now: u64,
        escalation: bool,
        answered: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let last = self.reason.clone().unwrap_or_default();
        if self.created_at > 0 && now.saturating_sub(self.created_at) > DELIVERY_LIFETIME_MS {
            return Some(format!(
                "not delivered within {} days: {last}",
                DELIVERY_LIFETIME_MS / 86_400_000
            ));
        }
        if !escalation
            && self.attempts >= DELIVERY_ATTEMPTS_MAX
            && !self.to.iter().all(|t| answered(t))
        {
            return Some(format!(
                "no answer after {DELIVERY_ATTEMPTS_MAX} attempts from a key that never answered in this trade: {last}"
            ));
        }
        None
    }

    /// Records one attempt: recipients reached leave the list; delivered when every one took
    /// it, failed when every one answered and some refused, else still queued with the reasons.
    pub(super) fn attempted(&mut self, attempt: Attempt, now: u64) {
        if !self.is_queued() {
            return;
        }
        self.refused.extend(attempt.refused);
        self.to.retain(|t| !attempt.reached.contains(t));
        self.attempts = self.attempts.saturating_add(1);
        self.updated_at = now;
        if self.to.is_empty() && self.refused.is_empty() {
            self.status = DeliveryStatus::Delivered;
            self.reason = None;
        } else if self.to.is_empty() {
            self.status = DeliveryStatus::Failed;
            self.reason = Some(self.refused.join("; "));
        } else {
            self.reason = Some(
                attempt
                    .pending
                    .into_iter()
                    .chain(self.refused.iter().cloned())
                    .collect::<Vec<_>>()
                    .join("; "),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000;

    fn two() -> Delivery {
        Delivery::queued(vec!["a".into(), "b".into()], T0)
    }

    fn reached(who: &[&str]) -> Attempt {
        Attempt {
            reached: who.iter().map(|s| s.to_string()).collect(),
            ..Attempt::default()
        }
    }

    #[test]
    fn backoff_starts_at_three_seconds_doubles_and_stops_at_ten_minutes() {
        let waits: Vec<u64> = (1..=10).map(backoff_ms).collect();
        assert_eq!(
            waits,
            [
                3_000, 6_000, 12_000, 24_000, 48_000, 96_000, 192_000, 384_000, 600_000, 600_000
            ]
        );
        assert_eq!(backoff_ms(DELIVERY_ATTEMPTS_MAX), RETRY_BACKOFF_MAX_MS);
        assert_eq!(backoff_ms(u32::MAX), RETRY_BACKOFF_MAX_MS);
    }

    #[test]
    fn a_new_record_is_due_at_once_then_after_the_backoff() {
        let mut d = two();
        assert_eq!(d.next_attempt(T0), Some(T0));
        d.attempted(reached(&[]), T0);
        assert_eq!(d.attempts, 1);
        assert_eq!(d.next_attempt(T0), Some(T0 + RETRY_BACKOFF_MIN_MS));
        for _ in 1..30 {
            d.attempted(reached(&[]), T0);
        }
        assert_eq!(d.next_attempt(T0), Some(T0 + RETRY_BACKOFF_MAX_MS));
        let w = d.write(ObjectId([7; 32]), T0);
        assert_eq!(w.next_attempt, Some(T0 + RETRY_BACKOFF_MAX_MS));
    }

    #[test]
    fn every_recipient_reached_is_delivered_and_no_longer_due() {
        let mut d = two();
        d.attempted(reached(&["a"]), T0 + 1);
        assert!(d.is_queued());
        assert_eq!(d.to, ["b"]);
        d.attempted(reached(&["b"]), T0 + 2);
        assert_eq!(d.status, DeliveryStatus::Delivered);
        assert_eq!(d.reason, None);
        assert_eq!(d.updated_at, T0 + 2);
        assert_eq!(d.next_attempt(T0 + 2), None);
    }

    #[test]
    fn refusal_by_every_recipient_fails_with_the_reasons() {
        let mut d = two();
        d.attempted(
            Attempt {
                reached: vec!["a".into(), "b".into()],
                refused: vec!["b refused: sold out".into()],
                pending: vec![],
            },
            T0,
        );
        assert_eq!(d.status, DeliveryStatus::Failed);
        assert_eq!(d.reason.as_deref(), Some("b refused: sold out"));
    }

    #[test]
    fn a_recipient_not_reached_keeps_it_queued_with_why() {
        let mut d = two();
        d.attempted(
            Attempt {
                reached: vec!["a".into()],
                refused: vec![],
                pending: vec!["b unreachable: timeout".into()],
            },
            T0,
        );
        assert!(d.is_queued());
        assert_eq!(d.reason.as_deref(), Some("b unreachable: timeout"));
    }

    #[test]
    fn delivered_and_failed_are_final() {
        let mut d = two();
        assert!(d.mark_delivered(T0 + 1));
        assert!(!d.fail("late".into(), T0 + 2));
        assert!(!d.mark_delivered(T0 + 3));
        d.attempted(reached(&[]), T0 + 4);
        assert_eq!(d.status, DeliveryStatus::Delivered);
        assert_eq!((d.attempts, d.updated_at), (0, T0 + 1));

        let mut f = two();
        assert!(f.fail("superseded".into(), T0 + 1));
        assert!(!f.mark_delivered(T0 + 2));
        assert_eq!(f.status, DeliveryStatus::Failed);
        assert_eq!(f.reason.as_deref(), Some("superseded"));
        assert_eq!(f.next_attempt(T0 + 2), None);
    }

    #[test]
    fn sixty_attempts_to_a_silent_key_fail_but_not_a_dispute_nor_a_known_key() {
        let mut d = two();
        for _ in 0..DELIVERY_ATTEMPTS_MAX - 1 {
            d.attempted(reached(&[]), T0);
        }
        let silent = |_: &str| false;
        assert_eq!(d.give_up(T0, false, silent), None);
        d.attempted(reached(&[]), T0);
        let why = d.give_up(T0, false, silent).expect("gives up");
        assert!(why.contains("60 attempts"), "{why}");
        assert_eq!(d.give_up(T0, true, silent), None, "a dispute is exempt");
        assert_eq!(d.give_up(T0, false, |_| true), None, "they answered before");
    }

    #[test]
    fn fourteen_days_end_any_delivery_even_a_dispute() {
        let d = two();
        let day = 86_400_000;
        assert_eq!(d.give_up(T0 + 14 * day, true, |_| true), None);
        let why = d
            .give_up(T0 + 14 * day + 1, true, |_| true)
            .expect("too old");
        assert!(why.starts_with("not delivered within 14 days"), "{why}");
        let mut legacy = two();
        legacy.created_at = 0;
        assert_eq!(legacy.give_up(T0 + 365 * day, true, |_| true), None);
    }

    #[test]
    fn the_record_keeps_its_stored_form() {
        let d = two();
        let v: serde_json::Value =
            serde_json::from_slice(&d.write(ObjectId([1; 32]), T0).record).expect("json");
        assert_eq!(v["status"], "queued");
        let old = br#"{"to":["a"],"status":"failed","reason":"x","attempts":3,"updated_at":5}"#;
        let back: Delivery = serde_json::from_slice(old).expect("an older record reads");
        assert_eq!(back.status, DeliveryStatus::Failed);
        assert_eq!(back.created_at, 0);
    }
}
