//! The libp2p side of the node: one task owns the `Swarm` and runs a `select!` loop over
//! swarm events and commands from cloneable [`Client`] handles (bounded channel, oneshot
//! replies).
//!
//! It owns transport setup (TCP and QUIC with noise and yamux), gossipsub with application
//! validation (nothing is forwarded before `ingest` verified and stored it), Kademlia under
//! `/jangteo/kad/1.0.0`, identify, ping, mDNS, connection limits, and the catch-up exchange
//! of listing heads on `/jangteo/sync/1`. It never signs objects and never builds listings.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jangteo_protocol::{Kind, ObjectId};
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity, ValidationMode};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, connection_limits, identify, kad, mdns, noise, ping,
    tcp, yamux,
};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::NodeEvent;
use crate::error::NodeError;
use crate::ingest::{
    Ingested, ingest, ingest_batch, listing_shard, listing_topic, now_ms, topic_for,
};
use crate::store::Store;

/// Capacity of the command channel from clients to the swarm task.
pub const COMMAND_QUEUE: usize = 256;
/// Most objects in one sync response page.
pub const SYNC_PAGE_MAX_OBJECTS: usize = 512;
/// Most bytes of objects in one sync response page.
pub const SYNC_PAGE_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Largest sync request accepted.
pub const SYNC_REQUEST_MAX_BYTES: u64 = 64 * 1024;
/// Largest sync response accepted (a page plus framing).
pub const SYNC_RESPONSE_MAX_BYTES: u64 = 8 * 1024 * 1024;
/// Sync requests a peer may make per [`SYNC_RATE_WINDOW`] before being refused.
pub const SYNC_RATE_MAX: u32 = 120;
/// Window of the sync rate limit.
pub const SYNC_RATE_WINDOW: Duration = Duration::from_secs(10);
/// Established connections per peer.
pub const MAX_CONNECTIONS_PER_PEER: u32 = 2;
/// Established connections in total.
pub const MAX_CONNECTIONS: u32 = 256;
/// Most connections from one IP address (loopback excepted: many honest nodes share one
/// host in tests and testnets; a household or CGNAT shares one address, hence not 1).
pub const MAX_CONNECTIONS_PER_IP: usize = 32;
/// Invalid objects a peer may send within [`OFFENSE_WINDOW`] before it is banned.
pub const BAN_AFTER_INVALID: u32 = 10;
/// A connected peer whose gossip score is below this (the graylist threshold: a few invalid
/// objects in a short time) is banned at the next housekeeping pass.
pub const BAN_BELOW_SCORE: f64 = -80.0;
/// The window invalid objects are counted in.
pub const OFFENSE_WINDOW: Duration = Duration::from_secs(600);
/// How long a ban lasts.
pub const BAN_DURATION: Duration = Duration::from_secs(600);
/// Gossip messages taken from one peer per rate window; beyond that they are ignored
/// unread (no signature check spent on them). A busy relay forwards a whole market's posts,
/// so this is generous (500/s); what is dropped here is repaired by catch-up sync.
pub const GOSSIP_RATE_MAX: u32 = 5000;
/// Pending incoming connections.
pub const MAX_PENDING_INCOMING: u32 = 64;

/// The kad protocol name; our own so we never join the public IPFS DHT.
pub const KAD_PROTOCOL: &str = "/jangteo/kad/1.0.0";
/// The catch-up sync protocol name.
pub const SYNC_PROTOCOL: &str = "/jangteo/sync/1";
/// The trade message protocol name.
pub const TRADE_PROTOCOL: &str = "/jangteo/trade/1";
/// Largest trade request (a whole chain) or response.
pub const TRADE_MESSAGE_MAX_BYTES: u64 = 512 * 1024;
/// Inbound trade deliveries waiting for the trades service.
pub const INBOUND_TRADE_QUEUE: usize = 64;
/// Trade requests a peer may make per [`SYNC_RATE_WINDOW`].
pub const TRADE_RATE_MAX: u32 = 60;

/// A trade delivery: the whole chain the sender holds (offer first is not required), so the
/// receiver can check the new message even if it missed earlier ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TradeRequest {
    /// Envelope bytes of trade messages, all of one trade.
    pub messages: Vec<ByteBuf>,
}

/// The answer to a [`TradeRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TradeResponse {
    /// Verified, stored (synced) and applied.
    Accepted,
    /// Not now (rate limit, queue full): the sender tries again later.
    Busy(String),
    /// Refused, with the reason.
    Refused(String),
}

/// A trade delivery from a peer, for the trades service to answer.
#[derive(Debug)]
pub struct InboundTrade {
    /// Who sent it.
    pub peer: PeerId,
    /// The messages.
    pub request: TradeRequest,
    /// Where the answer goes (through [`Client::respond_trade`]).
    pub channel: request_response::ResponseChannel<TradeResponse>,
}

/// The relay mailbox protocol name.
pub const MAILBOX_PROTOCOL: &str = "/jangteo/mailbox/1";
/// Blob fetch protocol.
pub const BLOB_PROTOCOL: &str = "/jangteo/blob/1";
/// Blob requests served per peer per rate window (a 5 MiB image is 21 requests).
pub const BLOB_REQUEST_RATE_MAX: u32 = 400;
/// How long a relay keeps an item.
pub const MAILBOX_RETENTION_MS: u64 = 14 * 24 * 3600 * 1000;
/// Most items waiting for one recipient.
pub const MAILBOX_ITEMS_MAX: usize = 256;
/// Most bytes waiting for one recipient.
pub const MAILBOX_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Items a sender may deposit per [`SYNC_RATE_WINDOW`].
pub const MAILBOX_PUT_RATE_MAX: u32 = 20;
/// Mailbox requests of any kind (put, fetch, ack) served per peer per rate window.
pub const MAILBOX_REQUEST_RATE_MAX: u32 = 120;
/// Most items (and bytes) returned by one fetch.
pub const MAILBOX_FETCH_ITEMS: usize = 64;
/// Most bytes returned by one fetch.
pub const MAILBOX_FETCH_BYTES: usize = 4 * 1024 * 1024;

/// A request to a relay's mailbox. Fetch and ack act on the mailbox of the requesting peer
/// (the connection authenticates it), so nobody can read or delete another's items.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MailboxRequest {
    /// Hold a sealed item for the key `to`.
    Put {
        /// Recipient's ed25519 key.
        to: ByteBuf,
        /// The sealed item.
        sealed: ByteBuf,
    },
    /// Send me what waits for me.
    Fetch,
    /// I have these; delete them.
    Ack {
        /// Item ids.
        ids: Vec<ByteBuf>,
    },
}

/// A relay's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MailboxResponse {
    /// Held.
    Stored,
    /// Items waiting: (id, sealed).
    Items(Vec<(ByteBuf, ByteBuf)>),
    /// Done.
    Done,
    /// Refused, with the reason.
    Refused(String),
}

/// A request for part of a blob.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BlobRequest {
    /// The manifest (size and chunk hashes).
    Manifest {
        /// Blob id (32 bytes).
        id: ByteBuf,
    },
    /// One chunk.
    Chunk {
        /// Blob id (32 bytes).
        id: ByteBuf,
        /// Chunk index.
        index: u32,
    },
}

/// The answer to a [`BlobRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BlobResponse {
    /// The manifest bytes.
    Manifest(ByteBuf),
    /// The chunk bytes.
    Chunk(ByteBuf),
    /// Not held here.
    NotFound,
    /// Refused (rate limit, bad request).
    Refused(String),
}

/// The kinds that travel by gossip, each on its own topic.
pub const GOSSIP_KINDS: [Kind; 3] = [Kind::Listing, Kind::Profile, Kind::Attestation];

/// The identify protocol version string.
pub const IDENTIFY_VERSION: &str = "/jangteo/1.0.0";

/// A catch-up request (see `reconcile`): one round of range-based set reconciliation of a
/// shard, or objects by id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SyncRequest {
    /// A reconciliation message about one shard: `listings/<category>` or `attestations`.
    Reconcile {
        /// The shard.
        shard: String,
        /// The negentropy message (at most `reconcile::FRAME_MAX_BYTES`).
        msg: ByteBuf,
    },
    /// The objects with these ids (at most [`FETCH_IDS_MAX`]).
    Fetch {
        /// Object ids, 32 bytes each.
        ids: Vec<ByteBuf>,
    },
}

/// The answer to a [`SyncRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SyncResponse {
    /// The responder's reconciliation message.
    Reconciled {
        /// The negentropy reply.
        msg: ByteBuf,
    },
    /// Objects asked for (exact bytes); `next` is the first id not sent when the page was
    /// full.
    Objects {
        /// Envelope bytes, each verified again by the receiver.
        objects: Vec<ByteBuf>,
        /// The first id left out, when the page was full.
        next: Option<ByteBuf>,
    },
    /// Refused, with the reason (rate limit, bad request, store error).
    Refused(String),
}

/// Most ids one fetch asks for.
pub const FETCH_IDS_MAX: usize = 512;
/// Fetch requests in flight per peer.
pub const FETCHES_IN_FLIGHT: usize = 2;
/// Object bytes served to one peer by sync per rate window.
pub const SYNC_SERVED_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Peers reconciled with at once. One: the first peer brings what we lack, and the next
/// ones then differ by little (reconciling with all at once would move every missing id once
/// per peer).
pub const PEER_SYNCS_AT_ONCE: usize = 1;
/// A sync with one peer that takes longer than this is abandoned (the next peer's turn).
pub const PEER_SYNC_DEADLINE: Duration = Duration::from_secs(120);
/// Most re-runs of one shard in one sync with a peer.
pub const SYNC_RERUNS_MAX: u32 = 8;
/// Shards reconciled at once with one peer (each round is a stream; the protocol allows 16).
pub const SESSIONS_IN_FLIGHT: usize = 4;
/// How often a connected peer is reconciled with again.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(60);

