//! The `abuse` scenario: strangers with throw-away keys try to make a node store trade
//! messages and retry deliveries without end (DESIGN.md, "Trade protocol": "Strangers cannot
//! make a node store or retry without end").
//!
//! The victim is a real `jangteo node` process ([`crate::procs`]) on loopback with one real
//! listing (quantity 5). Each throw-away key is an in-process [`Node`] with a fresh random
//! identity, connected to the victim, that sends hand-made signed trade chains with
//! [`Client::send_trade`](jangteo_node::Client::send_trade) directly, past its own trades
//! service. These attacks are spread over every key, in turn:
//!
//! 1. `unknown_listing`: offers naming the victim as seller, for listing ids that exist
//!    nowhere; and `unknown_listing_ghost`: the same, signed by a key that never comes
//!    online (the sending key only carries it), so that whatever the victim sends back to
//!    its author can never be delivered;
//! 2. `real_listing`: offers on the victim's real listing, many from each key and from every
//!    key (far beyond any sane per-listing or per-buyer cap);
//! 3. `moderator_chain`: a whole offer → accept → paid → dispute chain between two attacker
//!    keys, for a listing the victim does not hold, naming the victim as the moderator;
//! 4. `not_named`: a chain up to a dispute and its resolution for a trade that does not name
//!    the victim at all.
//!
//! Each key sends one request at a time and stays under the victim's per-peer request rate
//! ([`TRADE_RATE_MAX`] per [`SYNC_RATE_WINDOW`]), so what answers is the victim's trades
//! service, not its rate limiter. Every request carries an offer (a delivery without its
//! trade's offer is refused before anything else), so "offers sent" counts requests. The
//! attackers then vanish (their nodes stop), as throw-away keys do, and the victim is
//! watched for `after` more.
//!
//! CPU is the victim process's utime + stime from `/proc/<pid>/stat`, in percent of one
//! core: idle before anyone connects, during the attack (first request to last answer),
//! and over the whole window after the attackers left. Stored and queued counts come from
//! the `trades` object of the victim's `GET /v1/status` (`held`, `messages`,
//! `queued_deliveries`); a node without it counts 0 and the report says so. The same is
//! also counted through the trades API (`listed`: `GET /v1/trades`, then each trade's
//! history and the delivery status of its entries), which does not depend on the status.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ed25519_dalek::SigningKey;
use jangteo_node::api::types::{DeliveryStatus, TradeCounts};
use jangteo_node::net::{SYNC_RATE_WINDOW, TRADE_RATE_MAX, TradeRequest, TradeResponse};
use jangteo_node::{Client, Node, NodeConfig, ingest::now_ms};
use jangteo_protocol::trade::{Terms, TradeMessage};
use jangteo_protocol::{Kind, ListingId, ObjectId, PublicKey, SignedObject};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::procs::{Api, ProcNet};

/// How long a request may wait for the victim's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a `Busy` answer is tried again before it counts as busy.
pub const BUSY_RETRIES: u32 = 10;
/// Distinct refusal reasons kept per attack; the rest count as "(other)".
const REASONS_MAX: usize = 12;
/// Quantity of the victim's real listing.
pub const LISTING_QUANTITY: u64 = 5;
/// Price (KRW) of the victim's real listing.
pub const LISTING_PRICE: u64 = 50_000;

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Throw-away keys (one in-process node each).
    pub keys: usize,
    /// Requests (each carrying an offer) per key.
    pub offers_per_key: usize,
    /// Victim alone and idle before the attack, CPU measured.
    pub idle_before: Duration,
    /// Observation after the attackers left, CPU measured over all of it.
    pub after: Duration,
    /// Time between two requests of one key (default: just under the victim's rate limit).
    pub pace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            keys: 20,
            offers_per_key: 100,
            idle_before: Duration::from_secs(10),
            after: Duration::from_secs(60),
            pace: default_pace(),
        }
    }
}

/// One request per this long keeps a key 10 requests under the victim's per-peer limit.
pub fn default_pace() -> Duration {
    SYNC_RATE_WINDOW / TRADE_RATE_MAX.saturating_sub(10).max(1)
}

/// The attacks (the first in two forms), in the order each key takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Attack {
    UnknownListing,
    UnknownListingGhost,
    RealListing,
    ModeratorChain,
    NotNamed,
}

impl Attack {
    const ALL: [Attack; 5] = [
        Attack::UnknownListing,
        Attack::UnknownListingGhost,
        Attack::RealListing,
        Attack::ModeratorChain,
        Attack::NotNamed,
    ];

