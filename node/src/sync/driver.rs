//! The catch-up task: feeds the [`Scheduler`] its inputs (peers from the swarm task, replies,
//! stored pages, a tick) and carries out its actions: shard items from the store, requests
//! through the [`Client`], pages through `ingest` (verified on blocking threads).
//!
//! At start it first tries a bulk copy from one peer ([`super::bootstrap`]): while that
//! runs, peers coming and going are held back from the scheduler (so that reconciliation
//! does not fetch the same objects by id), the status says catching up, and when it is over
//! every peer is reconciled as usual.
//!
//! It owns no decision (the scheduler decides) and publishes the scheduler's [`SyncInfo`] on
//! a watch channel for the API, and its changes as [`NodeEvent::SyncProgress`] (bounded by
//! [`SYNC_PROGRESS_EVERY`]). It runs apart from the swarm task.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jangteo_protocol::ObjectId;
use serde_bytes::ByteBuf;
use tokio::sync::{broadcast, mpsc, watch};

use libp2p::PeerId;

use super::bootstrap::{BULK_ATTEMPTS_MAX, BulkInfo, BulkState, bootstrap};
use super::scheduler::{Action, Input, Outcome, Scheduler};
use super::{Shard, ShardItems, SyncInfo, SyncStatus};
use crate::NodeEvent;
use crate::clock::now_ms;
use crate::ingest::{Verdict, ingest_batch, judge};
use crate::net::{Client, SyncPeerEvent, SyncPeers, SyncRequest, SyncResponse};

/// How often the scheduler is ticked (re-syncs, deadlines).
pub const SYNC_TICK: Duration = Duration::from_secs(5);
/// Replies and stored pages waiting for the scheduler (the scheduler keeps far fewer
/// requests in flight).
pub const COMPLETIONS_QUEUE: usize = 256;
/// Least time between two [`NodeEvent::SyncProgress`] while the one-word status stays the
/// same (a change of status is announced at once). A change held back is announced at the
/// next input or tick ([`SYNC_TICK`]).
pub const SYNC_PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What [`NodeEvent::SyncProgress`] carries: status, in progress, to fetch, reconciled.
type Progress = (SyncStatus, usize, usize, usize);

/// Decides when a change of catch-up progress is announced: only a change, and while the
/// status stays the same at most one per [`SYNC_PROGRESS_EVERY`].
#[derive(Debug, Default)]
struct ProgressGate {
    last: Progress,
    at: Option<Instant>,
}

impl ProgressGate {
    /// Whether `p` is announced now (and then remembered as the last announced).
    fn admit(&mut self, now: Instant, p: Progress) -> bool {
        if p == self.last {
            return false;
        }
        let recent = self
            .at
            .is_some_and(|at| now.saturating_duration_since(at) < SYNC_PROGRESS_EVERY);
        if p.0 == self.last.0 && recent {
            return false;
        }
        self.last = p;
        self.at = Some(now);
        true
    }
}

/// The bulk copies of this run: who was tried, the peer events held back while one runs,
/// and what the copies moved.
#[derive(Debug, Default)]
struct Boot {
    /// Peers a copy was tried from (at most [`BULK_ATTEMPTS_MAX`]).
    tried: HashSet<PeerId>,
    /// No more copies: one was taken, or [`BULK_ATTEMPTS_MAX`] were tried.
    over: bool,
    /// Peer events held back while a copy runs: the last one of each peer.
    held: Vec<Input>,
    /// The last copy that ended.
    last: Option<BulkInfo>,
    /// Bytes received, object bytes, objects stored and bytes sent by copies that ended.
    moved: (u64, u64, u64, u64),
}

fn input_peer(i: &Input) -> Option<PeerId> {
    match i {
        Input::PeerReady(p) | Input::PeerGone(p) => Some(*p),
        _ => None,
    }
}

impl Boot {
    /// Holds `inputs` back, keeping the last event of each peer; a peer that went away
    /// while held is forgotten (the scheduler never heard of it).
    fn hold(&mut self, inputs: Vec<Input>) {
        for input in inputs {
            let Some(p) = input_peer(&input) else {
                continue;
            };
            self.held.retain(|i| input_peer(i) != Some(p));
            if matches!(input, Input::PeerReady(_)) {
                self.held.push(input);
            }
        }
    }

    /// The peer to try a copy from among `inputs`, if a copy is still to be tried.
    fn candidate(&self, inputs: &[Input]) -> Option<PeerId> {
        if self.over {
            return None;
        }
        inputs.iter().find_map(|i| match i {
            Input::PeerReady(p) if !self.tried.contains(p) => Some(*p),
            _ => None,
        })
    }

    /// A copy ended: the inputs held back, for the scheduler.
    fn ended(&mut self, info: BulkInfo) -> Vec<Input> {
        self.moved.0 += info.bytes_received;
        self.moved.1 += info.object_bytes_received;
        self.moved.2 += info.stored;
        self.moved.3 += info.bytes_sent;
        if info.state == BulkState::Done || self.tried.len() >= BULK_ATTEMPTS_MAX {
            self.over = true;
        }
        self.last = Some(info);
        std::mem::take(&mut self.held)
    }

