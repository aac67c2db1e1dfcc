//! Relay mailboxes for offline peers, relay side: hold sealed items for a recipient key,
//! hand a peer what waits for it, delete what it acknowledges.
//!
//! It receives the requests the swarm task routed to it (already counted by the peer,
//! address and subnet rate limits, and at most [`crate::net::MAILBOX_INBOUND_PER_PEER`] of
//! one peer waiting), writes and reads the store on a blocking thread (a put is synced to
//! disk before "stored" is answered; it reads counters, never the recipient's mailbox), and
//! answers through the [`Client`]. The sending side (deposit, fetch, ack as a client) lives
//! with the trades service that owns the messages.
//!
//! Limits of a put, each refused with its reason: the relay's total ([`MailboxRelay::new`],
//! [`MAILBOX_TOTAL_BYTES_MAX`] by default), the recipient's ([`MAILBOX_ITEMS_MAX`],
//! [`MAILBOX_BYTES_MAX`]), and the sender's share of that recipient's mailbox (an eighth,
//! [`MAILBOX_SENDER_SHARE`]) and its subnet's (a quarter, [`MAILBOX_SUBNET_SHARE`]), so
//! that a few throw-away keys cannot fill a victim's mailbox and refuse its honest mail.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_bytes::ByteBuf;
use tokio::sync::{mpsc, watch};

use crate::clock::now_ms;
use libp2p::PeerId;

use crate::net::{
    Client, InboundMailbox, MAILBOX_FETCH_BYTES, MAILBOX_FETCH_ITEMS, MAILBOX_PUT_RATE_MAX,
    MAILBOX_RATE_WINDOW, MailboxRequest, MailboxResponse, Origin, Response, serve_inbound,
};
use crate::store::{MailboxLimits, Quota, Store};

/// How long a relay keeps an item.
pub const MAILBOX_RETENTION_MS: u64 = 14 * 24 * 3600 * 1000;
/// Most items waiting for one recipient.
pub const MAILBOX_ITEMS_MAX: usize = 256;
/// Most bytes waiting for one recipient.
pub const MAILBOX_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Smallest sealed item (the seal's own overhead).
pub const SEALED_MIN_BYTES: usize = 48;
/// Mailbox requests answered at once (each put is an fsync).
pub const MAILBOX_WORKERS: usize = 2;
/// Sealed bytes a relay holds in all mailboxes together, unless configured otherwise
/// (`--mailbox-cap-mib`): 1 GiB, about 4,000 full mailboxes or 100,000 typical trade
/// messages.
pub const MAILBOX_TOTAL_BYTES_MAX: u64 = 1 << 30;
/// One sender (peer id) may hold this fraction (1/n) of one recipient's mailbox: 32 items,
/// 1 MiB. Four throw-away keys fill half of it; honest senders still get in.
pub const MAILBOX_SENDER_SHARE: u64 = 8;
/// One subnet (IPv4 /24, IPv6 /48) may hold this fraction (1/n) of one recipient's mailbox,
/// whatever number of keys it uses.
pub const MAILBOX_SUBNET_SHARE: u64 = 4;

/// The relay side of mailboxes.
#[derive(Debug, Clone)]
pub struct MailboxRelay {
    store: Arc<Store>,
    network: Client,
    total_bytes: u64,
}

impl MailboxRelay {
    /// A relay mailbox over the node's store, holding at most `total_bytes` sealed bytes.
    pub fn new(store: Arc<Store>, network: Client, total_bytes: u64) -> Self {
        Self {
            store,
            network,
            total_bytes,
        }
    }

    /// Answers what the swarm task routes here, [`MAILBOX_WORKERS`] at a time, until
    /// `shutdown`.
    pub async fn run(
        self,
        inbound: mpsc::Receiver<InboundMailbox>,
        shutdown: watch::Receiver<bool>,
    ) {
        serve_inbound(inbound, MAILBOX_WORKERS, shutdown, move |req| {
            let this = self.clone();
            async move {
                let store = this.store.clone();
                let (peer, origin, total) = (req.peer, req.origin, this.total_bytes);
                let request = req.request;
                let response = tokio::task::spawn_blocking(move || {
                    serve(&store, &peer, origin, request, now_ms(), total)
                })
                .await
                .unwrap_or_else(|e| MailboxResponse::Refused(format!("internal: {e}")));
                let _ = this
                    .network
                    .respond(Response::Mailbox(req.channel, response))
                    .await;
                // The peer's place in the queue is free once it is answered.
                drop(req.slot);
            }
        })
        .await;
    }
}

/// The name a sending peer's share of a mailbox is counted under.
pub fn sender_holder(peer: &PeerId) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"jangteo/mailbox-sender/");
    h.update(&peer.to_bytes());
    *h.finalize().as_bytes()
}

