//! The scheduler driven by a simulated network: a remote peer's items answer reconciliation
//! rounds through the real `reconcile::respond`, fetches return the objects asked for.

use std::collections::{HashMap, VecDeque};

use super::*;
use crate::sync::reconcile;

/// A remote peer: objects (arbitrary bytes on the attestations shard, where only the id is
/// checked) by id, and how it answers.
struct Remote {
    objects: HashMap<[u8; 32], Vec<u8>>,
    items: Vec<Item>,
    /// Answer every request with this failure instead.
    fail: Option<String>,
}

impl Remote {
    fn with(n: usize, seed: u8) -> Remote {
        let mut objects = HashMap::new();
        let mut items = Vec::new();
        for i in 0..n {
            let bytes = vec![seed, (i >> 8) as u8, i as u8, 7];
            let id = *blake3::hash(&bytes).as_bytes();
            items.push((1_000 + i as u64, id));
            objects.insert(id, bytes);
        }
        items.sort_unstable();
        Remote {
            objects,
            items,
            fail: None,
        }
    }

    fn failing(why: &str) -> Remote {
        Remote {
            objects: HashMap::new(),
            items: Vec::new(),
            fail: Some(why.into()),
        }
    }

    fn answer(&self, request: &SyncRequest) -> Result<SyncResponse, String> {
        if let Some(f) = &self.fail {
            return Err(f.clone());
        }
        Ok(match request {
            SyncRequest::Reconcile { msg, .. } => SyncResponse::Reconciled {
                msg: ByteBuf::from(reconcile::respond(&self.items, msg).expect("respond")),
            },
            SyncRequest::Fetch { ids } => SyncResponse::Objects {
                objects: ids
                    .iter()
                    .filter_map(|i| {
                        let id: [u8; 32] = i.as_slice().try_into().ok()?;
                        self.objects.get(&id).map(|b| ByteBuf::from(b.clone()))
                    })
                    .collect(),
                next: None,
            },
        })
    }
}

/// Runs `first` and everything it leads to; returns the actions that ended syncs and the
/// objects stored.
struct Sim {
    s: Scheduler,
    remotes: HashMap<PeerId, Remote>,
    local: Vec<Item>,
    stored: Vec<Vec<u8>>,
    finished: Vec<(PeerId, Outcome)>,
    /// Requests held back (not answered) per peer, when a test wants to look mid-sync.
    hold: bool,
    held: Vec<Input>,
    /// Offenses charged; an offense panics unless a test expects them.
    expect_offenses: bool,
    offenses: Vec<PeerId>,
    /// Ids asked for in fetches.
    fetched_ids: usize,
}

impl Sim {
    fn new(local: Vec<Item>) -> Sim {
        Sim::with_shards(local, vec![Shard::Attestations])
    }

    fn with_shards(local: Vec<Item>, shards: Vec<Shard>) -> Sim {
        Sim {
            s: Scheduler::new(shards),
            remotes: HashMap::new(),
            local,
            stored: Vec::new(),
            finished: Vec::new(),
            hold: false,
            held: Vec::new(),
            expect_offenses: false,
            offenses: Vec::new(),
            fetched_ids: 0,
        }
    }

    fn run(&mut self, now: Instant, first: Input) {
        let mut work = VecDeque::from([first]);
        while let Some(input) = work.pop_front() {
            for action in self.s.handle(now, input) {
                match action {
                    Action::LoadItems { peer, shard } => work.push_back(Input::Items {
                        peer,
                        shard,
                        items: Ok(Arc::new(self.local.clone())),
                    }),
                    Action::Send {
                        token,
                        peer,
                        request,
                    } => {
                        if let SyncRequest::Fetch { ids } = &request {
                            self.fetched_ids += ids.len();
                        }
                        let reply = self.remotes[&peer].answer(&request);
                        let input = Input::Reply { token, reply };
                        if self.hold {
                            self.held.push(input);
                        } else {
                            work.push_back(input);
                        }
                    }
                    Action::Store { token, objects, .. } => {
                        let n = objects.len();
                        self.stored
                            .extend(objects.into_iter().map(|o| o.into_vec()));
                        work.push_back(Input::Stored { token, stored: n });
                    }
                    Action::Offense(p) if self.expect_offenses => self.offenses.push(p),
                    Action::Offense(p) => panic!("offense against {p}"),
                    Action::Finished { peer, outcome } => self.finished.push((peer, outcome)),
                }
            }
        }
    }

