//! Prometheus metrics for relay operators: off by default, served on an address of their
//! own (`node --metrics 127.0.0.1:9464`), never on the API port.
//!
//! The swarm task records libp2p's own metrics (connections, gossipsub, Kademlia, identify,
//! ping, relay, hole punching) and counts gossip published and judged; a task on the node's
//! event bus counts sync sessions and bans; the API layer times every request by route; the
//! store's running counters (mailbox bytes, photo bytes) are read at each scrape.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::{Router, extract::Request, http::header, middleware::Next, response::Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::NodeEvent;
use crate::store::Store;

/// Labels of gossip counters: the object kind or the validation result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GossipLabels {
    /// `listing`, `profile`, `attestation`, … for published messages; `accept`, `reject`,
    /// `ignore`, `rate_limited`, `busy` for judged ones.
    pub what: &'static str,
}

/// Labels of sync byte counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// `in` (objects received from peers) or `out` (objects served to peers).
    pub direction: &'static str,
}

/// Labels of API counters and latencies: the method and the route with ids taken out.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// HTTP method.
    pub method: String,
    /// The route, ids replaced by `{id}`; `other` for paths that matched no route.
    pub route: String,
}

/// Every metric of a node, and the registry that names them.
pub struct Metrics {
    registry: Registry,
    /// libp2p's own metrics, recorded by the swarm task.
    pub libp2p: libp2p::metrics::Metrics,
    /// Peers connected now.
    pub peers: Gauge,
    /// Gossip messages this node published, by kind.
    pub gossip_published: Family<GossipLabels, Counter>,
    /// Gossip messages received and judged, by result.
    pub gossip_judged: Family<GossipLabels, Counter>,
    /// Catch-up sessions finished with a peer.
    pub sync_sessions: Counter,
    /// Object bytes moved by catch-up, by direction.
    pub sync_bytes: Family<DirectionLabels, Counter>,
    /// Peers banned.
    pub bans: Counter,
    /// Listing versions stored from the network.
    pub listings_stored: Counter,
    mailbox_bytes: Gauge,
    blob_bytes: Gauge,
    api_requests: Family<ApiLabels, Counter>,
    api_seconds: Family<ApiLabels, Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Most distinct API routes given a series of their own; later ones count as `other`.
const API_ROUTES_MAX: usize = 128;

impl Metrics {
    /// A fresh set of metrics, every one registered under the `jangteo_` or `libp2p_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let libp2p = libp2p::metrics::Metrics::new(&mut registry);
        let reg = registry.sub_registry_with_prefix("jangteo");
        let peers = Gauge::default();
        reg.register("peers", "Peers connected now", peers.clone());
        let gossip_published = Family::<GossipLabels, Counter>::default();
        reg.register(
            "gossip_published",
            "Gossip messages this node published, by object kind",
            gossip_published.clone(),
        );
        let gossip_judged = Family::<GossipLabels, Counter>::default();
        reg.register(
            "gossip_received",
            "Gossip messages received, by result: accept (valid, forwarded), reject (invalid, \
             sender penalized), ignore (not forwarded), rate_limited, busy (queue full)",
            gossip_judged.clone(),
        );
        let sync_sessions = Counter::default();
        reg.register(
            "sync_sessions",
            "Catch-up sessions finished with a peer",
            sync_sessions.clone(),
        );
        let sync_bytes = Family::<DirectionLabels, Counter>::default();
        reg.register(
            "sync_object_bytes",
            "Object bytes moved by catch-up: in = received, out = served",
            sync_bytes.clone(),
        );
        let bans = Counter::default();
        reg.register("peer_bans", "Peers banned", bans.clone());
        let listings_stored = Counter::default();
        reg.register(
            "listings_stored",
            "Listing versions from the network stored",
            listings_stored.clone(),
        );
        let mailbox_bytes = Gauge::default();
        reg.register(
            "mailbox_bytes",
            "Sealed bytes held in the mailboxes of offline peers (relays)",
            mailbox_bytes.clone(),
        );
        let blob_bytes = Gauge::default();
        reg.register(
            "blob_bytes",
            "Photo bytes held (own and mirrored)",
            blob_bytes.clone(),
        );
        let api_requests = Family::<ApiLabels, Counter>::default();
        reg.register(
            "api_requests",
            "API and web page requests, by method and route",
            api_requests.clone(),
        );
        let api_seconds = Family::<ApiLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_25, 2.0, 14))
        });
        reg.register(
            "api_request_seconds",
            "Time to answer an API or web page request, by method and route",
            api_seconds.clone(),
        );
        Self {
            registry,
            libp2p,
            peers,
            gossip_published,
            gossip_judged,
            sync_sessions,
            sync_bytes,
            bans,
            listings_stored,
            mailbox_bytes,
            blob_bytes,
            api_requests,
            api_seconds,
        }
    }

    /// Counts a gossip message judged with `what`.
    pub fn judged(&self, what: &'static str) {
        self.gossip_judged
            .get_or_create(&GossipLabels { what })
            .inc();
    }

    /// Counts `bytes` of objects moved by catch-up in `direction` (`in` or `out`).
    pub fn sync_bytes(&self, direction: &'static str, bytes: u64) {
        self.sync_bytes
            .get_or_create(&DirectionLabels { direction })
            .inc_by(bytes);
    }

    /// The text exposition of every metric, with the store's counters read now.
    pub fn render(&self, store: &Store) -> String {
        if let Ok((_, b)) = store.mailbox_stats() {
            self.mailbox_bytes.set(i64::try_from(b).unwrap_or(i64::MAX));
        }
        if let Ok(b) = store.blob_bytes() {
            self.blob_bytes.set(i64::try_from(b).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Records one answered request.
    fn observe_api(&self, method: &str, path: &str, status: u16, seconds: f64) {
        let mut route = route_label(path);
        // Unknown paths (404, 405) share one series, so made-up paths cannot grow the set.
        if status == 404 || status == 405 {
            route = "other".into();
        }
        let mut labels = ApiLabels {
            method: method.to_owned(),
            route,
        };
        if self.api_requests.get(&labels).is_none() && self.api_route_count() >= API_ROUTES_MAX {
            labels.route = "other".into();
        }
        self.api_requests.get_or_create(&labels).inc();
        self.api_seconds.get_or_create(&labels).observe(seconds);
    }

    fn api_route_count(&self) -> usize {
        // Family has no len(); the encoder is the only reader of the whole set, so count by
        // encoding the request counter family alone.
        let mut reg = Registry::default();
        reg.register("n", "", self.api_requests.clone());
        let mut s = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut s, &reg);
        s.lines().filter(|l| l.starts_with("n_total{")).count()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A route label for a request path: at most four segments; a segment that is not a short
/// lowercase word (an id, a peer id, a number) becomes `{id}`.
pub fn route_label(path: &str) -> String {
    let mut out = String::new();
    for seg in path.split('/').filter(|s| !s.is_empty()).take(4) {
        out.push('/');
        let word = seg.len() <= 24
            && seg.bytes().any(|b| b.is_ascii_lowercase())
            && seg.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            });
        out.push_str(if word { seg } else { "{id}" });
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// An axum middleware that times every request into `metrics`.
pub async fn time_requests(metrics: Arc<Metrics>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    metrics.observe_api(
        &method,
        &path,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Counts what the node's event bus tells: sync sessions, bans, listings stored.
pub fn spawn_event_counter(
    metrics: Arc<Metrics>,
    events: &broadcast::Sender<NodeEvent>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let mut rx = events.subscribe();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                ev = rx.recv() => match ev {
                    Ok(NodeEvent::Synced { .. }) => {
                        metrics.sync_sessions.inc();
                    }
                    Ok(NodeEvent::PeerBanned { .. }) => {
                        metrics.bans.inc();
                    }
                    Ok(NodeEvent::ListingStored { .. }) => {
                        metrics.listings_stored.inc();
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
    })
}

/// Serves `GET /metrics` (Prometheus text format) on `addr` until `stop`. Returns the bound
/// address (an OS-chosen port when `addr` asks for port 0).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    store: Arc<Store>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            let store = store.clone();
            async move {
                let body = tokio::task::spawn_blocking(move || metrics.render(&store))
                    .await
                    .unwrap_or_default();
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    body,
                )
            }
        }),
    );
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.changed().await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "metrics server failed");
        }
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_labels_drop_ids() {
        assert_eq!(
            route_label(&format!("/v1/listings/{}", "ab12".repeat(16))),
            "/v1/listings/{id}"
        );
        assert_eq!(route_label("/"), "/");
        assert_eq!(route_label("/v1/status"), "/v1/status");
        assert_eq!(route_label("/v1/trades/12345"), "/v1/trades/{id}");
        assert_eq!(
            route_label("/seller/12D3KooWabc/extra/more/deeper"),
            "/seller/{id}/extra/more"
        );
        assert_eq!(route_label("/v1/trades/0123/rate"), "/v1/trades/{id}/rate");
    }

    #[test]
    fn made_up_paths_share_one_series() {
        let m = Metrics::new();
        for i in 0..500 {
            m.observe_api("GET", &format!("/x{i}"), 404, 0.001);
            m.observe_api("GET", &format!("/word{}", "a".repeat(i % 20)), 200, 0.001);
        }
        assert!(m.api_route_count() <= API_ROUTES_MAX);
    }
}