    fn name(self) -> &'static str {
        match self {
            Attack::UnknownListing => "unknown_listing",
            Attack::UnknownListingGhost => "unknown_listing_ghost",
            Attack::RealListing => "real_listing",
            Attack::ModeratorChain => "moderator_chain",
            Attack::NotNamed => "not_named",
        }
    }
}

/// How the victim answered one attack's requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Requests sent.
    pub sent: u64,
    /// Requests the victim accepted.
    pub accepted: u64,
    /// Requests the victim refused.
    pub refused: u64,
    /// Requests still answered `Busy` after [`BUSY_RETRIES`].
    pub busy: u64,
    /// Requests with no answer (timeout, connection gone).
    pub unanswered: u64,
    /// Why, and how often (at most [`REASONS_MAX`] reasons, the rest as "(other)").
    #[serde(rename = "refusal_reasons")]
    pub reasons: BTreeMap<String, u64>,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.sent += o.sent;
        self.accepted += o.accepted;
        self.refused += o.refused;
        self.busy += o.busy;
        self.unanswered += o.unanswered;
        for (r, n) in &o.reasons {
            self.reason(r, *n);
        }
    }

    fn reason(&mut self, r: &str, n: u64) {
        // Reasons may name ids; keep them short, and few.
        let r: String = r.chars().take(120).collect();
        if self.reasons.contains_key(&r) || self.reasons.len() < REASONS_MAX {
            *self.reasons.entry(r).or_default() += n;
        } else {
            *self.reasons.entry("(other)".into()).or_default() += n;
        }
    }
}

/// A throw-away key: its in-process node (and data directory) and its signing key.
#[derive(Debug)]
struct Attacker {
    node: Node,
    key: SigningKey,
    dir: tempfile::TempDir,
}

fn random_key() -> SigningKey {
    SigningKey::from_bytes(&rand::random::<[u8; 32]>())
}

fn public(k: &SigningKey) -> PublicKey {
    PublicKey(k.verifying_key().to_bytes())
}

/// The victim's process CPU time, in clock ticks (utime + stime of `/proc/<pid>/stat`).
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("unexpected /proc/<pid>/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = f.get(11).context("no utime")?.parse()?;
    let stime: u64 = f.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every Linux this runs on).
fn clock_ticks_per_s() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// A CPU measurement window over one process.
#[derive(Debug, Clone, Copy)]
struct CpuWindow {
    pid: u32,
    start: Instant,
    ticks: u64,
}

impl CpuWindow {
    fn open(pid: u32) -> Result<Self> {
        Ok(Self {
            pid,
            start: Instant::now(),
            ticks: cpu_ticks(pid)?,
        })
    }

    /// Percent of one core since the window opened.
    fn percent(&self, tck: f64) -> Result<f64> {
        let used = cpu_ticks(self.pid)?.saturating_sub(self.ticks) as f64 / tck;
        let wall = self.start.elapsed().as_secs_f64().max(1e-3);
        Ok(used / wall * 100.0)
    }
}

