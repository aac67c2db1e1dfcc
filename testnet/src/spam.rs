//! The `spam` scenario (issue 15, part 5): honest node processes posting listings while an
//! attacker with many fresh keys posts, mails and attests as fast as it can.
//!
//! The network: `nodes` real `jangteo node` processes on loopback, node 0 a relay (holding
//! mailboxes, its global mailbox cap set by `mailbox_cap_mib`), the others dialing it; every
//! node runs at the listing stamp difficulty `stamp_bits` (SPEC §3.1; the public network's
//! 24 by default: this scenario is about what the real difficulty does). Honest traffic: one
//! listing posted through a node's API at a time, round-robin over the nodes, each stamped
//! by its node; its propagation is the time from the post's answer to each other node's
//! `listing_stored` event (`GET /v1/events`).
//!
//! The attacker, in this process, with `keys` fresh keys, for `secs` seconds:
//!
//! - **listings**: one thread stamps listings at the network difficulty, each by the next
//!   fresh key (the cheapest way: a fresh key pays only the base), as fast as it can, and a
//!   gossip publisher sends them; a second publisher (another peer id) sends listings whose
//!   stamp is 8 bits short, as fast as they can be signed (invalid: its senders get
//!   banned);
//! - **attestations**: completed trades between pairs of its own keys (offer, accept, paid,
//!   received, all signed by it) and five-star attestations of them: one thread stamps them at
//!   the network's attestation difficulty (SPEC §7.1: `stamp_bits` − 2, the cheapest way to
//!   make valid ones) and the first publisher sends them; another thread signs ones with no
//!   stamp or a stamp 8 bits short, as fast as it can, and a third publisher (another peer
//!   id) sends them (invalid: its senders get banned);
//! - **mail**: `mailers` in-process nodes (fresh peer ids) put 256 KiB sealed items for
//!   random recipients on the relay, as fast as it answers, 4 at a time each, waiting 20 ms
//!   after a refusal and 100 ms after an error (a refused connection, once banned).
//!
//! Every thread of the attacker runs at nice 19: the stampers and signers lower their own
//! priority, and the mailer nodes and their put tasks run on a tokio runtime of their own
//! whose threads do so when they start. Its gossip publishers and the harness (posting,
//! following events, sampling) run at normal priority.
//!
//! Measured: honest propagation p99 quiet (before the attack) and under attack, the share of
//! honest listings every node received, what the attacker sent and what each honest node
//! stored of it (listings and attestations, stamped and cheap, counted by id) against the
//! bound its stamps bought (per-key cap × the keys that paid), the relay's mailbox bytes
//! (sampled each second), each honest process's CPU during the attack, and whether any
//! honest node banned another.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ed25519_dalek::SigningKey;
use futures::StreamExt;
use jangteo_node::net::{MailboxRequest, MailboxResponse};
use jangteo_node::{Node, NodeConfig, ingest::now_ms};
use jangteo_protocol::attestation::Attestation;
use jangteo_protocol::trade::{Role, Terms, TradeMessage};
use jangteo_protocol::{Kind, Listing, ListingId, ListingStatus, PublicKey, SignedObject};
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, noise, tcp, yamux};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tokio::sync::{mpsc, oneshot};

use crate::abuse::cpu_ticks;
use crate::procs::{Api, ProcNet};

/// How long an honest listing may take to reach every node before it counts as not
/// delivered.
pub const DELIVERY_DEADLINE: Duration = Duration::from_secs(30);
/// Size of each sealed item the mailers put.
pub const MAIL_ITEM_BYTES: usize = 256 * 1024;
/// Bits the invalid listings' stamps fall short of the network difficulty.
pub const CHEAP_BY_BITS: u32 = 8;

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Honest node processes (node 0 is the relay).
    pub nodes: usize,
    /// The attacker's fresh keys.
    pub keys: usize,
    /// Length of the attack.
    pub secs: u64,
    /// Length of the quiet measurement before it.
    pub quiet_secs: u64,
    /// The network's listing stamp difficulty (every node's `--listing-stamp-bits`).
    pub stamp_bits: u32,
    /// The relay's global mailbox cap, in MiB.
    pub mailbox_cap_mib: u64,
    /// In-process nodes (peer ids) putting mail on the relay.
    pub mailers: usize,
    /// Least time between two honest posts.
    pub post_every: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            nodes: 20,
            keys: 1000,
            secs: 60,
            quiet_secs: 30,
            stamp_bits: jangteo_protocol::listing::LISTING_STAMP_BITS,
            mailbox_cap_mib: 64,
            mailers: 8,
            post_every: Duration::from_secs(2),
        }
    }
}

