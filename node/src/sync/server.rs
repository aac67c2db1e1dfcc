//! The answering side of catch-up sync: one round of reconciliation over a shard, or a page
//! of objects by id, for a peer that asked on `/jangteo/sync/1`.
//!
//! It receives requests the swarm task routed to it (already counted by the per-peer request
//! limit), reads the store on a blocking thread, caps what one peer is served in bytes per
//! window, and answers through the [`Client`]. It never verifies or stores objects.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jangteo_protocol::ObjectId;
use serde_bytes::ByteBuf;
use tokio::sync::{mpsc, watch};

use super::{Shard, ShardItems, reconcile};
use crate::net::rate::RateLimiter;
use crate::net::{
    Client, FETCH_IDS_MAX, InboundSync, Response, SYNC_PAGE_MAX_BYTES, SyncRequest, SyncResponse,
    serve_inbound,
};

/// Object bytes served to one peer by sync per [`SYNC_SERVED_WINDOW`].
pub const SYNC_SERVED_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// The window of [`SYNC_SERVED_BYTES_MAX`].
pub const SYNC_SERVED_WINDOW: Duration = Duration::from_secs(10);
/// Sync requests answered at once.
pub const SYNC_SERVER_WORKERS: usize = 2;

/// Answers other peers' sync requests.
#[derive(Debug, Clone)]
pub struct SyncServer {
    items: Arc<ShardItems>,
    network: Client,
    served: Arc<Mutex<RateLimiter>>,
}

impl SyncServer {
    /// A server over the shared item cache.
    pub fn new(items: Arc<ShardItems>, network: Client) -> Self {
        Self {
            items,
            network,
            served: Arc::new(Mutex::new(RateLimiter::new(
                SYNC_SERVED_BYTES_MAX,
                SYNC_SERVED_WINDOW,
            ))),
        }
    }

    /// Answers what the swarm task routes here, [`SYNC_SERVER_WORKERS`] at a time, until
    /// `shutdown`.
    pub async fn run(self, inbound: mpsc::Receiver<InboundSync>, shutdown: watch::Receiver<bool>) {
        serve_inbound(inbound, SYNC_SERVER_WORKERS, shutdown, move |req| {
            let this = self.clone();
            async move { this.answer(req).await }
        })
        .await;
    }

    async fn answer(&self, req: InboundSync) {
        let over = self
            .served
            .lock()
            .map(|s| s.exhausted(&req.peer, Instant::now()))
            .unwrap_or(true);
        let response = if over {
            SyncResponse::Refused("rate limit: too many sync requests".into())
        } else {
            let items = self.items.clone();
            let request = req.request;
            tokio::task::spawn_blocking(move || serve(&items, request))
                .await
                .unwrap_or_else(|e| SyncResponse::Refused(format!("internal: {e}")))
        };
        if let SyncResponse::Objects { objects, .. } = &response {
            let n: u64 = objects.iter().map(|o| o.len() as u64).sum();
            if let Ok(mut s) = self.served.lock() {
                s.spend(req.peer, n, Instant::now());
            }
        }
        let _ = self
            .network
            .respond(Response::Sync(req.channel, response))
            .await;
    }
}

/// The answer to one sync request. Blocking (reads the store).
pub fn serve(items: &ShardItems, request: SyncRequest) -> SyncResponse {
    match request {
        SyncRequest::Reconcile { shard, msg } => {
            let Some(shard) = Shard::parse(&shard) else {
                return SyncResponse::Refused(format!("unknown shard {shard:?}"));
            };
            let items = match items.get(&shard) {
                Ok(i) => i,
                Err(e) => return SyncResponse::Refused(e),
            };
            match reconcile::respond(&items, &msg) {
                Ok(reply) => SyncResponse::Reconciled {
                    msg: ByteBuf::from(reply),
                },
                Err(e) => SyncResponse::Refused(format!("reconcile: {e}")),
            }
        }
        SyncRequest::Fetch { ids } => fetch(items, &ids),
    }
}

fn fetch(items: &ShardItems, ids: &[ByteBuf]) -> SyncResponse {
    if ids.len() > FETCH_IDS_MAX {
        return SyncResponse::Refused(format!("at most {FETCH_IDS_MAX} ids per fetch"));
    }
    let mut objects = Vec::new();
    let mut bytes = 0usize;
    for id in ids {
        let Ok(id32) = <[u8; 32]>::try_from(id.as_slice()) else {
            return SyncResponse::Refused("ids are 32 bytes".into());
        };
        match items.store().object(&ObjectId(id32)) {
            Ok(Some(b)) => {
                if bytes + b.len() > SYNC_PAGE_MAX_BYTES {
                    return SyncResponse::Objects {
                        objects,
                        next: Some(id.clone()),
                    };
                }
                bytes += b.len();
                objects.push(ByteBuf::from(b));
            }
            Ok(None) => {}
            Err(e) => return SyncResponse::Refused(format!("store: {e}")),
        }
    }
    SyncResponse::Objects {
        objects,
        next: None,
    }
}
