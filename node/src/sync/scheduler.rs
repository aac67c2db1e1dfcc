//! The catch-up scheduler as a state machine: inputs in ([`Input`]: a peer to reconcile
//! with, a reply, a page stored, a tick), actions out ([`Action`]: load a shard's items, send
//! a request, store a page, report the outcome).
//!
//! It owns the per-peer progress (shards left, rounds in flight, ids to fetch, re-runs), the
//! queue of peers waiting for their turn and the counters the API shows. It does no I/O: no
//! store, no swarm, no clock but the `now` it is given; `sync::driver` carries its actions
//! out. It is unit-tested below without a network.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jangteo_protocol::Kind;
use libp2p::PeerId;
use serde_bytes::ByteBuf;

use super::reconcile::{Initiator, Item, ReconcileError};
use super::{Shard, ShardSync, SyncInfo, SyncStatus};
use crate::ingest::listing_shard;
use crate::net::{FETCH_IDS_MAX, SyncRequest, SyncResponse};

/// Fetch requests in flight per peer.
pub const FETCHES_IN_FLIGHT: usize = 2;
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
/// Most peers the scheduler keeps track of (waiting, reconciled or failed).
pub const PEERS_MAX: usize = 1024;
/// Peers re-synced per tick.
pub const RESYNCS_PER_TICK: usize = 4;
/// A sync whose peer has answered nothing for this long while we wait on it is abandoned,
/// freeing the slot long before [`PEER_SYNC_DEADLINE`] (a round is at most 60 KiB and a
/// page at most 4 MiB: a link slower than ~2 Mbit/s may need more than one try). Checked at
/// each tick, so a silent peer holds the slot 20 to 25 s.
pub const PEER_SYNC_IDLE: Duration = Duration::from_secs(20);
/// Ids a peer may announce (we lack them, it claims to hold them) and then not deliver when
/// asked, in one sync; past this the sync ends and the peer is charged an offense. One
/// round can announce about 1,900 ids; an honest peer misses only the few pruned meanwhile.
pub const UNDELIVERED_IDS_MAX: u64 = 2048;
/// Ids queued for fetching in one sync; what a round teaches beyond this is not queued
/// (the shard is reconciled again once the queue is fetched, like a shard past its rounds).
pub const TO_FETCH_MAX: usize = 65_536;
/// Requests of one sync that may fail (refused, unanswered) before it ends early: it can
/// no longer end reconciled, so it should not keep the slot.
pub const SYNC_FAILURES_MAX: u64 = 8;

/// Identifies one request the scheduler asked for, so its reply finds its way back.
pub type Token = u64;

/// Something that happened.
#[derive(Debug)]
pub enum Input {
    /// A peer that shares listings with us (subscribed to a listings topic) connected.
    PeerReady(PeerId),
    /// A peer disconnected.
    PeerGone(PeerId),
    /// The items of a shard, for a session with `peer` (or why they could not be listed).
    Items {
        /// The peer the session is with.
        peer: PeerId,
        /// The shard.
        shard: Shard,
        /// Its items, sorted.
        items: Result<Arc<Vec<Item>>, String>,
    },
    /// The reply to a request (Err: it never arrived: unreachable peer, unsupported
    /// protocol, timeout).
    Reply {
        /// The request's token.
        token: Token,
        /// The reply.
        reply: Result<SyncResponse, String>,
    },
    /// A page handed out with [`Action::Store`] was verified and stored.
    Stored {
        /// The page's token.
        token: Token,
        /// Objects newly stored.
        stored: usize,
    },
    /// Of the ids of the fetch `token`, this many were already held here and not asked
    /// for (they are not counted as undelivered).
    Held {
        /// The fetch's token.
        token: Token,
        /// Ids dropped.
        held: usize,
    },
    /// Time passed: re-sync peers that are due, abandon slow syncs.
    Tick,
}