fn one_decimal(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The victim's trade counters from `GET /v1/status` (`None` while the node does not
/// report them).
async fn trade_counts(api: &Api) -> Result<Option<TradeCounts>> {
    Ok(api.status().await?.trades)
}

/// Most trades [`census`] looks at one by one.
const CENSUS_MAX: usize = 10_000;

/// What the victim shows through `GET /v1/trades` and `GET /v1/trades/{id}`, independent
/// of the `trades` object of its status: trades listed, messages in their histories, and
/// history entries whose delivery is `queued`.
#[derive(Debug, Clone, Copy, Default)]
struct Census {
    trades: u64,
    messages: u64,
    queued: u64,
}

async fn census(api: &Api) -> Result<Census> {
    let ids: Vec<String> = api.trades().await?.into_iter().map(|t| t.id).collect();
    let mut c = Census {
        trades: ids.len() as u64,
        ..Census::default()
    };
    for id in ids.iter().take(CENSUS_MAX) {
        let Some(t) = api.trade(id).await? else {
            continue;
        };
        c.messages += t.history.len() as u64;
        c.queued += t
            .history
            .iter()
            .filter(|h| h.delivery.status == DeliveryStatus::Queued)
            .count() as u64;
    }
    Ok(c)
}

/// Signs a trade message.
fn sign(kind: Kind, m: &TradeMessage, key: &SigningKey) -> SignedObject {
    SignedObject::sign(kind, m.encode(), key)
}

/// An offer by `buyer` to `seller` (no `trade`, no `prev`).
fn offer(
    buyer: &SigningKey,
    seller: PublicKey,
    terms: Terms,
    moderators: Vec<PublicKey>,
    note: String,
    at: u64,
) -> SignedObject {
    let mut m = TradeMessage::follow(ObjectId([0; 32]), ObjectId([0; 32]), at);
    m.trade = None;
    m.prev = None;
    m.seller = Some(seller);
    m.terms = Some(terms);
    m.moderators = moderators;
    m.note = note;
    sign(Kind::Offer, &m, buyer)
}

/// The message of `kind` by `by` that follows `prev` in trade `trade`.
fn follow(
    kind: Kind,
    by: &SigningKey,
    trade: ObjectId,
    prev: &SignedObject,
    terms: Option<&Terms>,
    at: u64,
) -> SignedObject {
    let mut m = TradeMessage::follow(trade, prev.id(), at);
    match kind {
        Kind::Accept | Kind::Counter => m.terms = terms.cloned(),
        Kind::Dispute | Kind::Reject => m.note = "item never arrived".into(),
        Kind::Shipped => m.outcome = Some("shipped".into()),
        Kind::Resolution => m.outcome = Some("refund".into()),
        _ => {}
    }
    sign(kind, &m, by)
}

/// A whole chain offer → accept → paid → dispute (→ resolution by `resolver`).
fn chain(
    buyer: &SigningKey,
    seller: &SigningKey,
    moderator: PublicKey,
    resolver: Option<&SigningKey>,
    terms: Terms,
    note: String,
    at: u64,
) -> Vec<SignedObject> {
    let o = offer(
        buyer,
        public(seller),
        terms.clone(),
        vec![moderator],
        note,
        at,
    );
    let t = o.id();
    let a = follow(Kind::Accept, seller, t, &o, Some(&terms), at + 1);
    let p = follow(Kind::Paid, buyer, t, &a, None, at + 2);
    let d = follow(Kind::Dispute, buyer, t, &p, None, at + 3);
    let mut all = vec![o, a, p, d];
    if let Some(r) = resolver {
        let last = &all[3];
        let res = follow(Kind::Resolution, r, t, last, None, at + 4);
        all.push(res);
    }
    all
}

fn random_listing() -> ListingId {
    ListingId(rand::random::<[u8; 32]>())
}

/// What key `k` sends as its request `j`.
fn request(
    attack: Attack,
    k: usize,
    j: usize,
    me: &SigningKey,
    partner: &SigningKey,
    victim: PublicKey,
    listing: ListingId,
) -> Vec<SignedObject> {
    let at = now_ms();
    let note = format!("abuse key {k} request {j}");
    let terms = |listing: ListingId, price: u64, quantity: u64| Terms {
        listing,
        listing_seq: 1,
        price,
        currency: "KRW".into(),
        quantity,
    };
    match attack {
        Attack::UnknownListing => vec![offer(
            me,
            victim,
            terms(random_listing(), 1_000 + j as u64, 1),
            vec![],
            note,
            at,
        )],
        Attack::UnknownListingGhost => vec![offer(
            &random_key(),
            victim,
            terms(random_listing(), 1_000 + j as u64, 1),
            vec![],
            note,
            at,
        )],
        Attack::RealListing => vec![offer(
            me,
            victim,
            // Every quantity from 1 to all the stock, at or below the asking price.
            terms(
                listing,
                LISTING_PRICE - (j as u64 % 10) * 1_000,
                1 + (j as u64 % LISTING_QUANTITY),
            ),
            vec![],
            note,
            at,
        )],
        Attack::ModeratorChain => chain(
            me,
            partner,
            victim,
            None,
            terms(random_listing(), 20_000, 1),
            note,
            at,
        ),
        Attack::NotNamed => {
            let moderator = random_key();
            chain(
                me,
                partner,
                public(&moderator),
                Some(&moderator),
                terms(random_listing(), 30_000, 1),
                note,
                at,
            )
        }
    }
}

/// Sends one request and waits for the answer, trying again (boundedly) while the victim
/// says it is busy.
async fn send(client: &Client, victim: PeerId, messages: &[SignedObject], t: &mut Tally) {
    let request = TradeRequest {
        messages: messages
            .iter()
            .map(|m| ByteBuf::from(m.bytes().to_vec()))
            .collect(),
    };
    t.sent += 1;
    for attempt in 0..=BUSY_RETRIES {
        let answer =
            tokio::time::timeout(ANSWER_TIMEOUT, client.send_trade(victim, request.clone())).await;
        match answer {
            Ok(Ok(Ok(TradeResponse::Accepted))) => {
                t.accepted += 1;
                return;
            }
            Ok(Ok(Ok(TradeResponse::Refused(r)))) => {
                t.refused += 1;
                t.reason(&r, 1);
                return;
            }
            Ok(Ok(Ok(TradeResponse::Busy(_)))) if attempt < BUSY_RETRIES => {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt + 1))).await;
            }
            Ok(Ok(Ok(TradeResponse::Busy(r)))) => {
                t.busy += 1;
                t.reason(&format!("busy: {r}"), 1);
                return;
            }
            Ok(Ok(Err(e))) => {
                t.unanswered += 1;
                t.reason(&format!("unanswered: {e}"), 1);
                return;
            }
            Ok(Err(e)) => {
                t.unanswered += 1;
                t.reason(&format!("unanswered: {e}"), 1);
                return;
            }
            Err(_) => {
                t.unanswered += 1;
                t.reason(&format!("no answer within {ANSWER_TIMEOUT:?}"), 1);
                return;
            }
        }
    }
}

