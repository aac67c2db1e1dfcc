//! The swarm task: one `select!` over shutdown, housekeeping, commands and swarm events,
//! and the routing of each event to whoever handles it.
//!
//! It keeps only in-memory state (connected peers and where they connect from, pending
//! outbound requests, rate counters per peer, address and subnet, offenses, bans and the
//! penalties bans leave on addresses, per-peer shares of the inbound queues, relays). It never reads or writes the store and never checks a
//! signature: inbound requests go to their service through bounded queues (a full queue is
//! answered "busy" here), gossip goes to validation and its verdict comes back as a command.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jangteo_protocol::Kind;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance};
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, kad, mdns};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::behaviour::{Behaviour, BehaviourEvent};
use super::peers::{
    BAN_BELOW_SCORE, Origin, Peers, Penalties, connection_addr, connection_ip, origin_of,
};
use super::rate::{Refused, Tiered};
use super::relay::{Reachability, Relays};
use super::*;
use crate::NodeEvent;
use crate::ingest::{listing_shard, listing_topic, topic_for};

/// How often bans are lifted and gossip scores looked at.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(5);
/// Addresses remembered per connected peer.
const ADDRS_PER_PEER: usize = 8;
/// Providers one DHT lookup returns at most.
const PROVIDERS_MAX: usize = 64;

type Reply<T> = oneshot::Sender<Result<T, String>>;

/// Request limits, one [`Tiered`] limiter (peer, address, subnet) per protocol.
#[derive(Debug)]
struct Limits {
    gossip: Tiered,
    trade: Tiered,
    dm: Tiered,
    sync: Tiered,
    bulk: Tiered,
    blob: Tiered,
    mailbox: Tiered,
    mailbox_put: Tiered,
    /// Refused puts (see [`MAILBOX_REFUSED_PUTS_MAX`]).
    mailbox_refused: Tiered,
}

/// Per-peer shares of the inbound queues, one per protocol.
#[derive(Debug)]
struct Queues {
    trade: InFlight,
    dm: InFlight,
    sync: InFlight,
    bulk: InFlight,
    blob: InFlight,
    mailbox: InFlight,
    attestations: InFlight,
}

impl Queues {
    fn new() -> Self {
        Self {
            trade: InFlight::new(INBOUND_PER_PEER),
            dm: InFlight::new(INBOUND_PER_PEER),
            sync: InFlight::new(INBOUND_PER_PEER),
            bulk: InFlight::new(BULK_INBOUND_PER_PEER),
            blob: InFlight::new(INBOUND_PER_PEER),
            mailbox: InFlight::new(MAILBOX_INBOUND_PER_PEER),
            attestations: InFlight::new(ATTESTATION_INBOUND_PER_PEER),
        }
    }
}

impl Limits {
    fn new() -> Self {
        let r = |max: u32, window| Tiered::new(u64::from(max), window);
        Self {
            gossip: r(GOSSIP_RATE_MAX, GOSSIP_RATE_WINDOW),
            trade: r(TRADE_RATE_MAX, TRADE_RATE_WINDOW),
            dm: r(DM_RATE_MAX, DM_RATE_WINDOW),
            sync: r(SYNC_RATE_MAX, SYNC_RATE_WINDOW),
            bulk: r(BULK_RATE_MAX, BULK_RATE_WINDOW),
            blob: r(BLOB_REQUEST_RATE_MAX, BLOB_RATE_WINDOW),
            mailbox: r(MAILBOX_REQUEST_RATE_MAX, MAILBOX_RATE_WINDOW),
            mailbox_put: r(MAILBOX_PUT_RATE_MAX, MAILBOX_RATE_WINDOW),
            mailbox_refused: r(MAILBOX_REFUSED_PUTS_MAX, MAILBOX_RATE_WINDOW),
        }
    }
}

/// Outbound requests waiting for their answer.
#[derive(Default)]
struct Pending {
    trades: HashMap<OutboundRequestId, Reply<TradeResponse>>,
    dms: HashMap<OutboundRequestId, Reply<DmResponse>>,
    sync: HashMap<OutboundRequestId, Reply<SyncResponse>>,
    bulk: HashMap<OutboundRequestId, Reply<BulkResponse>>,
    blobs: HashMap<OutboundRequestId, Reply<BlobResponse>>,
    mailbox: HashMap<OutboundRequestId, Reply<MailboxResponse>>,
    providers: HashMap<kad::QueryId, (oneshot::Sender<Vec<PeerId>>, Vec<PeerId>)>,
}