/// Something the driver must do.
#[derive(Debug)]
pub enum Action {
    /// List the items of `shard` and hand them back with [`Input::Items`].
    LoadItems {
        /// The peer the session is for.
        peer: PeerId,
        /// The shard.
        shard: Shard,
    },
    /// Send a request; hand its reply back with [`Input::Reply`]. For a fetch, the driver
    /// may first drop ids already held (and reply an empty page when none is left).
    Send {
        /// Its token.
        token: Token,
        /// To whom.
        peer: PeerId,
        /// The request.
        request: SyncRequest,
    },
    /// Verify and store these objects (sent by `peer`), then [`Input::Stored`].
    Store {
        /// The page's token.
        token: Token,
        /// Who sent them (offenses count against it).
        peer: PeerId,
        /// What the shard carries.
        kind: Kind,
        /// The objects, only ids asked for and of the shard asked for.
        objects: Vec<ByteBuf>,
    },
    /// `peer` sent a malformed reconciliation message.
    Offense(PeerId),
    /// The sync with `peer` ended.
    Finished {
        /// The peer.
        peer: PeerId,
        /// Whether anything was compared.
        outcome: Outcome,
    },
}

/// How a sync with one peer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every shard was compared with the peer and everything it had that we lacked was
    /// fetched.
    Reconciled,
    /// Something was compared, but a round or a fetch failed (refused, unanswered,
    /// malformed): objects may still be missing. Tried again like a failure.
    Partial,
    /// Nothing was compared: every round failed (the peer does not speak the sync protocol,
    /// refused, or could not be reached).
    Failed,
    /// It took longer than [`PEER_SYNC_DEADLINE`], or the peer answered nothing for
    /// [`PEER_SYNC_IDLE`].
    Abandoned,
    /// The peer announced more than [`UNDELIVERED_IDS_MAX`] ids it then did not deliver:
    /// the sync ended there and the peer was charged an offense.
    CutOff,
}

/// Tells one sync with a peer from the next with the same peer.
type SyncId = u64;

enum Pending {
    Round(PeerId, Shard, Box<Initiator>),
    Fetch(PeerId, Shard, Vec<[u8; 32]>),
    Store(PeerId),
}

impl Pending {
    fn peer(&self) -> PeerId {
        match self {
            Pending::Round(p, ..) | Pending::Fetch(p, ..) | Pending::Store(p) => *p,
        }
    }
}

#[derive(Default)]
struct PeerSync {
    /// This sync's id: requests carry it, and a reply to an earlier sync with the same peer
    /// (late, after that sync was dropped) is not taken for this one's.
    id: SyncId,
    shards_left: VecDeque<Shard>,
    /// Re-runs started per shard (a shard that hit the round limit is reconciled again once
    /// what it learned was fetched, at most [`SYNC_RERUNS_MAX`] times, and only while
    /// fetching stores something).
    reruns: HashMap<Shard, u32>,
    rerun: BTreeSet<Shard>,
    /// Objects stored by this peer's fetches.
    stored: u64,
    /// `stored` when the current pass of re-runs was decided.
    stored_at_rerun: u64,
    /// Sessions loading items or waiting for a round.
    sessions_open: usize,
    to_fetch: VecDeque<(Shard, [u8; 32])>,
    fetches_in_flight: usize,
    pages_storing: usize,
    /// Rounds answered with a reconciliation message (something was compared).
    rounds_answered: u64,
    /// Sessions and fetches that failed (refused, unanswered, malformed, items not
    /// listed): the sync is at best partial.
    failures: u64,
    started: Option<Instant>,
    /// When the peer last answered (or the sync started).
    last_heard: Option<Instant>,
    /// Ids asked for that the peer did not deliver.
    undelivered: u64,
    /// Ids dropped from fetches because they were held already (no fault of the peer).
    held: u64,
}

impl PeerSync {
    /// Ids the peer announced and did not deliver, net of those not asked for.
    fn lied(&self) -> u64 {
        self.undelivered.saturating_sub(self.held)
    }

    fn idle(&self) -> bool {
        self.sessions_open == 0
            && self.fetches_in_flight == 0
            && self.pages_storing == 0
            && self.to_fetch.is_empty()
            && self.shards_left.is_empty()
    }
}

/// Where a peer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerState {
    /// Connected, never compared (waiting, running, or its attempts failed).
    NotReconciled,
    /// Compared with since it connected.
    Reconciled,
}