/// The limits of a relay holding at most `total_bytes`.
pub fn limits(total_bytes: u64) -> MailboxLimits {
    MailboxLimits {
        items_per_recipient: MAILBOX_ITEMS_MAX as u64,
        bytes_per_recipient: MAILBOX_BYTES_MAX as u64,
        total_bytes,
    }
}

/// The answer to one mailbox request from `peer`, connected from `origin`, on a relay
/// holding at most `total_bytes`. Blocking (store I/O, a put is synced). Fetch and ack act
/// on the requesting peer's own mailbox.
pub fn serve(
    store: &Store,
    peer: &PeerId,
    origin: Option<Origin>,
    request: MailboxRequest,
    now: u64,
    total_bytes: u64,
) -> MailboxResponse {
    let refused = |e: &dyn std::fmt::Display| MailboxResponse::Refused(format!("relay store: {e}"));
    let me = || jangteo_protocol::public_key_from_peer_id(&peer.to_string());
    match request {
        MailboxRequest::Put { to, sealed } => {
            let Ok(to) = <[u8; 32]>::try_from(to.as_slice()) else {
                return MailboxResponse::Refused("to: not a 32-byte key".into());
            };
            if sealed.len() > jangteo_protocol::mailbox::SEALED_MAX_BYTES
                || sealed.len() < SEALED_MIN_BYTES
            {
                return MailboxResponse::Refused("sealed item too large or too small".into());
            }
            let share = |n: u64| Quota {
                items: MAILBOX_ITEMS_MAX as u64 / n,
                bytes: MAILBOX_BYTES_MAX as u64 / n,
            };
            let mut holders = vec![(sender_holder(peer), share(MAILBOX_SENDER_SHARE))];
            if let Some(o) = origin {
                holders.push((o.subnet.holder(), share(MAILBOX_SUBNET_SHARE)));
            }
            match store.mailbox_put(
                &to,
                &sealed,
                &holders,
                now + MAILBOX_RETENTION_MS,
                &limits(total_bytes),
            ) {
                Ok(Ok(_)) => MailboxResponse::Stored,
                Ok(Err(reason)) => MailboxResponse::Refused(reason),
                Err(e) => refused(&e),
            }
        }
        MailboxRequest::Fetch => {
            let Some(me) = me() else {
                return MailboxResponse::Refused("only ed25519 peers have mailboxes".into());
            };
            match store.mailbox_fetch(&me.0, now, MAILBOX_FETCH_ITEMS, MAILBOX_FETCH_BYTES) {
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
            let Some(me) = me() else {
                return MailboxResponse::Refused("only ed25519 peers have mailboxes".into());
            };
            let ids: Vec<[u8; 32]> = ids
                .iter()
                .filter_map(|i| <[u8; 32]>::try_from(i.as_slice()).ok())
                .take(MAILBOX_FETCH_ITEMS)
                .collect();
            match store.mailbox_ack(&me.0, &ids) {
                Ok(()) => MailboxResponse::Done,
                Err(e) => refused(&e),
            }
        }
    }
}

/// Puts this node sends one relay per [`MAILBOX_RATE_WINDOW`]: half what the relay accepts
/// ([`MAILBOX_PUT_RATE_MAX`]), so that the relay's fixed windows, which a sliding count
/// of ours never exceeds, leave room for what its address shares.
pub const PUTS_PER_RELAY: usize = (MAILBOX_PUT_RATE_MAX / 2) as usize;
/// Relays whose pace is remembered before idle ones are forgotten.
const PACED_RELAYS_MAX: usize = 64;

/// One relay's pace: when our last puts to it went, and until when it is left alone after
/// a `rate limit` refusal.
#[derive(Debug, Default)]
pub struct Pace {
    sent: VecDeque<Instant>,
    refused_until: Option<Instant>,
}

impl Pace {
    /// Takes one put at `now`: allowed when fewer than [`PUTS_PER_RELAY`] went in the last
    /// [`MAILBOX_RATE_WINDOW`] and no refusal is being waited out; otherwise why it waits.
    pub fn take(&mut self, now: Instant) -> Result<(), String> {
        if let Some(until) = self.refused_until
            && now < until
        {
            return Err(format!(
                "it refused a put by its rate limit; no put to it for {} s",
                until.saturating_duration_since(now).as_secs().max(1)
            ));
        }
        while self
            .sent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= MAILBOX_RATE_WINDOW)
        {
            self.sent.pop_front();
        }
        if self.sent.len() >= PUTS_PER_RELAY {
            return Err(format!(
                "it paces puts ({PUTS_PER_RELAY} per {} s)",
                MAILBOX_RATE_WINDOW.as_secs()
            ));
        }
        self.sent.push_back(now);
        Ok(())
    }

    /// The relay refused a put at `now` by its rate limit: no put to it for a window.
    pub fn refused(&mut self, now: Instant) {
        self.refused_until = Some(now + MAILBOX_RATE_WINDOW);
    }

    fn idle(&self, now: Instant) -> bool {
        self.refused_until.is_none_or(|u| now >= u)
            && self
                .sent
                .back()
                .is_none_or(|t| now.saturating_duration_since(*t) >= MAILBOX_RATE_WINDOW)
    }
}

