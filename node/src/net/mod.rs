//! The libp2p side of the node: one task owns the `Swarm` ([`EventLoop`]) and routes; the
//! rest of the node holds cloneable [`Client`] handles (bounded channel, oneshot replies).
//!
//! `behaviour` composes the behaviours with their settings, `build` sets up the transport around
//! it and starts listening, `event_loop` is the `select!` that routes swarm
//! events and commands, `peers` holds offenses, bans and per-IP limits, `relay` reservations
//! and reachability, `rate` the one rate limiter, `wire` the request-response types and their
//! size caps. The swarm task does no store I/O and no signature check: inbound requests and
//! gossip go to the service that owns the protocol (trades, sync server, blobs, mailbox,
//! gossip validation) and come back as commands ([`Client::respond`],
//! [`Client::report_validation`]). It never signs objects and never builds listings.

mod behaviour;
mod build;
mod event_loop;
pub mod kad_store;
pub mod peers;
pub mod rate;
pub mod relay;
pub mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jangteo_protocol::Kind;
use libp2p::gossipsub::{MessageAcceptance, MessageId};
use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

pub use build::build;
pub use event_loop::EventLoop;
pub use peers::{
    BAN_AFTER_INVALID, BAN_BELOW_SCORE, BAN_DURATION, MAX_CONNECTIONS_PER_IP, OFFENSE_WINDOW,
    Origin, Subnet,
};
pub use rate::{IP_RATE_FACTOR, SUBNET_RATE_FACTOR};
pub use relay::{RELAY_HOP_PROTOCOL, RELAY_RESERVATIONS_MAX, Reachability};
pub use wire::*;

use crate::error::NodeError;
pub use crate::sync::SyncInfo;

/// Capacity of the command channel from clients to the swarm task.
pub const COMMAND_QUEUE: usize = 256;
/// Established connections per peer.
pub const MAX_CONNECTIONS_PER_PEER: u32 = 2;
/// Established connections in total.
pub const MAX_CONNECTIONS: u32 = 256;
/// Pending incoming connections.
pub const MAX_PENDING_INCOMING: u32 = 64;
/// The kinds that travel by gossip, each on its own topic.
pub const GOSSIP_KINDS: [Kind; 4] = [
    Kind::Listing,
    Kind::Profile,
    Kind::Attestation,
    Kind::Report,
];

