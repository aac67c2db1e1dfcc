//! Relay mailboxes for offline peers, relay side: hold sealed items for a recipient key,
//! hand a peer what waits for it, delete what it acknowledges.
//!
//! It receives the requests the swarm task routed to it (already counted by the peer,
//! address and subnet rate limits, and at most [`crate::net::MAILBOX_INBOUND_PER_PEER`] of
//! one peer waiting), writes and reads the store on a blocking thread (a put is synced to
//! disk before "stored" is answered; it reads counters, never the recipient's mailbox), and
//! answers through the [`Client`]. The sending side (deposit, fetch, ack as a client) lives
//! with the trades service that owns the messages.
//!
//! Limits of a put, each refused with its reason: the relay's total ([`MailboxRelay::new`],
//! [`MAILBOX_TOTAL_BYTES_MAX`] by default), the recipient's ([`MAILBOX_ITEMS_MAX`],
//! [`MAILBOX_BYTES_MAX`]), and the sender's share of that recipient's mailbox (an eighth,
//! [`MAILBOX_SENDER_SHARE`]) and its subnet's (a quarter, [`MAILBOX_SUBNET_SHARE`]), so
//! that a few throw-away keys cannot fill a victim's mailbox and refuse its honest mail.

use std::sync::Arc;

use serde_bytes::ByteBuf;
use tokio::sync::{mpsc, watch};

use crate::clock::now_ms;
use libp2p::PeerId;

use crate::net::{
    Client, InboundMailbox, MAILBOX_FETCH_BYTES, MAILBOX_FETCH_ITEMS, MailboxRequest,
    MailboxResponse, Origin, Response, serve_inbound,
};
use crate::store::{MailboxLimits, Quota, Store};

/// How long a relay keeps an item.
pub const MAILBOX_RETENTION_MS: u64 = 14 * 24 * 3600 * 1000;
/// Most items waiting for one recipient.
pub const MAILBOX_ITEMS_MAX: usize = 256;
/// Most bytes waiting for one recipient.
pub const MAILBOX_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Smallest sealed item (the seal's own overhead).
pub const SEALED_MIN_BYTES: usize = 48;
/// Mailbox requests answered at once (each put is an fsync).
pub const MAILBOX_WORKERS: usize = 2;
/// Sealed bytes a relay holds in all mailboxes together, unless configured otherwise
/// (`--mailbox-cap-mib`): 1 GiB, about 4,000 full mailboxes or 100,000 typical trade
/// messages.
pub const MAILBOX_TOTAL_BYTES_MAX: u64 = 1 << 30;
/// One sender (peer id) may hold this fraction (1/n) of one recipient's mailbox: 32 items,
/// 1 MiB. Four throw-away keys fill half of it; honest senders still get in.
pub const MAILBOX_SENDER_SHARE: u64 = 8;
/// One subnet (IPv4 /24, IPv6 /48) may hold this fraction (1/n) of one recipient's mailbox,
/// whatever number of keys it uses.
pub const MAILBOX_SUBNET_SHARE: u64 = 4;

/// The relay side of mailboxes.
#[derive(Debug, Clone)]
pub struct MailboxRelay {
    store: Arc<Store>,
    network: Client,
    total_bytes: u64,
}

impl MailboxRelay {
    /// A relay mailbox over the node's store, holding at most `total_bytes` sealed bytes.
    pub fn new(store: Arc<Store>, network: Client, total_bytes: u64) -> Self {
        Self {
            store,
            network,
            total_bytes,
        }
    }

    /// Answers what the swarm task routes here, [`MAILBOX_WORKERS`] at a time, until
    /// `shutdown`.
    pub async fn run(
        self,
        inbound: mpsc::Receiver<InboundMailbox>,
        shutdown: watch::Receiver<bool>,
    ) {
        serve_inbound(inbound, MAILBOX_WORKERS, shutdown, move |req| {
            let this = self.clone();
            async move {
                let store = this.store.clone();
                let (peer, origin, total) = (req.peer, req.origin, this.total_bytes);
                let request = req.request;
                let response = tokio::task::spawn_blocking(move || {
                    serve(&store, &peer, origin, request, now_ms(), total)
                })
                .await
                .unwrap_or_else(|e| MailboxResponse::Refused(format!("internal: {e}")));
                let _ = this
                    .network
                    .respond(Response::Mailbox(req.channel, response))
                    .await;
                // The peer's place in the queue is free once it is answered.
                drop(req.slot);
            }
        })
        .await;
    }
}

/// The name a sending peer's share of a mailbox is counted under.
pub fn sender_holder(peer: &PeerId) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"jangteo/mailbox-sender/");
    h.update(&peer.to_bytes());
    *h.finalize().as_bytes()
}