    /// Answers what is held, at `now`, holding what that leads to.
    fn step(&mut self, now: Instant) {
        for input in std::mem::take(&mut self.held) {
            self.run(now, input);
        }
    }

    fn release(&mut self, now: Instant) {
        self.hold = false;
        for input in std::mem::take(&mut self.held) {
            self.run(now, input);
        }
    }
}

#[test]
fn a_peer_that_answers_is_reconciled_and_what_we_miss_is_fetched() {
    let remote = Remote::with(300, 1);
    // We hold the first 100 of its 300.
    let mut sim = Sim::new(remote.items[..100].to_vec());
    let peer = PeerId::random();
    sim.remotes.insert(peer, remote);
    let t0 = Instant::now();
    sim.run(t0, Input::PeerReady(peer));
    assert_eq!(sim.finished, vec![(peer, Outcome::Reconciled)]);
    assert_eq!(sim.stored.len(), 200, "exactly the missing ones");
    let info = sim.s.info(t0);
    assert_eq!(info.peers_reconciled, 1);
    assert_eq!(info.status, SyncStatus::CaughtUp);
    assert_eq!((info.in_progress, info.to_fetch), (0, 0));
    assert_eq!(info.objects_fetched, 200);
    assert!(info.last_sync_ms_ago.is_some());
    assert_eq!(info.failed_attempts, 0);
}

#[test]
fn a_peer_that_does_not_speak_sync_is_not_counted_as_reconciled() {
    let mut sim = Sim::new(Vec::new());
    let peer = PeerId::random();
    sim.remotes
        .insert(peer, Remote::failing("unsupported protocols"));
    let t0 = Instant::now();
    sim.run(t0, Input::PeerReady(peer));
    assert_eq!(sim.finished, vec![(peer, Outcome::Failed)]);
    let info = sim.s.info(t0);
    assert_eq!(info.peers_reconciled, 0);
    assert_eq!(info.status, SyncStatus::NotReconciled);
    assert_eq!(info.last_sync_ms_ago, None, "nothing was compared");
    assert_eq!(info.failed_attempts, 1);
}

#[test]
fn a_refusal_is_a_failure_too() {
    let mut sim = Sim::new(Vec::new());
    let peer = PeerId::random();
    sim.remotes.insert(peer, Remote::with(0, 0));
    sim.hold = true;
    let t0 = Instant::now();
    sim.run(t0, Input::PeerReady(peer));
    // Answer the round with a refusal instead.
    let tokens: Vec<Token> = sim
        .held
        .drain(..)
        .map(|i| match i {
            Input::Reply { token, .. } => token,
            other => panic!("{other:?}"),
        })
        .collect();
    sim.hold = false;
    for token in tokens {
        sim.run(
            t0,
            Input::Reply {
                token,
                reply: Ok(SyncResponse::Refused("rate limit".into())),
            },
        );
    }
    assert_eq!(sim.finished, vec![(peer, Outcome::Failed)]);
    assert_eq!(sim.s.info(t0).peers_reconciled, 0);
}

#[test]
fn peers_take_turns_and_the_next_starts_when_one_ends() {
    let mut sim = Sim::new(Vec::new());
    let (a, b) = (PeerId::random(), PeerId::random());
    sim.remotes.insert(a, Remote::with(10, 1));
    sim.remotes.insert(b, Remote::with(10, 2));
    sim.hold = true;
    let t0 = Instant::now();
    sim.run(t0, Input::PeerReady(a));
    sim.run(t0, Input::PeerReady(b));
    let info = sim.s.info(t0);
    assert_eq!(info.in_progress, 2, "one running, one waiting");
    assert_eq!(info.status, SyncStatus::CatchingUp);
    assert!(sim.finished.is_empty());
    // Answering a's requests ends a's sync and starts b's (answered at once from here on).
    sim.release(t0);
    sim.release(t0);
    assert_eq!(
        sim.finished,
        vec![(a, Outcome::Reconciled), (b, Outcome::Reconciled)]
    );
    assert_eq!(sim.stored.len(), 20);
    assert_eq!(sim.s.info(t0).peers_reconciled, 2);
}