/// What the API shows about catch-up sync.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncInfo {
    /// Peers we finished reconciling with since they connected.
    pub peers_reconciled: usize,
    /// Peers we are reconciling with now, or waiting for their turn.
    pub in_progress: usize,
    /// Objects learned from peers and not fetched yet.
    pub to_fetch: usize,
    /// Milliseconds since the last reconciliation finished (None: none yet).
    pub last_sync_ms_ago: Option<u64>,
    /// How long the last one took, in ms.
    pub last_sync_took_ms: Option<u64>,
    /// Objects fetched by sync since the node started.
    pub objects_fetched: u64,
    /// Bytes sent by sync (reconciliation messages, id lists).
    pub bytes_sent: u64,
    /// Bytes received by sync (reconciliation messages, objects).
    pub bytes_received: u64,
    /// Of `bytes_received`, the bytes of the objects themselves.
    pub object_bytes_received: u64,
}

#[derive(Default)]
struct PeerSync {
    shards_left: std::collections::VecDeque<String>,
    /// Re-runs started per shard (a shard that hit the round limit is reconciled again once
    /// what it learned was fetched, at most [`SYNC_RERUNS_MAX`] times, and only while
    /// fetching stores something).
    reruns: HashMap<String, u32>,
    /// Objects stored by this peer's fetches.
    stored: u64,
    /// `stored` when the current pass of re-runs was decided.
    stored_at_rerun: u64,
    sessions_open: usize,
    to_fetch: std::collections::VecDeque<(String, [u8; 32])>,
    fetches_in_flight: usize,
    rerun: std::collections::BTreeSet<String>,
    started: Option<Instant>,
}

enum Pending {
    Round(String, Box<crate::sync::reconcile::Initiator>),
    Fetch(String, Vec<[u8; 32]>),
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    blocked: libp2p::allow_block_list::Behaviour<libp2p::allow_block_list::BlockedPeers>,
    relay_client: libp2p::relay::client::Behaviour,
    relay_server: Toggle<libp2p::relay::Behaviour>,
    autonat: libp2p::autonat::Behaviour,
    dcutr: libp2p::dcutr::Behaviour,
    gossipsub: gossipsub::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
    sync: request_response::cbor::Behaviour<SyncRequest, SyncResponse>,
    blob: request_response::cbor::Behaviour<BlobRequest, BlobResponse>,
    trade: request_response::cbor::Behaviour<TradeRequest, TradeResponse>,
    mailbox: request_response::cbor::Behaviour<MailboxRequest, MailboxResponse>,
}

/// Network settings.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start.
    pub bootstrap: Vec<Multiaddr>,
    /// Whether to discover peers on the LAN with mDNS.
    pub mdns: bool,
    /// Whether this node serves as a community relay (circuit relay v2, AutoNAT server,
    /// mailboxes for offline peers, every topic).
    pub relay: bool,
    /// Addresses this node is reachable at from outside (port forwarding), announced as is.
    pub external: Vec<Multiaddr>,
    /// Listing categories to follow (gossip and sync); empty = all. Relays follow all.
    pub follow: Vec<String>,
}

impl NetworkConfig {
    /// The listing shards this node subscribes to.
    pub fn shards(&self) -> Vec<&'static str> {
        if self.relay || self.follow.is_empty() {
            return jangteo_protocol::listing::CATEGORIES.to_vec();
        }
        let mut out: Vec<&'static str> = self
            .follow
            .iter()
            .map(|c| jangteo_protocol::listing::shard_of(c))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Most relays a node behind NAT keeps a reservation on.
pub const RELAY_RESERVATIONS_MAX: usize = 2;
/// The circuit relay v2 hop protocol, by which identify tells us a peer relays.
pub const RELAY_HOP_PROTOCOL: &str = "/libp2p/circuit/relay/0.2.0/hop";

/// A connected peer as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PeerInfo {
    /// Base58 peer id.
    pub peer_id: String,
    /// Addresses of its connections to us.
    pub addrs: Vec<String>,
    /// Its gossipsub peer score as this node sees it (negative after invalid objects).
    pub score: Option<f64>,
}

/// A snapshot of the network state.
#[derive(Debug, Clone)]
pub struct NetworkInfo {
    /// Our listen addresses with `/p2p/<peer id>` appended.
    pub listen_addrs: Vec<String>,
    /// Connected peers.
    pub peers: Vec<PeerInfo>,
    /// Peers subscribed to the listings topic (who our posts reach right away).
    pub gossip_peers: usize,
    /// Peers whose listing heads we have fully received since they connected.
    pub synced_peers: usize,
    /// Peers banned for now (they sent too many invalid objects).
    pub banned: Vec<String>,
    /// Listing shards (categories) this node follows.
    pub following: Vec<&'static str>,
    /// Catch-up sync state: tells "the market is empty" from "not caught up yet".
    pub sync: SyncInfo,
    /// `public`, `private` (reachable only through relays) or `unknown` (not probed yet).
    pub reachability: &'static str,
    /// Our addresses through relays that accepted a reservation.
    pub relayed_addrs: Vec<String>,
}

enum Command {
    Publish {
        kind: Kind,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Info {
        reply: oneshot::Sender<NetworkInfo>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), String>>,
    },
    SendTrade {
        peer: PeerId,
        request: TradeRequest,
        reply: oneshot::Sender<Result<TradeResponse, String>>,
    },
    RespondTrade {
        channel: request_response::ResponseChannel<TradeResponse>,
        response: TradeResponse,
    },
    Offense {
        peer: PeerId,
    },
    Relays {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    Mailbox {
        peer: PeerId,
        request: MailboxRequest,
        reply: oneshot::Sender<Result<MailboxResponse, String>>,
    },
    Blob {
        peer: PeerId,
        request: BlobRequest,
        reply: oneshot::Sender<Result<BlobResponse, String>>,
    },
    Provide {
        id: jangteo_protocol::ObjectId,
    },
    Providers {
        id: jangteo_protocol::ObjectId,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
}

/// A cloneable handle to the swarm task.
#[derive(Debug, Clone)]
pub struct Client {
    tx: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Publish { .. } => "Publish",
            Command::Info { .. } => "Info",
            Command::Dial { .. } => "Dial",
            Command::SendTrade { .. } => "SendTrade",
            Command::RespondTrade { .. } => "RespondTrade",
            Command::Offense { .. } => "Offense",
            Command::Relays { .. } => "Relays",
            Command::Mailbox { .. } => "Mailbox",
            Command::Blob { .. } => "Blob",
            Command::Provide { .. } => "Provide",
            Command::Providers { .. } => "Providers",
        })
    }
}

impl Client {
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| NodeError::NetworkStopped)?;
        rx.await.map_err(|_| NodeError::NetworkStopped)
    }

    /// Asks `peer` for part of a blob.
    pub async fn blob(
        &self,
        peer: PeerId,
        request: BlobRequest,
    ) -> Result<Result<BlobResponse, String>, NodeError> {
        self.call(|reply| Command::Blob {
            peer,
            request,
            reply,
        })
        .await
    }

    /// Announces in the DHT that this node holds blob `id`.
    pub async fn provide(&self, id: jangteo_protocol::ObjectId) -> Result<(), NodeError> {
        self.tx
            .send(Command::Provide { id })
            .await
            .map_err(|_| NodeError::NetworkStopped)
    }

    /// Peers the DHT says hold blob `id` (waits for the lookup).
    pub async fn providers(
        &self,
        id: jangteo_protocol::ObjectId,
    ) -> Result<Vec<PeerId>, NodeError> {
        self.call(|reply| Command::Providers { id, reply }).await
    }

    /// Gossips an object that is already stored. An error means no peer took it now; the
    /// object still reaches peers through catch-up sync.
    pub async fn publish(
        &self,
        kind: Kind,
        bytes: Vec<u8>,
    ) -> Result<Result<(), String>, NodeError> {
        self.call(|reply| Command::Publish { kind, bytes, reply })
            .await
    }

    /// The current network state.
    pub async fn info(&self) -> Result<NetworkInfo, NodeError> {
        self.call(|reply| Command::Info { reply }).await
    }

    /// Sends trade messages to a peer and waits for its answer. `Err` means it could not be
    /// reached (the message stays queued for a retry).
    pub async fn send_trade(
        &self,
        peer: PeerId,
        request: TradeRequest,
    ) -> Result<Result<TradeResponse, String>, NodeError> {
        self.call(|reply| Command::SendTrade {
            peer,
            request,
            reply,
        })
        .await
    }

    /// Answers an inbound trade delivery.
    pub async fn respond_trade(
        &self,
        channel: request_response::ResponseChannel<TradeResponse>,
        response: TradeResponse,
    ) -> Result<(), NodeError> {
        self.tx
            .send(Command::RespondTrade { channel, response })
            .await
            .map_err(|_| NodeError::NetworkStopped)
    }

    /// Counts an offense against a peer (it sent a signed lie: a forged, equivocating or
    /// invalid message), as an invalid gossiped object does; enough of them ban it.
    pub async fn offense(&self, peer: PeerId) -> Result<(), NodeError> {
        self.tx
            .send(Command::Offense { peer })
            .await
            .map_err(|_| NodeError::NetworkStopped)
    }

    /// Connected relays that hold mailboxes.
    pub async fn relays(&self) -> Result<Vec<PeerId>, NodeError> {
        self.call(|reply| Command::Relays { reply }).await
    }

    /// Sends a mailbox request to a relay.
    pub async fn mailbox(
        &self,
        peer: PeerId,
        request: MailboxRequest,
    ) -> Result<Result<MailboxResponse, String>, NodeError> {
        self.call(|reply| Command::Mailbox {
            peer,
            request,
            reply,
        })
        .await
    }

    /// Dials an address.
    pub async fn dial(&self, addr: Multiaddr) -> Result<Result<(), String>, NodeError> {
        self.call(|reply| Command::Dial { addr, reply }).await
    }
}