    /// Adds the copies to what the scheduler reports; while one runs (`running`), catch-up
    /// is under way whatever the scheduler says.
    fn amend(&self, info: &mut SyncInfo, running: Option<&BulkInfo>) {
        let now = running.map_or((0, 0, 0, 0), |r| {
            (
                r.bytes_received,
                r.object_bytes_received,
                r.stored,
                r.bytes_sent,
            )
        });
        info.bytes_received += self.moved.0 + now.0;
        info.object_bytes_received += self.moved.1 + now.1;
        info.objects_fetched += self.moved.2 + now.2;
        info.bytes_sent += self.moved.3 + now.3;
        if let Some(r) = running {
            info.status = SyncStatus::CatchingUp;
            info.in_progress += 1;
            info.to_fetch += r.advertised.saturating_sub(r.received) as usize;
            info.bulk = Some(r.clone());
        } else {
            info.bulk = self.last.clone();
        }
    }
}

/// The catch-up task.
#[derive(Debug)]
pub struct SyncDriver {
    scheduler: Scheduler,
    shards: Vec<Shard>,
    boot: Boot,
    items: Arc<ShardItems>,
    network: Client,
    events: broadcast::Sender<NodeEvent>,
    info: watch::Sender<SyncInfo>,
    progress: ProgressGate,
}