/// The swarm task's state.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<NodeEvent>,
    routes: Routes,
    /// Connected peers and the addresses of their connections.
    connected: HashMap<PeerId, Vec<Multiaddr>>,
    /// Peers handed to the sync driver (they share listings with us).
    sync_peers: HashSet<PeerId>,
    peers: Peers,
    relays: Relays,
    limits: Limits,
    queues: Queues,
    /// Where each connected peer connects from (its first counted connection).
    origins: HashMap<PeerId, Origin>,
    /// Addresses and subnets of banned peers: throttled for a while.
    penalties: Penalties,
    /// Whether loopback connections are counted by address and subnet.
    limit_loopback: bool,
    pending: Pending,
    /// Every listing shard topic, by hash (subscribed or not).
    listing_topics: HashMap<gossipsub::TopicHash, &'static str>,
    /// The other gossip topics.
    kind_topics: HashMap<gossipsub::TopicHash, Kind>,
    /// The shards this node follows.
    shards: Vec<&'static str>,
    local_peer_id: PeerId,
    /// Prometheus metrics, when the operator asked for them.
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Peers first reached over a relayed connection whose hole punching has not ended,
    /// with when that connection was established (at most one per connected peer).
    relayed_since: HashMap<PeerId, Instant>,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("peer_id", &self.local_peer_id)
            .finish_non_exhaustive()
    }
}