/// Sync requests a peer may make per [`SYNC_RATE_WINDOW`] before being refused.
pub const SYNC_RATE_MAX: u32 = 120;
/// Window of the sync request limit.
pub const SYNC_RATE_WINDOW: Duration = Duration::from_secs(10);
/// Bulk requests (pages) a peer may make per [`BULK_RATE_WINDOW`]: at 4 MiB a page, far
/// more than one node ingests in that time.
pub const BULK_RATE_MAX: u32 = 60;
/// Window of the bulk request limit.
pub const BULK_RATE_WINDOW: Duration = Duration::from_secs(10);
/// Bulk requests waiting for the bulk server; past this the swarm task answers "busy".
pub const BULK_INBOUND_QUEUE: usize = 8;
/// Bulk requests of one peer waiting or being answered (a client keeps one page in flight
/// and asks for the next while it ingests).
pub const BULK_INBOUND_PER_PEER: usize = 2;
/// Trade requests a peer may make per [`TRADE_RATE_WINDOW`].
pub const TRADE_RATE_MAX: u32 = 60;
/// Window of the trade request limit.
pub const TRADE_RATE_WINDOW: Duration = Duration::from_secs(10);
/// Direct messages and receipts a peer may send per [`DM_RATE_WINDOW`].
pub const DM_RATE_MAX: u32 = 60;
/// Window of the direct message limit.
pub const DM_RATE_WINDOW: Duration = Duration::from_secs(10);
/// Gossip messages taken from one peer per [`GOSSIP_RATE_WINDOW`]; beyond that they are
/// ignored unread (no signature check spent on them). A busy relay forwards a whole market's
/// posts, so this is generous (500/s); what is dropped here is repaired by catch-up sync.
pub const GOSSIP_RATE_MAX: u32 = 5000;
/// Window of the gossip limit.
pub const GOSSIP_RATE_WINDOW: Duration = Duration::from_secs(10);
/// Blob requests served per peer per [`BLOB_RATE_WINDOW`] (a 5 MiB image is 21 requests).
pub const BLOB_REQUEST_RATE_MAX: u32 = 400;
/// Window of the blob limit.
pub const BLOB_RATE_WINDOW: Duration = Duration::from_secs(10);
/// Items a sender may deposit per [`MAILBOX_RATE_WINDOW`].
pub const MAILBOX_PUT_RATE_MAX: u32 = 20;
/// Mailbox requests of any kind (put, fetch, ack) served per peer per [`MAILBOX_RATE_WINDOW`].
pub const MAILBOX_REQUEST_RATE_MAX: u32 = 120;
/// Puts of one peer a relay refuses by its rate limits per [`MAILBOX_RATE_WINDOW`] before it
/// bans the peer: each refused put is read whole (up to 256 KiB) before it can be refused,
/// and a sender told "try again later" that keeps putting makes the relay read for nothing.
/// Its address gets [`IP_RATE_FACTOR`] times this, its subnet [`SUBNET_RATE_FACTOR`] times;
/// while those are spent, a peer with half this many refusals of its own is banned too, so
/// fresh peer ids from one address each get about half. Only a peer's own refusals count
/// towards its ban: a neighbour behind the same address with fewer is refused, not banned.
/// An honest node never gets near: it sends one relay one put at a time, at most half of
/// [`MAILBOX_PUT_RATE_MAX`] per window, and none for a window after a `rate limit`
/// refusal ([`crate::services::mailbox::PutPacer`]), so it has at most one refusal per
/// window.
pub const MAILBOX_REFUSED_PUTS_MAX: u32 = 16;
/// Window of the mailbox limits.
pub const MAILBOX_RATE_WINDOW: Duration = Duration::from_secs(10);

/// Inbound trade deliveries waiting for the trades service.
pub const INBOUND_TRADE_QUEUE: usize = 64;
/// Inbound sync, blob or mailbox requests waiting for their service; past this the swarm
/// task answers "busy" itself.
pub const INBOUND_QUEUE: usize = 64;
/// Gossip messages waiting for validation; past this they are ignored (sync repairs).
pub const GOSSIP_QUEUE: usize = 1024;
/// Gossiped attestations and equivocation proofs waiting for their checks (up to 65
/// signatures each), in a queue of their own so that they never hold up listings.
pub const ATTESTATION_QUEUE: usize = 256;
/// Attestations of one peer waiting for (or in) their checks; past this the peer's next
/// ones are ignored unread (not forwarded, nobody penalized; sync repairs).
pub const ATTESTATION_INBOUND_PER_PEER: usize = 16;
/// Requests of one peer waiting for (or being answered by) the service of one protocol;
/// past this the peer is answered "busy" at once, so that one peer cannot fill a queue
/// all peers share. An honest syncing peer keeps 6 sync requests open at most.
pub const INBOUND_PER_PEER: usize = 8;
/// Mailbox requests of one peer waiting or being answered (each put is an fsync).
pub const MAILBOX_INBOUND_PER_PEER: usize = 4;

pub use crate::services::mailbox::{MAILBOX_BYTES_MAX, MAILBOX_ITEMS_MAX, MAILBOX_RETENTION_MS};