impl SyncDriver {
    /// A driver reconciling `shards`.
    pub fn new(
        shards: Vec<Shard>,
        items: Arc<ShardItems>,
        network: Client,
        events: broadcast::Sender<NodeEvent>,
        info: watch::Sender<SyncInfo>,
    ) -> Self {
        Self {
            scheduler: Scheduler::new(shards.clone()),
            shards,
            boot: Boot::default(),
            items,
            network,
            events,
            info,
            progress: ProgressGate::default(),
        }
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, peers: Arc<SyncPeers>, mut shutdown: watch::Receiver<bool>) {
        let (done_tx, mut done) = mpsc::channel(COMPLETIONS_QUEUE);
        let mut tick = tokio::time::interval(SYNC_TICK);
        let mut categories_at: Option<Instant> = None;
        let mut copy: Option<tokio::task::JoinHandle<BulkInfo>> = None;
        let (progress_tx, mut progress) = watch::channel(BulkInfo::default());
        loop {
            let running = copy.is_some();
            let inputs = tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(input) = done.recv() => vec![input],
                ended = async {
                    match copy.as_mut() {
                        Some(h) => h.await,
                        None => std::future::pending().await,
                    }
                }, if running => {
                    copy = None;
                    let info = ended.unwrap_or_else(|e| BulkInfo {
                        state: BulkState::Failed,
                        reason: Some(format!("internal: {e}")),
                        ..progress.borrow().clone()
                    });
                    self.boot.ended(info)
                }
                Ok(()) = progress.changed(), if running => Vec::new(),
                _ = peers.posted() => {
                    let inputs = peer_inputs(peers.take());
                    if running {
                        self.boot.hold(inputs);
                        Vec::new()
                    } else if let Some(peer) = self.boot.candidate(&inputs) {
                        self.boot.tried.insert(peer);
                        self.boot.hold(inputs);
                        copy = Some(tokio::spawn(bootstrap(
                            peer,
                            self.shards.clone(),
                            self.items.clone(),
                            self.network.clone(),
                            self.events.clone(),
                            progress_tx.clone(),
                        )));
                        Vec::new()
                    } else {
                        inputs
                    }
                }
                _ = tick.tick() => vec![Input::Tick],
            };
            let mut work = VecDeque::from(inputs);
            while let Some(input) = work.pop_front() {
                for action in self.scheduler.handle(Instant::now(), input) {
                    self.carry_out(action, &done_tx, &mut work).await;
                }
            }
            let now = Instant::now();
            let mut info = self.scheduler.info(now);
            let bulk = copy.is_some().then(|| progress.borrow().clone());
            self.boot.amend(&mut info, bulk.as_ref());
            if categories_at
                .is_none_or(|at| now.saturating_duration_since(at) >= super::SHARDS_REFRESH)
                || info.status != self.info.borrow().status
            {
                categories_at = Some(now);
                info.categories = self.scheduler.categories(now);
            } else {
                info.categories = self.info.borrow().categories.clone();
            }
            let p = (
                info.status,
                info.in_progress,
                info.to_fetch,
                info.peers_reconciled,
            );
            if self.progress.admit(now, p) {
                let _ = self.events.send(NodeEvent::SyncProgress {
                    status: p.0,
                    in_progress: p.1,
                    to_fetch: p.2,
                    peers_reconciled: p.3,
                });
            }
            self.info.send_replace(info);
        }
        if let Some(h) = copy {
            h.abort();
        }
    }

    async fn carry_out(
        &self,
        action: Action,
        done: &mpsc::Sender<Input>,
        work: &mut VecDeque<Input>,
    ) {
        match action {
            Action::LoadItems { peer, shard } => {
                let items = self.items.clone();
                let s = shard.clone();
                let items = tokio::task::spawn_blocking(move || items.get(&s))
                    .await
                    .unwrap_or_else(|e| Err(format!("internal: {e}")));
                work.push_back(Input::Items { peer, shard, items });
            }
            Action::Send {
                token,
                peer,
                request,
            } => {
                let request = match request {
                    SyncRequest::Fetch { ids } => {
                        let asked = ids.len();
                        let ids = self.not_held(ids).await;
                        let held = asked - ids.len();
                        if held > 0 {
                            work.push_back(Input::Held { token, held });
                        }
                        if ids.is_empty() {
                            let reply = Ok(SyncResponse::Objects {
                                objects: Vec::new(),
                                next: None,
                            });
                            work.push_back(Input::Reply { token, reply });
                            return;
                        }
                        SyncRequest::Fetch { ids }
                    }
                    other => other,
                };
                let (network, done) = (self.network.clone(), done.clone());
                tokio::spawn(async move {
                    let reply = match network.sync(peer, request).await {
                        Ok(r) => r,
                        Err(e) => Err(e.to_string()),
                    };
                    let _ = done.send(Input::Reply { token, reply }).await;
                });
            }
            Action::Store {
                token,
                peer,
                kind,
                objects,
            } => {
                let (store, events) = (self.items.store().clone(), self.events.clone());
                let (network, done) = (self.network.clone(), done.clone());
                tokio::spawn(async move {
                    let verdicts = tokio::task::spawn_blocking(move || {
                        match ingest_batch(&store, &objects, Some(kind), now_ms(), false) {
                            Ok(outcomes) => outcomes
                                .into_iter()
                                .map(|o| judge(Ok(o), Some(peer), &events))
                                .collect(),
                            Err(e) => {
                                tracing::error!(error = %e, "store write failed");
                                Vec::new()
                            }
                        }
                    })
                    .await
                    .unwrap_or_default();
                    let stored = verdicts.iter().filter(|v| **v == Verdict::Accept).count();
                    // Only refusals every node agrees on; an object this node refuses by its
                    // own clock or state is no offense of the peer.
                    let invalid = verdicts.iter().filter(|v| v.is_offense()).count();
                    for _ in 0..invalid {
                        let _ = network.offense(peer).await;
                    }
                    let _ = done.send(Input::Stored { token, stored }).await;
                });
            }
            Action::Offense(peer) => {
                let _ = self.network.offense(peer).await;
            }
            Action::Finished { peer, outcome } => {
                tracing::debug!(peer = %peer, outcome = ?outcome, "sync with a peer ended");
                if outcome == Outcome::Reconciled {
                    let _ = self.events.send(NodeEvent::Synced {
                        peer: peer.to_string(),
                    });
                }
            }
        }
    }

    /// The ids not held here (what arrived meanwhile by gossip or from another peer is not
    /// fetched again).
    async fn not_held(&self, ids: Vec<ByteBuf>) -> Vec<ByteBuf> {
        let store = self.items.store().clone();
        tokio::task::spawn_blocking(move || {
            ids.into_iter()
                .filter(|id| {
                    let Ok(id32) = <[u8; 32]>::try_from(id.as_slice()) else {
                        return false;
                    };
                    !matches!(store.object(&ObjectId(id32)), Ok(Some(_)))
                })
                .collect()
        })
        .await
        .unwrap_or_default()
    }
}

/// The scheduler's inputs for peers coming and going.
fn peer_inputs(events: Vec<SyncPeerEvent>) -> Vec<Input> {
    events
        .into_iter()
        .map(|ev| match ev {
            SyncPeerEvent::Ready(p) => Input::PeerReady(p),
            SyncPeerEvent::Gone(p) => Input::PeerGone(p),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_announced_on_change_at_most_once_a_second_but_a_new_status_at_once() {
        let mut gate = ProgressGate::default();
        let t0 = Instant::now();
        let idle = (SyncStatus::NotReconciled, 0, 0, 0);
        assert!(!gate.admit(t0, idle), "nothing changed since start");
        let busy = |n| (SyncStatus::CatchingUp, 1, n, 0);
        assert!(gate.admit(t0, busy(100)), "a new status: at once");
        assert!(!gate.admit(t0 + Duration::from_millis(10), busy(90)));
        assert!(!gate.admit(t0 + Duration::from_millis(500), busy(50)));
        assert!(
            !gate.admit(t0 + Duration::from_secs(1), busy(100)),
            "unchanged"
        );
        assert!(gate.admit(t0 + Duration::from_secs(1), busy(40)));
        let done = (SyncStatus::CaughtUp, 0, 0, 1);
        assert!(
            gate.admit(t0 + Duration::from_millis(1001), done),
            "caught up: at once"
        );
        assert!(!gate.admit(t0 + Duration::from_secs(9), done));
    }
}
