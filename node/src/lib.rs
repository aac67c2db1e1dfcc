//! `jangteo-node`: a running jangteo node.
//!
//! Owns the data directory (identity key, RocksDB store, API address and token), starts the
//! swarm task and the local API, and stops them cleanly. Services (listings, trades,
//! reputation, search) live in their own modules and talk to the swarm through a
//! [`net::Client`].

pub mod api;
pub mod clock;
pub mod data_dir;
pub mod error;
pub mod ingest;
pub mod keys;
pub mod metrics;
pub mod net;
pub mod services;
pub mod store;
pub mod sync;
pub mod trace;
pub mod web;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngCore;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

pub use error::{NodeError, StoreError};
pub use net::Client;
pub use services::listings::Listings;
use services::{alerts, blobs, conversations, moderation, reputation, search, thumbs, trades};
pub use store::Store;

/// File in the data directory holding the API address, written once the API listens.
pub const API_ADDR_FILE: &str = "api.json";
/// File in the data directory holding the API bearer token (mode 0600).
pub const API_TOKEN_FILE: &str = "api.token";
/// Folder of the RocksDB store inside the data directory.
pub const STORE_DIR: &str = "store";
/// Folder of the search index inside the data directory (rebuilt from the store if lost).
pub const INDEX_DIR: &str = "index";
/// Capacity of the node event channel; slow subscribers skip events.
pub const EVENT_QUEUE: usize = 1024;
/// How often expired listings are pruned from the store.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
/// On a relay, by default: photos are mirrored while all photos held take less than 16 GiB
/// (`--mirror-cap-mib`); past it, listings' photos stay with their sellers and other
/// holders until collection frees room.
pub const MIRROR_CAP_BYTES: u64 = 16 << 30;
/// Expired listings are kept this long (so late, older versions are recognized as stale).
pub const PRUNE_GRACE_MS: u64 = 7 * 24 * 3600 * 1000;

/// Something that happened in the node: for tests, and (as [`api::types::EventView`]) for
/// `GET /v1/events` and the web page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A peer connected.
    PeerConnected {
        /// Its peer id.
        peer: String,
    },
    /// A listing version from the network was stored.
    ListingStored {
        /// Listing id (hex).
        listing: String,
    },
    /// Catch-up with a peer finished.
    Synced {
        /// Its peer id.
        peer: String,
    },
    /// Where catch-up stands changed (what `status` shows under `sync`); at most one a
    /// second while catching up ([`sync::driver::SYNC_PROGRESS_EVERY`]), at once when the
    /// one-word status changes.
    SyncProgress {
        /// Where catch-up stands.
        status: sync::SyncStatus,
        /// Peers being reconciled with now, or waiting for their turn.
        in_progress: usize,
        /// Objects learned from peers and not fetched yet.
        to_fetch: usize,
        /// Peers reconciled with since they connected.
        peers_reconciled: usize,
    },
    /// A trade changed state on this node.
    TradeUpdated {
        /// Trade id (hex).
        trade: String,
        /// Its new state.
        state: jangteo_protocol::trade::TradeState,
    },
    /// One of our trade messages reached its recipients, or was refused.
    Delivery {
        /// Message id (hex).
        message: String,
        /// Delivered or failed.
        status: api::types::DeliveryStatus,
    },
    /// A peer was banned for sending invalid objects.
    PeerBanned {
        /// Its peer id.
        peer: String,
    },
    /// A circuit relay accepted our reservation: we are reachable through it.
    RelayReserved {
        /// The relay's peer id.
        relay: String,
    },
    /// A relay that holds mailboxes connected.
    RelayConnected {
        /// Its peer id.
        peer: String,
    },
    /// A peer was first reached over a relayed connection (a circuit through a relay, as
    /// between two nodes behind NAT); DCUtR now tries to upgrade it.
    RelayedConnection {
        /// Its peer id.
        peer: String,
    },
    /// DCUtR's attempt to upgrade a relayed connection to a direct one (hole punching)
    /// ended.
    HolePunch {
        /// The other peer's id.
        peer: String,
        /// Whether a direct connection now exists.
        direct: bool,
        /// Milliseconds since the relayed connection was established, when this node saw it.
        ms: Option<u64>,
        /// Why it failed.
        error: Option<String>,
    },
    /// The search index caught up with the store.
    Indexed {
        /// Listing entries applied.
        count: usize,
    },
    /// A notification was stored (in the batch of what raised it): a trade step of the
    /// other party, a delivery failure, our listing reserved or sold, a saved-search match.
    /// The messages service raises [`api::types::NotificationKind::Message`] the same way:
    /// staged with the message's own batch, then sent here.
    Notification {
        /// The notification as stored.
        notification: Box<api::types::NotificationView>,
    },
    /// A direct message arrived and was stored.
    MessageReceived {
        /// Thread id (hex).
        thread: String,
        /// Message id (hex).
        message: String,
        /// Its author's peer id.
        from: String,
    },
    /// A message of ours changed status (queued with a new reason, delivered, read, failed).
    MessageStatus {
        /// Thread id (hex).
        thread: String,
        /// Message id (hex).
        message: String,
        /// Where it stands now.
        status: api::types::MessageStatus,
        /// Why it is queued or failed, and which relay holds it.
        reason: Option<String>,
    },
}