#[test]
fn a_peer_leaving_mid_sync_frees_its_turn_and_its_late_replies_are_dropped() {
    let mut sim = Sim::new(Vec::new());
    let (a, b) = (PeerId::random(), PeerId::random());
    sim.remotes.insert(a, Remote::with(10, 1));
    sim.remotes.insert(b, Remote::with(10, 2));
    sim.hold = true;
    let t0 = Instant::now();
    sim.run(t0, Input::PeerReady(a));
    sim.run(t0, Input::PeerReady(b));
    let late = std::mem::take(&mut sim.held);
    sim.run(t0, Input::PeerGone(a));
    // b started: its rounds are held now.
    assert!(!sim.held.is_empty());
    sim.hold = false;
    for input in late {
        sim.run(t0, input);
    }
    assert!(sim.finished.iter().all(|(p, _)| *p != a));
    sim.release(t0);
    assert_eq!(sim.finished, vec![(b, Outcome::Reconciled)]);
    assert_eq!(sim.s.info(t0).peers_reconciled, 1);
}

#[test]
fn a_slow_sync_is_abandoned_at_its_deadline() {
    // The peer answers every request, each 15 s late (under the idle timeout): a big sync
    // still ends at the deadline.
    let mut sim = Sim::new(Vec::new());
    let a = PeerId::random();
    sim.remotes.insert(a, Remote::with(20_000, 1));
    sim.hold = true;
    let t0 = Instant::now();
    sim.run(t0, Input::PeerReady(a));
    let mut t = t0;
    while sim.finished.is_empty() {
        t += Duration::from_secs(15);
        assert!(t < t0 + PEER_SYNC_DEADLINE * 2, "never abandoned");
        sim.step(t);
        sim.run(t, Input::Tick);
    }
    assert_eq!(sim.finished, vec![(a, Outcome::Abandoned)]);
    assert!(t > t0 + PEER_SYNC_DEADLINE);
    assert!(t <= t0 + PEER_SYNC_DEADLINE + Duration::from_secs(15));
    assert_eq!(sim.s.info(t).in_progress, 0);
}

#[test]
fn a_silent_peer_frees_the_slot_after_the_idle_timeout() {
    let mut sim = Sim::new(Vec::new());
    let (a, b) = (PeerId::random(), PeerId::random());
    sim.remotes.insert(a, Remote::with(10, 1));
    sim.remotes.insert(b, Remote::with(10, 2));
    sim.hold = true;
    let t0 = Instant::now();
    sim.run(t0, Input::PeerReady(a));
    sim.run(t0, Input::PeerReady(b));
    sim.run(t0 + PEER_SYNC_IDLE - Duration::from_secs(1), Input::Tick);
    assert!(sim.finished.is_empty(), "still within the idle timeout");
    // a never answers; its held requests are dropped (lost on the wire).
    sim.held.clear();
    let later = t0 + PEER_SYNC_IDLE + Duration::from_secs(1);
    sim.run(later, Input::Tick);
    assert_eq!(sim.finished, vec![(a, Outcome::Abandoned)]);
    // b has the slot now, long before the 120 s deadline, and completes.
    sim.release(later);
    assert_eq!(
        sim.finished,
        vec![(a, Outcome::Abandoned), (b, Outcome::Reconciled)]
    );
}

#[test]
fn a_peer_announcing_thousands_of_fake_ids_is_cut_off_and_the_next_peer_syncs() {
    let mut sim = Sim::new(Vec::new());
    sim.expect_offenses = true;
    let (liar, honest) = (PeerId::random(), PeerId::random());
    // The liar announces 20,000 ids and holds none of them.
    let mut fake = Remote::with(20_000, 9);
    fake.objects.clear();
    sim.remotes.insert(liar, fake);
    sim.remotes.insert(honest, Remote::with(300, 3));
    let t0 = Instant::now();
    sim.run(t0, Input::PeerReady(liar));
    sim.run(t0, Input::PeerReady(honest));
    assert_eq!(
        sim.finished,
        vec![(liar, Outcome::CutOff), (honest, Outcome::Reconciled)]
    );
    assert_eq!(sim.offenses, vec![liar], "penalized once");
    // We asked the liar for little more than the cap before cutting it off: the page that
    // crossed it and two fetches in flight.
    let asked_liar = (sim.fetched_ids - 300) as u64;
    assert!(
        asked_liar <= UNDELIVERED_IDS_MAX + 3 * FETCH_IDS_MAX as u64,
        "asked the liar for {asked_liar} ids"
    );
    assert_eq!(
        sim.stored.len(),
        300,
        "the honest peer's objects all arrived"
    );
    let info = sim.s.info(t0);
    assert_eq!((info.in_progress, info.to_fetch), (0, 0));
    assert!(sim.s.wanted.is_empty(), "no id is left reserved");
}