/// What [`run`] measured (the keys first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Propagation p99 of honest listings before the attack, in ms.
    pub honest_p99_quiet_ms: f64,
    /// Propagation p99 of honest listings posted during the attack, in ms.
    pub honest_p99_attack_ms: f64,
    /// Share of (honest listing posted during the attack, other node) pairs delivered
    /// within [`DELIVERY_DEADLINE`].
    pub honest_delivered_ratio: f64,
    /// Everything the attacker sent: listings and attestations (stamped and cheap), mail.
    pub spam_sent: u64,
    /// Most spam objects (listings and attestations, stamped and cheap) one honest node
    /// stored.
    pub spam_stored_max: u64,
    /// Most bytes the relay's mailboxes held (sampled each second).
    pub mailbox_bytes_max: u64,
    /// Most CPU one honest process used during the attack, in percent of one core.
    pub cpu_honest_max: f64,
    /// CPU of node 0 (the relay, every node's first peer) during the attack, in percent of
    /// one core.
    pub cpu_relay: f64,
    /// Most CPU one honest process other than the relay used during the attack.
    pub cpu_honest_others_max: f64,
    /// CPU of this process (the attacker and the harness) during the attack.
    pub cpu_testnet: f64,
    /// Honest nodes banned by another honest node.
    pub honest_banned: u64,
    /// Gossip messages (listings and attestations) its publishers got out to a peer (the
    /// rest were refused by gossipsub locally: no peer left, once banned).
    pub spam_gossip_published: u64,
    /// Stamped listings the attacker sent (each by a fresh key: the keys that paid).
    pub spam_listings_stamped: u64,
    /// Listings with a stamp too cheap it sent.
    pub spam_listings_cheap: u64,
    /// Attestations it sent (stamped and cheap).
    pub spam_attestations: u64,
    /// Attestations stamped at the network's attestation difficulty it sent.
    pub spam_attestations_stamped: u64,
    /// Attestations with no stamp or one too cheap it sent.
    pub spam_attestations_cheap: u64,
    /// Authors of the stamped attestations (the keys that paid for attestation stamps).
    pub spam_attestation_authors: u64,
    /// Mail items it put on the relay, and how many the relay stored.
    pub spam_mail_puts: u64,
    /// Mail items the relay stored.
    pub spam_mail_stored: u64,
    /// Mail puts the relay answered (stored or refused); the rest failed to reach it (its
    /// connection refused, once the mailer was banned).
    pub spam_mail_answered: u64,
    /// Mailers the relay banned.
    pub spam_mailers_banned: u64,
    /// Most spam listings one honest node stored.
    pub spam_listings_stored_max: u64,
    /// Most cheap (invalid) spam listings one honest node stored (must be 0).
    pub spam_cheap_stored_max: u64,
    /// Most stamped spam attestations one honest node stored (of more than [`HELD_SAMPLE`]
    /// sent, estimated from an even sample of them).
    pub spam_attestations_stored_max: u64,
    /// Most cheap (invalid) spam attestations one honest node stored (must be 0; of more
    /// than [`HELD_SAMPLE`] sent, estimated from a sample).
    pub spam_attestations_cheap_stored_max: u64,
    /// The bound on spam listings stored: per-key cap × keys that paid for stamps.
    pub spam_listings_bound: u64,
    /// The bound on all spam stored per node: 1 000 listings × the keys that paid for a
    /// listing stamp + 256 attestations × the keys that paid for an attestation stamp
    /// (SPEC §3.1, §7.1).
    pub spam_stored_bound: u64,
    /// The relay's global mailbox cap, in bytes.
    pub mailbox_cap_bytes: u64,
    /// Honest listings posted before / during the attack.
    pub honest_posts_quiet: u64,
    /// Honest listings posted during the attack.
    pub honest_posts_attack: u64,
    /// Mean time an honest node took to stamp a listing (from the post answers), in ms.
    pub honest_stamp_ms_mean: f64,
    /// The attacker's stamping rate, listings per second.
    pub attacker_stamps_per_s: f64,
    /// Honest nodes, keys, attack seconds, stamp difficulty.
    pub nodes: usize,
    /// The attacker's keys.
    pub keys: usize,
    /// Attack length, in s.
    pub secs: u64,
    /// The network's listing stamp difficulty.
    pub stamp_bits: u32,
    /// The network's attestation stamp difficulty (SPEC §7.1).
    pub attestation_stamp_bits: u32,
    /// The attacker's attestation stamping rate, per second.
    pub attacker_attestations_per_s: f64,
    /// What could not be measured.
    pub warnings: Vec<String>,
}

/// A bare gossipsub swarm publishing what arrives on its channel, on the object's topic.
struct Publisher {
    tx: mpsc::Sender<(String, Vec<u8>)>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<u64>,
}

impl Publisher {
    async fn start(targets: &[String]) -> Result<Self> {
        let config = gossipsub::ConfigBuilder::default()
            .validation_mode(ValidationMode::Anonymous)
            .max_transmit_size(jangteo_protocol::limits::MAX_ANY_OBJECT_BYTES + 1024)
            .heartbeat_interval(Duration::from_millis(700))
            .message_id_fn(|m| gossipsub::MessageId::new(&blake3::hash(&m.data).as_bytes()[..20]))
            .build()
            .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?;
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_behaviour(|_| {
                gossipsub::Behaviour::<
                    gossipsub::IdentityTransform,
                    gossipsub::AllowAllSubscriptionFilter,
                >::new(MessageAuthenticity::Anonymous, config)
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })
            })?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
            .build();
        for t in [
            jangteo_node::ingest::listing_topic("general"),
            jangteo_node::ingest::topic_for(Kind::Attestation).to_owned(),
        ] {
            swarm
                .behaviour_mut()
                .subscribe(&IdentTopic::new(t))
                .map_err(|e| anyhow::anyhow!("subscribe: {e}"))?;
        }
        for t in targets {
            let addr: Multiaddr = t.parse().with_context(|| format!("address {t}"))?;
            swarm.dial(addr)?;
        }
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let Some(SwarmEvent::Behaviour(gossipsub::Event::Subscribed { .. })) =
                    swarm.next().await
                {
                    return;
                }
            }
        })
        .await
        .context("the attacker's publisher found no node on the topics")?;
        let (tx, mut rx) = mpsc::channel::<(String, Vec<u8>)>(1024);
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut sent = 0u64;
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = swarm.next() => {}
                    m = rx.recv() => match m {
                        Some((topic, bytes)) => {
                            if swarm.behaviour_mut().publish(IdentTopic::new(topic), bytes).is_ok() {
                                sent += 1;
                            }
                        }
                        None => break,
                    },
                }
            }
            sent
        });
        Ok(Self {
            tx,
            stop: Some(stop),
            task,
        })
    }

    async fn stop(mut self) -> u64 {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        (&mut self.task).await.unwrap_or(0)
    }
}