/// Starts a throw-away key: an in-process node on loopback, dialing the victim, with a
/// fresh random identity.
async fn start_attacker(victim_addr: &str, victim: PeerId) -> Result<Attacker> {
    let dir = tempfile::Builder::new()
        .prefix("jangteo-abuse-key")
        .tempdir()?;
    let mut cfg = NodeConfig::new(dir.path());
    cfg.listing_stamp_bits = jangteo_node::TEST_NETWORK_STAMP_BITS;
    cfg.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    cfg.mdns = false;
    cfg.bootstrap = vec![victim_addr.to_owned()];
    let node = Node::start(cfg).await?;
    let (key, _) = jangteo_node::keys::load_or_create(dir.path())?;
    let me = victim.to_string();
    crate::wait_for(
        Duration::from_secs(20),
        "an attacker to connect to the victim",
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
    Ok(Attacker { node, key, dir })
}

/// What the victim's trades API shows (`GET /v1/trades` and each trade), before and after.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    /// Trades listed before the attack.
    pub trades_before: u64,
    /// Trades listed after it.
    pub trades_after: u64,
    /// Messages in their histories, after minus before.
    pub messages_stored: u64,
    /// History entries whose delivery is `queued`, after.
    pub queued_deliveries: u64,
}

/// What [`run`] measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Requests sent (each carries an offer).
    pub offers_sent: u64,
    /// Requests the victim accepted.
    pub accepted_by_victim: u64,
    /// Requests it refused.
    pub refused_by_victim: u64,
    /// Trade messages stored by the victim (its status's `trades.messages`, after minus
    /// before; 0 when the status does not say).
    pub stored: u64,
    /// Deliveries of the victim's still queued at the end (status's `trades`).
    pub queued_deliveries: u64,
    /// CPU of the victim, idle and alone, in percent of one core.
    pub cpu_idle_before: f64,
    /// CPU during the attack.
    pub cpu_during: f64,
    /// CPU over the window after the attackers left.
    pub cpu_idle_after: f64,
    /// Requests still answered `Busy` after the retries.
    pub busy_from_victim: u64,
    /// Requests with no answer.
    pub unanswered: u64,
    /// Trades held by the victim, after minus before (status's `trades.held`).
    pub held: u64,
    /// The same seen through the trades API (works whether or not the status has them).
    pub listed: Listed,
    /// Whether the victim's status had its `trades` counters before and after.
    pub status_has_trades: bool,
    /// Throw-away keys.
    pub keys: usize,
    /// Requests per key.
    pub offers_per_key: usize,
    /// Time between two requests of one key, in ms.
    pub pace_ms: u64,
    /// Duration of the attack, in s.
    pub attack_secs: f64,
    /// Idle observation before, in s.
    pub idle_before_secs: f64,
    /// Observation after, in s.
    pub after_secs: f64,
    /// The victim's resident memory at the end, in MiB.
    pub victim_rss_mib_after: f64,
    /// Per attack (`unknown_listing`, `unknown_listing_ghost`, `real_listing`,
    /// `moderator_chain`, `not_named`).
    pub by_attack: BTreeMap<String, Tally>,
    /// What could not be measured.
    pub warnings: Vec<String>,
}