/// A request from a peer, for the service that owns its protocol to answer through
/// [`Client::respond`].
#[derive(Debug)]
pub struct Inbound<Req, Resp> {
    /// Who sent it.
    pub peer: PeerId,
    /// The request.
    pub request: Req,
    /// Where the answer goes.
    pub channel: ResponseChannel<Resp>,
    /// Where its connection comes from (None: relayed, or loopback when loopback is not
    /// counted).
    pub origin: Option<Origin>,
    /// The peer's place in the protocol's queue, held until this is dropped.
    pub slot: InboundSlot,
}

/// Counts, per peer, the requests of one protocol waiting for their service or being
/// answered, up to a maximum. Shared by the swarm task (which takes slots) and the
/// services (which drop them when done).
#[derive(Debug, Clone)]
pub struct InFlight {
    max: usize,
    table: Arc<std::sync::Mutex<std::collections::HashMap<PeerId, usize>>>,
}

impl InFlight {
    /// At most `max` requests per peer.
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            table: Arc::default(),
        }
    }

    /// A slot for one more request of `peer`; None when it has `max` already.
    pub fn take(&self, peer: PeerId) -> Option<InboundSlot> {
        let mut t = self.table.lock().ok()?;
        let n = t.entry(peer).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(InboundSlot {
            table: self.table.clone(),
            peer,
        })
    }

    /// Requests of `peer` held now.
    pub fn held(&self, peer: &PeerId) -> usize {
        self.table
            .lock()
            .ok()
            .and_then(|t| t.get(peer).copied())
            .unwrap_or(0)
    }
}

/// One request's place in its peer's share of a queue ([`InFlight`]); freed on drop.
#[derive(Debug)]
pub struct InboundSlot {
    table: Arc<std::sync::Mutex<std::collections::HashMap<PeerId, usize>>>,
    peer: PeerId,
}

impl Drop for InboundSlot {
    fn drop(&mut self) {
        if let Ok(mut t) = self.table.lock()
            && let Some(n) = t.get_mut(&self.peer)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.remove(&self.peer);
            }
        }
    }
}

/// A trade delivery from a peer, for the trades service.
pub type InboundTrade = Inbound<TradeRequest, TradeResponse>;
/// A direct message or receipt from a peer, for the conversations service.
pub type InboundDm = Inbound<DmRequest, DmResponse>;
/// A sync request, for the sync server.
pub type InboundSync = Inbound<SyncRequest, SyncResponse>;
/// A bulk request, for the bulk server.
pub type InboundBulk = Inbound<BulkRequest, BulkResponse>;
/// A blob request, for the blob service.
pub type InboundBlob = Inbound<BlobRequest, BlobResponse>;
/// A mailbox request, for the relay's mailbox service.
pub type InboundMailbox = Inbound<MailboxRequest, MailboxResponse>;

/// The topic a gossip message came on, as the swarm task knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GossipTopic {
    /// A listings shard (category).
    Listings(&'static str),
    /// Another gossiped kind's topic.
    Kind(Kind),
    /// A topic no node publishes on.
    Unknown,
}

/// A gossip message waiting for validation; its verdict goes back with
/// [`Client::report_validation`].
#[derive(Debug)]
pub struct GossipMessage {
    /// The peer that forwarded it.
    pub source: PeerId,
    /// Its gossipsub id.
    pub id: MessageId,
    /// Its topic.
    pub topic: GossipTopic,
    /// The object bytes.
    pub data: Vec<u8>,
    /// Its peer's place in the attestation queue (attestations only), held until checked.
    pub slot: Option<InboundSlot>,
    /// Its hop trace, when traces are on ([`crate::trace`]).
    pub trace: Option<Box<crate::trace::HopTrace>>,
}

/// Peers coming and going, for the sync driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPeerEvent {
    /// A peer subscribed to a listings topic: it shares listings with us.
    Ready(PeerId),
    /// A peer disconnected.
    Gone(PeerId),
}

impl SyncPeerEvent {
    /// The peer it is about.
    pub fn peer(&self) -> PeerId {
        match self {
            SyncPeerEvent::Ready(p) | SyncPeerEvent::Gone(p) => *p,
        }
    }
}

