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
pub mod net;
pub mod services;
pub mod store;
pub mod sync;
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
use services::{blobs, conversations, reputation, search, thumbs, trades};
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
    /// The search index caught up with the store.
    Indexed {
        /// Listing entries applied.
        count: usize,
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
}

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

/// The network settings of a node configuration.
fn net_config(cfg: &NodeConfig) -> Result<net::NetworkConfig, NodeError> {
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
    let server = sync::server::SyncServer::new(items, client.clone());
    let mut tasks = vec![
        tokio::spawn(validator.run(inboxes.gossip, shutdown.clone())),
        tokio::spawn(driver.run(inboxes.sync_peers, shutdown.clone())),
        tokio::spawn(server.run(inboxes.sync, shutdown.clone())),
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

/// Deletes expired listings, mailbox items and unnamed photos now and then.
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
    mut shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>), NodeError> {
    let listener = tokio::net::TcpListener::bind(cfg.api)
        .await
        .map_err(|e| NodeError::Io {
            path: format!("API address {}", cfg.api),
            source: e,
        })?;
    let api_addr = listener.local_addr().map_err(io_err(&cfg.data_dir))?;
    let app = web::app(state, api_addr);
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
        let pruned = store.prune_expired(clock::now_ms().saturating_sub(PRUNE_GRACE_MS))?;
        if pruned > 0 {
            tracing::info!(pruned, "pruned expired listings");
        }
        let index_dir = cfg.data_dir.join(INDEX_DIR);
        let index_store = store.clone();
        let index = tokio::task::spawn_blocking(move || {
            search::SearchIndex::open(&index_dir, &index_store)
        })
        .await
        .map_err(|e| NodeError::Network(format!("search index task: {e}")))?
        .map_err(|e| NodeError::Search(e.to_string()))?;
        let index = Arc::new(index);
        let (events, _) = broadcast::channel(EVENT_QUEUE);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let net_cfg = net_config(&cfg)?;
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
            events: api::events::EventFeed::new(
                events.clone(),
                shutdown_rx.clone(),
                peer_id.clone(),
            ),
        };
        let (api_addr, api_task) = spawn_api(&cfg, state, shutdown_rx.clone()).await?;
        tasks.push(api_task);
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
            listings,
            trades,
            conversations,
            reputation,
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