/// Runs the scenario against a victim process running `bin`.
pub async fn run(bin: PathBuf, cfg: &Config) -> Result<Report> {
    if cfg.keys == 0 || cfg.offers_per_key == 0 {
        bail!("--keys and --offers must be at least 1");
    }
    let tck = clock_ticks_per_s();
    let mut warnings: Vec<String> = Vec::new();
    // Loopback only: never in network namespaces, whatever the default.
    let mut net = ProcNet::with_netns(bin, None)?;
    net.add(&[]).await?;
    let (pid, victim_addr, victim_peer_id, api) = {
        let v = &net.nodes[0];
        (
            v.pid().context("the victim is not running")?,
            v.addr.clone(),
            v.peer_id.clone(),
            v.api()?.clone(),
        )
    };
    let victim_peer: PeerId = victim_peer_id
        .parse()
        .with_context(|| format!("victim peer id {victim_peer_id}"))?;
    let victim_key = jangteo_protocol::public_key_from_peer_id(&victim_peer_id)
        .context("the victim's peer id is not an ed25519 key")?;
    let listing_hex = api
        .post_listing(
            "abuse target: a used bicycle",
            LISTING_PRICE,
            LISTING_QUANTITY,
        )
        .await?;
    let listing = ListingId::from_hex(&listing_hex).context("listing id")?;
    let before = trade_counts(&api).await?;
    let listed_before = census(&api).await?;
    if before.is_none() {
        let w = "the victim's /v1/status has no trades.{held,messages,queued_deliveries}: \
                 counting them as 0 (stored and queued_deliveries mean nothing until it does)"
            .to_string();
        eprintln!("warning: {w}");
        warnings.push(w);
    }

    // Idle, alone.
    eprintln!(
        "abuse: victim {victim_peer_id} (pid {pid}) idle for {:?}",
        cfg.idle_before
    );
    let idle = CpuWindow::open(pid)?;
    tokio::time::sleep(cfg.idle_before).await;
    let cpu_idle_before = idle.percent(tck)?;

    // The throw-away keys connect.
    eprintln!("abuse: starting {} throw-away keys", cfg.keys);
    let mut attackers = Vec::with_capacity(cfg.keys);
    for _ in 0..cfg.keys {
        attackers.push(start_attacker(&victim_addr, victim_peer).await?);
    }
    let keys: Vec<SigningKey> = attackers.iter().map(|a| a.key.clone()).collect();

    // The attack.
    let total = cfg.keys * cfg.offers_per_key;
    eprintln!(
        "abuse: {} keys x {} requests = {total}, one per {:?} per key",
        cfg.keys, cfg.offers_per_key, cfg.pace
    );
    let attack_start = Instant::now();
    let during = CpuWindow::open(pid)?;
    // Bounded in time as in count: a key that is still sending after this stops.
    let deadline = attack_start
        + cfg.pace * cfg.offers_per_key as u32
        + ANSWER_TIMEOUT * 2
        + Duration::from_secs(60);
    let mut tasks = Vec::with_capacity(cfg.keys);
    for (k, a) in attackers.iter().enumerate() {
        let client = a.node.network.clone();
        let me = a.key.clone();
        // The other party of the chains: the next key (a fresh one when there is no other).
        let partner = if cfg.keys > 1 {
            keys[(k + 1) % cfg.keys].clone()
        } else {
            random_key()
        };
        let (n, pace) = (cfg.offers_per_key, cfg.pace);
        tasks.push(tokio::spawn(async move {
            let mut tally: BTreeMap<Attack, Tally> = BTreeMap::new();
            let mut tick = tokio::time::interval(pace);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for j in 0..n {
                tick.tick().await;
                if Instant::now() >= deadline {
                    break;
                }
                // Shift by key so that at any moment every attack is under way.
                let attack = Attack::ALL[(j + k) % Attack::ALL.len()];
                let msgs = request(attack, k, j, &me, &partner, victim_key, listing);
                send(
                    &client,
                    victim_peer,
                    &msgs,
                    tally.entry(attack).or_default(),
                )
                .await;
            }
            tally
        }));
    }
    let mut by_attack: BTreeMap<Attack, Tally> = BTreeMap::new();
    for t in tasks {
        for (attack, tally) in t.await? {
            by_attack.entry(attack).or_default().add(&tally);
        }
    }
    let cpu_during = during.percent(tck)?;
    let attack_secs = attack_start.elapsed().as_secs_f64();
    let mut sum = Tally::default();
    for t in by_attack.values() {
        sum.add(t);
    }

    // Throw-away keys vanish.
    eprintln!(
        "abuse: attack done in {attack_secs:.1} s; the keys leave; watching for {:?}",
        cfg.after
    );
    futures::future::join_all(attackers.into_iter().map(|a| async move {
        a.node.shutdown().await;
        drop(a.dir);
    }))
    .await;
    let after = CpuWindow::open(pid)?;
    tokio::time::sleep(cfg.after).await;
    let cpu_idle_after = after.percent(tck)?;
    let after_counts = trade_counts(&api).await?;
    let listed_after = census(&api).await?;
    if before.is_some() && after_counts.is_none() {
        warnings.push("the trades counters vanished from /v1/status after the attack".into());
    }
    let count = |c: Option<TradeCounts>, f: fn(&TradeCounts) -> u64| c.as_ref().map_or(0, f);
    let stored = count(after_counts, |t| t.messages).saturating_sub(count(before, |t| t.messages));
    let held = count(after_counts, |t| t.held).saturating_sub(count(before, |t| t.held));
    let rss_mib = net.nodes[0]
        .rss_bytes()
        .map_or(0.0, |b| one_decimal(b as f64 / 1048576.0));
    let report = Report {
        offers_sent: sum.sent,
        accepted_by_victim: sum.accepted,
        refused_by_victim: sum.refused,
        stored,
        queued_deliveries: count(after_counts, |t| t.queued_deliveries),
        cpu_idle_before: one_decimal(cpu_idle_before),
        cpu_during: one_decimal(cpu_during),
        cpu_idle_after: one_decimal(cpu_idle_after),
        busy_from_victim: sum.busy,
        unanswered: sum.unanswered,
        held,
        listed: Listed {
            trades_before: listed_before.trades,
            trades_after: listed_after.trades,
            messages_stored: listed_after.messages.saturating_sub(listed_before.messages),
            queued_deliveries: listed_after.queued,
        },
        status_has_trades: before.is_some() && after_counts.is_some(),
        keys: cfg.keys,
        offers_per_key: cfg.offers_per_key,
        pace_ms: cfg.pace.as_millis() as u64,
        attack_secs: one_decimal(attack_secs),
        idle_before_secs: cfg.idle_before.as_secs_f64(),
        after_secs: cfg.after.as_secs_f64(),
        victim_rss_mib_after: rss_mib,
        by_attack: by_attack
            .into_iter()
            .map(|(a, t)| (a.name().to_string(), t))
            .collect(),
        warnings,
    };
    net.shutdown().await?;
    Ok(report)
}