/// Peers coming and going, from the swarm task to the sync driver, coalesced per peer (the
/// latest event wins): bounded by the peers themselves, so no event is ever dropped for a
/// full queue (a lost departure would leave the driver a peer that is gone).
#[derive(Debug, Default)]
pub struct SyncPeers {
    changes: std::sync::Mutex<std::collections::HashMap<PeerId, SyncPeerEvent>>,
    notify: tokio::sync::Notify,
}

impl SyncPeers {
    /// Records `event`, replacing any earlier one about the same peer not yet taken.
    pub fn post(&self, event: SyncPeerEvent) {
        if let Ok(mut changes) = self.changes.lock() {
            changes.insert(event.peer(), event);
        }
        self.notify.notify_one();
    }

    /// The events recorded since the last call, one per peer.
    pub fn take(&self) -> Vec<SyncPeerEvent> {
        self.changes
            .lock()
            .map(|mut c| std::mem::take(&mut *c).into_values().collect())
            .unwrap_or_default()
    }

    /// Waits until an event is posted (one posted since the last wait counts).
    pub async fn posted(&self) {
        self.notify.notified().await;
    }
}

/// An answer to an inbound request.
#[derive(Debug)]
pub enum Response {
    /// To a trade delivery.
    Trade(ResponseChannel<TradeResponse>, TradeResponse),
    /// To a sync request.
    Sync(ResponseChannel<SyncResponse>, SyncResponse),
    /// To a bulk request.
    Bulk(ResponseChannel<BulkResponse>, BulkResponse),
    /// To a blob request.
    Blob(ResponseChannel<BlobResponse>, BlobResponse),
    /// To a mailbox request.
    Mailbox(ResponseChannel<MailboxResponse>, MailboxResponse),
    /// To a direct message or receipt.
    Dm(ResponseChannel<DmResponse>, DmResponse),
}

/// Where the swarm task sends what it does not handle itself.
#[derive(Debug)]
pub struct Routes {
    /// Trade deliveries.
    pub trades: mpsc::Sender<InboundTrade>,
    /// Direct messages and receipts.
    pub dms: mpsc::Sender<InboundDm>,
    /// Sync requests.
    pub sync: mpsc::Sender<InboundSync>,
    /// Bulk requests.
    pub bulk: mpsc::Sender<InboundBulk>,
    /// Blob requests.
    pub blobs: mpsc::Sender<InboundBlob>,
    /// Mailbox requests (relays).
    pub mailbox: mpsc::Sender<InboundMailbox>,
    /// Gossip to validate.
    pub gossip: mpsc::Sender<GossipMessage>,
    /// Gossiped attestations and equivocation proofs to check.
    pub attestations: mpsc::Sender<GossipMessage>,
    /// Peers for the sync driver.
    pub sync_peers: Arc<SyncPeers>,
    /// The sync driver's state, for [`NetworkInfo`].
    pub sync_info: watch::Receiver<SyncInfo>,
}

/// The receiving ends of [`Routes`], for the services.
#[derive(Debug)]
pub struct Inboxes {
    /// Trade deliveries.
    pub trades: mpsc::Receiver<InboundTrade>,
    /// Direct messages and receipts.
    pub dms: mpsc::Receiver<InboundDm>,
    /// Sync requests.
    pub sync: mpsc::Receiver<InboundSync>,
    /// Bulk requests.
    pub bulk: mpsc::Receiver<InboundBulk>,
    /// Blob requests.
    pub blobs: mpsc::Receiver<InboundBlob>,
    /// Mailbox requests.
    pub mailbox: mpsc::Receiver<InboundMailbox>,
    /// Gossip to validate.
    pub gossip: mpsc::Receiver<GossipMessage>,
    /// Gossiped attestations and equivocation proofs to check.
    pub attestations: mpsc::Receiver<GossipMessage>,
    /// Peers for the sync driver.
    pub sync_peers: Arc<SyncPeers>,
    /// Where the sync driver publishes its state.
    pub sync_info: watch::Sender<SyncInfo>,
}