#[test]
fn ids_held_here_are_not_counted_against_the_peer() {
    let mut sim = Sim::new(Vec::new());
    let a = PeerId::random();
    sim.remotes.insert(a, Remote::with(5_000, 4));
    sim.hold = true;
    let t0 = Instant::now();
    sim.run(t0, Input::PeerReady(a));
    // Every fetch finds its ids held already (they came by gossip meanwhile): the driver
    // says so and answers an empty page itself.
    for _ in 0..1_000 {
        if !sim.finished.is_empty() {
            break;
        }
        for input in std::mem::take(&mut sim.held) {
            let input = match input {
                Input::Reply {
                    token,
                    reply: Ok(SyncResponse::Objects { .. }),
                } => {
                    let held = match &sim.s.pending.get(&token) {
                        Some((_, Pending::Fetch(_, _, ids))) => ids.len(),
                        _ => 0,
                    };
                    sim.run(t0, Input::Held { token, held });
                    Input::Reply {
                        token,
                        reply: Ok(SyncResponse::Objects {
                            objects: Vec::new(),
                            next: None,
                        }),
                    }
                }
                other => other,
            };
            sim.run(t0, input);
        }
    }
    assert_eq!(sim.finished, vec![(a, Outcome::Reconciled)]);
}

#[test]
fn peers_are_reconciled_again_after_the_interval() {
    let mut sim = Sim::new(Vec::new());
    let a = PeerId::random();
    sim.remotes.insert(a, Remote::with(5, 1));
    let t0 = Instant::now();
    sim.run(t0, Input::PeerReady(a));
    assert_eq!(sim.finished.len(), 1);
    sim.run(t0 + SYNC_INTERVAL / 2, Input::Tick);
    assert_eq!(sim.finished.len(), 1, "not due yet");
    sim.run(t0 + SYNC_INTERVAL, Input::Tick);
    assert_eq!(sim.finished.len(), 2, "reconciled again");
    // A peer announced twice is reconciled once.
    sim.run(t0 + SYNC_INTERVAL, Input::PeerReady(a));
    assert_eq!(sim.finished.len(), 2);
}

