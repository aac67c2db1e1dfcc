//! Sending our trade messages: one delivery attempt to each recipient with the whole chain,
//! sealed copies left in relay mailboxes for recipients that are offline, the timed and
//! on-connect retry passes over the delivery queue, fetching what relays hold for us, and
//! receipts.
//!
//! It records each attempt's outcome through the delivery record's rules (`delivery.rs`) and
//! must not decide what a trade step writes: that is `effects.rs`.

use std::time::Duration;

use jangteo_protocol::{Kind, ObjectId, SignedObject};
use libp2p::PeerId;
use serde_bytes::ByteBuf;

use super::delivery::{Attempt, Delivery, DeliveryStatus};
use super::{TradeError, Trades};
use crate::NodeEvent;
use crate::clock::now_ms;
use crate::net::{MailboxRequest, MailboxResponse, TradeRequest, TradeResponse};

/// How long one delivery attempt may take.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Most queued deliveries one retry pass looks at.
pub const RETRY_PASS_MAX: usize = 4096;

impl Trades {
    pub(super) fn delivery(&self, msg: &ObjectId) -> Result<Option<Delivery>, TradeError> {
        Ok(self
            .store
            .delivery(msg)?
            .and_then(|raw| serde_json::from_slice::<Delivery>(&raw).ok()))
    }

    /// Sends one of our messages (with the whole chain) to its recipients and records the
    /// outcome. Unreachable recipients leave it queued, with backoff, until the attempt cap
    /// (for keys that never answered) or its lifetime runs out. Does nothing while another
    /// task delivers it.
    pub async fn deliver(&self, trade: &ObjectId, msg: &ObjectId) {
        let Some(_working) = self.delivering.begin(msg.0) else {
            return;
        };
        let Ok(Some(mut d)) = self.delivery(msg) else {
            return;
        };
        if !d.is_queued() {
            return;
        }
        let now = now_ms();
        // A record that turns failed is written with its notification.
        let record = |d: &Delivery| {
            let at = now_ms();
            let w = d.write(*msg, at);
            let notes = if d.status == DeliveryStatus::Failed {
                let why = d.reason.clone().unwrap_or_else(|| "given up".into());
                vec![super::effects::delivery_failed(trade, msg, why, at)]
            } else {
                Vec::new()
            };
            if let Ok(written) =
                self.store
                    .set_delivery(trade, msg, &w.record, w.next_attempt, notes)
            {
                for notification in written {
                    let _ = self.events.send(NodeEvent::Notification {
                        notification: Box::new(notification),
                    });
                }
            }
        };
        let Ok(Some(chain)) = self.load(trade) else {
            return;
        };
        let Some(ours) = chain.messages.iter().find(|m| m.id() == *msg) else {
            d.fail(
                "superseded: another message took its place in the trade first".into(),
                now,
            );
            record(&d);
            return;
        };
        // A dispute or resolution waits for its moderator as long as the mailboxes keep it.
        let escalation = matches!(ours.kind(), Kind::Dispute | Kind::Resolution);
        let answered = |peer: &str| chain.messages.iter().any(|m| m.author().peer_id() == peer);
        if let Some(why) = d.give_up(now, escalation, answered) {
            d.fail(why, now);
            record(&d);
            self.announce(msg, DeliveryStatus::Failed);
            return;
        }
        let messages: Vec<Vec<u8>> = chain
            .messages
            .iter()
            .map(|m| m.object.bytes().to_vec())
            .collect();
        let request = TradeRequest {
            messages: messages.iter().cloned().map(ByteBuf::from).collect(),
        };
        let mut pending: Vec<(String, String)> = Vec::new();
        let mut reached: Vec<String> = Vec::new();
        let mut refused: Vec<String> = Vec::new();
        for to in &d.to {
            let Ok(peer) = to.parse::<PeerId>() else {
                refused.push(format!("{to} is not a peer id"));
                reached.push(to.clone());
                continue;
            };
            match tokio::time::timeout(
                DELIVERY_TIMEOUT,
                self.network.send_trade(peer, request.clone()),
            )
            .await
            {
                Ok(Ok(Ok(TradeResponse::Accepted))) => reached.push(to.clone()),
                Ok(Ok(Ok(TradeResponse::Busy(r)))) => {
                    pending.push((to.clone(), format!("{to} is busy: {r}")))
                }
                Ok(Ok(Ok(TradeResponse::Refused(r)))) => {
                    refused.push(format!("{to} refused: {r}"));
                    reached.push(to.clone());
                }
                Ok(Ok(Err(e))) => pending.push((to.clone(), format!("{to} unreachable: {e}"))),
                Ok(Err(e)) => pending.push((to.clone(), e.to_string())),
                Err(_) => pending.push((
                    to.clone(),
                    format!("{to} did not answer within {DELIVERY_TIMEOUT:?}"),
                )),
            }
        }
        // Recipients we could not reach: leave a sealed copy on the relays we know, once.
        if !pending.is_empty() && d.mailbox.is_empty() {
            for (to, why) in pending.iter_mut() {
                match self.deposit(to, &messages).await {
                    Ok(relays) if !relays.is_empty() => {
                        *why = format!(
                            "{to} is offline; held in the mailbox of relay {}",
                            relays.join(", ")
                        );
                        d.mailbox.extend(relays);
                    }
                    Ok(_) => why.push_str("; no relay with mailboxes is connected"),
                    Err(e) => why.push_str(&format!("; {e}")),
                }
            }
        } else if !pending.is_empty() && !d.mailbox.is_empty() {
            for (to, why) in pending.iter_mut() {
                *why = format!(
                    "{to} is offline; held in the mailbox of relay {}",
                    d.mailbox.join(", ")
                );
            }
        }
        let pending: Vec<String> = pending.into_iter().map(|(_, w)| w).collect();
        // Another task may have marked it meanwhile (the other side sent it back).
        if let Ok(Some(now_d)) = self.delivery(msg)
            && !now_d.is_queued()
        {
            return;
        }
        d.attempted(
            Attempt {
                reached,
                refused,
                pending,
            },
            now_ms(),
        );
        record(&d);
        if !d.is_queued() {
            self.announce(msg, d.status);
        }
    }