impl Routes {
    /// Bounded channels between the swarm task and the services.
    pub fn new() -> (Routes, Inboxes) {
        let (trades, trades_rx) = mpsc::channel(INBOUND_TRADE_QUEUE);
        let (dms, dms_rx) = mpsc::channel(INBOUND_QUEUE);
        let (sync, sync_rx) = mpsc::channel(INBOUND_QUEUE);
        let (bulk, bulk_rx) = mpsc::channel(BULK_INBOUND_QUEUE);
        let (blobs, blobs_rx) = mpsc::channel(INBOUND_QUEUE);
        let (mailbox, mailbox_rx) = mpsc::channel(INBOUND_QUEUE);
        let (gossip, gossip_rx) = mpsc::channel(GOSSIP_QUEUE);
        let (attestations, attestations_rx) = mpsc::channel(ATTESTATION_QUEUE);
        let sync_peers = Arc::new(SyncPeers::default());
        let (info_tx, sync_info) = watch::channel(SyncInfo::default());
        (
            Routes {
                trades,
                dms,
                sync,
                bulk,
                blobs,
                mailbox,
                gossip,
                attestations,
                sync_peers: sync_peers.clone(),
                sync_info,
            },
            Inboxes {
                trades: trades_rx,
                dms: dms_rx,
                sync: sync_rx,
                bulk: bulk_rx,
                blobs: blobs_rx,
                mailbox: mailbox_rx,
                gossip: gossip_rx,
                attestations: attestations_rx,
                sync_peers,
                sync_info: info_tx,
            },
        )
    }
}

/// Runs `serve` on each item from `inbound`, at most `workers` at once, until `shutdown`
/// or the sender is gone. The queue in front is bounded by its channel; this bounds the
/// work in flight.
pub async fn serve_inbound<T, F, Fut>(
    mut inbound: mpsc::Receiver<T>,
    workers: usize,
    mut shutdown: watch::Receiver<bool>,
    serve: F,
) where
    T: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(workers.max(1)));
    loop {
        let permit = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let item = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            i = inbound.recv() => match i {
                Some(i) => i,
                None => break,
            },
        };
        let work = serve(item);
        tokio::spawn(async move {
            work.await;
            drop(permit);
        });
    }
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
    /// Count loopback connections under address and subnet limits (off by default: the
    /// testnet and tests run many nodes on 127.0.0.1, each a peer of its own; on for tests of
    /// those limits).
    pub limit_loopback: bool,
    /// On a relay: most sealed bytes held in all mailboxes together.
    pub mailbox_cap_bytes: u64,
    /// Prometheus metrics the swarm task records into, when asked for.
    pub metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    /// Where the DHT's records are kept between runs (memory only when `None`).
    pub kad_backing: Option<std::sync::Arc<dyn kad_store::KadBacking>>,
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
    /// Peers we compared our sets with since they connected.
    pub synced_peers: usize,
    /// Peers banned for now (they sent too many invalid objects).
    pub banned: Vec<String>,
    /// Listing shards (categories) this node follows.
    pub following: Vec<&'static str>,
    /// Catch-up sync state: tells "the market is empty" from "not caught up yet".
    pub sync: SyncInfo,
    /// Whether others can dial us directly (serialized `public`, `private`, `unknown`).
    pub reachability: Reachability,
    /// Our addresses through relays that accepted a reservation.
    pub relayed_addrs: Vec<String>,
}