impl EventLoop {
    pub(super) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        events: broadcast::Sender<NodeEvent>,
        routes: Routes,
        config: &NetworkConfig,
        listing_topics: HashMap<gossipsub::TopicHash, &'static str>,
        reachability: Reachability,
    ) -> Self {
        let kind_topics = [Kind::Profile, Kind::Attestation, Kind::Report]
            .into_iter()
            .map(|k| (IdentTopic::new(topic_for(k)).hash(), k))
            .collect();
        Self {
            local_peer_id: *swarm.local_peer_id(),
            swarm,
            commands,
            events,
            routes,
            connected: HashMap::new(),
            sync_peers: HashSet::new(),
            peers: Peers::default(),
            relays: Relays::new(reachability),
            limits: Limits::new(),
            queues: Queues::new(),
            origins: HashMap::new(),
            penalties: Penalties::default(),
            limit_loopback: config.limit_loopback,
            pending: Pending::default(),
            listing_topics,
            kind_topics,
            shards: config.shards(),
            metrics: config.metrics.clone(),
            relayed_since: HashMap::new(),
        }
    }

    /// Runs until `shutdown` turns true or every client is dropped.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING_INTERVAL);
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
                if let Some(m) = &self.metrics {
                    m.gossip_published
                        .get_or_create(&crate::metrics::GossipLabels { what: kind.name() })
                        .inc();
                }
                let topic = match (kind, listing_shard(&bytes)) {
                    (Kind::Listing, Some(shard)) => IdentTopic::new(listing_topic(shard)),
                    _ => IdentTopic::new(topic_for(kind)),
                };
                let r = self.gossipsub().publish(topic, bytes);
                let _ = reply.send(r.map(|_| ()).map_err(|e| e.to_string()));
            }
            Command::Info { reply } => {
                let _ = reply.send(self.info());
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
            Command::SendTrade {
                peer,
                request,
                reply,
            } => {
                self.relays.route_via(&mut self.swarm, peer);
                let id = self
                    .swarm
                    .behaviour_mut()
                    .trade
                    .send_request(&peer, request);
                self.pending.trades.insert(id, reply);
            }
            Command::SendDm {
                peer,
                request,
                reply,
            } => {
                self.relays.route_via(&mut self.swarm, peer);
                let id = self.swarm.behaviour_mut().dm.send_request(&peer, request);
                self.pending.dms.insert(id, reply);
            }
            Command::Sync {
                peer,
                request,
                reply,
            } => {
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                self.pending.sync.insert(id, reply);
            }
            Command::Bulk {
                peer,
                request,
                reply,
            } => {
                let id = self.swarm.behaviour_mut().bulk.send_request(&peer, request);
                self.pending.bulk.insert(id, reply);
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
                self.pending.mailbox.insert(id, reply);
            }
            Command::Blob {
                peer,
                request,
                reply,
            } => {
                self.relays.route_via(&mut self.swarm, peer);
                let id = self.swarm.behaviour_mut().blob.send_request(&peer, request);
                self.pending.blobs.insert(id, reply);
            }
            Command::Respond(response) => self.respond(response),
            Command::Validated {
                id,
                source,
                acceptance,
                trace,
            } => {
                let verdict = match acceptance {
                    MessageAcceptance::Accept => "accept",
                    MessageAcceptance::Reject => "reject",
                    MessageAcceptance::Ignore => "ignore",
                };
                if let Some(m) = &self.metrics {
                    m.judged(verdict);
                }
                self.gossipsub()
                    .report_message_validation_result(&id, &source, acceptance);
                if let Some(t) = trace {
                    t.forwarded(&id.to_string(), &source.to_string(), verdict);
                }
            }
            Command::Offense { peer } => {
                tracing::info!(peer = %peer, "offense reported by a service");
                self.offense(peer);
            }
            Command::Relays { reply } => {
                let _ = reply.send(self.relays.mailboxes.iter().copied().collect());
            }
            Command::Provide { id } => {
                let key = kad::RecordKey::new(&id.0);
                if let Err(e) = self.swarm.behaviour_mut().kad.start_providing(key) {
                    tracing::warn!(error = %e, "cannot announce blob");
                }
            }
            Command::Providers { id, reply } => {
                let key = kad::RecordKey::new(&id.0);
                let q = self.swarm.behaviour_mut().kad.get_providers(key);
                self.pending.providers.insert(q, (reply, Vec::new()));
            }
        }
    }

    fn gossipsub(&mut self) -> &mut gossipsub::Behaviour {
        &mut self.swarm.behaviour_mut().gossipsub
    }

    fn respond(&mut self, response: Response) {
        let b = self.swarm.behaviour_mut();
        // An error means the peer went away or the request timed out: nothing to do.
        let _ = match response {
            Response::Trade(c, r) => b.trade.send_response(c, r).map_err(|_| ()),
            Response::Sync(c, r) => {
                if let (Some(m), SyncResponse::Objects { objects, .. }) = (&self.metrics, &r) {
                    m.sync_bytes("out", objects.iter().map(|o| o.len() as u64).sum());
                }
                b.sync.send_response(c, r).map_err(|_| ())
            }
            Response::Bulk(c, r) => {
                if let (Some(m), BulkResponse::Page { objects, .. }) = (&self.metrics, &r) {
                    m.sync_bytes("out", objects.iter().map(|o| o.len() as u64).sum());
                }
                b.bulk.send_response(c, r).map_err(|_| ())
            }
            Response::Blob(c, r) => b.blob.send_response(c, r).map_err(|_| ()),
            Response::Mailbox(c, r) => b.mailbox.send_response(c, r).map_err(|_| ()),
            Response::Dm(c, r) => b.dm.send_response(c, r).map_err(|_| ()),
        };
    }

    fn info(&self) -> NetworkInfo {
        let me = self.local_peer_id;
        let gossip = &self.swarm.behaviour().gossipsub;
        let sync = self.routes.sync_info.borrow().clone();
        NetworkInfo {
            listen_addrs: self
                .swarm
                .listeners()
                .map(|a| format!("{a}/p2p/{me}"))
                .collect(),
            peers: self
                .connected
                .iter()
                .map(|(p, a)| PeerInfo {
                    peer_id: p.to_string(),
                    addrs: a.iter().map(ToString::to_string).collect(),
                    score: gossip.peer_score(p),
                })
                .collect(),
            gossip_peers: gossip
                .all_peers()
                .filter(|(_, topics)| topics.iter().any(|t| self.listing_topics.contains_key(*t)))
                .count(),
            synced_peers: sync.peers_reconciled,
            banned: self.peers.banned().map(ToString::to_string).collect(),
            following: self.shards.clone(),
            sync,
            reachability: self.relays.reachability,
            relayed_addrs: self
                .relays
                .relayed_addrs()
                .map(|a| format!("{a}/p2p/{me}"))
                .collect(),
        }
    }

    /// Lifts expired bans and bans peers whose gossip score fell into the graylist.
    fn housekeeping(&mut self) {
        let now = Instant::now();
        for p in self.peers.lift_expired(now) {
            self.swarm.behaviour_mut().blocked.unblock_peer(p);
            tracing::info!(peer = %p, "ban lifted");
        }
        // Gossip drops a graylisted peer's messages unread, so it cannot collect offenses
        // any more: its score is the evidence.
        let gossip = &self.swarm.behaviour().gossipsub;
        let graylisted: Vec<PeerId> = self
            .connected
            .keys()
            .filter(|p| gossip.peer_score(p).is_some_and(|s| s < BAN_BELOW_SCORE))
            .copied()
            .collect();
        for p in graylisted {
            self.ban(
                p,
                "its gossip score fell into the graylist (invalid objects)",
            );
        }
    }

    fn ban(&mut self, peer: PeerId, why: &str) {
        let now = Instant::now();
        let Some(banned) = self.peers.ban(peer, now) else {
            return;
        };
        // A new key costs nothing, an address does: the ban leaves a decaying penalty on
        // the peer's address and subnet, which throttles what comes from there.
        if let Some(origin) = self.origins.get(&peer) {
            self.penalties.add(*origin, now);
        }
        if let Some(lifted) = banned.lifted {
            // The ban table was full: the ban that ended soonest made room.
            self.swarm.behaviour_mut().blocked.unblock_peer(lifted);
        }
        tracing::warn!(peer = %peer, reason = why, "peer banned");
        // Closes its connections and refuses new ones until the ban ends.
        self.swarm.behaviour_mut().blocked.block_peer(peer);
        let _ = self.events.send(NodeEvent::PeerBanned {
            peer: peer.to_string(),
        });
    }

    /// Counts an invalid object against `peer`; bans it past [`BAN_AFTER_INVALID`].
    fn offense(&mut self, peer: PeerId) {
        if self.peers.offense(peer, Instant::now()) {
            self.ban(peer, "too many invalid objects");
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        if let Some(m) = &self.metrics {
            use libp2p::metrics::Recorder;
            m.libp2p.record(&event);
        }
        match event {
            SwarmEvent::NewListenAddr { address, .. } => self.relays.on_new_listen_addr(address),
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                ..
            } => self
                .relays
                .on_listener_closed(&mut self.swarm, listener_id, &addresses),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                connection_id,
                ..
            } => self.on_connected(
                peer_id,
                connection_id,
                connection_addr(&endpoint, peer_id),
                num_established.get(),
                endpoint.is_relayed(),
            ),
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => self.on_disconnected(peer_id, connection_id, num_established),
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(peer = ?peer_id, error = %error, "dial failed");
            }
            SwarmEvent::Behaviour(ev) => self.on_behaviour(ev),
            _ => {}
        }
    }

    fn on_behaviour(&mut self, event: BehaviourEvent) {
        if let Some(m) = &self.metrics {
            record_protocol(&m.libp2p, &event);
        }
        match event {
            BehaviourEvent::Gossipsub(ev) => self.on_gossip(ev),
            BehaviourEvent::Sync(ev) => self.on_sync(ev),
            BehaviourEvent::Bulk(ev) => self.on_bulk(ev),
            BehaviourEvent::Trade(ev) => self.on_trade(ev),
            BehaviourEvent::Dm(ev) => self.on_dm(ev),
            BehaviourEvent::Mailbox(ev) => self.on_mailbox(ev),
            BehaviourEvent::Blob(ev) => self.on_blob(ev),
            BehaviourEvent::Kad(ev) => self.on_kad(ev),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                self.relays
                    .on_identify(&mut self.swarm, &self.events, peer_id, &info);
                for addr in info.listen_addrs.into_iter().take(16) {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
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
            BehaviourEvent::Autonat(libp2p::autonat::Event::StatusChanged { new, .. }) => {
                self.relays.on_autonat(&mut self.swarm, new);
            }
            BehaviourEvent::RelayClient(ev) => {
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
            BehaviourEvent::AutonatV2(ev) => self.relays.on_autonat_v2(&mut self.swarm, &ev),
            BehaviourEvent::Dcutr(ev) => self.on_hole_punch(ev),
            _ => {}
        }
    }

    /// DCUtR's outcome for a relayed connection: logged and sent as an event with the time
    /// since the relayed connection was established.
    fn on_hole_punch(&mut self, ev: libp2p::dcutr::Event) {
        let peer = ev.remote_peer_id;
        let ms = self
            .relayed_since
            .remove(&peer)
            .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX));
        let error = match ev.result {
            Ok(_) => {
                tracing::info!(peer = %peer, ms, "direct connection by hole punching");
                None
            }
            Err(e) => {
                tracing::info!(peer = %peer, ms, error = %e, "hole punching failed; staying relayed");
                Some(e.to_string())
            }
        };
        let _ = self.events.send(NodeEvent::HolePunch {
            peer: peer.to_string(),
            direct: error.is_none(),
            ms,
            error,
        });
    }

    fn on_connected(
        &mut self,
        peer: PeerId,
        conn: ConnectionId,
        addr: Multiaddr,
        count: u32,
        relayed: bool,
    ) {
        if !self.peers.admit(conn, connection_ip(&addr)) {
            tracing::warn!(peer = %peer, addr = %addr, "too many connections from one address; closing");
            self.swarm.close_connection(conn);
            return;
        }
        if let Some(origin) = origin_of(&addr, self.limit_loopback) {
            self.origins.entry(peer).or_insert(origin);
        }
        let addrs = self.connected.entry(peer).or_default();
        if !addrs.contains(&addr) && addrs.len() < ADDRS_PER_PEER {
            addrs.push(addr);
        }
        if let Some(m) = &self.metrics {
            m.peers.set(self.connected.len() as i64);
        }
        if count == 1 {
            tracing::info!(peer = %peer, relayed, "peer connected");
            let _ = self.events.send(NodeEvent::PeerConnected {
                peer: peer.to_string(),
            });
            if relayed {
                self.relayed_since.insert(peer, Instant::now());
                let _ = self.events.send(NodeEvent::RelayedConnection {
                    peer: peer.to_string(),
                });
            }
        }
    }

    fn on_disconnected(&mut self, peer: PeerId, conn: ConnectionId, remaining: u32) {
        self.peers.release(conn);
        if remaining > 0 {
            return;
        }
        self.connected.remove(&peer);
        self.origins.remove(&peer);
        self.relayed_since.remove(&peer);
        if self.sync_peers.remove(&peer) {
            self.routes.sync_peers.post(SyncPeerEvent::Gone(peer));
        }
        self.relays.on_disconnected(&mut self.swarm, peer);
        if let Some(m) = &self.metrics {
            m.peers.set(self.connected.len() as i64);
        }
        tracing::info!(peer = %peer, "peer disconnected");
    }

    fn on_gossip(&mut self, ev: gossipsub::Event) {
        match ev {
            gossipsub::Event::Message {
                propagation_source: source,
                message_id: id,
                message,
            } => {
                let trace = crate::trace::HopTrace::received();
                let origin = self.origins.get(&source).copied();
                if self
                    .limits
                    .gossip
                    .allow(source, origin, &self.penalties, Instant::now())
                    .is_err()
                {
                    if let Some(m) = &self.metrics {
                        m.judged("rate_limited");
                    }
                    self.gossipsub().report_message_validation_result(
                        &id,
                        &source,
                        MessageAcceptance::Ignore,
                    );
                    return;
                }
                let topic = match self.listing_topics.get(&message.topic) {
                    Some(shard) => GossipTopic::Listings(shard),
                    None => self
                        .kind_topics
                        .get(&message.topic)
                        .map_or(GossipTopic::Unknown, |k| GossipTopic::Kind(*k)),
                };
                // Attestations and proofs (up to 65 signature checks each) have their own
                // queue, in which each peer holds a few places: one peer's flood of them
                // holds up neither listings nor other peers' attestations.
                let (route, slot) = if topic == GossipTopic::Kind(Kind::Attestation) {
                    let Some(slot) = self.queues.attestations.take(source) else {
                        self.gossipsub().report_message_validation_result(
                            &id,
                            &source,
                            MessageAcceptance::Ignore,
                        );
                        return;
                    };
                    (&self.routes.attestations, Some(slot))
                } else {
                    (&self.routes.gossip, None)
                };
                let msg = GossipMessage {
                    source,
                    id,
                    topic,
                    data: message.data,
                    slot,
                    trace,
                };
                // A full queue: ignored now (not forwarded, nobody penalized); catch-up
                // sync brings what was valid.
                if let Err(e) = route.try_send(msg) {
                    let msg = match e {
                        mpsc::error::TrySendError::Full(m)
                        | mpsc::error::TrySendError::Closed(m) => m,
                    };
                    if let Some(m) = &self.metrics {
                        m.judged("busy");
                    }
                    self.gossipsub().report_message_validation_result(
                        &msg.id,
                        &msg.source,
                        MessageAcceptance::Ignore,
                    );
                }
            }
            // Once a peer listens to listings, our posts reach it by gossip; what it
            // posted before, the sync driver fetches now.
            gossipsub::Event::Subscribed { peer_id, topic }
                if self.listing_topics.contains_key(&topic)
                    && !self.sync_peers.contains(&peer_id) =>
            {
                self.routes.sync_peers.post(SyncPeerEvent::Ready(peer_id));
                self.sync_peers.insert(peer_id);
            }
            _ => {}
        }
    }

    fn on_sync(&mut self, ev: request_response::Event<SyncRequest, SyncResponse>) {
        if let (
            Some(m),
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        response: SyncResponse::Objects { objects, .. },
                        ..
                    },
                ..
            },
        ) = (&self.metrics, &ev)
        {
            m.sync_bytes("in", objects.iter().map(|o| o.len() as u64).sum());
        }
        if let Rr::Request(peer, request, channel) = split(ev, &mut self.pending.sync, "sync") {
            let origin = self.origins.get(&peer).copied();
            let answer = match self
                .limits
                .sync
                .allow(peer, origin, &self.penalties, Instant::now())
            {
                Err(r) => Err((
                    format!("rate limit: too many sync requests {}", r.whose()),
                    channel,
                )),
                Ok(()) => route(
                    &self.routes.sync,
                    &self.queues.sync,
                    (peer, origin),
                    request,
                    channel,
                ),
            };
            if let Err((why, channel)) = answer {
                self.respond(Response::Sync(channel, SyncResponse::Refused(why)));
            }
        }
    }

    fn on_bulk(&mut self, ev: request_response::Event<BulkRequest, BulkResponse>) {
        if let (
            Some(m),
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        response: BulkResponse::Page { objects, .. },
                        ..
                    },
                ..
            },
        ) = (&self.metrics, &ev)
        {
            m.sync_bytes("in", objects.iter().map(|o| o.len() as u64).sum());
        }
        if let Rr::Request(peer, request, channel) = split(ev, &mut self.pending.bulk, "bulk") {
            let origin = self.origins.get(&peer).copied();
            let answer = match self
                .limits
                .bulk
                .allow(peer, origin, &self.penalties, Instant::now())
            {
                Err(r) => Err((
                    format!("rate limit: too many bulk requests {}", r.whose()),
                    channel,
                )),
                Ok(()) => route(
                    &self.routes.bulk,
                    &self.queues.bulk,
                    (peer, origin),
                    request,
                    channel,
                ),
            };
            if let Err((why, channel)) = answer {
                self.respond(Response::Bulk(channel, BulkResponse::Busy(why)));
            }
        }
    }

    fn on_trade(&mut self, ev: request_response::Event<TradeRequest, TradeResponse>) {
        match split(ev, &mut self.pending.trades, "trade") {
            Rr::Request(peer, request, channel) => {
                let origin = self.origins.get(&peer).copied();
                if let Err(r) =
                    self.limits
                        .trade
                        .allow(peer, origin, &self.penalties, Instant::now())
                {
                    let why = format!(
                        "rate limit: too many trade messages {}; try again later",
                        r.whose()
                    );
                    self.respond(Response::Trade(channel, TradeResponse::Refused(why)));
                } else if let Err((why, channel)) = route(
                    &self.routes.trades,
                    &self.queues.trade,
                    (peer, origin),
                    request,
                    channel,
                ) {
                    self.respond(Response::Trade(channel, TradeResponse::Busy(why)));
                }
            }
            // Look the peer up so that the next attempt knows where to dial.
            Rr::Failed(peer) => {
                self.swarm.behaviour_mut().kad.get_closest_peers(peer);
            }
            Rr::Other => {}
        }
    }

    fn on_dm(&mut self, ev: request_response::Event<DmRequest, DmResponse>) {
        match split(ev, &mut self.pending.dms, "dm") {
            Rr::Request(peer, request, channel) => {
                let origin = self.origins.get(&peer).copied();
                if let Err(r) = self
                    .limits
                    .dm
                    .allow(peer, origin, &self.penalties, Instant::now())
                {
                    let why = format!(
                        "rate limit: too many direct messages {}; try again later",
                        r.whose()
                    );
                    self.respond(Response::Dm(channel, DmResponse::Busy(why)));
                } else if let Err((why, channel)) = route(
                    &self.routes.dms,
                    &self.queues.dm,
                    (peer, origin),
                    request,
                    channel,
                ) {
                    self.respond(Response::Dm(channel, DmResponse::Busy(why)));
                }
            }
            Rr::Failed(peer) => {
                self.swarm.behaviour_mut().kad.get_closest_peers(peer);
            }
            Rr::Other => {}
        }
    }

    fn on_blob(&mut self, ev: request_response::Event<BlobRequest, BlobResponse>) {
        if let Rr::Request(peer, request, channel) = split(ev, &mut self.pending.blobs, "blob") {
            let origin = self.origins.get(&peer).copied();
            let answer = match self
                .limits
                .blob
                .allow(peer, origin, &self.penalties, Instant::now())
            {
                Err(r) => Err((
                    format!("rate limit: too many blob requests {}", r.whose()),
                    channel,
                )),
                Ok(()) => route(
                    &self.routes.blobs,
                    &self.queues.blob,
                    (peer, origin),
                    request,
                    channel,
                ),
            };
            if let Err((why, channel)) = answer {
                self.respond(Response::Blob(channel, BlobResponse::Refused(why)));
            }
        }
    }

    fn on_mailbox(&mut self, ev: request_response::Event<MailboxRequest, MailboxResponse>) {
        let Rr::Request(peer, request, channel) = split(ev, &mut self.pending.mailbox, "mailbox")
        else {
            return;
        };
        let now = Instant::now();
        let origin = self.origins.get(&peer).copied();
        let is_put = matches!(request, MailboxRequest::Put { .. });
        let limits = &mut self.limits;
        let answer = match limits.mailbox.allow(peer, origin, &self.penalties, now) {
            Err(r) => Err(format!(
                "rate limit: too many mailbox requests {}; try again later",
                r.whose()
            )),
            Ok(()) if is_put => limits
                .mailbox_put
                .allow(peer, origin, &self.penalties, now)
                .map_err(|r: Refused| {
                    format!(
                        "rate limit: too many mailbox items {}; try again later",
                        r.whose()
                    )
                }),
            Ok(()) => Ok(()),
        };
        let rate_limited = answer.is_err();
        let answer = match answer {
            Err(why) => Err((why, channel)),
            Ok(()) => {
                // Busy because the relay's own queue is full (not because this peer has its
                // share waiting): the put was not read into the store, so it costs the
                // peer none of its put budget. Its request budget is still charged.
                let own_share_full = self.queues.mailbox.held(&peer) >= MAILBOX_INBOUND_PER_PEER;
                let routed = route(
                    &self.routes.mailbox,
                    &self.queues.mailbox,
                    (peer, origin),
                    request,
                    channel,
                );
                if routed.is_err() && is_put && !own_share_full {
                    self.limits
                        .mailbox_put
                        .refund(peer, origin, &self.penalties, now);
                }
                routed
            }
        };
        if let Err((why, channel)) = answer {
            self.respond(Response::Mailbox(channel, MailboxResponse::Refused(why)));
            // Only rate limits count: "busy" can come from the relay's own load.
            if is_put && rate_limited {
                self.refused_put(peer, origin, now);
            }
        }
    }

    /// Counts a put refused to `peer` by a rate limit; bans the peer once it has kept
    /// putting past [`MAILBOX_REFUSED_PUTS_MAX`] of its own refusals in a window, or past
    /// half of them while its address's or subnet's refusals are spent (fresh peer ids from
    /// one address). Only the peer's own refused puts decide: a neighbour behind the same
    /// address is never banned for someone else's. The ban closes its connections, so what
    /// it still sends is not read, and leaves a penalty on its address and subnet.
    fn refused_put(&mut self, peer: PeerId, origin: Option<Origin>, now: Instant) {
        let refused = &mut self.limits.mailbox_refused;
        let why = match refused.allow(peer, origin, &self.penalties, now) {
            Ok(()) => return,
            Err(Refused::Peer) => "kept putting mail after being told to try again later",
            Err(_) if refused.peer_spent(&peer, now) >= u64::from(MAILBOX_REFUSED_PUTS_MAX / 2) => {
                "kept putting mail after refusals while its address's refusals were spent"
            }
            Err(_) => return,
        };
        self.ban(peer, why);
    }

    fn on_kad(&mut self, ev: kad::Event) {
        match ev {
            kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetProviders(res),
                step,
                ..
            } => {
                let done = step.last
                    || matches!(
                        &res,
                        Ok(kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) | Err(_)
                    );
                if let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = res
                    && let Some((_, found)) = self.pending.providers.get_mut(&id)
                {
                    found.extend(providers.into_iter().take(PROVIDERS_MAX));
                    found.truncate(PROVIDERS_MAX);
                }
                if done && let Some((reply, found)) = self.pending.providers.remove(&id) {
                    let _ = reply.send(found);
                }
            }
            kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::GetClosestPeers(Ok(ok)),
                ..
            } => {
                // Addresses of peers we looked up (trade counterparties we could not reach).
                for p in ok.peers {
                    for a in p.addrs.into_iter().take(ADDRS_PER_PEER) {
                        self.swarm.behaviour_mut().kad.add_address(&p.peer_id, a);
                    }
                }
            }
            _ => {}
        }
    }
}