/// How to run a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Multiaddrs to listen on.
    pub listen: Vec<String>,
    /// Multiaddrs to dial at start.
    pub bootstrap: Vec<String>,
    /// Where the API listens.
    pub api: SocketAddr,
    /// mDNS on the LAN.
    pub mdns: bool,
    /// Serve as a community relay: circuit relay v2, AutoNAT server, DHT server, every
    /// topic, mailboxes for offline peers.
    pub relay: bool,
    /// Addresses this node is reachable at from outside (a host behind port forwarding).
    pub external: Vec<String>,
    /// Listing categories to follow; empty = all (relays always follow all).
    pub follow: Vec<String>,
    /// On a relay: most sealed bytes held in all mailboxes together.
    pub mailbox_cap_bytes: u64,
    /// On a relay: photos of others' listings are mirrored only while all photos held take
    /// less than this.
    pub mirror_cap_bytes: u64,
    /// Count loopback connections under address and subnet rate limits (tests of those
    /// limits; off by default, since the testnet runs every node on 127.0.0.1).
    pub limit_loopback: bool,
    /// The network's base difficulty of listing stamps, in bits (SPEC §3.1): a network-wide
    /// parameter that every node of one network must share. Default
    /// [`jangteo_protocol::listing::LISTING_STAMP_BITS`] (24), the public network's; test
    /// networks set it low to keep posting fast ([`TEST_NETWORK_STAMP_BITS`]), and 0 asks for
    /// no stamp at all. Attestation stamps ask 2 bits less (SPEC §7.1; 22 on the public
    /// network).
    pub listing_stamp_bits: u32,
    /// Serve Prometheus metrics on this address (`GET /metrics`); off when `None`.
    pub metrics: Option<SocketAddr>,
}

/// The listing stamp difficulty of the test networks (the tests and `jangteo-testnet`
/// scenarios but `spam`): 0, no stamp asked, so that tests post many listings fast and may
/// forge them from generated bodies; the cap and the interval between versions still hold.
/// Tests of the stamps themselves run their networks at a difficulty of their own.
pub const TEST_NETWORK_STAMP_BITS: u32 = 0;

impl NodeConfig {
    /// Defaults: TCP and QUIC on all interfaces with OS-chosen ports, API on 127.0.0.1 with an
    /// OS-chosen port, mDNS on.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            listen: vec![
                "/ip4/0.0.0.0/tcp/0".into(),
                "/ip4/0.0.0.0/udp/0/quic-v1".into(),
            ],
            bootstrap: Vec::new(),
            api: SocketAddr::from(([127, 0, 0, 1], 0)),
            mdns: true,
            relay: false,
            external: Vec::new(),
            follow: Vec::new(),
            mailbox_cap_bytes: services::mailbox::MAILBOX_TOTAL_BYTES_MAX,
            mirror_cap_bytes: MIRROR_CAP_BYTES,
            limit_loopback: false,
            listing_stamp_bits: jangteo_protocol::listing::LISTING_STAMP_BITS,
            metrics: None,
        }
    }
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    /// Base58 peer id.
    pub peer_id: String,
    /// Where the API listens.
    pub api_addr: SocketAddr,
    /// Where Prometheus metrics are served, when they are.
    pub metrics_addr: Option<SocketAddr>,
    /// The listings service.
    pub listings: Listings,
    /// The network handle.
    pub network: Client,
    /// The trades service.
    pub trades: trades::Trades,
    /// The conversations service.
    pub conversations: conversations::Conversations,
    /// The reputation service.
    pub reputation: reputation::Reputation,
    /// Reports and moderators.
    pub moderation: moderation::Moderation,
    /// The blob service.
    pub blobs: blobs::Blobs,
    /// The store.
    pub store: Arc<Store>,
    /// The search index.
    pub index: Arc<search::SearchIndex>,
    data_dir: PathBuf,
    events: broadcast::Sender<NodeEvent>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Loads the API token, creating a random one (mode 0600) if missing.