pub(crate) enum Command {
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
    SendDm {
        peer: PeerId,
        request: DmRequest,
        reply: oneshot::Sender<Result<DmResponse, String>>,
    },
    Sync {
        peer: PeerId,
        request: SyncRequest,
        reply: oneshot::Sender<Result<SyncResponse, String>>,
    },
    Bulk {
        peer: PeerId,
        request: BulkRequest,
        reply: oneshot::Sender<Result<BulkResponse, String>>,
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
    Respond(Response),
    Validated {
        id: MessageId,
        source: PeerId,
        acceptance: MessageAcceptance,
        trace: Option<Box<crate::trace::HopTrace>>,
    },
    Offense {
        peer: PeerId,
    },
    Relays {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    Provide {
        id: jangteo_protocol::ObjectId,
    },
    Providers {
        id: jangteo_protocol::ObjectId,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Publish { .. } => "Publish",
            Command::Info { .. } => "Info",
            Command::Dial { .. } => "Dial",
            Command::SendTrade { .. } => "SendTrade",
            Command::SendDm { .. } => "SendDm",
            Command::Sync { .. } => "Sync",
            Command::Bulk { .. } => "Bulk",
            Command::Mailbox { .. } => "Mailbox",
            Command::Blob { .. } => "Blob",
            Command::Respond(_) => "Respond",
            Command::Validated { .. } => "Validated",
            Command::Offense { .. } => "Offense",
            Command::Relays { .. } => "Relays",
            Command::Provide { .. } => "Provide",
            Command::Providers { .. } => "Providers",
        })
    }
}

/// A cloneable handle to the swarm task.
#[derive(Debug, Clone)]
pub struct Client {
    tx: mpsc::Sender<Command>,
    /// This node's pace of mailbox deposits per relay, shared by every service that
    /// deposits (see [`crate::services::mailbox::deposit`]).
    puts: Arc<crate::services::mailbox::PutPacer>,
}

impl Client {
    /// A handle over the swarm task's command queue.
    pub(crate) fn new(tx: mpsc::Sender<Command>) -> Self {
        Self {
            tx,
            puts: Arc::default(),
        }
    }

    /// A handle whose network task is gone: every call fails with
    /// [`NodeError::NetworkStopped`]. For tests of services that must not need the network.
    #[cfg(test)]
    pub(crate) fn detached() -> Self {
        let (tx, _) = mpsc::channel(1);
        Self::new(tx)
    }

    /// This node's pace of mailbox deposits per relay.
    pub fn put_pacer(&self) -> &crate::services::mailbox::PutPacer {
        &self.puts
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.send(make(reply)).await?;
        rx.await.map_err(|_| NodeError::NetworkStopped)
    }