/// What a request-response event means for the swarm task once outbound answers are
/// settled.
enum Rr<Req, Resp> {
    /// A peer asks.
    Request(PeerId, Req, ResponseChannel<Resp>),
    /// Our request to this peer failed (already reported to its waiter).
    Failed(PeerId),
    /// Nothing to do.
    Other,
}

/// Settles answers to our requests and returns requests from peers.
fn split<Req, Resp>(
    ev: request_response::Event<Req, Resp>,
    pending: &mut HashMap<OutboundRequestId, Reply<Resp>>,
    protocol: &'static str,
) -> Rr<Req, Resp> {
    use request_response::{Event, Message};
    match ev {
        Event::Message {
            peer,
            message: Message::Request {
                request, channel, ..
            },
            ..
        } => Rr::Request(peer, request, channel),
        Event::Message {
            message:
                Message::Response {
                    request_id,
                    response,
                },
            ..
        } => {
            settle(pending, request_id, Ok(response));
            Rr::Other
        }
        Event::OutboundFailure {
            peer,
            request_id,
            error,
            ..
        } => {
            tracing::debug!(peer = %peer, protocol, error = %error, "request failed");
            settle(pending, request_id, Err(error.to_string()));
            Rr::Failed(peer)
        }
        _ => Rr::Other,
    }
}