/// The catch-up scheduler.
pub struct Scheduler {
    shards: Vec<Shard>,
    peers: HashMap<PeerId, PeerState>,
    queue: VecDeque<PeerId>,
    running: HashMap<PeerId, PeerSync>,
    wanted: HashSet<[u8; 32]>,
    pending: HashMap<Token, (SyncId, Pending)>,
    next_token: Token,
    next_sync: SyncId,
    last_synced: HashMap<PeerId, Instant>,
    last_sync: Option<(Instant, Duration)>,
    totals: SyncInfo,
    /// Per shard: the connected peers it was compared with to the end, and when that last
    /// happened.
    compared: HashMap<Shard, (HashSet<PeerId>, Instant)>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("peers", &self.peers.len())
            .field("running", &self.running.len())
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// A scheduler reconciling `shards` with every peer.
    pub fn new(shards: Vec<Shard>) -> Self {
        Self {
            shards,
            peers: HashMap::new(),
            queue: VecDeque::new(),
            running: HashMap::new(),
            wanted: HashSet::new(),
            pending: HashMap::new(),
            next_token: 0,
            next_sync: 0,
            last_synced: HashMap::new(),
            last_sync: None,
            totals: SyncInfo::default(),
            compared: HashMap::new(),
        }
    }

    /// Takes one input at `now`; returns what to do.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::PeerReady(peer) => {
                if !self.peers.contains_key(&peer) && self.peers.len() < PEERS_MAX {
                    self.peers.insert(peer, PeerState::NotReconciled);
                    self.start(peer, now, &mut out);
                }
            }
            Input::PeerGone(peer) => self.peer_gone(peer, now, &mut out),
            Input::Items { peer, shard, items } => {
                self.on_items(peer, shard, items, &mut out);
                self.advance(peer, now, &mut out);
            }
            Input::Reply { token, reply } => match self.pending.remove(&token) {
                Some((sync, p)) if self.is_current(&p, sync) && !matches!(p, Pending::Store(_)) => {
                    if let Some(ps) = self.running.get_mut(&p.peer()) {
                        ps.last_heard = Some(now);
                    }
                    self.on_reply(p, reply, now, &mut out);
                }
                Some((sync, p)) if !self.is_current(&p, sync) => {
                    // A late reply to an earlier sync with this peer: its ids are free again.
                    if let Pending::Fetch(_, _, ids) = &p {
                        for id in ids {
                            self.wanted.remove(id);
                        }
                    }
                    if matches!(p, Pending::Store(_)) {
                        self.pending.insert(token, (sync, p));
                    }
                }
                Some((sync, p @ Pending::Store(_))) => {
                    self.pending.insert(token, (sync, p));
                }
                Some((sync, p)) => {
                    // Unreachable (current non-store replies are taken above); kept filed.
                    self.pending.insert(token, (sync, p));
                }
                None => {}
            },
            Input::Held { token, held } => {
                if let Some((sync, p @ Pending::Fetch(..))) = self.pending.get(&token)
                    && self.is_current(p, *sync)
                    && let Some(ps) = self.running.get_mut(&p.peer())
                {
                    ps.held += held as u64;
                }
            }
            Input::Stored { token, stored } => {
                if let Some((sync, p @ Pending::Store(peer))) = self.pending.remove(&token)
                    && self.is_current(&p, sync)
                {
                    if let Some(ps) = self.running.get_mut(&peer) {
                        ps.pages_storing = ps.pages_storing.saturating_sub(1);
                        ps.stored += stored as u64;
                        // Our own work took the time, not the peer.
                        ps.last_heard = Some(now);
                    }
                    self.advance(peer, now, &mut out);
                }
            }
            Input::Tick => self.tick(now, &mut out),
        }
        out
    }

    /// A reply to a round or a fetch of a current sync.
    fn on_reply(
        &mut self,
        p: Pending,
        reply: Result<SyncResponse, String>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let peer = p.peer();
        match p {
            Pending::Round(_, shard, init) => self.on_round(peer, shard, init, reply, now, out),
            Pending::Fetch(_, shard, ids) => self.on_fetched(peer, shard, ids, reply, out),
            Pending::Store(_) => {}
        }
        self.advance(peer, now, out);
    }

    /// What the API shows.
    pub fn info(&self, now: Instant) -> SyncInfo {
        let to_fetch = self
            .running
            .values()
            .map(|p| p.to_fetch.len())
            .sum::<usize>()
            + self
                .pending
                .values()
                .map(|(_, p)| match p {
                    Pending::Fetch(_, _, ids) => ids.len(),
                    _ => 0,
                })
                .sum::<usize>();
        let in_progress = self.running.len() + self.queue.len();
        let peers_reconciled = self.reconciled_peers();
        SyncInfo {
            status: if in_progress > 0 || to_fetch > 0 {
                SyncStatus::CatchingUp
            } else if peers_reconciled > 0 {
                SyncStatus::CaughtUp
            } else {
                SyncStatus::NotReconciled
            },
            peers_reconciled,
            in_progress,
            to_fetch,
            last_sync_ms_ago: self
                .last_sync
                .map(|(at, _)| now.saturating_duration_since(at).as_millis() as u64),
            last_sync_took_ms: self.last_sync.map(|(_, took)| took.as_millis() as u64),
            ..self.totals.clone()
        }
    }

    /// Where catch-up stands for each followed listing category: being compared or
    /// fetched now (catching up), compared to the end with a connected peer (caught up), or
    /// neither yet. Walks the fetch queues once: call it at most every
    /// [`super::SHARDS_REFRESH`].
    pub fn categories(&self, now: Instant) -> Vec<ShardSync> {
        let mut to_fetch: HashMap<&Shard, usize> = HashMap::new();
        let mut busy: HashSet<&Shard> = HashSet::new();
        for ps in self.running.values() {
            for (shard, _) in &ps.to_fetch {
                *to_fetch.entry(shard).or_default() += 1;
            }
            busy.extend(ps.shards_left.iter());
            busy.extend(ps.rerun.iter());
        }
        for (_, p) in self.pending.values() {
            match p {
                Pending::Fetch(_, shard, ids) => *to_fetch.entry(shard).or_default() += ids.len(),
                Pending::Round(_, shard, _) => {
                    busy.insert(shard);
                }
                Pending::Store(_) => {}
            }
        }
        self.shards
            .iter()
            .filter_map(|shard| {
                let category = shard.category()?;
                let fetch = to_fetch.get(shard).copied().unwrap_or(0);
                let (peers, last) = self
                    .compared
                    .get(shard)
                    .map_or((0, None), |(p, at)| (p.len(), Some(*at)));
                Some(ShardSync {
                    category,
                    status: if fetch > 0 || busy.contains(shard) {
                        SyncStatus::CatchingUp
                    } else if peers > 0 {
                        SyncStatus::CaughtUp
                    } else {
                        SyncStatus::NotReconciled
                    },
                    peers,
                    to_fetch: fetch,
                    last_ms_ago: last
                        .map(|at| now.saturating_duration_since(at).as_millis() as u64),
                })
            })
            .collect()
    }

    /// Peers compared with since they connected.
    pub fn reconciled_peers(&self) -> usize {
        self.peers
            .values()
            .filter(|s| **s == PeerState::Reconciled)
            .count()
    }

    /// Files `pending` under a new token, tagged with the current sync of its peer.
    fn token(&mut self, pending: Pending) -> Token {
        let sync = self
            .running
            .get(&pending.peer())
            .map_or(SyncId::MAX, |ps| ps.id);
        self.next_token = self.next_token.wrapping_add(1);
        self.pending.insert(self.next_token, (sync, pending));
        self.next_token
    }

    /// Whether `pending`, filed during sync `sync`, belongs to its peer's current sync.
    fn is_current(&self, pending: &Pending, sync: SyncId) -> bool {
        self.running
            .get(&pending.peer())
            .is_some_and(|ps| ps.id == sync)
    }

    fn start(&mut self, peer: PeerId, now: Instant, out: &mut Vec<Action>) {
        if self.running.contains_key(&peer) {
            return;
        }
        if self.running.len() >= PEER_SYNCS_AT_ONCE {
            if !self.queue.contains(&peer) && self.queue.len() < PEERS_MAX {
                self.queue.push_back(peer);
            }
            return;
        }
        self.next_sync = self.next_sync.wrapping_add(1);
        self.running.insert(
            peer,
            PeerSync {
                id: self.next_sync,
                started: Some(now),
                last_heard: Some(now),
                shards_left: self.shards.iter().cloned().collect(),
                ..Default::default()
            },
        );
        self.advance(peer, now, out);
    }

    /// Opens sessions and fetches as far as the limits allow, and ends the sync when
    /// nothing is left.
    fn advance(&mut self, peer: PeerId, now: Instant, out: &mut Vec<Action>) {
        let Some(ps) = self.running.get_mut(&peer) else {
            return;
        };
        if ps.lied() > UNDELIVERED_IDS_MAX {
            tracing::info!(peer = %peer, undelivered = ps.lied(), "sync cut off: the peer announced ids it does not deliver");
            self.end_early(peer, now, Outcome::CutOff, out);
            return;
        }
        if ps.failures >= SYNC_FAILURES_MAX {
            tracing::debug!(peer = %peer, failures = ps.failures, "sync ended early: too many failed requests");
            self.end_early(peer, now, Outcome::Partial, out);
            return;
        }
        while ps.sessions_open < SESSIONS_IN_FLIGHT
            && let Some(shard) = ps.shards_left.pop_front()
        {
            ps.sessions_open += 1;
            out.push(Action::LoadItems { peer, shard });
        }
        self.pump_fetches(peer, out);
        self.maybe_done(peer, now, out);
    }

    fn on_items(
        &mut self,
        peer: PeerId,
        shard: Shard,
        items: Result<Arc<Vec<Item>>, String>,
        out: &mut Vec<Action>,
    ) {
        if !self.running.contains_key(&peer) {
            return;
        }
        let started = items.and_then(|items| {
            Initiator::new(items.as_ref().clone()).map_err(|e| format!("reconciliation: {e}"))
        });
        match started {
            Ok((init, msg)) => self.send_round(peer, shard, Box::new(init), msg, out),
            Err(e) => {
                tracing::warn!(shard = %shard, error = %e, "cannot start reconciliation");
                if let Some(ps) = self.running.get_mut(&peer) {
                    ps.sessions_open = ps.sessions_open.saturating_sub(1);
                    ps.failures += 1;
                }
            }
        }
    }

    fn send_round(
        &mut self,
        peer: PeerId,
        shard: Shard,
        init: Box<Initiator>,
        msg: Vec<u8>,
        out: &mut Vec<Action>,
    ) {
        self.totals.bytes_sent += msg.len() as u64;
        let request = SyncRequest::Reconcile {
            shard: shard.to_string(),
            msg: ByteBuf::from(msg),
        };
        let token = self.token(Pending::Round(peer, shard, init));
        out.push(Action::Send {
            token,
            peer,
            request,
        });
    }

    fn on_round(
        &mut self,
        peer: PeerId,
        shard: Shard,
        mut init: Box<Initiator>,
        reply: Result<SyncResponse, String>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(ps) = self.running.get_mut(&peer) else {
            return;
        };
        let msg = match reply {
            Ok(SyncResponse::Reconciled { msg }) => msg,
            Ok(other) => {
                tracing::debug!(peer = %peer, reply = ?other, "sync round refused");
                ps.sessions_open = ps.sessions_open.saturating_sub(1);
                ps.failures += 1;
                return;
            }
            Err(e) => {
                tracing::debug!(peer = %peer, error = %e, "sync round failed");
                ps.sessions_open = ps.sessions_open.saturating_sub(1);
                ps.failures += 1;
                return;
            }
        };
        self.totals.bytes_received += msg.len() as u64;
        let next = match init.step(&msg) {
            Ok(step) => {
                ps.rounds_answered += 1;
                if step.next.is_none() {
                    let (peers, at) = self
                        .compared
                        .entry(shard.clone())
                        .or_insert_with(|| (HashSet::new(), now));
                    peers.insert(peer);
                    *at = now;
                }
                // An id another peer's sync already fetches is not asked twice. Past
                // TO_FETCH_MAX queued, the rest waits for a re-run of the shard.
                for id in step.need {
                    if ps.to_fetch.len() >= TO_FETCH_MAX {
                        ps.rerun.insert(shard.clone());
                        break;
                    }
                    if self.wanted.insert(id) {
                        ps.to_fetch.push_back((shard.clone(), id));
                    }
                }
                step.next
            }
            Err(ReconcileError::TooManyRounds(_)) => {
                // Fetch what was learned, then reconcile this shard again.
                ps.rounds_answered += 1;
                ps.rerun.insert(shard.clone());
                None
            }
            Err(e) => {
                tracing::warn!(peer = %peer, shard = %shard, error = %e, "bad reconciliation message");
                ps.failures += 1;
                out.push(Action::Offense(peer));
                None
            }
        };
        match next {
            // The session stays open for its next round.
            Some(next) => self.send_round(peer, shard, init, next, out),
            None => ps.sessions_open = ps.sessions_open.saturating_sub(1),
        }
    }

    fn on_fetched(
        &mut self,
        peer: PeerId,
        shard: Shard,
        ids: Vec<[u8; 32]>,
        reply: Result<SyncResponse, String>,
        out: &mut Vec<Action>,
    ) {
        for id in &ids {
            self.wanted.remove(id);
        }
        let Some(ps) = self.running.get_mut(&peer) else {
            return;
        };
        ps.fetches_in_flight = ps.fetches_in_flight.saturating_sub(1);
        let (objects, next) = match reply {
            Ok(SyncResponse::Objects { objects, next }) => (objects, next),
            other => {
                tracing::debug!(peer = %peer, reply = ?other.map(|_| ()), "sync fetch failed");
                ps.failures += 1;
                return;
            }
        };
        let object_bytes = objects.iter().map(|o| o.len() as u64).sum::<u64>();
        self.totals.bytes_received += object_bytes;
        self.totals.object_bytes_received += object_bytes;
        self.totals.objects_fetched += objects.len() as u64;
        // Only the ids asked for, and only objects of the shard asked for.
        let asked: HashSet<[u8; 32]> = ids.iter().copied().collect();
        let want_shard = shard.category();
        let objects: Vec<ByteBuf> = objects
            .into_iter()
            .filter(|o| asked.contains(blake3::hash(o).as_bytes()))
            .filter(|o| want_shard.is_none() || listing_shard(o) == want_shard)
            .collect();
        // Ids the page answered for (all, or those before `next` when more follows) that
        // it did not deliver: announced in a round, then not held.
        let delivered: HashSet<[u8; 32]> = objects
            .iter()
            .map(|o| *blake3::hash(o).as_bytes())
            .collect();
        let answered = match &next {
            Some(n) if !objects.is_empty() => ids
                .iter()
                .position(|i| i.as_slice() == n.as_slice())
                .unwrap_or(ids.len()),
            _ => ids.len(),
        };
        ps.undelivered += ids[..answered]
            .iter()
            .filter(|i| !delivered.contains(*i))
            .count() as u64;
        // The rest of a full page is asked again, but only after a page that carried
        // something (an empty "full" page would make us ask forever).
        if !objects.is_empty()
            && let Some(next) = next
            && let Some(pos) = ids.iter().position(|i| i.as_slice() == next.as_slice())
        {
            for id in ids[pos..].iter().rev() {
                if self.wanted.insert(*id) {
                    ps.to_fetch.push_front((shard.clone(), *id));
                }
            }
        }
        if objects.is_empty() {
            return;
        }
        ps.pages_storing += 1;
        let kind = shard.kind();
        let token = self.token(Pending::Store(peer));
        out.push(Action::Store {
            token,
            peer,
            kind,
            objects,
        });
    }

    fn pump_fetches(&mut self, peer: PeerId, out: &mut Vec<Action>) {
        loop {
            let Some(ps) = self.running.get_mut(&peer) else {
                return;
            };
            if ps.fetches_in_flight >= FETCHES_IN_FLIGHT {
                return;
            }
            let Some(shard) = ps.to_fetch.front().map(|(s, _)| s.clone()) else {
                return;
            };
            let mut ids = Vec::new();
            while ids.len() < FETCH_IDS_MAX && ps.to_fetch.front().is_some_and(|(s, _)| *s == shard)
            {
                if let Some((_, id)) = ps.to_fetch.pop_front() {
                    ids.push(id);
                }
            }
            ps.fetches_in_flight += 1;
            self.totals.bytes_sent += 32 * ids.len() as u64;
            let request = SyncRequest::Fetch {
                ids: ids.iter().map(|i| ByteBuf::from(i.to_vec())).collect(),
            };
            let token = self.token(Pending::Fetch(peer, shard, ids));
            out.push(Action::Send {
                token,
                peer,
                request,
            });
        }
    }

    fn maybe_done(&mut self, peer: PeerId, now: Instant, out: &mut Vec<Action>) {
        let Some(ps) = self.running.get_mut(&peer) else {
            return;
        };
        if !ps.idle() {
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
                self.advance(peer, now, out);
                return;
            }
        }
        let Some(ps) = self.running.remove(&peer) else {
            return;
        };
        let took = ps
            .started
            .map(|s| now.saturating_duration_since(s))
            .unwrap_or_default();
        self.last_synced.insert(peer, now);
        let outcome = if ps.rounds_answered > 0 && ps.failures == 0 {
            self.last_sync = Some((now, took));
            if let Some(state) = self.peers.get_mut(&peer) {
                *state = PeerState::Reconciled;
            }
            Outcome::Reconciled
        } else if ps.rounds_answered > 0 {
            // Not caught up with this peer: tried again at the next interval.
            self.totals.failed_attempts += 1;
            Outcome::Partial
        } else {
            self.totals.failed_attempts += 1;
            Outcome::Failed
        };
        out.push(Action::Finished { peer, outcome });
        self.next(now, out);
    }

    /// Starts the sync of the next peer waiting for its turn.
    fn next(&mut self, now: Instant, out: &mut Vec<Action>) {
        while self.running.len() < PEER_SYNCS_AT_ONCE {
            let Some(p) = self.queue.pop_front() else {
                return;
            };
            if self.peers.contains_key(&p) {
                self.start(p, now, out);
            }
        }
    }

    /// Ends the sync with `peer` before it is done: its turn goes to the next peer. A cut-off
    /// peer is also charged an offense.
    fn end_early(&mut self, peer: PeerId, now: Instant, outcome: Outcome, out: &mut Vec<Action>) {
        if self.drop_sync(peer).is_none() {
            return;
        }
        self.last_synced.insert(peer, now);
        self.totals.failed_attempts += 1;
        if outcome == Outcome::CutOff {
            out.push(Action::Offense(peer));
        }
        out.push(Action::Finished { peer, outcome });
        self.next(now, out);
    }

    fn drop_sync(&mut self, peer: PeerId) -> Option<PeerSync> {
        let ps = self.running.remove(&peer)?;
        for (_, id) in &ps.to_fetch {
            self.wanted.remove(id);
        }
        // Replies still on their way find no sync and are dropped; their ids are released
        // when they arrive (fetches) or now (nothing else holds ids).
        Some(ps)
    }

    fn peer_gone(&mut self, peer: PeerId, now: Instant, out: &mut Vec<Action>) {
        self.peers.remove(&peer);
        for (peers, _) in self.compared.values_mut() {
            peers.remove(&peer);
        }
        self.queue.retain(|p| *p != peer);
        self.last_synced.remove(&peer);
        if self.drop_sync(peer).is_some() {
            self.next(now, out);
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        let slow: Vec<PeerId> = self
            .running
            .iter()
            .filter(|(_, ps)| {
                let late = |t: Option<Instant>, limit| {
                    t.is_some_and(|t| now.saturating_duration_since(t) > limit)
                };
                late(ps.started, PEER_SYNC_DEADLINE)
                    || (ps.pages_storing == 0 && late(ps.last_heard, PEER_SYNC_IDLE))
            })
            .map(|(p, _)| *p)
            .collect();
        for p in slow {
            tracing::info!(peer = %p, "sync abandoned: too slow");
            self.drop_sync(p);
            self.last_synced.insert(p, now);
            out.push(Action::Finished {
                peer: p,
                outcome: Outcome::Abandoned,
            });
        }
        // Reconcile again, now and then, with every peer not waiting or running (a failed
        // attempt is tried again as well: the peer may have been busy).
        let due: Vec<PeerId> = self
            .peers
            .keys()
            .filter(|p| {
                !self.running.contains_key(*p)
                    && !self.queue.contains(*p)
                    && self
                        .last_synced
                        .get(*p)
                        .is_none_or(|t| now.saturating_duration_since(*t) >= SYNC_INTERVAL)
            })
            .copied()
            .take(RESYNCS_PER_TICK)
            .collect();
        for p in due {
            self.start(p, now, out);
        }
        self.next(now, out);
    }
}

#[cfg(test)]
mod tests;