/// How this node paces its mailbox deposits, per relay: one put at a time to a relay, at
/// most [`PUTS_PER_RELAY`] per window, none for a window after a `rate limit` refusal; and
/// one item deposited by one task at a time, however many retry passes run at once. A
/// relay bans a sender that keeps putting after its refusals
/// ([`crate::net::MAILBOX_REFUSED_PUTS_MAX`]); this keeps an honest node far from that.
#[derive(Debug, Default)]
pub struct PutPacer {
    relays: Mutex<HashMap<PeerId, Arc<tokio::sync::Mutex<Pace>>>>,
    in_flight: InFlightItems,
}

/// Items some task is working on (a delivery, a deposit), so that retry passes running at
/// once take each item once.
#[derive(Debug, Default)]
pub struct InFlightItems(Mutex<HashSet<[u8; 32]>>);

/// An item being worked on; forgotten when dropped.
#[derive(Debug)]
pub struct Working<'a> {
    set: &'a InFlightItems,
    item: [u8; 32],
}

impl Drop for Working<'_> {
    fn drop(&mut self) {
        let mut set = self.set.0.lock().unwrap_or_else(|e| e.into_inner());
        set.remove(&self.item);
    }
}

impl InFlightItems {
    /// Marks `item` as being worked on; None when another task is working on it.
    pub fn begin(&self, item: [u8; 32]) -> Option<Working<'_>> {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Built only when inserted: a guard dropped here would forget the other task's item
        // (and lock the set twice).
        if set.insert(item) {
            Some(Working { set: self, item })
        } else {
            None
        }
    }
}

impl PutPacer {
    fn relay(&self, relay: PeerId, now: Instant) -> Arc<tokio::sync::Mutex<Pace>> {
        let mut relays = self.relays.lock().unwrap_or_else(|e| e.into_inner());
        if relays.len() >= PACED_RELAYS_MAX && !relays.contains_key(&relay) {
            relays.retain(|_, p| {
                Arc::strong_count(p) > 1 || p.try_lock().map_or(true, |p| !p.idle(now))
            });
        }
        relays.entry(relay).or_default().clone()
    }
}