fn load_or_create_token(dir: &Path) -> Result<String, NodeError> {
    let path = dir.join(API_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) if t.trim().len() >= 32 => Ok(t.trim().to_owned()),
        Ok(_) | Err(_) => {
            let mut raw = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut raw);
            let token = hex::encode(raw);
            keys::write_secret_file(&path, token.as_bytes())?;
            Ok(token)
        }
    }
}

/// Opens the store, explaining the usual cause when the folder is locked.
fn open_store(dir: &Path) -> Result<Store, NodeError> {
    Store::open(&dir.join(STORE_DIR)).map_err(|e| match &e {
        StoreError::Rocks(r) if r.to_string().contains("lock") => NodeError::Io {
            path: dir.display().to_string(),
            source: std::io::Error::other(
                "another jangteo node is already running with this data directory",
            ),
        },
        _ => NodeError::Store(e),
    })
}

/// The DHT's records kept in the store, so a restarted node remembers them.
#[derive(Debug)]
struct StoreKad(Arc<Store>);

impl net::kad_store::KadBacking for StoreKad {
    fn load(&self) -> Vec<net::kad_store::Entry> {
        self.0.kad_entries().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "reading the DHT's records; starting without them");
            Vec::new()
        })
    }

    fn write(&self, puts: &[net::kad_store::Entry], deletes: &[Vec<u8>]) {
        if let Err(e) = self.0.kad_write(puts, deletes) {
            tracing::warn!(error = %e, "writing the DHT's records");
        }
    }
}

/// The network settings of a node configuration.
fn net_config(
    cfg: &NodeConfig,
    metrics: Option<Arc<metrics::Metrics>>,
    store: &Arc<Store>,
) -> Result<net::NetworkConfig, NodeError> {
    let addrs = |v: &[String]| -> Result<Vec<_>, NodeError> {
        v.iter().map(|s| net::parse_addr(s)).collect()
    };
    Ok(net::NetworkConfig {
        listen: addrs(&cfg.listen)?,
        follow: cfg.follow.clone(),
        bootstrap: addrs(&cfg.bootstrap)?,
        mdns: cfg.mdns,
        relay: cfg.relay,
        external: addrs(&cfg.external)?,
        limit_loopback: cfg.limit_loopback,
        mailbox_cap_bytes: cfg.mailbox_cap_bytes,
        metrics,
        kad_backing: Some(Arc::new(StoreKad(store.clone()))),
    })
}

/// Starts the services that answer the network (gossip validation, sync, blobs, relay
/// mailboxes) on the swarm task's inboxes. Trade deliveries are left to the trades service.
fn spawn_protocol_services(
    net_cfg: &net::NetworkConfig,
    store: &Arc<Store>,
    client: &Client,
    events: &broadcast::Sender<NodeEvent>,
    blobs: &blobs::Blobs,
    inboxes: net::Inboxes,
    shutdown: &watch::Receiver<bool>,
) -> (
    Vec<JoinHandle<()>>,
    tokio::sync::mpsc::Receiver<net::InboundTrade>,
    tokio::sync::mpsc::Receiver<net::InboundDm>,
) {
    let validator = ingest::GossipValidator::new(store.clone(), client.clone(), events.clone());
    let items = Arc::new(sync::ShardItems::new(store.clone()));
    let driver = sync::driver::SyncDriver::new(
        sync::Shard::followed(&net_cfg.shards()),
        items.clone(),
        client.clone(),
        events.clone(),
        inboxes.sync_info,
    );
    let server = sync::server::SyncServer::new(items.clone(), client.clone());
    let bulk = sync::bulk::BulkServer::new(items, client.clone());
    let mut tasks = vec![
        tokio::spawn(validator.clone().run(
            inboxes.gossip,
            ingest::GOSSIP_WORKERS,
            shutdown.clone(),
        )),
        tokio::spawn(validator.run(
            inboxes.attestations,
            ingest::ATTESTATION_WORKERS,
            shutdown.clone(),
        )),
        tokio::spawn(driver.run(inboxes.sync_peers, shutdown.clone())),
        tokio::spawn(server.run(inboxes.sync, shutdown.clone())),
        tokio::spawn(bulk.run(inboxes.bulk, shutdown.clone())),
        tokio::spawn(blobs.clone().serve(inboxes.blobs, shutdown.clone())),
    ];
    if net_cfg.relay {
        let relay = services::mailbox::MailboxRelay::new(
            store.clone(),
            client.clone(),
            net_cfg.mailbox_cap_bytes,
        );
        tasks.push(tokio::spawn(relay.run(inboxes.mailbox, shutdown.clone())));
    }
    (tasks, inboxes.trades, inboxes.dms)
}