/// Hands an inbound request to its service; gives the channel back when the peer already
/// has its share of the queue waiting, or the queue is full (or the service is gone), for
/// the caller to answer "busy". Nothing is buffered beyond the bounded queue.
fn route<Req, Resp>(
    to: &mpsc::Sender<Inbound<Req, Resp>>,
    queue: &InFlight,
    (peer, origin): (PeerId, Option<Origin>),
    request: Req,
    channel: ResponseChannel<Resp>,
) -> Result<(), (String, ResponseChannel<Resp>)> {
    let Some(slot) = queue.take(peer) else {
        return Err((
            "busy: too many of your requests are waiting; try again later".into(),
            channel,
        ));
    };
    to.try_send(Inbound {
        peer,
        request,
        channel,
        origin,
        slot,
    })
    .map_err(|e| match e {
        mpsc::error::TrySendError::Full(i) | mpsc::error::TrySendError::Closed(i) => {
            ("busy: try again later".into(), i.channel)
        }
    })
}

/// Hands an outbound request's outcome to whoever is waiting for it.
fn settle<T>(
    pending: &mut HashMap<OutboundRequestId, Reply<T>>,
    id: OutboundRequestId,
    outcome: Result<T, String>,
) {
    if let Some(reply) = pending.remove(&id) {
        let _ = reply.send(outcome);
    }
}

/// Records a protocol's event in libp2p's metrics.
fn record_protocol(m: &libp2p::metrics::Metrics, event: &BehaviourEvent) {
    use libp2p::metrics::Recorder;
    match event {
        BehaviourEvent::Gossipsub(ev) => m.record(ev),
        BehaviourEvent::Kad(ev) => m.record(ev),
        BehaviourEvent::Identify(ev) => m.record(ev),
        BehaviourEvent::Ping(ev) => m.record(ev),
        BehaviourEvent::RelayServer(ev) => m.record(ev),
        BehaviourEvent::Dcutr(ev) => m.record(ev),
        _ => {}
    }
}