    pub(super) fn announce(&self, msg: &ObjectId, status: DeliveryStatus) {
        let _ = self.events.send(NodeEvent::Delivery {
            message: msg.to_hex(),
            status: status.into(),
        });
    }

    /// Sends queued messages whose time has come, or every queued message addressed to
    /// `peer` (it just connected). Costs in proportion to the queue, not to all trades.
    pub async fn retry_queued(&self, peer: Option<String>) {
        use std::sync::atomic::Ordering;
        // Timed passes never overlap; a pass for a peer that just connected always runs (it
        // only sends what is addressed to that peer, and a repeat changes nothing).
        let timed = peer.is_none();
        if timed && self.retrying.swap(true, Ordering::AcqRel) {
            return;
        }
        let now = now_ms();
        if let Ok(queue) = self.store.delivery_queue(RETRY_PASS_MAX) {
            for (msg, trade, next) in queue {
                let due = next <= now
                    || peer.as_ref().is_some_and(|p| {
                        self.delivery(&msg)
                            .ok()
                            .flatten()
                            .is_some_and(|d| d.to.contains(p))
                    });
                if due {
                    self.deliver(&trade, &msg).await;
                }
            }
        }
        if timed {
            self.retrying.store(false, Ordering::Release);
        }
    }

    /// Seals the chain to `to` and leaves it with every connected relay; returns the relays
    /// that took it, or the reason they gave.
    pub(super) async fn deposit(
        &self,
        to: &str,
        messages: &[Vec<u8>],
    ) -> Result<Vec<String>, String> {
        crate::services::mailbox::deposit(&self.network, to, messages).await
    }

    /// Collects what waits for this node on the connected relays, applies it, acknowledges
    /// it (so the relay deletes it), and sends each trade's chain back to the counterparty
    /// as a receipt when it can.
    pub async fn fetch_mailboxes(&self) {
        let Ok(relays) = self.network.relays().await else {
            return;
        };
        for relay in relays {
            let Ok(Ok(MailboxResponse::Items(items))) =
                self.network.mailbox(relay, MailboxRequest::Fetch).await
            else {
                continue;
            };
            if items.is_empty() {
                continue;
            }
            let mut ids = Vec::with_capacity(items.len());
            let mut touched = Vec::new();
            for (id, sealed) in items {
                ids.push(id);
                let Ok(plain) = jangteo_protocol::mailbox::open(&self.key, &sealed) else {
                    tracing::warn!(relay = %relay, "dropping a mailbox item that does not open with our key");
                    continue;
                };
                let Ok(bundle) = jangteo_protocol::mailbox::decode_bundle(&plain) else {
                    continue;
                };
                self.collected
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // A direct message or receipt: one envelope, for the conversations service.
                if let [one] = bundle.as_slice()
                    && jangteo_protocol::Envelope::decode(one)
                        .is_ok_and(|e| matches!(e.kind, Kind::Message | Kind::Receipt))
                {
                    if let Some(sink) = self.direct_mail.get() {
                        let (done, handled) = tokio::sync::oneshot::channel();
                        if sink.send((one.clone(), done)).await.is_ok() {
                            let _ = tokio::time::timeout(DELIVERY_TIMEOUT, handled).await;
                        }
                    }
                    continue;
                }
                let request = TradeRequest {
                    messages: bundle.into_iter().map(ByteBuf::from).collect(),
                };
                let offer_id = request
                    .messages
                    .iter()
                    .filter_map(|b| SignedObject::decode_and_verify(b).ok())
                    .find(|o| o.envelope().kind == Kind::Offer)
                    .map(|o| o.id());
                let response = self.receive(request).await;
                tracing::info!(relay = %relay, response = ?response, "mailbox item");
                if let (TradeResponse::Accepted, Some(t)) = (response, offer_id) {
                    touched.push(t);
                }
            }
            let _ = self
                .network
                .mailbox(relay, MailboxRequest::Ack { ids })
                .await;
            for t in touched {
                self.send_receipt(&t).await;
            }
        }
    }

    /// Sends our copy of a trade's chain to the other parties (best effort): it tells them
    /// their messages arrived.
    pub(super) async fn send_receipt(&self, trade: &ObjectId) {
        let Ok(Some(chain)) = self.load(trade) else {
            return;
        };
        let request = TradeRequest {
            messages: chain
                .messages
                .iter()
                .map(|m| ByteBuf::from(m.object.bytes().to_vec()))
                .collect(),
        };
        for key in [chain.buyer, chain.seller]
            .into_iter()
            .filter(|k| *k != self.me)
        {
            if let Ok(peer) = key.peer_id().parse::<PeerId>() {
                let _ = tokio::time::timeout(
                    DELIVERY_TIMEOUT,
                    self.network.send_trade(peer, request.clone()),
                )
                .await;
            }
        }
    }
}