/// Lowers the calling thread's CPU priority (nice 19), best effort: the attacker's own
/// machine is this one, and what the scenario measures is what its objects cost the honest
/// nodes, not how its hashing competes with them for these cores.
fn lower_priority() {
    let Ok(link) = std::fs::read_link("/proc/thread-self") else {
        return;
    };
    let Some(tid) = link.file_name().and_then(|t| t.to_str()).map(str::to_owned) else {
        return;
    };
    let _ = std::process::Command::new("renice")
        .args(["-n", "19", "-p", &tid])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

fn public(k: &SigningKey) -> PublicKey {
    PublicKey(k.verifying_key().to_bytes())
}

/// A spam listing of `key`, number `i`.
fn spam_listing(i: u64, now: u64) -> Listing {
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&i.to_be_bytes());
    nonce[8..].copy_from_slice(&rand::random::<[u8; 8]>());
    Listing {
        nonce,
        seq: 1,
        created_at: now,
        updated_at: now,
        expires_at: now + 7 * 86_400_000,
        status: ListingStatus::Active,
        title: format!("BEST DEAL cheap watches {i}"),
        description: "click here".into(),
        category: "general".into(),
        condition: None,
        price: 1000,
        currency: "KRW".into(),
        quantity: 1,
        images: vec![],
        location: None,
        moderators: vec![],
        stamp: None,
    }
}

/// How an attacker's attestation is stamped.
#[derive(Debug, Clone, Copy)]
enum AttestationStamp {
    /// The lowest stamp worth `bits` (none when 0).
    Solve(u32),
    /// A stamp worth exactly `bits`, below what the network asks.
    Exactly(u32),
    /// No stamp.
    None,
}

/// A completed trade between two of the attacker's keys and the buyer's five-star rating
/// of the seller: five signatures, and a stamp as `stamp` says (None when `stop` was set
/// while solving it).
fn spam_attestation(
    buyer: &SigningKey,
    seller: &SigningKey,
    i: u64,
    stamp: AttestationStamp,
    stop: Option<&AtomicBool>,
) -> Option<SignedObject> {
    let now = now_ms() - 60_000;
    let terms = Terms {
        listing: ListingId(*blake3::hash(&i.to_be_bytes()).as_bytes()),
        listing_seq: 1,
        price: 1_000_000,
        currency: "KRW".into(),
        quantity: 1,
    };
    let offer = TradeMessage {
        trade: None,
        prev: None,
        at: now,
        seller: Some(public(seller)),
        terms: Some(terms.clone()),
        moderators: vec![],
        note: format!("trade {i}"),
        outcome: None,
    };
    let first = SignedObject::sign(Kind::Offer, offer.encode(), buyer);
    let (trade, mut prev) = (first.id(), first.id());
    let mut chain = vec![first.bytes().to_vec()];
    for (n, kind) in [Kind::Accept, Kind::Paid, Kind::Received]
        .into_iter()
        .enumerate()
    {
        let mut m = TradeMessage::follow(trade, prev, now + 1000 * (n as u64 + 1));
        let by = if kind == Kind::Accept {
            m.terms = Some(terms.clone());
            seller
        } else {
            buyer
        };
        let o = SignedObject::sign(kind, m.encode(), by);
        prev = o.id();
        chain.push(o.bytes().to_vec());
    }
    let mut a = Attestation {
        chain,
        about: public(seller),
        role: Role::Buyer,
        score: 5,
        comment: String::new(),
        at: now_ms(),
        stamp: None,
    };
    match stamp {
        AttestationStamp::Solve(bits) => {
            // In slices, so that the attack's end is not held up by a stamp under way.
            let w = jangteo_protocol::stamp::Worker::new(
                jangteo_protocol::stamp::ATTESTATION_CONTEXT,
                &a.stamp_subject(&public(buyer)),
            );
            let mut start = 0u64;
            while bits > 0 && a.stamp.is_none() {
                if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                    return None;
                }
                a.stamp = w.search(bits, start, 1 << 16);
                start += 1 << 16;
            }
        }
        AttestationStamp::Exactly(bits) => {
            let w = jangteo_protocol::stamp::Worker::new(
                jangteo_protocol::stamp::ATTESTATION_CONTEXT,
                &a.stamp_subject(&public(buyer)),
            );
            a.stamp = (0..1u64 << 32).find(|&n| w.bits(n) == bits);
        }
        AttestationStamp::None => {}
    }
    Some(SignedObject::sign(Kind::Attestation, a.encode(), buyer))
}