    async fn send(&self, cmd: Command) -> Result<(), NodeError> {
        self.tx
            .send(cmd)
            .await
            .map_err(|_| NodeError::NetworkStopped)
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

    /// Sends one catch-up request to `peer` and waits for its answer (`Err`: no answer).
    pub async fn sync(
        &self,
        peer: PeerId,
        request: SyncRequest,
    ) -> Result<Result<SyncResponse, String>, NodeError> {
        self.call(|reply| Command::Sync {
            peer,
            request,
            reply,
        })
        .await
    }

    /// Sends one bulk request to `peer` and waits for its answer (`Err`: no answer).
    pub async fn bulk(
        &self,
        peer: PeerId,
        request: BulkRequest,
    ) -> Result<Result<BulkResponse, String>, NodeError> {
        self.call(|reply| Command::Bulk {
            peer,
            request,
            reply,
        })
        .await
    }

    /// Announces in the DHT that this node holds blob `id`.
    pub async fn provide(&self, id: jangteo_protocol::ObjectId) -> Result<(), NodeError> {
        self.send(Command::Provide { id }).await
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

    /// Sends a direct message or receipt to a peer and waits for its answer. `Err` means it
    /// could not be reached.
    pub async fn send_dm(
        &self,
        peer: PeerId,
        request: DmRequest,
    ) -> Result<Result<DmResponse, String>, NodeError> {
        self.call(|reply| Command::SendDm {
            peer,
            request,
            reply,
        })
        .await
    }

    /// Answers an inbound request.
    pub async fn respond(&self, response: Response) -> Result<(), NodeError> {
        self.send(Command::Respond(response)).await
    }

    /// Answers an inbound trade delivery.
    pub async fn respond_trade(
        &self,
        channel: ResponseChannel<TradeResponse>,
        response: TradeResponse,
    ) -> Result<(), NodeError> {
        self.respond(Response::Trade(channel, response)).await
    }

    /// Reports the verdict on a gossip message handed out as a [`GossipMessage`]: accepted
    /// messages are forwarded, rejected ones count against the peer's gossip score.
    /// Its `trace`, if any, is completed once the verdict reaches gossipsub.
    pub async fn report_validation(
        &self,
        id: MessageId,
        source: PeerId,
        acceptance: MessageAcceptance,
        trace: Option<Box<crate::trace::HopTrace>>,
    ) -> Result<(), NodeError> {
        self.send(Command::Validated {
            id,
            source,
            acceptance,
            trace,
        })
        .await
    }

    /// Counts an offense against a peer (it sent a signed lie: a forged, equivocating or
    /// invalid message), as an invalid gossiped object does; enough of them ban it.
    pub async fn offense(&self, peer: PeerId) -> Result<(), NodeError> {
        self.send(Command::Offense { peer }).await
    }

    /// Connected relays that hold mailboxes.
    pub async fn relays(&self) -> Result<Vec<PeerId>, NodeError> {
        self.call(|reply| Command::Relays { reply }).await
    }

    /// Sends a mailbox request to a relay, as it is: deposits go through
    /// [`crate::services::mailbox::deposit`], which paces them.
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

/// Parses a multiaddr given on the command line.
pub fn parse_addr(s: &str) -> Result<Multiaddr, NodeError> {
    s.parse()
        .map_err(|e: libp2p::multiaddr::Error| NodeError::Address(s.to_owned(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_events_are_coalesced_per_peer_and_a_departure_is_never_dropped() {
        let peers = SyncPeers::default();
        // More peers than any queue held: every one comes and then goes, the driver busy.
        let all: Vec<PeerId> = (0..3000).map(|_| PeerId::random()).collect();
        for p in &all {
            peers.post(SyncPeerEvent::Ready(*p));
        }
        for p in &all {
            peers.post(SyncPeerEvent::Gone(*p));
        }
        let taken = peers.take();
        assert_eq!(taken.len(), all.len(), "one event per peer");
        assert!(
            taken.iter().all(|e| matches!(e, SyncPeerEvent::Gone(_))),
            "the latest event wins"
        );
        assert!(peers.take().is_empty(), "taken once");
        // A peer that went and came back is ready.
        let p = all[0];
        peers.post(SyncPeerEvent::Gone(p));
        peers.post(SyncPeerEvent::Ready(p));
        assert_eq!(peers.take(), vec![SyncPeerEvent::Ready(p)]);
    }

    #[tokio::test]
    async fn an_event_posted_before_the_wait_is_not_missed() {
        let peers = SyncPeers::default();
        peers.post(SyncPeerEvent::Ready(PeerId::random()));
        tokio::time::timeout(Duration::from_secs(5), peers.posted())
            .await
            .expect("the post wakes the waiter");
        assert_eq!(peers.take().len(), 1);
    }

    #[test]
    fn a_peer_holds_at_most_its_share_of_a_queue_until_its_slots_are_dropped() {
        let q = InFlight::new(2);
        let (a, b) = (PeerId::random(), PeerId::random());
        let s1 = q.take(a).expect("first");
        let _s2 = q.take(a).expect("second");
        assert!(q.take(a).is_none(), "full for a");
        let _sb = q.take(b).expect("b has its own share");
        drop(s1);
        assert_eq!(q.held(&a), 1);
        assert!(q.take(a).is_some());
    }
}
