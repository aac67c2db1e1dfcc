//! The catch-up task: feeds the [`Scheduler`] its inputs (peers from the swarm task, replies,
//! stored pages, a tick) and carries out its actions: shard items from the store, requests
//! through the [`Client`], pages through `ingest` (verified on blocking threads).
//!
//! It owns no decision (the scheduler decides) and publishes the scheduler's [`SyncInfo`] on
//! a watch channel for the API, and its changes as [`NodeEvent::SyncProgress`] (bounded by
//! [`SYNC_PROGRESS_EVERY`]). It runs apart from the swarm task.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jangteo_protocol::ObjectId;
use serde_bytes::ByteBuf;
use tokio::sync::{broadcast, mpsc, watch};

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

/// The catch-up task.
#[derive(Debug)]
pub struct SyncDriver {
    scheduler: Scheduler,
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
            scheduler: Scheduler::new(shards),
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
        loop {
            let inputs = tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(input) = done.recv() => vec![input],
                _ = peers.posted() => peer_inputs(peers.take()),
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