/// Announces again, in the DHT, every blob held (provider records live in memory).
fn spawn_provide_held(store: Arc<Store>, net: Client) -> JoinHandle<()> {
    tokio::spawn(async move {
        let ids = tokio::task::spawn_blocking(move || store.blob_ids())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        for id in ids {
            if net.provide(id).await.is_err() {
                break;
            }
        }
    })
}

/// On a relay: fetch the photos of every listing stored, so they stay available, while the
/// photos held take less than `cap` bytes.
fn spawn_mirror(
    mirror: blobs::Blobs,
    store: Arc<Store>,
    cap: u64,
    events: &broadcast::Sender<NodeEvent>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let mut rx = events.subscribe();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                ev = rx.recv() => match ev {
                    Ok(NodeEvent::ListingStored { listing }) => {
                        // One point read of the running counter.
                        match store.blob_bytes() {
                            Ok(held) if held >= cap => {
                                tracing::debug!(held, cap, "photo mirror full; not mirroring");
                            }
                            _ => mirror.mirror_listing_images(&listing).await,
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "image mirror fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
    })
}

/// Attestations of trades completed before this are deleted (SPEC §7.1).
fn attestations_kept_after(now_ms: u64) -> u64 {
    now_ms.saturating_sub(jangteo_protocol::limits::ATTESTATION_RETENTION_MS)
}

/// Deletes expired listings, mailbox items, attestations of old trades and unnamed photos
/// now and then.
fn spawn_prune(
    store: Arc<Store>,
    blobs: blobs::Blobs,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PRUNE_INTERVAL);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tick.tick() => {
                    let (s, b) = (store.clone(), blobs.clone());
                    let before = clock::now_ms().saturating_sub(PRUNE_GRACE_MS);
                    match tokio::task::spawn_blocking(move || {
                        let swept = s.mailbox_sweep(clock::now_ms())?;
                        if swept > 0 {
                            tracing::info!(swept, "expired mailbox items deleted");
                        }
                        let pruned = s.prune_expired(before)?;
                        let old = s.prune_attestations(attestations_kept_after(clock::now_ms()))?;
                        if old > 0 {
                            tracing::info!(old, "attestations of old trades deleted");
                        }
                        s.prune_alerted(before)?;
                        let blobs = b.gc()?;
                        if blobs > 0 {
                            tracing::info!(blobs, "photos no listing names any more deleted");
                        }
                        Ok::<u64, StoreError>(pruned)
                    })
                    .await
                    {
                        Ok(Ok(n)) if n > 0 => tracing::info!(pruned = n, "pruned expired listings"),
                        Ok(Err(e)) => tracing::warn!(error = %e, "prune failed"),
                        _ => {}
                    }
                }
            }
        }
    })
}

/// Binds the API and serves it until shutdown; returns where it listens.
async fn spawn_api(
    cfg: &NodeConfig,
    state: api::ApiState,
    metrics: Option<Arc<metrics::Metrics>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>), NodeError> {
    let listener = tokio::net::TcpListener::bind(cfg.api)
        .await
        .map_err(|e| NodeError::Io {
            path: format!("API address {}", cfg.api),
            source: e,
        })?;
    let api_addr = listener.local_addr().map_err(io_err(&cfg.data_dir))?;
    let mut app = web::app(state, api_addr);
    if let Some(m) = metrics {
        app = app.layer(axum::middleware::from_fn(move |req, next| {
            metrics::time_requests(m.clone(), req, next)
        }));
    }
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.changed().await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "API server failed");
        }
    });
    Ok((api_addr, task))
}

