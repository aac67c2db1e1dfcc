//! Relay mailboxes for offline peers, relay side: hold sealed items for a recipient key,
//! hand a peer what waits for it, delete what it acknowledges.
//!
//! It receives the requests the swarm task routed to it (already counted by the per-peer
//! limits), writes and reads the store on a blocking thread (a put is synced to disk before
//! "stored" is answered), and answers through the [`Client`]. The sending side (deposit,
//! fetch, ack as a client) lives with the trades service that owns the messages.

use std::sync::Arc;

use serde_bytes::ByteBuf;
use tokio::sync::{mpsc, watch};

use crate::clock::now_ms;
use crate::net::{
    Client, InboundMailbox, MAILBOX_FETCH_BYTES, MAILBOX_FETCH_ITEMS, MailboxRequest,
    MailboxResponse, Response, serve_inbound,
};
use crate::store::Store;

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

/// The relay side of mailboxes.
#[derive(Debug, Clone)]
pub struct MailboxRelay {
    store: Arc<Store>,
    network: Client,
}

impl MailboxRelay {
    /// A relay mailbox over the node's store.
    pub fn new(store: Arc<Store>, network: Client) -> Self {
        Self { store, network }
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
                let peer = req.peer;
                let request = req.request;
                let response = tokio::task::spawn_blocking(move || {
                    serve(&store, &peer.to_string(), request, now_ms())
                })
                .await
                .unwrap_or_else(|e| MailboxResponse::Refused(format!("internal: {e}")));
                let _ = this
                    .network
                    .respond(Response::Mailbox(req.channel, response))
                    .await;
            }
        })
        .await;
    }
}

/// The answer to one mailbox request from `peer` (base58). Blocking (store I/O, a put is
/// synced). Fetch and ack act on the requesting peer's own mailbox.
pub fn serve(store: &Store, peer: &str, request: MailboxRequest, now: u64) -> MailboxResponse {
    let refused = |e: &dyn std::fmt::Display| MailboxResponse::Refused(format!("relay store: {e}"));
    let me = || jangteo_protocol::public_key_from_peer_id(peer);
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
            match store.mailbox_put(
                &to,
                &sealed,
                now,
                now + MAILBOX_RETENTION_MS,
                MAILBOX_ITEMS_MAX,
                MAILBOX_BYTES_MAX,
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