/// Per node: when each listing's `listing_stored` event arrived.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// Follows `GET /v1/events?kinds=listing_stored` of `api`; marks `lagged` when the stream
/// fell behind (arrivals may then be missing).
async fn follow_arrivals(api: &Api, arrivals: Arrivals, lagged: Arc<AtomicBool>) -> Result<()> {
    let mut resp = api
        .http()
        .get(format!("{}/v1/events?kinds=listing_stored", api.base()))
        .bearer_auth(api.token())
        .timeout(Duration::from_secs(3600))
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("GET /v1/events: {}", resp.status());
    }
    let (ready_tx, ready_rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        let mut buf = String::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find('\n') {
                let line: String = buf.drain(..=end).collect();
                let Some(data) = line.trim_end().strip_prefix("data:") else {
                    continue;
                };
                let Ok(ev) = serde_json::from_str::<serde_json::Value>(data.trim()) else {
                    continue;
                };
                match ev["kind"].as_str() {
                    Some("subscribed") => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Some("listing_stored") => {
                        if let (Some(l), Ok(mut a)) = (ev["listing"].as_str(), arrivals.lock()) {
                            a.entry(l.to_owned()).or_insert_with(Instant::now);
                        }
                    }
                    Some("lagged") => lagged.store(true, Ordering::Relaxed),
                    _ => {}
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(30), ready_rx)
        .await
        .context("the event stream did not say `subscribed`")?
        .context("the event stream ended")?;
    Ok(())
}

/// One honest post: where, its id, when its answer came, how long its stamp took.
struct Post {
    node: usize,
    id: String,
    at: Instant,
    stamp_ms: Option<u64>,
}

/// Posts honest listings round-robin from `first`, one at a time and at most one per
/// `every`, until `until`.
async fn honest_posts(
    apis: &[Api],
    first: usize,
    every: Duration,
    until: Instant,
    tag: &str,
) -> Result<Vec<Post>> {
    let mut posts = Vec::new();
    let mut i = first;
    while Instant::now() < until {
        let started = Instant::now();
        let node = i % apis.len();
        let new = jangteo_node::api::types::NewListing {
            title: format!("honest {tag} {i}: a used bicycle"),
            price: 50_000 + i as u64,
            currency: "KRW".into(),
            quantity: Some(1),
            ..Default::default()
        };
        let v: jangteo_node::api::types::ListingView =
            apis[node].post("/v1/listings", &new).await?;
        posts.push(Post {
            node,
            id: v.id,
            at: Instant::now(),
            stamp_ms: v.stamp_ms,
        });
        i += 1;
        let next = started + every;
        if next > Instant::now() {
            tokio::time::sleep_until(next.into()).await;
        }
    }
    Ok(posts)
}

/// Latencies (ms) of `posts` to every other node, waiting up to [`DELIVERY_DEADLINE`]
/// after the last; with the share delivered in time.
async fn latencies(posts: &[Post], arrivals: &[Arrivals]) -> (Vec<f64>, f64) {
    let deadline = posts.last().map_or(Instant::now(), |p| p.at) + DELIVERY_DEADLINE;
    let expected = posts.len() * (arrivals.len() - 1);
    loop {
        let seen: usize = posts
            .iter()
            .map(|p| {
                arrivals
                    .iter()
                    .enumerate()
                    .filter(|(n, a)| {
                        *n != p.node && a.lock().map(|a| a.contains_key(&p.id)).unwrap_or(false)
                    })
                    .count()
            })
            .sum();
        if seen >= expected || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut ms = Vec::with_capacity(expected);
    let mut delivered = 0usize;
    for p in posts {
        for (n, a) in arrivals.iter().enumerate() {
            if n == p.node {
                continue;
            }
            let at = a.lock().ok().and_then(|a| a.get(&p.id).copied());
            match at {
                Some(t) if t.saturating_duration_since(p.at) <= DELIVERY_DEADLINE => {
                    delivered += 1;
                    ms.push(t.saturating_duration_since(p.at).as_secs_f64() * 1000.0);
                }
                // Not in time: counted at the deadline.
                _ => ms.push(DELIVERY_DEADLINE.as_secs_f64() * 1000.0),
            }
        }
    }
    ms.sort_by(f64::total_cmp);
    let ratio = if expected == 0 {
        1.0
    } else {
        delivered as f64 / expected as f64
    };
    (ms, ratio)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// How many of `ids` node `api` holds (`GET /v1/objects/{id}`), 16 requests at a time.
async fn held(api: &Api, ids: &[String]) -> u64 {
    futures::stream::iter(ids.iter())
        .map(|id| async move {
            let r = api
                .http()
                .get(format!("{}/v1/objects/{id}", api.base()))
                .bearer_auth(api.token())
                .send()
                .await;
            matches!(r, Ok(r) if r.status().is_success())
        })
        .buffer_unordered(16)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await as u64
}

/// Most ids looked up per node and kind of spam; of more, an even sample, scaled up.
pub const HELD_SAMPLE: usize = 2000;

/// How many of `ids` node `api` holds: exactly up to [`HELD_SAMPLE`] ids, else estimated
/// from every k-th id.
async fn held_estimate(api: &Api, ids: &[String]) -> u64 {
    if ids.len() <= HELD_SAMPLE {
        return held(api, ids).await;
    }
    let step = ids.len().div_ceil(HELD_SAMPLE);
    let sample: Vec<String> = ids.iter().step_by(step).cloned().collect();
    let n = held(api, &sample).await;
    (n as f64 * ids.len() as f64 / sample.len() as f64).round() as u64
}

/// Runs the scenario with node processes of `bin`.
pub async fn run(bin: PathBuf, cfg: &Config) -> Result<Report> {
    if cfg.nodes < 2 || cfg.keys < 2 || cfg.secs == 0 {
        bail!("--nodes and --keys must be at least 2, --secs at least 1");
    }
    let mut warnings = Vec::new();
    let tck = 100.0;
    let bits = cfg.stamp_bits.to_string();
    let cap_mib = cfg.mailbox_cap_mib.to_string();
    let mut net = ProcNet::with_netns(bin, None)?;
    eprintln!(
        "spam: starting {} node processes at {} stamp bits",
        cfg.nodes, cfg.stamp_bits
    );
    net.add_with(
        &[],
        &[
            "--relay",
            "--mailbox-cap-mib",
            &cap_mib,
            "--listing-stamp-bits",
            &bits,
        ],
    )
    .await?;
    for i in 1..cfg.nodes {
        // Node 0 and one earlier node: a mesh that does not hang on the relay alone.
        let mut boot = vec![net.nodes[0].addr.clone()];
        if i > 1 {
            boot.push(net.nodes[rand::random::<usize>() % i].addr.clone());
        }
        net.add_with(&boot, &["--listing-stamp-bits", &bits])
            .await?;
    }
    for i in 0..cfg.nodes {
        net.wait_gossip(i, 1).await?;
    }
    let apis: Vec<Api> = net
        .nodes
        .iter()
        .map(|n| n.api().cloned())
        .collect::<Result<_>>()?;
    let pids: Vec<u32> = net
        .nodes
        .iter()
        .map(|n| n.pid().context("a node is not running"))
        .collect::<Result<_>>()?;
    let honest_ids: HashSet<String> = net.nodes.iter().map(|n| n.peer_id.clone()).collect();
    let relay: PeerId = net.nodes[0].peer_id.parse().context("relay peer id")?;
    let relay_addr = net.nodes[0].addr.clone();
    let arrivals: Vec<Arrivals> = (0..cfg.nodes).map(|_| Arrivals::default()).collect();
    let lagged = Arc::new(AtomicBool::new(false));
    for (api, a) in apis.iter().zip(&arrivals) {
        follow_arrivals(api, a.clone(), lagged.clone()).await?;
    }

    // Quiet.
    eprintln!("spam: quiet for {} s", cfg.quiet_secs);
    let quiet_until = Instant::now() + Duration::from_secs(cfg.quiet_secs);
    let quiet = honest_posts(&apis, 0, cfg.post_every, quiet_until, "quiet").await?;
    let (quiet_ms, _) = latencies(&quiet, &arrivals).await;

    // The attacker's mailers connect to the relay; they and their put tasks run on a runtime
    // of their own at nice 19.
    let mail_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("spam-mailer")
        .on_thread_start(lower_priority)
        .enable_all()
        .build()
        .context("the mailers' runtime")?;
    let mut mailers = Vec::new();
    for _ in 0..cfg.mailers {
        let dir = tempfile::Builder::new()
            .prefix("jangteo-spam-mail")
            .tempdir()?;
        let mut c = NodeConfig::new(dir.path());
        c.listing_stamp_bits = cfg.stamp_bits;
        c.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
        c.mdns = false;
        c.follow = vec!["other".into()];
        c.bootstrap = vec![relay_addr.clone()];
        let node = mail_rt.spawn(Node::start(c)).await??;
        let me = relay.to_string();
        crate::wait_for(
            Duration::from_secs(20),
            "a mailer to reach the relay",
            || async {
                node.network
                    .info()
                    .await
                    .ok()?
                    .peers
                    .iter()
                    .any(|p| p.peer_id == me)
                    .then_some(())
            },
        )
        .await?;
        mailers.push((node, dir));
    }
    let targets: Vec<String> = net.addrs(1..cfg.nodes);
    let valid_pub = Publisher::start(&targets).await?;
    let cheap_pub = Publisher::start(&targets).await?;
    let cheap_att_pub = Publisher::start(&targets).await?;
    let att_bits = jangteo_protocol::attestation::stamp_bits(cfg.stamp_bits);

    // The attack.
    eprintln!(
        "spam: attack for {} s with {} keys, {} mailers",
        cfg.secs, cfg.keys, cfg.mailers
    );
    let keys: Arc<Vec<SigningKey>> = Arc::new(
        (0..cfg.keys)
            .map(|_| SigningKey::from_bytes(&rand::random::<[u8; 32]>()))
            .collect(),
    );
    let start = Instant::now();
    let until = start + Duration::from_secs(cfg.secs);
    let cpu_before: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p).unwrap_or(0)).collect();
    let cpu_testnet_before = cpu_ticks(std::process::id()).unwrap_or(0);
    let stop = Arc::new(AtomicBool::new(false));
    let stamped_ids = Arc::new(Mutex::new(Vec::<String>::new()));
    let cheap_ids = Arc::new(Mutex::new(Vec::<String>::new()));
    let attestation_ids = Arc::new(Mutex::new(Vec::<String>::new()));
    let cheap_attestation_ids = Arc::new(Mutex::new(Vec::<String>::new()));
    let attestation_authors = Arc::new(Mutex::new(HashSet::<usize>::new()));
    // Listings at the real difficulty, each by the next fresh key, on a thread of its own.
    let stamper = {
        let (keys, stop, ids, tx) = (
            keys.clone(),
            stop.clone(),
            stamped_ids.clone(),
            valid_pub.tx.clone(),
        );
        let bits = cfg.stamp_bits;
        std::thread::spawn(move || {
            lower_priority();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = &keys[i as usize % keys.len()];
                let mut l = spam_listing(i, now_ms());
                l.solve_stamp(&public(key), bits);
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let o = SignedObject::sign(Kind::Listing, l.encode(), key);
                if let Ok(mut ids) = ids.lock() {
                    ids.push(o.id().to_hex());
                }
                let topic = jangteo_node::ingest::listing_topic("general");
                if tx.blocking_send((topic, o.bytes().to_vec())).is_err() {
                    break;
                }
                i += 1;
            }
            i
        })
    };
    // Cheap listings and attestations, as fast as they can be signed and taken.
    let cheap = {
        let (keys, stop, ids, tx) = (
            keys.clone(),
            stop.clone(),
            cheap_ids.clone(),
            cheap_pub.tx.clone(),
        );
        let bits = cfg.stamp_bits.saturating_sub(CHEAP_BY_BITS);
        std::thread::spawn(move || {
            lower_priority();
            let topic = jangteo_node::ingest::listing_topic("general");
            let mut i = 1u64 << 40;
            while !stop.load(Ordering::Relaxed) {
                let key = &keys[i as usize % keys.len()];
                let mut l = spam_listing(i, now_ms());
                let author = public(key);
                // A stamp worth exactly `bits`: below the network's difficulty.
                let w = jangteo_protocol::stamp::Worker::new(
                    jangteo_protocol::stamp::LISTING_CONTEXT,
                    &l.stamp_subject(&author),
                );
                l.stamp = (0..1u64 << 32).find(|&n| w.bits(n) == bits);
                let o = SignedObject::sign(Kind::Listing, l.encode(), key);
                if let Ok(mut ids) = ids.lock() {
                    ids.push(o.id().to_hex());
                }
                if tx
                    .blocking_send((topic.clone(), o.bytes().to_vec()))
                    .is_err()
                {
                    break;
                }
                i += 1;
            }
        })
    };
    // Attestations stamped at the network's difficulty, each by the next key (spread over
    // authors, as the per-author cap asks), on a thread of their own.
    let attest = {
        let (keys, stop, ids, tx, authors) = (
            keys.clone(),
            stop.clone(),
            attestation_ids.clone(),
            valid_pub.tx.clone(),
            attestation_authors.clone(),
        );
        std::thread::spawn(move || {
            lower_priority();
            let topic = jangteo_node::ingest::topic_for(Kind::Attestation).to_owned();
            let n = keys.len();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Buyer and seller: two different keys of the attacker's.
                let b = i as usize % n;
                let s = (b + 1 + (i as usize / n) % (n - 1)) % n;
                let Some(o) = spam_attestation(
                    &keys[b],
                    &keys[s],
                    i,
                    AttestationStamp::Solve(att_bits),
                    Some(&stop),
                ) else {
                    break;
                };
                if let Ok(mut ids) = ids.lock() {
                    ids.push(o.id().to_hex());
                }
                if let Ok(mut a) = authors.lock() {
                    a.insert(b);
                }
                if tx
                    .blocking_send((topic.clone(), o.bytes().to_vec()))
                    .is_err()
                {
                    break;
                }
                i += 1;
            }
        })
    };
    // Attestations with no stamp, or one 8 bits short, as fast as they can be signed.
    let cheap_attest = {
        let (keys, stop, ids, tx) = (
            keys.clone(),
            stop.clone(),
            cheap_attestation_ids.clone(),
            cheap_att_pub.tx.clone(),
        );
        std::thread::spawn(move || {
            lower_priority();
            let topic = jangteo_node::ingest::topic_for(Kind::Attestation).to_owned();
            let n = keys.len();
            let mut i = 1u64 << 40;
            while !stop.load(Ordering::Relaxed) {
                let b = i as usize % n;
                let s = (b + 1) % n;
                let stamp = if i.is_multiple_of(2) && att_bits > CHEAP_BY_BITS {
                    AttestationStamp::Exactly(att_bits - CHEAP_BY_BITS)
                } else {
                    AttestationStamp::None
                };
                let Some(o) = spam_attestation(&keys[b], &keys[s], i, stamp, None) else {
                    break;
                };
                if let Ok(mut ids) = ids.lock() {
                    ids.push(o.id().to_hex());
                }
                if tx
                    .blocking_send((topic.clone(), o.bytes().to_vec()))
                    .is_err()
                {
                    break;
                }
                i += 1;
            }
        })
    };
    let mail_puts = Arc::new(AtomicU64::new(0));
    let mail_stored = Arc::new(AtomicU64::new(0));
    let mail_answered = Arc::new(AtomicU64::new(0));
    let mut mail_tasks = Vec::new();
    for (node, _) in &mailers {
        for _ in 0..4 {
            let (client, stop, puts, stored, answered) = (
                node.network.clone(),
                stop.clone(),
                mail_puts.clone(),
                mail_stored.clone(),
                mail_answered.clone(),
            );
            mail_tasks.push(mail_rt.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let mut sealed = vec![0u8; MAIL_ITEM_BYTES];
                    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut sealed);
                    let req = MailboxRequest::Put {
                        to: ByteBuf::from(rand::random::<[u8; 32]>().to_vec()),
                        sealed: ByteBuf::from(sealed),
                    };
                    puts.fetch_add(1, Ordering::Relaxed);
                    let answer = client.mailbox(relay, req).await;
                    if matches!(answer, Ok(Ok(_))) {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    match answer {
                        Ok(Ok(MailboxResponse::Stored)) => {
                            stored.fetch_add(1, Ordering::Relaxed);
                        }
                        // Refused (rate limit, share, relay full): try again shortly, as a
                        // sender that wants in would (answers come back in microseconds on
                        // loopback; spinning would only burn this machine's cores).
                        Ok(Ok(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
                        // The relay is gone or refuses the connection: do not spin.
                        _ => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            }));
        }
    }
    // Honest posts during the attack, and the relay's mailbox bytes each second.
    let sampler = {
        let (api, stop) = (apis[0].clone(), stop.clone());
        tokio::spawn(async move {
            let mut max = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(s) = api.status().await {
                    max = max.max(s.mailbox.bytes);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            max
        })
    };
    let attack = honest_posts(&apis, quiet.len(), cfg.post_every, until, "attack").await?;
    let wait = until.saturating_duration_since(Instant::now());
    tokio::time::sleep(wait).await;
    stop.store(true, Ordering::Relaxed);
    let attack_secs = start.elapsed().as_secs_f64();
    let cpu_after: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p).unwrap_or(0)).collect();
    let cpu_testnet_after = cpu_ticks(std::process::id()).unwrap_or(0);
    let stamped_count = stamper.join().unwrap_or(0);
    let _ = cheap.join();
    let _ = attest.join();
    let _ = cheap_attest.join();
    for t in mail_tasks {
        let _ = t.await;
    }
    let mailbox_bytes_max = sampler.await.unwrap_or(0);
    let (attack_ms, ratio) = latencies(&attack, &arrivals).await;
    let published = valid_pub.stop().await + cheap_pub.stop().await + cheap_att_pub.stop().await;
    eprintln!("spam: attack over after {attack_secs:.1} s; counting what was stored");

    // What each honest node stored of the attacker's objects.
    let stamped_ids = stamped_ids.lock().map(|v| v.clone()).unwrap_or_default();
    let cheap_ids = cheap_ids.lock().map(|v| v.clone()).unwrap_or_default();
    let attestation_ids = attestation_ids
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    let cheap_attestation_ids = cheap_attestation_ids
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    let attestation_authors = attestation_authors.lock().map_or(0, |a| a.len()) as u64;
    let (mut listings_max, mut cheap_max, mut att_max, mut att_cheap_max, mut spam_max) =
        (0, 0, 0, 0, 0);
    for api in &apis {
        let l = held(api, &stamped_ids).await;
        let c = held_estimate(api, &cheap_ids).await;
        let a = held_estimate(api, &attestation_ids).await;
        let ac = held_estimate(api, &cheap_attestation_ids).await;
        listings_max = listings_max.max(l);
        cheap_max = cheap_max.max(c);
        att_max = att_max.max(a);
        att_cheap_max = att_cheap_max.max(ac);
        spam_max = spam_max.max(l + c + a + ac);
    }
    let mut banned_honest = HashSet::new();
    let mailer_ids: HashSet<String> = mailers.iter().map(|(n, _)| n.peer_id.clone()).collect();
    let mut mailers_banned = 0u64;
    for (i, api) in apis.iter().enumerate() {
        if let Ok(s) = api.status().await {
            if i == 0 {
                mailers_banned = s.banned.iter().filter(|b| mailer_ids.contains(*b)).count() as u64;
            }
            for b in s.banned {
                if honest_ids.contains(&b) {
                    banned_honest.insert(b);
                }
            }
        }
    }
    let pct = |b: u64, a: u64| a.saturating_sub(b) as f64 / tck / attack_secs * 100.0;
    let cpu: Vec<f64> = cpu_before
        .iter()
        .zip(&cpu_after)
        .map(|(b, a)| pct(*b, *a))
        .collect();
    let cpu_honest_max = cpu.iter().copied().fold(0.0, f64::max);
    let cpu_honest_others_max = cpu.iter().skip(1).copied().fold(0.0, f64::max);
    if lagged.load(Ordering::Relaxed) {
        warnings
            .push("an event stream lagged: some arrivals may be missing (counted as late)".into());
    }
    let stamps: Vec<u64> = quiet
        .iter()
        .chain(&attack)
        .filter_map(|p| p.stamp_ms)
        .collect();
    let p99 = |ms: &[f64]| round1(crate::percentile(ms, 0.99));
    let keys_paid = (stamped_count as usize).min(cfg.keys) as u64;
    let report = Report {
        honest_p99_quiet_ms: p99(&quiet_ms),
        honest_p99_attack_ms: p99(&attack_ms),
        honest_delivered_ratio: (ratio * 10_000.0).round() / 10_000.0,
        spam_sent: stamped_ids.len() as u64
            + cheap_ids.len() as u64
            + attestation_ids.len() as u64
            + cheap_attestation_ids.len() as u64
            + mail_puts.load(Ordering::Relaxed),
        spam_stored_max: spam_max,
        mailbox_bytes_max,
        cpu_honest_max: round1(cpu_honest_max),
        cpu_relay: round1(cpu.first().copied().unwrap_or(0.0)),
        cpu_honest_others_max: round1(cpu_honest_others_max),
        cpu_testnet: round1(pct(cpu_testnet_before, cpu_testnet_after)),
        honest_banned: banned_honest.len() as u64,
        spam_gossip_published: published,
        spam_listings_stamped: stamped_ids.len() as u64,
        spam_listings_cheap: cheap_ids.len() as u64,
        spam_attestations: attestation_ids.len() as u64 + cheap_attestation_ids.len() as u64,
        spam_attestations_stamped: attestation_ids.len() as u64,
        spam_attestations_cheap: cheap_attestation_ids.len() as u64,
        spam_attestation_authors: attestation_authors,
        spam_mail_puts: mail_puts.load(Ordering::Relaxed),
        spam_mail_stored: mail_stored.load(Ordering::Relaxed),
        spam_mail_answered: mail_answered.load(Ordering::Relaxed),
        spam_mailers_banned: mailers_banned,
        spam_listings_stored_max: listings_max,
        spam_cheap_stored_max: cheap_max,
        spam_attestations_stored_max: att_max,
        spam_attestations_cheap_stored_max: att_cheap_max,
        spam_listings_bound: jangteo_protocol::listing::LISTING_ACTIVE_MAX * keys_paid,
        spam_stored_bound: jangteo_protocol::listing::LISTING_ACTIVE_MAX * keys_paid
            + jangteo_protocol::limits::ATTESTATIONS_PER_AUTHOR_MAX * attestation_authors,
        mailbox_cap_bytes: cfg.mailbox_cap_mib * 1024 * 1024,
        honest_posts_quiet: quiet.len() as u64,
        honest_posts_attack: attack.len() as u64,
        honest_stamp_ms_mean: if stamps.is_empty() {
            0.0
        } else {
            round1(stamps.iter().sum::<u64>() as f64 / stamps.len() as f64)
        },
        attacker_stamps_per_s: round1(stamped_ids.len() as f64 / attack_secs),
        nodes: cfg.nodes,
        keys: cfg.keys,
        secs: cfg.secs,
        stamp_bits: cfg.stamp_bits,
        attestation_stamp_bits: att_bits,
        attacker_attestations_per_s: round1(attestation_ids.len() as f64 / attack_secs),
        warnings,
    };
    for (node, dir) in mailers {
        node.shutdown().await;
        drop(dir);
    }
    mail_rt.shutdown_background();
    net.shutdown().await?;
    Ok(report)
}

