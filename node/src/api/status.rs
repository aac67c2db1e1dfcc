//! `/v1/id`, `/v1/status`, `/v1/peers`: what the node is and how it is doing. Reads the
//! network task's snapshot and the services' counters; changes nothing.

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::ApiState;
use crate::api::error::ApiError;
#[allow(unused_imports)]
use crate::api::types::ErrorBody;
use crate::api::types::{
    BulkStateName, BulkView, CategorySyncView, IdView, MailboxStats, PeerView, Reachability,
    StatusView, SyncStatusName, SyncView, TradeCounts,
};

pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(id))
        .routes(routes!(status))
        .routes(routes!(peers))
}

/// The node's peer id, public key and dialable addresses.
#[utoipa::path(get, path = "/v1/id", tag = "node", operation_id = "id",
    responses(
        (status = 200, description = "The node's identity", body = IdView),
        (status = 503, description = "The network task is not available (`network`)", body = ErrorBody),
    ))]
async fn id(State(s): State<ApiState>) -> Result<Json<IdView>, ApiError> {
    let info = s.network.info().await?;
    Ok(Json(IdView {
        peer_id: s.peer_id.clone(),
        public_key: s.public_key.clone(),
        addrs: info.listen_addrs,
    }))
}

/// The node's state: peers, sync, listings, reachability, counters.
#[utoipa::path(get, path = "/v1/status", tag = "node", operation_id = "status",
    responses(
        (status = 200, description = "The node's state", body = StatusView),
        (status = 503, description = "The network task is not available (`network`)", body = ErrorBody),
    ))]
async fn status(State(s): State<ApiState>) -> Result<Json<StatusView>, ApiError> {
    let info = s.network.info().await?;
    let relays = s.network.relays().await?.len();
    let (items, bytes) = s.trades.mailbox_stats().unwrap_or((0, 0));
    let listings = s.listings.clone();
    let open = tokio::task::spawn_blocking(move || listings.open_count()).await??;
    let sy = info.sync;
    Ok(Json(StatusView {
        peer_id: s.peer_id.clone(),
        peers: info.peers.len() as u64,
        gossip_peers: info.gossip_peers as u64,
        synced_peers: info.synced_peers as u64,
        listings: open,
        uptime_s: s.started.elapsed().as_secs(),
        relays: relays as u64,
        blobs: s.blobs.count().unwrap_or(0),
        sync: SyncView {
            status: SyncStatusName::from(sy.status),
            bulk: sy.bulk.as_ref().map(|b| BulkView {
                peer: b.peer.clone(),
                state: BulkStateName::from(b.state),
                advertised: b.advertised,
                received: b.received,
                stored: b.stored,
                bytes_received: b.bytes_received,
                took_ms: b.took_ms,
                reason: b.reason.clone(),
            }),
            peers_reconciled: sy.peers_reconciled as u64,
            in_progress: sy.in_progress as u64,
            to_fetch: sy.to_fetch as u64,
            last_sync_ms_ago: sy.last_sync_ms_ago,
            last_sync_took_ms: sy.last_sync_took_ms,
            objects_fetched: sy.objects_fetched,
            bytes_sent: sy.bytes_sent,
            bytes_received: sy.bytes_received,
            object_bytes_received: sy.object_bytes_received,
            categories: sy
                .categories
                .iter()
                .map(|c| CategorySyncView {
                    category: c.category.to_owned(),
                    status: SyncStatusName::from(c.status),
                    peers: c.peers as u64,
                    to_fetch: c.to_fetch as u64,
                    last_ms_ago: c.last_ms_ago,
                })
                .collect(),
        },
        reachability: Reachability::from_name(info.reachability.as_str()),
        banned: info.banned,
        following: info.following.iter().map(|s| (*s).to_owned()).collect(),
        relayed_addrs: info.relayed_addrs,
        mailbox: MailboxStats { items, bytes },
        trades: s
            .trades
            .counts()
            .ok()
            .map(|(held, messages, queued_deliveries)| TradeCounts {
                held,
                messages,
                queued_deliveries,
            }),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    }))
}

/// Connected peers.
#[utoipa::path(get, path = "/v1/peers", tag = "node", operation_id = "peers",
    responses(
        (status = 200, description = "Connected peers", body = Vec<PeerView>),
        (status = 503, description = "The network task is not available (`network`)", body = ErrorBody),
    ))]
async fn peers(State(s): State<ApiState>) -> Result<Json<Vec<PeerView>>, ApiError> {
    let info = s.network.info().await?;
    Ok(Json(
        info.peers
            .into_iter()
            .map(|p| PeerView {
                peer_id: p.peer_id,
                addrs: p.addrs,
                score: p.score,
            })
            .collect(),
    ))
}