impl Node {
    /// Starts a node: key, store, swarm task, API. Returns once the API is listening.
    pub async fn start(cfg: NodeConfig) -> Result<Node, NodeError> {
        for warning in data_dir::prepare(&cfg.data_dir)? {
            tracing::warn!(dir = %cfg.data_dir.display(), "{warning}");
            eprintln!("WARNING: {warning}");
        }
        let (key, _) = keys::load_or_create(&cfg.data_dir)?;
        let keypair = keys::libp2p_keypair(&key)?;
        let peer_id = keypair.public().to_peer_id().to_string();
        let store = Arc::new(open_store(&cfg.data_dir)?);
        store.set_stamp_bits(cfg.listing_stamp_bits);
        let pruned = store.prune_expired(clock::now_ms().saturating_sub(PRUNE_GRACE_MS))?;
        store.prune_attestations(attestations_kept_after(clock::now_ms()))?;
        if pruned > 0 {
            tracing::info!(pruned, "pruned expired listings");
        }
        let index_dir = cfg.data_dir.join(INDEX_DIR);
        let index_store = store.clone();
        let owner = jangteo_protocol::PublicKey(key.verifying_key().to_bytes());
        let index = tokio::task::spawn_blocking(move || {
            search::SearchIndex::open_for(&index_dir, &index_store, Some(owner))
        })
        .await
        .map_err(|e| NodeError::Network(format!("search index task: {e}")))?
        .map_err(|e| NodeError::Search(e.to_string()))?;
        let index = Arc::new(index);
        let (events, _) = broadcast::channel(EVENT_QUEUE);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let metrics = cfg.metrics.map(|_| Arc::new(metrics::Metrics::new()));
        let net_cfg = net_config(&cfg, metrics.clone(), &store)?;
        let (routes, inboxes) = net::Routes::new();
        let (client, event_loop) = net::build(keypair, &net_cfg, events.clone(), routes)?;
        let blobs = blobs::Blobs::new(store.clone(), client.clone());
        let (mut tasks, inbound_trades, inbound_dms) = spawn_protocol_services(
            &net_cfg,
            &store,
            &client,
            &events,
            &blobs,
            inboxes,
            &shutdown_rx,
        );
        tasks.push(tokio::spawn(event_loop.run(shutdown_rx.clone())));
        tasks.push(tokio::spawn(index.clone().run_indexer(
            store.clone(),
            events.clone(),
            shutdown_rx.clone(),
        )));

        let key = Arc::new(key);
        let listings = Listings::new(key.clone(), store.clone(), index.clone(), client.clone());
        let trades =
            trades::Trades::new(key.clone(), store.clone(), client.clone(), events.clone());
        // Repair what a crash between two trade steps left undone before taking new ones.
        match trades.settle_all().await {
            Ok(n) if n > 0 => tracing::info!(trades = n, "trades settled at start"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "settling trades at start"),
        }
        tasks.push(tokio::spawn(
            trades.clone().run(inbound_trades, shutdown_rx.clone()),
        ));
        let conversations = conversations::Conversations::new(
            key.clone(),
            store.clone(),
            client.clone(),
            events.clone(),
            trades.clone(),
        );
        let (mail_tx, mail_rx) = tokio::sync::mpsc::channel(conversations::DIRECT_MAIL_QUEUE);
        trades.forward_direct_mail(mail_tx);
        tasks.push(tokio::spawn(conversations.clone().run(
            inbound_dms,
            mail_rx,
            shutdown_rx.clone(),
        )));
        let reputation =
            reputation::Reputation::new(key.clone(), store.clone(), trades.clone(), client.clone());
        tasks.push(tokio::spawn(reputation.clone().run(shutdown_rx.clone())));
        let moderation = moderation::Moderation::new(
            key.clone(),
            store.clone(),
            listings.clone(),
            reputation.clone(),
            client.clone(),
        );
        tasks.push(spawn_provide_held(store.clone(), client.clone()));
        if cfg.relay {
            tasks.push(spawn_mirror(
                blobs.clone(),
                store.clone(),
                cfg.mirror_cap_bytes,
                &events,
                shutdown_rx.clone(),
            ));
        }
        let token = load_or_create_token(&cfg.data_dir)?;
        let state = api::ApiState {
            listings: listings.clone(),
            trades: trades.clone(),
            conversations: conversations.clone(),
            reputation: reputation.clone(),
            moderation: moderation.clone(),
            blobs: blobs.clone(),
            thumbs: thumbs::Thumbs::new(store.clone(), blobs.clone()),
            network: client.clone(),
            store: store.clone(),
            token: Arc::new(token),
            started: Instant::now(),
            peer_id: peer_id.clone(),
            public_key: hex::encode(key.verifying_key().to_bytes()),
            ui_sessions: Arc::new(web::session::Sessions::new()),
            data_dir: Arc::new(cfg.data_dir.clone()),
            alerts: alerts::Alerts::new(store.clone(), index.clone(), events.clone()),
            events: api::events::EventFeed::new(
                events.clone(),
                shutdown_rx.clone(),
                peer_id.clone(),
            ),
        };
        let (api_addr, api_task) =
            spawn_api(&cfg, state, metrics.clone(), shutdown_rx.clone()).await?;
        tasks.push(api_task);
        let mut metrics_addr = None;
        if let (Some(addr), Some(m)) = (cfg.metrics, metrics) {
            tasks.push(metrics::spawn_event_counter(
                m.clone(),
                &events,
                shutdown_rx.clone(),
            ));
            let (bound, task) = metrics::serve(addr, m, store.clone(), shutdown_rx.clone())
                .await
                .map_err(|e| NodeError::Io {
                    path: format!("metrics address {addr}"),
                    source: e,
                })?;
            tracing::info!(metrics = %bound, "serving Prometheus metrics on /metrics");
            metrics_addr = Some(bound);
            tasks.push(task);
        }
        tasks.push(spawn_prune(store.clone(), blobs.clone(), shutdown_rx));
        let addr_file = cfg.data_dir.join(API_ADDR_FILE);
        let addr_json = serde_json::to_vec(&api::types::ApiAddrFile {
            addr: api_addr.to_string(),
            peer_id: peer_id.clone(),
            pid: std::process::id(),
        })
        .map_err(|e| NodeError::Io {
            path: addr_file.display().to_string(),
            source: std::io::Error::other(e),
        })?;
        keys::write_secret_file(&addr_file, &addr_json)?;
        tracing::info!(peer = %peer_id, api = %api_addr, "node started");
        Ok(Node {
            peer_id,
            api_addr,
            metrics_addr,
            listings,
            trades,
            conversations,
            reputation,
            moderation,
            blobs,
            network: client,
            store,
            index,
            data_dir: cfg.data_dir,
            events,
            shutdown,
            tasks,
        })
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// Stops the API and the swarm, waits for them, and removes the API address file.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        let _ = std::fs::remove_file(self.data_dir.join(API_ADDR_FILE));
        tracing::info!("node stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The network difficulty a node runs at unless told otherwise is the public network's,
    /// as SPEC §3.1 and the README document it; only test networks lower it.
    #[test]
    fn the_default_listing_stamp_difficulty_is_the_documented_one() {
        let cfg = NodeConfig::new("/nonexistent");
        assert_eq!(cfg.listing_stamp_bits, 24);
        assert_eq!(
            cfg.listing_stamp_bits,
            jangteo_protocol::listing::LISTING_STAMP_BITS
        );
        let spec = include_str!("../../protocol/SPEC.md");
        assert!(spec.contains("**24 bits** on the public network"));
        let readme = include_str!("../../README.md");
        assert!(readme.contains("(24 bits) on the public network"));
        assert_eq!(TEST_NETWORK_STAMP_BITS, 0);
    }
}

#[cfg(test)]
mod kad_persistence {
    use super::*;
    use libp2p::kad::store::{MemoryStoreConfig, RecordStore};
    use libp2p::kad::{ProviderRecord, RecordKey};
    use net::kad_store::PersistentStore;

    /// Provider records written through to a real RocksDB store are there after the store
    /// is closed and opened again.
    #[test]
    fn provider_records_survive_reopening_the_store() {
        let dir = tempfile::tempdir().expect("tmp");
        let local = libp2p::PeerId::random();
        let seller = libp2p::PeerId::random();
        let key = RecordKey::new(&[9u8; 32]);
        {
            let store = Arc::new(Store::open(dir.path()).expect("open"));
            let mut kad = PersistentStore::new(
                local,
                MemoryStoreConfig::default(),
                Some(Arc::new(StoreKad(store))),
            );
            kad.add_provider(ProviderRecord {
                key: key.clone(),
                provider: seller,
                expires: Some(std::time::Instant::now() + Duration::from_secs(3600)),
                addresses: vec![],
            })
            .expect("add");
        }
        let store = Arc::new(Store::open(dir.path()).expect("reopen"));
        let kad = PersistentStore::new(
            local,
            MemoryStoreConfig::default(),
            Some(Arc::new(StoreKad(store))),
        );
        let provs = kad.providers(&key);
        assert_eq!(provs.len(), 1);
        assert_eq!(provs[0].provider, seller);
    }
}