/// The limits of a relay holding at most `total_bytes`.
pub fn limits(total_bytes: u64) -> MailboxLimits {
    MailboxLimits {
        items_per_recipient: MAILBOX_ITEMS_MAX as u64,
        bytes_per_recipient: MAILBOX_BYTES_MAX as u64,
        total_bytes,
    }
}

/// The answer to one mailbox request from `peer`, connected from `origin`, on a relay
/// holding at most `total_bytes`. Blocking (store I/O, a put is synced). Fetch and ack act
/// on the requesting peer's own mailbox.
pub fn serve(
    store: &Store,
    peer: &PeerId,
    origin: Option<Origin>,
    request: MailboxRequest,
    now: u64,
    total_bytes: u64,
) -> MailboxResponse {
    let refused = |e: &dyn std::fmt::Display| MailboxResponse::Refused(format!("relay store: {e}"));
    let me = || jangteo_protocol::public_key_from_peer_id(&peer.to_string());
    match request {
        MailboxRequest::Put { to, sealed } => {
            let Ok(to) = <[u8; 32]>::try_from(to.as_slice()) else {
                return MailboxResponse::Refused("to: not a 32-byte key".into());
            };
            if sealed.len() > jangteo_protocol::mailbox::SEALED_MAX_BYTES
                || sealed.len() < SEALED_MIN_BYTES
            {
                return MailboxResponse::Refused("sealed item too large or too small".into());
            }
            let share = |n: u64| Quota {
                items: MAILBOX_ITEMS_MAX as u64 / n,
                bytes: MAILBOX_BYTES_MAX as u64 / n,
            };
            let mut holders = vec![(sender_holder(peer), share(MAILBOX_SENDER_SHARE))];
            if let Some(o) = origin {
                holders.push((o.subnet.holder(), share(MAILBOX_SUBNET_SHARE)));
            }
            match store.mailbox_put(
                &to,
                &sealed,
                &holders,
                now + MAILBOX_RETENTION_MS,
                &limits(total_bytes),
            ) {
                Ok(Ok(_)) => MailboxResponse::Stored,
                Ok(Err(reason)) => MailboxResponse::Refused(reason),
                Err(e) => refused(&e),
            }
        }
        MailboxRequest::Fetch => {
            let Some(me) = me() else {
                return MailboxResponse::Refused("only ed25519 peers have mailboxes".into());
            };
            match store.mailbox_fetch(&me.0, now, MAILBOX_FETCH_ITEMS, MAILBOX_FETCH_BYTES) {
                Ok(items) => MailboxResponse::Items(
                    items
                        .into_iter()
                        .map(|(id, b)| (ByteBuf::from(id.to_vec()), ByteBuf::from(b)))
                        .collect(),
                ),
                Err(e) => refused(&e),
            }
        }
        MailboxRequest::Ack { ids } => {
            let Some(me) = me() else {
                return MailboxResponse::Refused("only ed25519 peers have mailboxes".into());
            };
            let ids: Vec<[u8; 32]> = ids
                .iter()
                .filter_map(|i| <[u8; 32]>::try_from(i.as_slice()).ok())
                .take(MAILBOX_FETCH_ITEMS)
                .collect();
            match store.mailbox_ack(&me.0, &ids) {
                Ok(()) => MailboxResponse::Done,
                Err(e) => refused(&e),
            }
        }
    }
}

/// Seals the objects `messages` (one bundle) to `to` and leaves it with every connected relay; returns the relays
/// that took it, or the reason they gave.
pub async fn deposit(
    network: &crate::net::Client,
    to: &str,
    messages: &[Vec<u8>],
) -> Result<Vec<String>, String> {
    let key = jangteo_protocol::public_key_from_peer_id(to)
        .ok_or_else(|| format!("{to} is not an ed25519 peer id"))?;
    let mut eph = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut eph);
    let sealed = jangteo_protocol::mailbox::seal(
        &key,
        eph,
        &jangteo_protocol::mailbox::encode_bundle(messages),
    )
    .map_err(|e| e.to_string())?;
    let relays = network.relays().await.map_err(|e| e.to_string())?;
    let mut took = Vec::new();
    let mut reasons = Vec::new();
    for r in relays {
        let req = MailboxRequest::Put {
            to: ByteBuf::from(key.0.to_vec()),
            sealed: ByteBuf::from(sealed.clone()),
        };
        match network.mailbox(r, req).await {
            Ok(Ok(MailboxResponse::Stored)) => took.push(r.to_string()),
            Ok(Ok(MailboxResponse::Refused(why))) => {
                reasons.push(format!("relay {r} refused: {why}"))
            }
            Ok(Ok(other)) => reasons.push(format!("relay {r} answered {other:?}")),
            Ok(Err(e)) => reasons.push(format!("relay {r}: {e}")),
            Err(e) => reasons.push(e.to_string()),
        }
    }
    if took.is_empty() && !reasons.is_empty() {
        return Err(reasons.join("; "));
    }
    Ok(took)
}