/// The tokens of the held replies, in order, and stops holding.
fn held_tokens(sim: &mut Sim) -> Vec<Token> {
    sim.hold = false;
    sim.held
        .drain(..)
        .map(|i| match i {
            Input::Reply { token, .. } => token,
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn a_peer_that_answers_one_shard_and_refuses_another_is_not_reconciled() {
    let mut sim = Sim::with_shards(
        Vec::new(),
        vec![Shard::Attestations, Shard::Listings("general")],
    );
    let peer = PeerId::random();
    sim.remotes.insert(peer, Remote::with(10, 1));
    sim.hold = true;
    let t0 = Instant::now();
    sim.run(t0, Input::PeerReady(peer));
    assert_eq!(sim.held.len(), 2, "one round per shard");
    let mut held = std::mem::take(&mut sim.held);
    sim.hold = false;
    // The attestations round is answered (and its objects fetched); the listings round is
    // refused.
    let refused = match held.pop() {
        Some(Input::Reply { token, .. }) => token,
        other => panic!("{other:?}"),
    };
    for input in held {
        sim.run(t0, input);
    }
    assert_eq!(sim.stored.len(), 10);
    sim.run(
        t0,
        Input::Reply {
            token: refused,
            reply: Ok(SyncResponse::Refused("rate limit".into())),
        },
    );
    assert_eq!(sim.finished, vec![(peer, Outcome::Partial)]);
    let info = sim.s.info(t0);
    assert_eq!(info.peers_reconciled, 0);
    assert_ne!(info.status, SyncStatus::CaughtUp);
    assert_eq!(info.failed_attempts, 1);
    // Tried again at the next interval, and reconciled once every shard answers.
    sim.run(t0 + SYNC_INTERVAL, Input::Tick);
    assert_eq!(sim.finished.last(), Some(&(peer, Outcome::Reconciled)));
    assert_eq!(sim.s.info(t0 + SYNC_INTERVAL).status, SyncStatus::CaughtUp);
}

#[test]
fn a_peer_whose_fetches_fail_is_not_reconciled() {
    let mut sim = Sim::new(Vec::new());
    let peer = PeerId::random();
    sim.remotes.insert(peer, Remote::with(10, 1));
    sim.hold = true;
    let t0 = Instant::now();
    sim.run(t0, Input::PeerReady(peer));
    // The round is answered (still holding: the fetches it leads to are held)...
    let round = std::mem::take(&mut sim.held);
    assert_eq!(round.len(), 1);
    for input in round {
        sim.run(t0, input);
    }
    // ...and every fetch times out.
    let fetches = held_tokens(&mut sim);
    assert!(!fetches.is_empty());
    for token in fetches {
        sim.run(
            t0,
            Input::Reply {
                token,
                reply: Err("timeout".into()),
            },
        );
    }
    assert!(sim.stored.is_empty());
    assert_eq!(sim.finished, vec![(peer, Outcome::Partial)]);
    let info = sim.s.info(t0);
    assert_eq!(info.peers_reconciled, 0);
    assert_ne!(info.status, SyncStatus::CaughtUp);
}

#[test]
fn a_late_reply_to_an_earlier_sync_is_not_taken_for_a_newer_one_with_the_same_peer() {
    let mut sim = Sim::new(Vec::new());
    let a = PeerId::random();
    sim.remotes.insert(a, Remote::with(10, 1));
    sim.hold = true;
    let t0 = Instant::now();
    sim.run(t0, Input::PeerReady(a));
    let late = std::mem::take(&mut sim.held);
    assert_eq!(late.len(), 1, "the first sync's round");
    // The peer leaves and comes back: a new sync starts, its round held.
    sim.run(t0, Input::PeerGone(a));
    sim.run(t0, Input::PeerReady(a));
    assert_eq!(sim.held.len(), 1, "the second sync's round");
    // The first sync's reply arrives late: it must not advance the second sync.
    sim.hold = false;
    let mut newer = std::mem::take(&mut sim.held);
    sim.hold = true;
    for input in late {
        sim.run(t0, input);
    }
    assert!(sim.finished.is_empty(), "{:?}", sim.finished);
    assert!(sim.stored.is_empty());
    assert!(sim.held.is_empty(), "nothing fetched for the stale reply");
    assert_eq!(sim.s.info(t0).in_progress, 1);
    // Its own reply completes it.
    sim.hold = false;
    for input in newer.drain(..) {
        sim.run(t0, input);
    }
    assert_eq!(sim.finished, vec![(a, Outcome::Reconciled)]);
    assert_eq!(sim.stored.len(), 10);
}

#[test]
fn each_category_says_whether_it_was_compared_with_a_connected_peer() {
    let mut sim = Sim::with_shards(
        Vec::new(),
        vec![Shard::Listings("general"), Shard::Listings("bikes")],
    );
    let peer = PeerId::random();
    sim.remotes.insert(peer, Remote::with(0, 1));
    let t0 = Instant::now();
    let state = |sim: &Sim| -> Vec<(&'static str, SyncStatus, usize)> {
        sim.s
            .categories(t0)
            .iter()
            .map(|c| (c.category, c.status, c.peers))
            .collect()
    };
    assert_eq!(
        state(&sim),
        vec![
            ("general", SyncStatus::NotReconciled, 0),
            ("bikes", SyncStatus::NotReconciled, 0)
        ]
    );
    sim.hold = true;
    sim.run(t0, Input::PeerReady(peer));
    assert!(
        state(&sim)
            .iter()
            .all(|(_, s, _)| *s == SyncStatus::CatchingUp),
        "both rounds are out: {:?}",
        state(&sim)
    );
    // The general round is answered; the bikes round is refused.
    let held = std::mem::take(&mut sim.held);
    sim.hold = false;
    let token_of = |input: &Input| match input {
        Input::Reply { token, .. } => *token,
        _ => panic!("a reply"),
    };
    let (bikes, general): (Vec<Input>, Vec<Input>) = held.into_iter().partition(|i| {
        matches!(
            sim.s.pending.get(&token_of(i)),
            Some((_, Pending::Round(_, Shard::Listings("bikes"), _)))
        )
    });
    assert_eq!((bikes.len(), general.len()), (1, 1));
    for input in general {
        sim.run(t0, input);
    }
    sim.run(
        t0,
        Input::Reply {
            token: token_of(&bikes[0]),
            reply: Ok(SyncResponse::Refused("rate limit".into())),
        },
    );
    assert_eq!(
        state(&sim),
        vec![
            ("general", SyncStatus::CaughtUp, 1),
            ("bikes", SyncStatus::NotReconciled, 0)
        ]
    );
    // A category is caught up only with connected peers.
    sim.run(t0, Input::PeerGone(peer));
    assert_eq!(state(&sim)[0], ("general", SyncStatus::NotReconciled, 0));
}