/// The report as lines of text.
pub fn human(r: &Report) -> String {
    let mut s = format!(
        "spam: {} nodes, {} attacker keys, {} s at {} stamp bits ({} for attestations)\n\
         \x20 honest p99 quiet / attack   {:.1} / {:.1} ms ({} / {} posts, stamp {:.0} ms mean)\n\
         \x20 honest delivered            {:.4}\n\
         \x20 spam sent                   {} (stamped listings {}, cheap {}, attestations stamped {} by {} keys, cheap {}, mail {})\n\
         \x20 spam stored, most per node  {} of bound {} (listings {} of bound {}, cheap {}, attestations {}, cheap {})\n\
         \x20 mail stored by the relay    {} items of {} answered ({} mailers banned); mailbox bytes max {} of cap {}\n\
         \x20 honest cpu max              {:.1} % (relay {:.1} %, others {:.1} %; this process {:.1} %)\n\
         \x20 honest nodes banned         {}\n",
        r.nodes,
        r.keys,
        r.secs,
        r.stamp_bits,
        r.attestation_stamp_bits,
        r.honest_p99_quiet_ms,
        r.honest_p99_attack_ms,
        r.honest_posts_quiet,
        r.honest_posts_attack,
        r.honest_stamp_ms_mean,
        r.honest_delivered_ratio,
        r.spam_sent,
        r.spam_listings_stamped,
        r.spam_listings_cheap,
        r.spam_attestations_stamped,
        r.spam_attestation_authors,
        r.spam_attestations_cheap,
        r.spam_mail_puts,
        r.spam_stored_max,
        r.spam_stored_bound,
        r.spam_listings_stored_max,
        r.spam_listings_bound,
        r.spam_cheap_stored_max,
        r.spam_attestations_stored_max,
        r.spam_attestations_cheap_stored_max,
        r.spam_mail_stored,
        r.spam_mail_answered,
        r.spam_mailers_banned,
        r.mailbox_bytes_max,
        r.mailbox_cap_bytes,
        r.cpu_honest_max,
        r.cpu_relay,
        r.cpu_honest_others_max,
        r.cpu_testnet,
        r.honest_banned,
    );
    for w in &r.warnings {
        s.push_str(&format!("  warning: {w}\n"));
    }
    s
}