/// The swarm task's state.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    store: Arc<Store>,
    events: broadcast::Sender<NodeEvent>,
    peers: HashMap<PeerId, Vec<Multiaddr>>,
    synced: HashMap<PeerId, bool>,
    sync_rate: HashMap<PeerId, (Instant, u32)>,
    trade_rate: HashMap<PeerId, (Instant, u32)>,
    inbound_trades: mpsc::Sender<InboundTrade>,
    relay: bool,
    relays: std::collections::HashSet<PeerId>,
    mailbox_rate: HashMap<PeerId, (Instant, u32)>,
    mailbox_any_rate: HashMap<PeerId, (Instant, u32)>,
    blob_rate: HashMap<PeerId, (Instant, u32)>,
    pending_blob:
        HashMap<request_response::OutboundRequestId, oneshot::Sender<Result<BlobResponse, String>>>,
    pending_providers: HashMap<kad::QueryId, (oneshot::Sender<Vec<PeerId>>, Vec<PeerId>)>,
    pending_mailbox: HashMap<
        request_response::OutboundRequestId,
        oneshot::Sender<Result<MailboxResponse, String>>,
    >,
    pending_trades: HashMap<
        request_response::OutboundRequestId,
        oneshot::Sender<Result<TradeResponse, String>>,
    >,
    /// What AutoNAT (or the lack of any listen address) says about us.
    reachability: &'static str,
    /// Every listing shard topic, by hash (subscribed or not).
    listing_topics: HashMap<gossipsub::TopicHash, &'static str>,
    /// The shards this node follows.
    shards: Vec<&'static str>,
    /// Peers waiting for their turn to be reconciled with.
    sync_queue: std::collections::VecDeque<PeerId>,
    /// Ids some peer's sync is fetching (or has queued): not asked of a second peer.
    sync_wanted: std::collections::HashSet<[u8; 32]>,
    /// Object bytes served by sync per peer in the current window.
    sync_served: HashMap<PeerId, (Instant, u64)>,
    /// Sync items per shard: (store generation, when built, sorted items).
    item_cache: HashMap<String, (u64, Instant, Arc<Vec<crate::sync::reconcile::Item>>)>,
    /// Reconciliation rounds and fetches in flight.
    pending_sync: HashMap<request_response::OutboundRequestId, Pending>,
    /// Per-peer sync progress.
    peer_sync: HashMap<PeerId, PeerSync>,
    /// When each peer was last reconciled with.
    last_synced: HashMap<PeerId, Instant>,
    /// When the last reconciliation finished and how long it took.
    last_sync: Option<(Instant, Duration)>,
    /// Counters since start.
    sync_totals: SyncInfo,
    /// Invalid objects per peer in the current window.
    offenses: HashMap<PeerId, (Instant, u32)>,
    /// Banned peers and when their ban ends.
    banned: HashMap<PeerId, Instant>,
    /// Gossip messages per propagation source.
    gossip_rate: HashMap<PeerId, (Instant, u32)>,
    /// Established connections per remote IP, and which IP each connection came from.
    ip_conns: HashMap<std::net::IpAddr, usize>,
    conn_ip: HashMap<libp2p::swarm::ConnectionId, std::net::IpAddr>,
    /// Connected peers that offer circuit relay v2, with the address we reach them at.
    circuit_relays: HashMap<PeerId, Multiaddr>,
    /// Relays we asked for (or hold) a reservation on, with our relayed address once accepted.
    reservations: HashMap<PeerId, Option<Multiaddr>>,
    /// The listener of each reservation.
    reservation_listeners: HashMap<libp2p::core::transport::ListenerId, PeerId>,
    local_peer_id: PeerId,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("peer_id", &self.local_peer_id)
            .finish_non_exhaustive()
    }
}

fn gossip_topics(shards: &[&'static str]) -> Vec<IdentTopic> {
    let mut topics: Vec<IdentTopic> = shards
        .iter()
        .map(|s| IdentTopic::new(listing_topic(s)))
        .collect();
    topics.push(IdentTopic::new(topic_for(Kind::Profile)));
    topics.push(IdentTopic::new(topic_for(Kind::Attestation)));
    topics
}

fn gossipsub_behaviour(shards: &[&'static str]) -> Result<gossipsub::Behaviour, NodeError> {
    let config = gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Anonymous)
        .validate_messages()
        .max_transmit_size(jangteo_protocol::MAX_ANY_OBJECT_BYTES + 1024)
        .heartbeat_interval(Duration::from_millis(700))
        .message_id_fn(|m| gossipsub::MessageId::new(&blake3::hash(&m.data).as_bytes()[..20]))
        .build()
        .map_err(|e| NodeError::Network(format!("gossipsub config: {e}")))?;
    // Objects carry their own signatures, so gossip messages are not signed a second time.
    let mut gs = gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, config)
        .map_err(|e| NodeError::Network(format!("gossipsub: {e}")))?;
    let mut params = gossipsub::PeerScoreParams {
        // Many honest nodes may share an address (one host, one NAT); do not punish that.
        ip_colocation_factor_weight: 0.0,
        ..Default::default()
    };
    for topic in gossip_topics(shards) {
        let tp = gossipsub::TopicScoreParams {
            topic_weight: 1.0,
            // A quiet market sends few messages: do not punish mesh peers for silence.
            mesh_message_deliveries_weight: 0.0,
            mesh_failure_penalty_weight: 0.0,
            // Each invalid object counts squared: a handful takes a peer below the gossip
            // and publish thresholds, a few more below the graylist.
            invalid_message_deliveries_weight: -10.0,
            invalid_message_deliveries_decay: 0.99,
            ..Default::default()
        };
        params.topics.insert(topic.hash(), tp);
    }
    // One invalid object puts a peer at the gossip threshold (no more gossip to or from it),
    // two below publish (we stop publishing to it), three into the graylist (everything it
    // sends is dropped unread). Bans (BAN_AFTER_INVALID) close the connection itself.
    let thresholds = gossipsub::PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -30.0,
        graylist_threshold: -80.0,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 5.0,
    };
    gs.with_peer_score(params, thresholds)
        .map_err(|e| NodeError::Network(format!("peer score: {e}")))?;
    for topic in gossip_topics(shards) {
        gs.subscribe(&topic)
            .map_err(|e| NodeError::Network(format!("subscribe: {e}")))?;
    }
    Ok(gs)
}