/// The report as lines of text.
pub fn human(r: &Report) -> String {
    let mut s = format!(
        "abuse: {} keys x {} requests (one per {} ms per key), attack {:.1} s, \
         watched {:.0} s after\n\
         \x20 offers sent            {}\n\
         \x20 accepted by victim     {}\n\
         \x20 refused by victim      {}\n\
         \x20 busy / unanswered      {} / {}\n\
         \x20 stored (messages)      {}\n\
         \x20 held (trades)          {}\n\
         \x20 queued deliveries      {}\n\
         \x20 via /v1/trades         trades {} -> {}, messages stored {}, queued {}\n\
         \x20 cpu idle before        {:.1} %\n\
         \x20 cpu during             {:.1} %\n\
         \x20 cpu idle after         {:.1} %\n",
        r.keys,
        r.offers_per_key,
        r.pace_ms,
        r.attack_secs,
        r.after_secs,
        r.offers_sent,
        r.accepted_by_victim,
        r.refused_by_victim,
        r.busy_from_victim,
        r.unanswered,
        r.stored,
        r.held,
        r.queued_deliveries,
        r.listed.trades_before,
        r.listed.trades_after,
        r.listed.messages_stored,
        r.listed.queued_deliveries,
        r.cpu_idle_before,
        r.cpu_during,
        r.cpu_idle_after,
    );
    for (name, t) in &r.by_attack {
        s.push_str(&format!(
            "  {name:<22} sent {} accepted {} refused {} busy {} unanswered {}\n",
            t.sent, t.accepted, t.refused, t.busy, t.unanswered
        ));
        for (why, n) in &t.reasons {
            s.push_str(&format!("      {n:>5} x {why}\n"));
        }
    }
    for w in &r.warnings {
        s.push_str(&format!("  warning: {w}\n"));
    }
    s
}
