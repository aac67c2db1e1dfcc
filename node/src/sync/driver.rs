//! The catch-up task: feeds the [`Scheduler`] its inputs (peers from the swarm task, replies,
//! stored pages, a tick) and carries out its actions: shard items from the store, requests
//! through the [`Client`], pages through `ingest` (verified on blocking threads).
//!
//! It owns no decision (the scheduler decides) and publishes the scheduler's [`SyncInfo`] on
//! a watch channel for the API. It runs apart from the swarm task.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jangteo_protocol::ObjectId;
use serde_bytes::ByteBuf;
use tokio::sync::{broadcast, mpsc, watch};

use super::scheduler::{Action, Input, Outcome, Scheduler};
use super::{Shard, ShardItems, SyncInfo};
use crate::NodeEvent;
use crate::clock::now_ms;
use crate::ingest::{Verdict, ingest_batch, judge};
use crate::net::{Client, SyncPeerEvent, SyncPeers, SyncRequest, SyncResponse};

/// How often the scheduler is ticked (re-syncs, deadlines).
pub const SYNC_TICK: Duration = Duration::from_secs(5);
/// Replies and stored pages waiting for the scheduler (the scheduler keeps far fewer
/// requests in flight).
pub const COMPLETIONS_QUEUE: usize = 256;

/// The catch-up task.
#[derive(Debug)]
pub struct SyncDriver {
    scheduler: Scheduler,
    items: Arc<ShardItems>,
    network: Client,
    events: broadcast::Sender<NodeEvent>,
    info: watch::Sender<SyncInfo>,
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
        }
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, peers: Arc<SyncPeers>, mut shutdown: watch::Receiver<bool>) {
        let (done_tx, mut done) = mpsc::channel(COMPLETIONS_QUEUE);
        let mut tick = tokio::time::interval(SYNC_TICK);
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
            self.info.send_replace(self.scheduler.info(Instant::now()));
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
                        let ids = self.not_held(ids).await;
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