/// Builds the swarm, starts listening and dialing, and returns the client handle and the
/// event loop to spawn.
pub fn build(
    keypair: libp2p::identity::Keypair,
    config: &NetworkConfig,
    store: Arc<Store>,
    events: broadcast::Sender<NodeEvent>,
    inbound_trades: mpsc::Sender<InboundTrade>,
) -> Result<(Client, EventLoop), NodeError> {
    let net = |e: &dyn std::fmt::Display| NodeError::Network(e.to_string());
    let mdns_on = config.mdns;
    let relay = config.relay;
    let direct = !config.listen.is_empty();
    let shards = config.shards();
    let listing_topics: HashMap<gossipsub::TopicHash, &'static str> =
        jangteo_protocol::listing::CATEGORIES
            .iter()
            .map(|s| (IdentTopic::new(listing_topic(s)).hash(), *s))
            .collect();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| net(&e))?
        .with_quic()
        .with_dns()
        .map_err(|e| net(&e))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| net(&e))?
        .with_behaviour(|key, relay_client| {
            let peer_id = key.public().to_peer_id();
            let relay_server = relay.then(|| {
                libp2p::relay::Behaviour::new(
                    peer_id,
                    libp2p::relay::Config {
                        max_reservations: 1024,
                        max_reservations_per_peer: 4,
                        max_circuits: 256,
                        max_circuits_per_peer: 8,
                        max_circuit_duration: Duration::from_secs(5 * 60),
                        max_circuit_bytes: 4 * 1024 * 1024,
                        ..Default::default()
                    },
                )
            });
            let autonat = libp2p::autonat::Behaviour::new(
                peer_id,
                libp2p::autonat::Config {
                    boot_delay: Duration::from_secs(2),
                    retry_interval: Duration::from_secs(30),
                    throttle_server_period: Duration::from_secs(15),
                    confidence_max: 1,
                    // Loopback and LAN addresses count: a community may run on a LAN, and
                    // tests run on loopback.
                    only_global_ips: false,
                    ..Default::default()
                },
            );
            let limits = connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
                    .with_max_established(Some(MAX_CONNECTIONS))
                    .with_max_pending_incoming(Some(MAX_PENDING_INCOMING)),
            );
            let mut kad_cfg = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
            kad_cfg.set_query_timeout(Duration::from_secs(30));
            let mut kad = kad::Behaviour::with_config(
                peer_id,
                kad::store::MemoryStore::new(peer_id),
                kad_cfg,
            );
            // Only a node others can dial answers DHT queries; one that listens nowhere is
            // reachable through relays alone and stays a client.
            kad.set_mode(Some(if direct {
                kad::Mode::Server
            } else {
                kad::Mode::Client
            }));
            let mdns = if mdns_on {
                Some(mdns::tokio::Behaviour::new(
                    mdns::Config::default(),
                    peer_id,
                )?)
            } else {
                None
            };
            let codec = request_response::cbor::codec::Codec::default()
                .set_request_size_maximum(SYNC_REQUEST_MAX_BYTES)
                .set_response_size_maximum(SYNC_RESPONSE_MAX_BYTES);
            let sync = request_response::Behaviour::with_codec(
                codec,
                [(StreamProtocol::new(SYNC_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(30))
                    .with_max_concurrent_streams(16),
            );
            let trade_codec = request_response::cbor::codec::Codec::default()
                .set_request_size_maximum(TRADE_MESSAGE_MAX_BYTES)
                .set_response_size_maximum(TRADE_MESSAGE_MAX_BYTES);
            let trade = request_response::Behaviour::with_codec(
                trade_codec,
                [(StreamProtocol::new(TRADE_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(20))
                    .with_max_concurrent_streams(16),
            );
            let mailbox_codec = request_response::cbor::codec::Codec::default()
                .set_request_size_maximum(
                    (jangteo_protocol::mailbox::SEALED_MAX_BYTES + 4096) as u64,
                )
                .set_response_size_maximum((MAILBOX_FETCH_BYTES + 64 * 1024) as u64);
            let mailbox = request_response::Behaviour::with_codec(
                mailbox_codec,
                [(
                    StreamProtocol::new(MAILBOX_PROTOCOL),
                    if relay {
                        ProtocolSupport::Full
                    } else {
                        ProtocolSupport::Outbound
                    },
                )],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(20))
                    .with_max_concurrent_streams(16),
            );
            let blob_codec = request_response::cbor::codec::Codec::default()
                .set_request_size_maximum(1024)
                .set_response_size_maximum((jangteo_protocol::blob::CHUNK_BYTES + 4096) as u64);
            let blob = request_response::Behaviour::with_codec(
                blob_codec,
                [(StreamProtocol::new(BLOB_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(20))
                    .with_max_concurrent_streams(16),
            );
            Ok(Behaviour {
                blocked: Default::default(),
                relay_client,
                relay_server: relay_server.into(),
                autonat,
                dcutr: libp2p::dcutr::Behaviour::new(peer_id),
                blob,
                mailbox,
                trade,
                limits,
                gossipsub: gossipsub_behaviour(&shards)?,
                kad,
                identify: identify::Behaviour::new(identify::Config::new(
                    IDENTIFY_VERSION.to_owned(),
                    key.public(),
                )),
                ping: ping::Behaviour::default(),
                mdns: mdns.into(),
                sync,
            })
        })
        .map_err(|e| net(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NodeError::Address(addr.to_string(), e.to_string()))?;
    }
    for addr in &config.external {
        swarm.add_external_address(addr.clone());
    }
    for addr in &config.bootstrap {
        if let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.iter().last() {
            swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
        }
        if let Err(e) = swarm.dial(addr.clone()) {
            tracing::warn!(addr = %addr, error = %e, "cannot dial bootstrap peer");
        }
    }
    let (tx, commands) = mpsc::channel(COMMAND_QUEUE);
    let local_peer_id = *swarm.local_peer_id();
    Ok((
        Client { tx },
        EventLoop {
            swarm,
            commands,
            store,
            events,
            peers: HashMap::new(),
            synced: HashMap::new(),
            sync_rate: HashMap::new(),
            trade_rate: HashMap::new(),
            inbound_trades,
            relay,
            relays: Default::default(),
            mailbox_rate: HashMap::new(),
            mailbox_any_rate: HashMap::new(),
            blob_rate: HashMap::new(),
            pending_blob: HashMap::new(),
            pending_providers: HashMap::new(),
            pending_mailbox: HashMap::new(),
            pending_trades: HashMap::new(),
            local_peer_id,
            reachability: if direct { "unknown" } else { "private" },
            listing_topics,
            shards: shards.clone(),
            offenses: HashMap::new(),
            pending_sync: HashMap::new(),
            item_cache: HashMap::new(),
            sync_served: HashMap::new(),
            sync_wanted: std::collections::HashSet::new(),
            sync_queue: std::collections::VecDeque::new(),
            peer_sync: HashMap::new(),
            last_synced: HashMap::new(),
            last_sync: None,
            sync_totals: SyncInfo::default(),
            banned: HashMap::new(),
            gossip_rate: HashMap::new(),
            ip_conns: HashMap::new(),
            conn_ip: HashMap::new(),
            circuit_relays: HashMap::new(),
            reservations: HashMap::new(),
            reservation_listeners: HashMap::new(),
        },
    ))
}

impl EventLoop {
    /// Runs until `shutdown` turns true or every client is dropped.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut housekeeping = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                _ = housekeeping.tick() => self.housekeeping(),
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => break,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
            }
        }
        tracing::info!("network stopped");
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Publish { kind, bytes, reply } => {
                let topic = match (kind, listing_shard(&bytes)) {
                    (Kind::Listing, Some(shard)) => IdentTopic::new(listing_topic(shard)),
                    _ => IdentTopic::new(topic_for(kind)),
                };
                let r = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(topic, bytes)
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                let _ = reply.send(r);
            }
            Command::Info { reply } => {
                let me = self.local_peer_id;
                let info = NetworkInfo {
                    listen_addrs: self
                        .swarm
                        .listeners()
                        .map(|a| format!("{a}/p2p/{me}"))
                        .collect(),
                    peers: self
                        .peers
                        .iter()
                        .map(|(p, a)| PeerInfo {
                            peer_id: p.to_string(),
                            addrs: a.iter().map(ToString::to_string).collect(),
                            score: self.swarm.behaviour().gossipsub.peer_score(p),
                        })
                        .collect(),
                    gossip_peers: self
                        .swarm
                        .behaviour()
                        .gossipsub
                        .all_peers()
                        .filter(|(_, topics)| {
                            topics.iter().any(|t| self.listing_topics.contains_key(*t))
                        })
                        .count(),
                    synced_peers: self.synced.values().filter(|d| **d).count(),
                    banned: self.banned.keys().map(ToString::to_string).collect(),
                    following: self.shards.clone(),
                    sync: self.sync_info(),
                    reachability: self.reachability,
                    relayed_addrs: self
                        .reservations
                        .values()
                        .flatten()
                        .map(|a| format!("{a}/p2p/{me}"))
                        .collect(),
                };
                let _ = reply.send(info);
            }
            Command::SendTrade {
                peer,
                request,
                reply,
            } => {
                self.route_via_relays(peer);
                let id = self
                    .swarm
                    .behaviour_mut()
                    .trade
                    .send_request(&peer, request);
                self.pending_trades.insert(id, reply);
            }
            Command::RespondTrade { channel, response } => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .trade
                    .send_response(channel, response);
            }
            Command::Offense { peer } => {
                tracing::info!(peer = %peer, "offense reported by a service");
                self.offense(peer);
            }
            Command::Relays { reply } => {
                let _ = reply.send(self.relays.iter().copied().collect());
            }
            Command::Mailbox {
                peer,
                request,
                reply,
            } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .mailbox
                    .send_request(&peer, request);
                self.pending_mailbox.insert(id, reply);
            }
            Command::Blob {
                peer,
                request,
                reply,
            } => {
                self.route_via_relays(peer);
                let id = self.swarm.behaviour_mut().blob.send_request(&peer, request);
                self.pending_blob.insert(id, reply);
            }
            Command::Provide { id } => {
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .start_providing(kad::RecordKey::new(&id.0))
                {
                    tracing::warn!(error = %e, "cannot announce blob");
                }
            }
            Command::Providers { id, reply } => {
                let q = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_providers(kad::RecordKey::new(&id.0));
                self.pending_providers.insert(q, (reply, Vec::new()));
            }
            Command::Dial { addr, reply } => {
                if let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.iter().last() {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                }
                let _ = reply.send(self.swarm.dial(addr).map_err(|e| e.to_string()));
            }
        }
    }

    fn release_ip(&mut self, c: libp2p::swarm::ConnectionId) {
        if let Some(ip) = self.conn_ip.remove(&c)
            && let Some(n) = self.ip_conns.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.ip_conns.remove(&ip);
            }
        }
    }

    /// Lifts expired bans and forgets stale counters.
    fn housekeeping(&mut self) {
        let now = Instant::now();
        let expired: Vec<PeerId> = self
            .banned
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in expired {
            self.banned.remove(&p);
            self.swarm.behaviour_mut().blocked.unblock_peer(p);
            tracing::info!(peer = %p, "ban lifted");
        }
        self.offenses
            .retain(|_, (start, _)| now.duration_since(*start) < OFFENSE_WINDOW);
        // Gossip drops a graylisted peer's messages unread, so it cannot collect offenses
        // any more: its score is the evidence.
        let graylisted: Vec<PeerId> = self
            .peers
            .keys()
            .filter(|p| {
                self.swarm
                    .behaviour()
                    .gossipsub
                    .peer_score(p)
                    .is_some_and(|s| s < BAN_BELOW_SCORE)
            })
            .copied()
            .collect();
        for p in graylisted {
            self.ban(
                p,
                "its gossip score fell into the graylist (invalid objects)",
            );
        }
        // Reconcile again, now and then, with peers that share listings with us.
        let due: Vec<PeerId> = self
            .synced
            .iter()
            .filter(|(p, done)| {
                **done
                    && !self.peer_sync.contains_key(*p)
                    && self
                        .last_synced
                        .get(*p)
                        .is_none_or(|t| t.elapsed() >= SYNC_INTERVAL)
            })
            .map(|(p, _)| *p)
            .take(4)
            .collect();
        for p in due {
            self.start_sync(p);
        }
        let slow: Vec<PeerId> = self
            .peer_sync
            .iter()
            .filter(|(_, ps)| ps.started.is_some_and(|t| t.elapsed() > PEER_SYNC_DEADLINE))
            .map(|(p, _)| *p)
            .collect();
        for p in slow {
            self.abandon_sync(p);
        }
        self.next_sync();
    }

    fn ban(&mut self, peer: PeerId, why: &str) {
        if self.banned.contains_key(&peer) {
            return;
        }
        tracing::warn!(peer = %peer, reason = why, "peer banned");
        self.banned.insert(peer, Instant::now() + BAN_DURATION);
        self.offenses.remove(&peer);
        // Closes its connections and refuses new ones until the ban ends.
        self.swarm.behaviour_mut().blocked.block_peer(peer);
        let _ = self.events.send(NodeEvent::PeerBanned {
            peer: peer.to_string(),
        });
    }

    /// Counts an invalid object against `peer`; bans it past [`BAN_AFTER_INVALID`].
    fn offense(&mut self, peer: PeerId) {
        let now = Instant::now();
        let e = self.offenses.entry(peer).or_insert((now, 0));
        if now.duration_since(e.0) >= OFFENSE_WINDOW {
            *e = (now, 0);
        }
        e.1 += 1;
        if e.1 >= BAN_AFTER_INVALID {
            self.ban(peer, "too many invalid objects");
        }
    }

    /// A peer we are not connected to may sit behind NAT with a reservation on one of our
    /// relays: dial it through them too (alongside any direct address the DHT knows).
    fn route_via_relays(&mut self, peer: PeerId) {
        use libp2p::multiaddr::Protocol;
        use libp2p::swarm::dial_opts::DialOpts;
        if self.swarm.is_connected(&peer) || self.circuit_relays.is_empty() {
            return;
        }
        let addrs: Vec<Multiaddr> = self
            .circuit_relays
            .iter()
            .filter(|(r, _)| **r != peer)
            .map(|(r, a)| {
                a.clone()
                    .with(Protocol::P2p(*r))
                    .with(Protocol::P2pCircuit)
                    .with(Protocol::P2p(peer))
            })
            .collect();
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .extend_addresses_through_behaviour()
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(peer = %peer, error = %e, "dial through relays");
        }
    }

    /// Behind NAT (or listening nowhere): keep a reservation on up to
    /// [`RELAY_RESERVATIONS_MAX`] connected relays, so others can reach us through them.
    fn maybe_reserve(&mut self) {
        use libp2p::multiaddr::Protocol;
        if self.reachability != "private" {
            return;
        }
        let candidates: Vec<(PeerId, Multiaddr)> = self
            .circuit_relays
            .iter()
            .filter(|(r, _)| !self.reservations.contains_key(*r))
            .map(|(r, a)| (*r, a.clone()))
            .collect();
        for (relay, addr) in candidates {
            if self.reservations.len() >= RELAY_RESERVATIONS_MAX {
                break;
            }
            let circuit = addr.with(Protocol::P2p(relay)).with(Protocol::P2pCircuit);
            match self.swarm.listen_on(circuit.clone()) {
                Ok(listener) => {
                    tracing::info!(relay = %relay, "asking the relay for a reservation");
                    self.reservations.insert(relay, None);
                    self.reservation_listeners.insert(listener, relay);
                }
                Err(e) => tracing::warn!(relay = %relay, error = %e, "cannot listen through relay"),
            }
        }
    }

    fn relay_of(addr: &Multiaddr) -> Option<PeerId> {
        use libp2p::multiaddr::Protocol;
        let mut last_peer = None;
        for p in addr.iter() {
            match p {
                Protocol::P2p(id) => last_peer = Some(id),
                Protocol::P2pCircuit => return last_peer,
                _ => {}
            }
        }
        None
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                if let Some(relay) = Self::relay_of(&address) {
                    tracing::info!(addr = %address, "reachable through relay");
                    self.reservations.insert(relay, Some(address));
                } else {
                    tracing::info!(addr = %address, "listening");
                }
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                ..
            } => {
                // A refused or lost reservation closes its listener, often with no address.
                if let Some(relay) = self.reservation_listeners.remove(&listener_id) {
                    self.reservations.remove(&relay);
                }
                for a in addresses {
                    if let Some(relay) = Self::relay_of(&a) {
                        self.reservations.remove(&relay);
                    }
                }
                self.maybe_reserve();
            }
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(ev)) => {
                tracing::debug!(event = ?ev, "relay client");
                if let libp2p::relay::client::Event::ReservationReqAccepted {
                    relay_peer_id,
                    renewal: false,
                    ..
                } = ev
                {
                    tracing::info!(relay = %relay_peer_id, "relay reservation accepted");
                    let _ = self.events.send(NodeEvent::RelayReserved {
                        relay: relay_peer_id.to_string(),
                    });
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::RelayServer(ev)) => {
                tracing::debug!(event = ?ev, "relay server");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(ev)) => match ev.result {
                Ok(_) => {
                    tracing::info!(peer = %ev.remote_peer_id, "direct connection by hole punching")
                }
                Err(e) => {
                    tracing::debug!(peer = %ev.remote_peer_id, error = %e, "hole punching failed; staying relayed")
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(
                libp2p::autonat::Event::StatusChanged { new, .. },
            )) => {
                let now = match new {
                    libp2p::autonat::NatStatus::Public(a) => {
                        tracing::info!(addr = %a, "reachable directly (AutoNAT)");
                        "public"
                    }
                    libp2p::autonat::NatStatus::Private => {
                        tracing::info!("not reachable directly (AutoNAT); using relays");
                        "private"
                    }
                    libp2p::autonat::NatStatus::Unknown => "unknown",
                };
                // A node that listens nowhere stays private whatever probes say.
                if self.swarm.listeners().any(|a| Self::relay_of(a).is_none()) {
                    self.reachability = now;
                }
                self.maybe_reserve();
            }
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(_)) => {}
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                connection_id,
                ..
            } => {
                let addr = endpoint.get_remote_address().clone();
                let ip = if Self::relay_of(&addr).is_some() {
                    None
                } else {
                    addr.iter().find_map(|p| match p {
                        libp2p::multiaddr::Protocol::Ip4(ip) => Some(std::net::IpAddr::V4(ip)),
                        // One IPv6 /64 is one household, as one IPv4 address is.
                        libp2p::multiaddr::Protocol::Ip6(ip) if ip.is_loopback() => {
                            Some(std::net::IpAddr::V6(ip))
                        }
                        libp2p::multiaddr::Protocol::Ip6(ip) => Some(std::net::IpAddr::V6(
                            std::net::Ipv6Addr::from(u128::from(ip) & !0xFFFF_FFFF_FFFF_FFFFu128),
                        )),
                        _ => None,
                    })
                };
                if let Some(ip) = ip.filter(|ip| !ip.is_loopback()) {
                    let n = self.ip_conns.entry(ip).or_default();
                    if *n >= MAX_CONNECTIONS_PER_IP {
                        tracing::warn!(ip = %ip, "too many connections from one address; closing");
                        self.swarm.close_connection(connection_id);
                        return;
                    }
                    *n += 1;
                    self.conn_ip.insert(connection_id, ip);
                }
                let addrs = self.peers.entry(peer_id).or_default();
                if !addrs.contains(&addr) && addrs.len() < 8 {
                    addrs.push(addr);
                }
                if num_established.get() == 1 {
                    tracing::info!(peer = %peer_id, "peer connected");
                    let _ = self.events.send(NodeEvent::PeerConnected {
                        peer: peer_id.to_string(),
                    });
                }
            }
            SwarmEvent::ConnectionClosed {
                connection_id,
                num_established,
                ..
            } if num_established > 0 => {
                self.release_ip(connection_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established: 0,
                ..
            } => {
                self.release_ip(connection_id);
                self.peers.remove(&peer_id);
                self.synced.remove(&peer_id);
                if let Some(ps) = self.peer_sync.remove(&peer_id) {
                    for (_, id) in ps.to_fetch {
                        self.sync_wanted.remove(&id);
                    }
                    self.next_sync();
                }
                self.sync_queue.retain(|p| *p != peer_id);
                self.last_synced.remove(&peer_id);
                self.relays.remove(&peer_id);
                self.circuit_relays.remove(&peer_id);
                if self.reservations.remove(&peer_id).is_some() {
                    self.reservation_listeners.retain(|_, r| *r != peer_id);
                    self.maybe_reserve();
                }
                tracing::info!(peer = %peer_id, "peer disconnected");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(ev)) => self.on_gossip(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(ev)) => self.on_sync(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Trade(ev)) => self.on_trade(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Mailbox(ev)) => self.on_mailbox(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Blob(ev)) => self.on_blob(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetProviders(res),
                step,
                ..
            })) => {
                let done = step.last
                    || matches!(
                        &res,
                        Ok(kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) | Err(_)
                    );
                if let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = res
                    && let Some((_, found)) = self.pending_providers.get_mut(&id)
                {
                    found.extend(providers);
                }
                if done && let Some((reply, found)) = self.pending_providers.remove(&id) {
                    let _ = reply.send(found);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::GetClosestPeers(Ok(ok)),
                ..
            })) => {
                // Addresses of peers we looked up (trade counterparties we could not reach).
                for p in ok.peers {
                    for a in p.addrs.into_iter().take(8) {
                        self.swarm.behaviour_mut().kad.add_address(&p.peer_id, a);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                let mailbox = StreamProtocol::new(MAILBOX_PROTOCOL);
                if info.protocols.contains(&mailbox) && self.relays.insert(peer_id) {
                    tracing::info!(peer = %peer_id, "relay with mailboxes connected");
                    let _ = self.events.send(NodeEvent::RelayConnected {
                        peer: peer_id.to_string(),
                    });
                }
                if info.protocols.contains(&StreamProtocol::new(RELAY_HOP_PROTOCOL))
                    && let Some(addr) = info
                        .listen_addrs
                        .iter()
                        .find(|a| Self::relay_of(a).is_none() && !a.iter().any(|p| matches!(p, libp2p::multiaddr::Protocol::Ip4(ip) if ip.is_unspecified())))
                        .cloned()
                {
                    let addr: Multiaddr = addr
                        .iter()
                        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
                        .collect();
                    if self.circuit_relays.insert(peer_id, addr).is_none() {
                        tracing::info!(peer = %peer_id, "circuit relay connected");
                    }
                    self.maybe_reserve();
                }
                for addr in info.listen_addrs.into_iter().take(16) {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found.into_iter().take(64) {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                    if !self.swarm.is_connected(&peer) {
                        let _ = self.swarm.dial(addr);
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(peer = ?peer_id, error = %error, "dial failed");
            }
            _ => {}
        }
    }

    fn on_gossip(&mut self, ev: gossipsub::Event) {
        match ev {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                let acceptance = if over_rate(
                    &mut self.gossip_rate,
                    propagation_source,
                    GOSSIP_RATE_MAX,
                ) {
                    MessageAcceptance::Ignore
                } else if let Some(shard) = self.listing_topics.get(&message.topic) {
                    // A listing must travel in its category's shard.
                    if listing_shard(&message.data) == Some(*shard) {
                        self.ingest(&message.data, Some(Kind::Listing), Some(propagation_source))
                    } else {
                        tracing::warn!(peer = %propagation_source, "listing on the wrong shard topic, or not a listing");
                        self.offense(propagation_source);
                        MessageAcceptance::Reject
                    }
                } else {
                    let expected = [Kind::Profile, Kind::Attestation]
                        .into_iter()
                        .find(|k| IdentTopic::new(topic_for(*k)).hash() == message.topic);
                    match expected {
                        None => {
                            self.offense(propagation_source);
                            MessageAcceptance::Reject
                        }
                        Some(kind) => {
                            self.ingest(&message.data, Some(kind), Some(propagation_source))
                        }
                    }
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
            }
            // Once a peer listens to listings, our posts reach it by gossip; what it
            // posted before, we fetch now.
            gossipsub::Event::Subscribed { peer_id, topic, .. }
                if self.listing_topics.contains_key(&topic)
                    && !self.synced.contains_key(&peer_id) =>
            {
                self.synced.insert(peer_id, false);
                self.start_sync(peer_id);
            }
            _ => {}
        }
    }

    fn ingest(
        &mut self,
        bytes: &[u8],
        kind: Option<Kind>,
        from: Option<PeerId>,
    ) -> MessageAcceptance {
        let outcome = ingest(&self.store, bytes, kind, now_ms(), false);
        self.ingested(outcome, from)
    }

    /// A page of objects (catch-up sync): verified on several threads by
    /// [`ingest_batch`], stored in order. Returns how many were stored.
    fn ingest_page(&mut self, objects: &[ByteBuf], kind: Kind, from: PeerId) -> usize {
        match ingest_batch(&self.store, objects, Some(kind), now_ms(), false) {
            Ok(outcomes) => outcomes
                .into_iter()
                .map(|o| self.ingested(Ok(o), Some(from)))
                .filter(|a| *a == MessageAcceptance::Accept)
                .count(),
            Err(e) => {
                tracing::error!(error = %e, "store write failed");
                0
            }
        }
    }

    fn ingested(
        &mut self,
        outcome: Result<Ingested, crate::error::StoreError>,
        from: Option<PeerId>,
    ) -> MessageAcceptance {
        match outcome {
            Ok(Ingested::Stored { listing, .. }) => {
                if let Some(listing) = listing {
                    tracing::debug!(listing = %listing, peer = ?from, "listing stored");
                    let _ = self.events.send(NodeEvent::ListingStored { listing });
                }
                MessageAcceptance::Accept
            }
            Ok(Ingested::Ignored(_)) => MessageAcceptance::Ignore,
            Ok(Ingested::Invalid(e)) => {
                tracing::warn!(peer = ?from, error = %e, "refused invalid object");
                if let Some(p) = from {
                    self.offense(p);
                }
                MessageAcceptance::Reject
            }
            Err(e) => {
                tracing::error!(error = %e, "store write failed");
                MessageAcceptance::Ignore
            }
        }
    }

    fn on_sync(&mut self, ev: request_response::Event<SyncRequest, SyncResponse>) {
        use request_response::{Event, Message};
        match ev {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let now = Instant::now();
                let served = self.sync_served.entry(peer).or_insert((now, 0));
                if now.duration_since(served.0) > SYNC_RATE_WINDOW {
                    *served = (now, 0);
                }
                let over_bytes = served.1 >= SYNC_SERVED_BYTES_MAX;
                let response = if self.over_sync_rate(peer) || over_bytes {
                    SyncResponse::Refused("rate limit: too many sync requests".into())
                } else {
                    self.serve_sync(request)
                };
                if let SyncResponse::Objects { objects, .. } = &response {
                    let n: u64 = objects.iter().map(|o| o.len() as u64).sum();
                    if let Some(e) = self.sync_served.get_mut(&peer) {
                        e.1 += n;
                    }
                }
                if self.sync_served.len() > RATE_TABLE_MAX {
                    self.sync_served
                        .retain(|_, (t, _)| t.elapsed() <= SYNC_RATE_WINDOW);
                }
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, response);
            }
            Event::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(pending) = self.pending_sync.remove(&request_id) {
                    self.on_sync_response(peer, pending, response);
                }
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(peer = %peer, error = %error, "sync request failed");
                if let Some(pending) = self.pending_sync.remove(&request_id) {
                    self.on_sync_response(peer, pending, SyncResponse::Refused(error.to_string()));
                }
            }
            _ => {}
        }
    }

    fn sync_info(&self) -> SyncInfo {
        SyncInfo {
            peers_reconciled: self.synced.values().filter(|d| **d).count(),
            in_progress: self.peer_sync.len() + self.sync_queue.len(),
            to_fetch: self
                .peer_sync
                .values()
                .map(|p| p.to_fetch.len())
                .sum::<usize>()
                + self
                    .pending_sync
                    .values()
                    .map(|p| match p {
                        Pending::Fetch(_, ids) => ids.len(),
                        Pending::Round(..) => 0,
                    })
                    .sum::<usize>(),
            last_sync_ms_ago: self
                .last_sync
                .map(|(at, _)| at.elapsed().as_millis() as u64),
            last_sync_took_ms: self.last_sync.map(|(_, took)| took.as_millis() as u64),
            ..self.sync_totals.clone()
        }
    }

    /// The shards reconciled with every peer: the followed listing categories, then
    /// attestations.
    fn sync_shards(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .shards
            .iter()
            .map(|s| format!("listings/{s}"))
            .collect();
        v.push("attestations".into());
        v
    }

    /// A shard's items, from a cache kept until the store changes (or 30 s pass), so that
    /// serving many rounds to many peers does not rescan the store each time.
    fn shard_items(&mut self, shard: &str) -> Result<Arc<Vec<crate::sync::reconcile::Item>>, String> {
        let generation = if shard == "attestations" {
            self.store.trust_generation()
        } else {
            self.store.listing_generation()
        };
        if let Some((g, at, items)) = self.item_cache.get(shard)
            && *g == generation
            && at.elapsed() < Duration::from_secs(30)
        {
            return Ok(items.clone());
        }
        let r = match shard.strip_prefix("listings/") {
            Some(cat) => self.store.sync_items(cat, now_ms()),
            None if shard == "attestations" => crate::sync::reconcile::attestation_items(&self.store),
            None => return Err(format!("unknown shard {shard:?}")),
        };
        let mut items = r.map_err(|e| format!("store: {e}"))?;
        items.sort_unstable();
        let items = Arc::new(items);
        if self.item_cache.len() > 64 {
            self.item_cache.clear();
        }
        self.item_cache.insert(
            shard.to_owned(),
            (generation, Instant::now(), items.clone()),
        );
        Ok(items)
    }

    /// Starts reconciling every followed shard with `peer`, unless that is under way.
    fn start_sync(&mut self, peer: PeerId) {
        if self.peer_sync.contains_key(&peer) {
            return;
        }
        if self.peer_sync.len() >= PEER_SYNCS_AT_ONCE {
            if !self.sync_queue.contains(&peer) && self.sync_queue.len() < MAX_CONNECTIONS as usize
            {
                self.sync_queue.push_back(peer);
            }
            return;
        }
        let shards = self.sync_shards();
        self.peer_sync.insert(
            peer,
            PeerSync {
                started: Some(Instant::now()),
                shards_left: shards.into(),
                ..Default::default()
            },
        );
        self.open_sessions(peer);
        self.sync_maybe_done(peer);
    }

    /// Opens sessions for the shards still to reconcile, up to [`SESSIONS_IN_FLIGHT`].
    fn open_sessions(&mut self, peer: PeerId) {
        loop {
            let Some(ps) = self.peer_sync.get_mut(&peer) else {
                return;
            };
            if ps.sessions_open >= SESSIONS_IN_FLIGHT {
                return;
            }
            let Some(shard) = ps.shards_left.pop_front() else {
                return;
            };
            self.open_session(peer, shard);
        }
    }

    fn open_session(&mut self, peer: PeerId, shard: String) {
        let items = match self.shard_items(&shard) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(shard = %shard, error = %e, "cannot list sync items");
                return;
            }
        };
        match crate::sync::reconcile::Initiator::new(items.as_ref().clone()) {
            Ok((init, msg)) => self.send_round(peer, shard, Box::new(init), msg),
            Err(e) => tracing::warn!(shard = %shard, error = %e, "cannot start reconciliation"),
        }
    }

    fn send_round(
        &mut self,
        peer: PeerId,
        shard: String,
        init: Box<crate::sync::reconcile::Initiator>,
        msg: Vec<u8>,
    ) {
        self.sync_totals.bytes_sent += msg.len() as u64;
        let id = self.swarm.behaviour_mut().sync.send_request(
            &peer,
            SyncRequest::Reconcile {
                shard: shard.clone(),
                msg: ByteBuf::from(msg),
            },
        );
        self.pending_sync.insert(id, Pending::Round(shard, init));
        if let Some(ps) = self.peer_sync.get_mut(&peer) {
            ps.sessions_open += 1;
        }
    }

    fn on_sync_response(&mut self, peer: PeerId, pending: Pending, response: SyncResponse) {
        if !self.peer_sync.contains_key(&peer) {
            // That sync was abandoned (deadline, disconnect): nothing more is asked.
            if let Pending::Fetch(_, ids) = &pending {
                for id in ids {
                    self.sync_wanted.remove(id);
                }
            }
            return;
        }
        match (pending, response) {
            (Pending::Round(shard, mut init), SyncResponse::Reconciled { msg }) => {
                self.sync_totals.bytes_received += msg.len() as u64;
                if let Some(ps) = self.peer_sync.get_mut(&peer) {
                    ps.sessions_open = ps.sessions_open.saturating_sub(1);
                }
                match init.step(&msg) {
                    Ok(step) => {
                        if let Some(ps) = self.peer_sync.get_mut(&peer) {
                            // An id another peer's sync already fetches is not asked twice.
                            for id in step.need {
                                if self.sync_wanted.insert(id) {
                                    ps.to_fetch.push_back((shard.clone(), id));
                                }
                            }
                        }
                        if let Some(next) = step.next {
                            self.send_round(peer, shard, init, next);
                        }
                    }
                    Err(crate::sync::reconcile::ReconcileError::TooManyRounds(_)) => {
                        // Fetch what was learned, then reconcile this shard again.
                        if let Some(ps) = self.peer_sync.get_mut(&peer) {
                            ps.rerun.insert(shard);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(peer = %peer, shard = %shard, error = %e, "bad reconciliation message");
                        self.offense(peer);
                    }
                }
            }
            (Pending::Fetch(shard, ids), SyncResponse::Objects { objects, next }) => {
                for id in &ids {
                    self.sync_wanted.remove(id);
                }
                if let Some(ps) = self.peer_sync.get_mut(&peer) {
                    ps.fetches_in_flight = ps.fetches_in_flight.saturating_sub(1);
                }
                let object_bytes = objects.iter().map(|o| o.len() as u64).sum::<u64>();
                self.sync_totals.bytes_received += object_bytes;
                self.sync_totals.object_bytes_received += object_bytes;
                self.sync_totals.objects_fetched += objects.len() as u64;
                let kind = if shard == "attestations" {
                    Kind::Attestation
                } else {
                    Kind::Listing
                };
                // Only the ids asked for, and only objects of the shard asked for.
                let wanted: std::collections::HashSet<[u8; 32]> = ids.iter().copied().collect();
                let want_shard = shard.strip_prefix("listings/");
                let objects: Vec<ByteBuf> = objects
                    .into_iter()
                    .filter(|o| wanted.contains(blake3::hash(o).as_bytes()))
                    .filter(|o| want_shard.is_none() || listing_shard(o) == want_shard)
                    .collect();
                let sent = objects.len();
                let stored = self.ingest_page(&objects, kind, peer);
                tracing::debug!(peer = %peer, shard = %shard, received = objects.len(), stored, "sync fetch");
                if let Some(ps) = self.peer_sync.get_mut(&peer) {
                    ps.stored += stored as u64;
                }
                // The rest of a full page is asked again, but only after a page that carried
                // something (an empty "full" page would make us ask forever).
                if sent > 0
                    && let Some(next) = next
                    && let Some(pos) = ids.iter().position(|i| i.as_slice() == next.as_slice())
                    && let Some(ps) = self.peer_sync.get_mut(&peer)
                {
                    for id in ids[pos..].iter().rev() {
                        if self.sync_wanted.insert(*id) {
                            ps.to_fetch.push_front((shard.clone(), *id));
                        }
                    }
                }
            }
            (pending, other) => {
                if let SyncResponse::Refused(reason) = &other {
                    tracing::debug!(peer = %peer, reason = %reason, "sync refused");
                }
                if let Pending::Fetch(_, ids) = &pending {
                    for id in ids {
                        self.sync_wanted.remove(id);
                    }
                }
                if let Some(ps) = self.peer_sync.get_mut(&peer) {
                    match pending {
                        Pending::Round(..) => ps.sessions_open = ps.sessions_open.saturating_sub(1),
                        Pending::Fetch(..) => {
                            ps.fetches_in_flight = ps.fetches_in_flight.saturating_sub(1)
                        }
                    }
                }
            }
        }
        self.open_sessions(peer);
        self.pump_fetches(peer);
        self.sync_maybe_done(peer);
    }

    fn pump_fetches(&mut self, peer: PeerId) {
        loop {
            let Some(ps) = self.peer_sync.get_mut(&peer) else {
                return;
            };
            if ps.fetches_in_flight >= FETCHES_IN_FLIGHT || ps.to_fetch.is_empty() {
                return;
            }
            let shard = ps
                .to_fetch
                .front()
                .map(|(s, _)| s.clone())
                .unwrap_or_default();
            let mut ids = Vec::new();
            while ids.len() < FETCH_IDS_MAX && ps.to_fetch.front().is_some_and(|(s, _)| *s == shard)
            {
                if let Some((_, id)) = ps.to_fetch.pop_front() {
                    ids.push(id);
                }
            }
            // Skip what arrived meanwhile (by gossip or from another peer).
            let store = &self.store;
            let wanted = &mut self.sync_wanted;
            ids.retain(|id| {
                let held = matches!(store.object(&ObjectId(*id)), Ok(Some(_)));
                if held {
                    wanted.remove(id);
                }
                !held
            });
            if ids.is_empty() {
                continue;
            }
            if let Some(ps) = self.peer_sync.get_mut(&peer) {
                ps.fetches_in_flight += 1;
            }
            self.sync_totals.bytes_sent += 32 * ids.len() as u64;
            let req = SyncRequest::Fetch {
                ids: ids.iter().map(|i| ByteBuf::from(i.to_vec())).collect(),
            };
            let id = self.swarm.behaviour_mut().sync.send_request(&peer, req);
            self.pending_sync.insert(id, Pending::Fetch(shard, ids));
        }
    }

    fn sync_maybe_done(&mut self, peer: PeerId) {
        let Some(ps) = self.peer_sync.get_mut(&peer) else {
            return;
        };
        if ps.sessions_open > 0
            || ps.fetches_in_flight > 0
            || !ps.to_fetch.is_empty()
            || !ps.shards_left.is_empty()
        {
            return;
        }
        let again = std::mem::take(&mut ps.rerun);
        // Re-run only while the last pass stored something (a peer whose ranges never agree
        // cannot keep us busy), and at most SYNC_RERUNS_MAX times per shard.
        if !again.is_empty() && ps.stored > ps.stored_at_rerun {
            ps.stored_at_rerun = ps.stored;
            for shard in again {
                let n = ps.reruns.entry(shard.clone()).or_default();
                if *n < SYNC_RERUNS_MAX {
                    *n += 1;
                    ps.shards_left.push_back(shard);
                }
            }
            if !ps.shards_left.is_empty() {
                self.open_sessions(peer);
                let busy = self
                    .peer_sync
                    .get(&peer)
                    .is_some_and(|ps| ps.sessions_open > 0);
                if busy {
                    return;
                }
                // No session could be opened (store error): finish now.
                if let Some(ps) = self.peer_sync.get_mut(&peer) {
                    ps.shards_left.clear();
                }
            }
        }
        let Some(ps) = self.peer_sync.get_mut(&peer) else {
            return;
        };
        let took = ps.started.map(|s| s.elapsed()).unwrap_or_default();
        self.peer_sync.remove(&peer);
        self.last_synced.insert(peer, Instant::now());
        self.last_sync = Some((Instant::now(), took));
        if self.swarm.is_connected(&peer) {
            self.synced.insert(peer, true);
        }
        tracing::debug!(peer = %peer, took_ms = took.as_millis() as u64, "reconciled");
        let _ = self.events.send(NodeEvent::Synced {
            peer: peer.to_string(),
        });
        self.next_sync();
    }

    /// Starts the sync of the next connected peer waiting for its turn.
    fn next_sync(&mut self) {
        while self.peer_sync.len() < PEER_SYNCS_AT_ONCE {
            let Some(p) = self.sync_queue.pop_front() else {
                return;
            };
            if self.swarm.is_connected(&p) {
                self.start_sync(p);
            }
        }
    }

    /// Abandons a sync that took too long.
    fn abandon_sync(&mut self, peer: PeerId) {
        if let Some(ps) = self.peer_sync.remove(&peer) {
            tracing::info!(peer = %peer, "sync abandoned: too slow");
            for (_, id) in ps.to_fetch {
                self.sync_wanted.remove(&id);
            }
            self.last_synced.insert(peer, Instant::now());
        }
        self.next_sync();
    }

    fn on_trade(&mut self, ev: request_response::Event<TradeRequest, TradeResponse>) {
        use request_response::{Event, Message};
        match ev {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                if over_rate(&mut self.trade_rate, peer, TRADE_RATE_MAX) {
                    let _ = self.swarm.behaviour_mut().trade.send_response(
                        channel,
                        TradeResponse::Refused(
                            "rate limit: too many trade messages; try again later".into(),
                        ),
                    );
                    return;
                }
                if let Err(mpsc::error::TrySendError::Full(InboundTrade { channel, .. })) =
                    self.inbound_trades.try_send(InboundTrade {
                        peer,
                        request,
                        channel,
                    })
                {
                    let _ = self.swarm.behaviour_mut().trade.send_response(
                        channel,
                        TradeResponse::Busy("busy: try again later".into()),
                    );
                }
            }
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                settle(&mut self.pending_trades, request_id, Ok(response));
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(peer = %peer, error = %error, "trade delivery failed");
                settle(&mut self.pending_trades, request_id, Err(error.to_string()));
                // Look the peer up so that the next attempt knows where to dial.
                self.swarm.behaviour_mut().kad.get_closest_peers(peer);
            }
            _ => {}
        }
    }

    fn on_blob(&mut self, ev: request_response::Event<BlobRequest, BlobResponse>) {
        use request_response::{Event, Message};
        match ev {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let response = if over_rate(&mut self.blob_rate, peer, BLOB_REQUEST_RATE_MAX) {
                    BlobResponse::Refused("rate limit: too many blob requests".into())
                } else {
                    self.serve_blob(request)
                };
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .blob
                    .send_response(channel, response);
            }
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                settle(&mut self.pending_blob, request_id, Ok(response));
            }
            Event::OutboundFailure {
                request_id, error, ..
            } => {
                settle(&mut self.pending_blob, request_id, Err(error.to_string()));
            }
            _ => {}
        }
    }

    fn serve_blob(&self, request: BlobRequest) -> BlobResponse {
        let (id, index) = match &request {
            BlobRequest::Manifest { id } => (id, None),
            BlobRequest::Chunk { id, index } => (id, Some(*index)),
        };
        let Ok(id) = <[u8; 32]>::try_from(id.as_slice()) else {
            return BlobResponse::Refused("id: not 32 bytes".into());
        };
        let id = jangteo_protocol::ObjectId(id);
        let r = match index {
            None => self
                .store
                .blob_manifest(&id)
                .map(|o| o.map(|b| BlobResponse::Manifest(ByteBuf::from(b)))),
            Some(i) => self
                .store
                .blob_chunk(&id, i)
                .map(|o| o.map(|b| BlobResponse::Chunk(ByteBuf::from(b)))),
        };
        match r {
            Ok(Some(resp)) => resp,
            Ok(None) => BlobResponse::NotFound,
            Err(e) => BlobResponse::Refused(format!("store: {e}")),
        }
    }

    fn on_mailbox(&mut self, ev: request_response::Event<MailboxRequest, MailboxResponse>) {
        use request_response::{Event, Message};
        match ev {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let response = self.serve_mailbox(peer, request);
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .mailbox
                    .send_response(channel, response);
            }
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                settle(&mut self.pending_mailbox, request_id, Ok(response));
            }
            Event::OutboundFailure {
                request_id, error, ..
            } => {
                settle(
                    &mut self.pending_mailbox,
                    request_id,
                    Err(error.to_string()),
                );
            }
            _ => {}
        }
    }

    fn serve_mailbox(&mut self, peer: PeerId, request: MailboxRequest) -> MailboxResponse {
        if !self.relay {
            return MailboxResponse::Refused("this node is not a relay".into());
        }
        if over_rate(&mut self.mailbox_any_rate, peer, MAILBOX_REQUEST_RATE_MAX) {
            return MailboxResponse::Refused(
                "rate limit: too many mailbox requests; try again later".into(),
            );
        }
        let now = now_ms();
        let refused =
            |e: &dyn std::fmt::Display| MailboxResponse::Refused(format!("relay store: {e}"));
        match request {
            MailboxRequest::Put { to, sealed } => {
                if over_rate(&mut self.mailbox_rate, peer, MAILBOX_PUT_RATE_MAX) {
                    return MailboxResponse::Refused(
                        "rate limit: too many mailbox items from you; try again later".into(),
                    );
                }
                let Ok(to) = <[u8; 32]>::try_from(to.as_slice()) else {
                    return MailboxResponse::Refused("to: not a 32-byte key".into());
                };
                if sealed.len() > jangteo_protocol::mailbox::SEALED_MAX_BYTES || sealed.len() < 48 {
                    return MailboxResponse::Refused("sealed item too large or too small".into());
                }
                match self.store.mailbox_put(
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
                let Some(me) = jangteo_protocol::public_key_from_peer_id(&peer.to_string()) else {
                    return MailboxResponse::Refused("only ed25519 peers have mailboxes".into());
                };
                match self
                    .store
                    .mailbox_fetch(&me.0, now, MAILBOX_FETCH_ITEMS, MAILBOX_FETCH_BYTES)
                {
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
                let Some(me) = jangteo_protocol::public_key_from_peer_id(&peer.to_string()) else {
                    return MailboxResponse::Refused("only ed25519 peers have mailboxes".into());
                };
                let ids: Vec<[u8; 32]> = ids
                    .iter()
                    .filter_map(|i| <[u8; 32]>::try_from(i.as_slice()).ok())
                    .take(MAILBOX_FETCH_ITEMS)
                    .collect();
                match self.store.mailbox_ack(&me.0, &ids) {
                    Ok(()) => MailboxResponse::Done,
                    Err(e) => refused(&e),
                }
            }
        }
    }

    fn over_sync_rate(&mut self, peer: PeerId) -> bool {
        over_rate(&mut self.sync_rate, peer, SYNC_RATE_MAX)
    }
}

/// Most peers a rate-limit table remembers; stale windows are dropped past this.
const RATE_TABLE_MAX: usize = 4096;

/// Counts one request of `peer` in the current window; true when over `max`. Counters
/// outlive connections, so reconnecting does not reset them.
/// Hands an outbound request's outcome to whoever is waiting for it.
fn settle<T>(
    pending: &mut HashMap<request_response::OutboundRequestId, oneshot::Sender<Result<T, String>>>,
    id: request_response::OutboundRequestId,
    outcome: Result<T, String>,
) {
    if let Some(reply) = pending.remove(&id) {
        let _ = reply.send(outcome);
    }
}

fn over_rate(map: &mut HashMap<PeerId, (Instant, u32)>, peer: PeerId, max: u32) -> bool {
    if map.len() >= RATE_TABLE_MAX {
        map.retain(|_, (start, _)| start.elapsed() <= SYNC_RATE_WINDOW);
    }
    {
        let now = Instant::now();
        let entry = map.entry(peer).or_insert((now, 0));
        if now.duration_since(entry.0) > SYNC_RATE_WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 > max
    }
}

impl EventLoop {
    fn serve_sync(&mut self, request: SyncRequest) -> SyncResponse {
        match request {
            SyncRequest::Reconcile { shard, msg } => {
                let items = match self.shard_items(&shard) {
                    Ok(i) => i,
                    Err(e) => return SyncResponse::Refused(e),
                };
                match crate::sync::reconcile::respond(&items, &msg) {
                    Ok(reply) => SyncResponse::Reconciled {
                        msg: ByteBuf::from(reply),
                    },
                    Err(e) => SyncResponse::Refused(format!("reconcile: {e}")),
                }
            }
            SyncRequest::Fetch { ids } => {
                if ids.len() > FETCH_IDS_MAX {
                    return SyncResponse::Refused(format!("at most {FETCH_IDS_MAX} ids per fetch"));
                }
                let mut objects = Vec::new();
                let mut bytes = 0usize;
                for (i, id) in ids.iter().enumerate() {
                    let Ok(id32) = <[u8; 32]>::try_from(id.as_slice()) else {
                        return SyncResponse::Refused("ids are 32 bytes".into());
                    };
                    match self.store.object(&ObjectId(id32)) {
                        Ok(Some(b)) => {
                            if bytes + b.len() > SYNC_PAGE_MAX_BYTES {
                                return SyncResponse::Objects {
                                    objects,
                                    next: Some(ids[i].clone()),
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
        }
    }
}

/// Parses a multiaddr given on the command line.
pub fn parse_addr(s: &str) -> Result<Multiaddr, NodeError> {
    s.parse()
        .map_err(|e: libp2p::multiaddr::Error| NodeError::Address(s.to_owned(), e.to_string()))
}