/// Seals the objects `messages` (one bundle) to `to` and leaves it with every connected
/// relay that its pace allows now ([`PutPacer`]); returns the relays that took it, or the
/// reasons they gave or why it waits (`waiting: …`: the caller keeps it queued for a later
/// pass).
pub async fn deposit(
    network: &crate::net::Client,
    to: &str,
    messages: &[Vec<u8>],
) -> Result<Vec<String>, String> {
    let key = jangteo_protocol::public_key_from_peer_id(to)
        .ok_or_else(|| format!("{to} is not an ed25519 peer id"))?;
    let bundle = jangteo_protocol::mailbox::encode_bundle(messages);
    let pacer = network.put_pacer();
    let item = {
        let mut h = blake3::Hasher::new();
        h.update(&key.0);
        h.update(&bundle);
        *h.finalize().as_bytes()
    };
    let Some(_depositing) = pacer.in_flight.begin(item) else {
        return Err("waiting: another retry pass is depositing it".into());
    };
    let mut eph = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut eph);
    let sealed = jangteo_protocol::mailbox::seal(&key, eph, &bundle).map_err(|e| e.to_string())?;
    let relays = network.relays().await.map_err(|e| e.to_string())?;
    let mut took = Vec::new();
    let mut reasons = Vec::new();
    for r in relays {
        let pace = pacer.relay(r, Instant::now());
        // One put at a time to a relay: a refusal is known before the next one goes.
        let mut pace = pace.lock().await;
        if let Err(why) = pace.take(Instant::now()) {
            reasons.push(format!("waiting: relay {r}: {why}"));
            continue;
        }
        let req = MailboxRequest::Put {
            to: ByteBuf::from(key.0.to_vec()),
            sealed: ByteBuf::from(sealed.clone()),
        };
        match network.mailbox(r, req).await {
            Ok(Ok(MailboxResponse::Stored)) => took.push(r.to_string()),
            Ok(Ok(MailboxResponse::Refused(why))) => {
                if why.starts_with("rate limit") {
                    pace.refused(Instant::now());
                }
                reasons.push(format!("relay {r} refused: {why}"))
            }
            Ok(Ok(other)) => reasons.push(format!("relay {r} answered {other:?}")),
            Ok(Err(e)) => reasons.push(format!("relay {r}: {e}")),
            Err(e) => reasons.push(e.to_string()),
        }
    }
    if took.is_empty() && !reasons.is_empty() {
        return Err(reasons.join("; "));
    }
    Ok(took)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_relay_gets_at_most_half_its_put_limit_in_any_window_and_none_after_a_refusal() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_millis(n);
        let mut p = Pace::default();
        // A burst: half the relay's limit goes, the rest waits.
        for _ in 0..PUTS_PER_RELAY {
            p.take(t0).expect("within the pace");
        }
        let why = p.take(s(9_999)).expect_err("paced");
        assert!(why.contains("paces"), "{why}");
        // A window after the burst, as many again.
        for _ in 0..PUTS_PER_RELAY {
            p.take(s(10_000)).expect("a new window");
        }
        assert!(p.take(s(10_001)).is_err());
        // Puts offered every 100 ms for a minute: no 10 s span (so none of the relay's
        // fixed windows, wherever it starts them) holds more than the pace.
        let mut p = Pace::default();
        let sent: Vec<u64> = (0..600u64)
            .map(|i| i * 100)
            .filter(|ms| p.take(s(*ms)).is_ok())
            .collect();
        assert_eq!(sent.len(), 6 * PUTS_PER_RELAY, "{sent:?}");
        for (i, a) in sent.iter().enumerate() {
            let within = sent[i..].iter().take_while(|b| **b < a + 10_000).count();
            assert!(within <= PUTS_PER_RELAY, "{within} from {a} ms");
        }
        assert!(PUTS_PER_RELAY as u32 <= MAILBOX_PUT_RATE_MAX / 2);
        // A refusal: nothing for a whole window, however little was sent.
        let mut p = Pace::default();
        p.take(t0).expect("first");
        p.refused(s(1));
        let why = p.take(s(2)).expect_err("backs off");
        assert!(why.contains("refused"), "{why}");
        assert!(p.take(s(10_000)).is_err(), "still within the window");
        p.take(s(10_001)).expect("the window is over");
        assert!(!p.idle(s(10_001)));
        assert!(p.idle(s(20_001)));
    }

    #[test]
    fn an_item_is_deposited_by_one_task_at_a_time() {
        let items = InFlightItems::default();
        let first = items.begin([1; 32]).expect("first");
        assert!(items.begin([1; 32]).is_none(), "already being deposited");
        assert!(items.begin([2; 32]).is_some(), "another item");
        assert!(items.begin([1; 32]).is_none(), "still the first's");
        drop(first);
        assert!(items.begin([1; 32]).is_some(), "done, so again");
    }

    #[tokio::test]
    async fn relays_are_paced_apart_and_idle_ones_are_forgotten() {
        let pacer = PutPacer::default();
        let t0 = Instant::now();
        let a = PeerId::random();
        for _ in 0..PUTS_PER_RELAY {
            pacer.relay(a, t0).lock().await.take(t0).expect("a");
        }
        assert!(pacer.relay(a, t0).lock().await.take(t0).is_err());
        let b = PeerId::random();
        pacer
            .relay(b, t0)
            .lock()
            .await
            .take(t0)
            .expect("b has its own pace");
        // Many relays later, the idle ones make room.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..PACED_RELAYS_MAX + 5 {
            pacer.relay(PeerId::random(), later);
        }
        let held = pacer.relays.lock().expect("not poisoned").len();
        assert!(held <= PACED_RELAYS_MAX + 1, "{held}");
    }
}
