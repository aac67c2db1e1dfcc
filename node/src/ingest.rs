//! The one path by which objects from outside (gossip, sync, the local API) enter the store:
//! decode, verify the signature, validate every field, then write. Nothing that fails a step
//! is stored. Owns no I/O beyond the store call.
//!
//! [`GossipValidator`] runs this path for gossip off the swarm task, a bounded number of
//! messages at a time, and reports each verdict back through the [`Client`].

use jangteo_protocol::{Kind, Object, ObjectError, ObjectId, verify_object, verify_objects};

use std::sync::Arc;

use libp2p::PeerId;
use libp2p::gossipsub::MessageAcceptance;
use tokio::sync::{broadcast, mpsc, watch};

use crate::NodeEvent;
use crate::error::StoreError;
use crate::net::{Client, GossipMessage, GossipTopic, serve_inbound};
use crate::store::{AttestationWrite, ListingWrite, ReportWrite, Store};

/// The gossipsub topic of one listing shard (see [`jangteo_protocol::listing::CATEGORIES`]).
pub fn listing_topic(shard: &str) -> String {
    format!("jangteo/v1/listings/{shard}")
}

/// The shard a listing envelope belongs to, read without checking the signature (the caller
/// verifies before storing). None when the bytes are not a listing.
pub fn listing_shard(bytes: &[u8]) -> Option<&'static str> {
    let env = jangteo_protocol::Envelope::decode(bytes).ok()?;
    if env.kind != Kind::Listing {
        return None;
    }
    let l = jangteo_protocol::Listing::decode(&env.body).ok()?;
    Some(jangteo_protocol::listing::shard_of(&l.category))
}

/// The gossipsub topic objects of a kind travel on (listings: the default shard's; see
/// [`listing_topic`]).
pub fn topic_for(kind: Kind) -> &'static str {
    match kind {
        Kind::Listing => "jangteo/v1/listings/general",
        Kind::Profile => "jangteo/v1/profiles",
        // Equivocation proofs count against a key's trust, as attestations do.
        Kind::Attestation | Kind::Equivocation => "jangteo/v1/attestations",
        Kind::Report => "jangteo/v1/reports",
        // Trade messages go directly between the parties, never by gossip.
        _ => "jangteo/v1/direct-only",
    }
}

/// What happened to an incoming object.
#[derive(Debug)]
pub enum Ingested {
    /// Valid and new: stored.
    Stored {
        /// Content id.
        id: ObjectId,
        /// Its kind.
        kind: Kind,
        /// For listings: the listing id (hex).
        listing: Option<String>,
    },
    /// Valid but not stored (already held, older than the head, or expired).
    Ignored(&'static str),
    /// Invalid: refused. The sender is at fault.
    Invalid(ObjectError),
    /// Refused for a reason that depends on this node's clock or state, not on the bytes
    /// alone (dated in the future by this clock, a `created_at` that differs from a version
    /// only this node may hold): other nodes may accept it, so the sender is not at fault.
    Unconfirmed(ObjectError),
}

/// Verifies and stores one object. `expected` is the kind the channel carries (a topic),
/// if any. `durable` syncs the write before returning.
pub fn ingest(
    store: &Store,
    bytes: &[u8],
    expected: Option<Kind>,
    now_ms: u64,
    durable: bool,
) -> Result<Ingested, StoreError> {
    store_verified(
        store,
        verify_stamped(store, bytes, now_ms),
        expected,
        now_ms,
        durable,
    )
}

/// Refuses a listing or an attestation whose stamp is worth less than the network asks of
/// every such object (SPEC §3.1, §7.1), reading the envelope and body without checking any
/// signature: one or two hashes, so a flood of cheap objects is dropped before the ed25519
/// checks it would otherwise cost (an attestation carries five signatures). Bytes that do not
/// decode pass here; [`verify_object`] refuses them with the reason.
pub fn check_stamp_first(bytes: &[u8], network_bits: u32) -> Result<(), ObjectError> {
    if network_bits == 0 {
        return Ok(());
    }
    let Ok(env) = jangteo_protocol::Envelope::decode(bytes) else {
        return Ok(());
    };
    match env.kind {
        Kind::Listing => {
            let Ok(l) = jangteo_protocol::Listing::decode(&env.body) else {
                return Ok(());
            };
            let got = l.stamp_work(&env.author);
            if got < network_bits {
                return Err(ObjectError::Invalid(stamp_too_cheap(got, network_bits)));
            }
        }
        Kind::Attestation => {
            let Ok(a) = jangteo_protocol::attestation::Attestation::decode(&env.body) else {
                return Ok(());
            };
            let needed = jangteo_protocol::attestation::stamp_bits(network_bits);
            let got = a.stamp_work(&env.author);
            if got < needed {
                return Err(ObjectError::Invalid(attestation_stamp_too_cheap(
                    got, needed,
                )));
            }
        }
        _ => {}
    }
    Ok(())
}

/// [`check_stamp_first`] at the store's network difficulty, then [`verify_object`].
fn verify_stamped(
    store: &Store,
    bytes: &[u8],
    now_ms: u64,
) -> Result<(jangteo_protocol::SignedObject, Object), ObjectError> {
    check_stamp_first(bytes, store.stamp_bits())?;
    verify_object(bytes, now_ms)
}

/// [`verify_stamped`] for many objects: each stamp first (an object whose stamp is too cheap
/// costs no signature check), then the signatures of the rest as one batch
/// ([`verify_objects`]). One outcome per object, in order.
fn verify_stamped_many<B: AsRef<[u8]>>(
    store: &Store,
    objects: &[B],
    now_ms: u64,
) -> Vec<Result<(jangteo_protocol::SignedObject, Object), ObjectError>> {
    let bits = store.stamp_bits();
    let stamps: Vec<Result<(), ObjectError>> = objects
        .iter()
        .map(|b| check_stamp_first(b.as_ref(), bits))
        .collect();
    let paid: Vec<&[u8]> = objects
        .iter()
        .zip(&stamps)
        .filter(|(_, s)| s.is_ok())
        .map(|(b, _)| b.as_ref())
        .collect();
    let mut verified = verify_objects(&paid, now_ms).into_iter();
    stamps
        .into_iter()
        .map(|s| match s {
            Ok(()) => verified.next().unwrap_or(Err(ObjectError::BadSignature)),
            Err(e) => Err(e),
        })
        .collect()
}

/// Most threads [`ingest_batch`] verifies on.
pub const VERIFY_THREADS_MAX: usize = 4;
/// Below this many objects a batch is verified on the calling thread alone.
pub const PARALLEL_VERIFY_MIN: usize = 8;
/// Objects a verifying thread takes at a time in [`ingest_batch`], and checks as one
/// signature batch.
pub const VERIFY_CHUNK: usize = 64;

/// Verifies and stores many objects at once, with exactly the acceptance rules of
/// [`ingest`]: stamps first ([`check_stamp_first`]), then signatures and fields by
/// [`verify_objects`] on up to [`VERIFY_THREADS_MAX`] threads (the expensive part), in chunks
/// of [`VERIFY_CHUNK`] whose signatures are checked as one batch (ZIP-215: the same verdicts
/// as one by one),
/// while the calling thread stores the chunks already verified, one object at a time in
/// their order, so a later version in the batch meets the earlier one as [`ingest`] would.
/// Returns one outcome per object, in order; stops at the first store failure.
pub fn ingest_batch<B: AsRef<[u8]> + Sync>(
    store: &Store,
    objects: &[B],
    expected: Option<Kind>,
    now_ms: u64,
    durable: bool,
) -> Result<Vec<Ingested>, StoreError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(VERIFY_THREADS_MAX);
    if threads < 2 || objects.len() < PARALLEL_VERIFY_MIN {
        return verify_stamped_many(store, objects, now_ms)
            .into_iter()
            .map(|v| store_verified(store, v, expected, now_ms, durable))
            .collect();
    }
    let chunks = objects.len().div_ceil(VERIFY_CHUNK);
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        // Bounded: verifiers wait when the storing thread is behind.
        let (tx, rx) = std::sync::mpsc::sync_channel(threads * 2);
        for _ in 0..threads {
            let (tx, next) = (tx.clone(), &next);
            s.spawn(move || {
                loop {
                    let c = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if c >= chunks {
                        break;
                    }
                    let part =
                        &objects[c * VERIFY_CHUNK..((c + 1) * VERIFY_CHUNK).min(objects.len())];
                    let verified = verify_stamped_many(store, part, now_ms);
                    if tx.send((c, verified)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // Chunks arrive in any order; store them in the batch's order.
        let mut waiting = std::collections::BTreeMap::new();
        let mut due = 0;
        let mut out = Vec::with_capacity(objects.len());
        for (c, verified) in rx {
            waiting.insert(c, verified);
            while let Some(verified) = waiting.remove(&due) {
                for v in verified {
                    out.push(store_verified(store, v, expected, now_ms, durable)?);
                }
                due += 1;
            }
        }
        Ok(out)
    })
}

/// The part of [`ingest`] after verification: the kind check and the store write.
fn store_verified(
    store: &Store,
    verified: Result<(jangteo_protocol::SignedObject, Object), ObjectError>,
    expected: Option<Kind>,
    now_ms: u64,
    durable: bool,
) -> Result<Ingested, StoreError> {
    let (signed, object) = match verified {
        Ok(v) => v,
        Err(e) if e.is_clock_dependent() => return Ok(Ingested::Unconfirmed(e)),
        Err(e) => return Ok(Ingested::Invalid(e)),
    };
    let kind = signed.envelope().kind;
    let same_topic = |k: Kind| k == kind || (k == Kind::Attestation && kind == Kind::Equivocation);
    if expected.is_some_and(|k| !same_topic(k)) {
        return Ok(Ingested::Invalid(ObjectError::Decode(
            jangteo_protocol::DecodeError::UnknownKind(format!(
                "{} on the wrong topic",
                kind.name()
            )),
        )));
    }
    match object {
        Object::Listing(l) => {
            let listing = l.id(&signed.envelope().author).to_hex();
            Ok(match store.put_listing(&signed, &l, now_ms, durable)? {
                w if w.stored() => Ingested::Stored {
                    id: signed.id(),
                    kind,
                    listing: Some(listing),
                },
                ListingWrite::Duplicate => Ingested::Ignored("duplicate"),
                ListingWrite::Stale { .. } => Ingested::Ignored("older than the version held"),
                ListingWrite::Expired => Ingested::Ignored("expired"),
                ListingWrite::Refused(why) => Ingested::Ignored(why),
                ListingWrite::TooCheap { got, needed } => {
                    Ingested::Invalid(ObjectError::Invalid(stamp_too_cheap(got, needed)))
                }
                // Judged by the listings of that key held here; another node may hold fewer.
                w @ (ListingWrite::StampBelowCount { .. } | ListingWrite::OverCap { .. }) => {
                    Ingested::Unconfirmed(ObjectError::Invalid(over_limit(w)))
                }
                // Judged against the version held here, which the sender may never have seen.
                ListingWrite::Inconsistent => {
                    Ingested::Unconfirmed(ObjectError::Invalid(jangteo_protocol::FieldError::new(
                        "created_at",
                        "differs from the listing's first version",
                    )))
                }
                _ => Ingested::Ignored("not stored"),
            })
        }
        Object::Trade(_) => Ok(Ingested::Invalid(ObjectError::Decode(
            jangteo_protocol::DecodeError::UnknownKind(format!(
                "{} is a trade message; those travel by the trade protocol, not gossip",
                kind.name()
            )),
        ))),
        Object::Attestation(a) => {
            Ok(match store.put_attestation(&signed, &a, now_ms, durable)? {
                AttestationWrite::Stored => Ingested::Stored {
                    id: signed.id(),
                    kind,
                    listing: None,
                },
                AttestationWrite::Superseded => {
                    Ingested::Ignored("an attestation that supersedes it is held")
                }
                AttestationWrite::Old => {
                    Ingested::Ignored("its trade completed longer ago than attestations are kept")
                }
                // Counted among what this node holds; another node may hold fewer.
                AttestationWrite::TooCheap { got, needed } => Ingested::Invalid(
                    ObjectError::Invalid(attestation_stamp_too_cheap(got, needed)),
                ),
                AttestationWrite::OverCap { held } => {
                    Ingested::Unconfirmed(ObjectError::Invalid(jangteo_protocol::FieldError::new(
                        "author",
                        format!(
                            "its author has {held} attestations held here, the most a node keeps per author (SPEC §7.1)"
                        ),
                    )))
                }
            })
        }
        Object::Message(_) | Object::Receipt(_) => Ok(Ingested::Invalid(ObjectError::Decode(
            jangteo_protocol::DecodeError::UnknownKind(format!(
                "{} is a direct message; those travel sealed between two people, never by gossip",
                kind.name()
            )),
        ))),
        Object::Equivocation(e) => {
            let facts = e.1;
            Ok(
                if store.put_equivocation(&signed, &facts.author, &facts.trade, durable)? {
                    Ingested::Stored {
                        id: signed.id(),
                        kind,
                        listing: None,
                    }
                } else {
                    Ingested::Ignored("a proof against that key for that trade is held")
                },
            )
        }
        Object::Report(r) => Ok(match store.put_report(&signed, &r, durable)? {
            ReportWrite::Stored => Ingested::Stored {
                id: signed.id(),
                kind,
                listing: None,
            },
            ReportWrite::ListingNotHeld => Ingested::Ignored(
                "a report of a listing this node does not hold (sync offers it again once the listing is here)",
            ),
            // Every node that could forward it holds the listing, whose seller is fixed.
            ReportWrite::WrongSeller => {
                Ingested::Invalid(ObjectError::Invalid(jangteo_protocol::FieldError::new(
                    "about",
                    "is not the seller of the listing reported",
                )))
            }
            ReportWrite::Refused(why) => Ingested::Ignored(why),
        }),
        Object::Profile(p) => Ok(if store.put_profile(&signed, &p, durable)? {
            Ingested::Stored {
                id: signed.id(),
                kind,
                listing: None,
            }
        } else {
            Ingested::Ignored("older than the profile held")
        }),
    }
}

/// The reason given for a listing whose stamp is below the network's base difficulty.
pub fn stamp_too_cheap(got: u32, needed: u32) -> jangteo_protocol::FieldError {
    jangteo_protocol::FieldError::new(
        "stamp",
        format!(
            "the stamp is worth {got} bits of work on this listing, {needed} needed (SPEC §3.1; a stamp made for another listing is worth nothing here)"
        ),
    )
}

/// The reason given for an attestation whose stamp is below the network's attestation
/// difficulty.
pub fn attestation_stamp_too_cheap(got: u32, needed: u32) -> jangteo_protocol::FieldError {
    jangteo_protocol::FieldError::new(
        "stamp",
        format!(
            "the stamp is worth {got} bits of work on this attestation, {needed} needed (SPEC §7.1; a stamp made for another author, trade or time is worth nothing here)"
        ),
    )
}

/// The reason given for a new listing over a limit counted from the listings held here
/// (a [`ListingWrite::StampBelowCount`] or [`ListingWrite::OverCap`]).
pub fn over_limit(w: ListingWrite) -> jangteo_protocol::FieldError {
    match w {
        ListingWrite::OverCap { active } => jangteo_protocol::FieldError::new(
            "listings",
            format!(
                "its seller has {active} active listings held here, the most one key may have (SPEC §3.1); retract one first"
            ),
        ),
        ListingWrite::StampBelowCount {
            got,
            needed,
            active,
        } => jangteo_protocol::FieldError::new(
            "stamp",
            format!(
                "the stamp is worth {got} bits of work; a seller with {active} other active listings needs {needed} (SPEC §3.1)"
            ),
        ),
        other => jangteo_protocol::FieldError::new("listing", format!("{other:?}")),
    }
}

/// What an ingest outcome means for the peer that sent the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and new: forward it.
    Accept,
    /// Not forwarded, nobody at fault (duplicate, stale, store failure).
    Ignore,
    /// Invalid: the sender is at fault.
    Reject,
}

impl Verdict {
    /// Whether the verdict counts as an offense of the peer that sent the object: only a
    /// refusal every node agrees on (decoding, signature, static field limits, topic).
    pub fn is_offense(self) -> bool {
        self == Verdict::Reject
    }
}

impl From<Verdict> for MessageAcceptance {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Accept => MessageAcceptance::Accept,
            Verdict::Ignore => MessageAcceptance::Ignore,
            Verdict::Reject => MessageAcceptance::Reject,
        }
    }
}

/// Judges an ingest outcome: logs it and announces a stored listing on `events`.
pub fn judge(
    outcome: Result<Ingested, StoreError>,
    from: Option<PeerId>,
    events: &broadcast::Sender<NodeEvent>,
) -> Verdict {
    match outcome {
        Ok(Ingested::Stored { listing, .. }) => {
            if let Some(listing) = listing {
                tracing::debug!(listing = %listing, peer = ?from, "listing stored");
                let _ = events.send(NodeEvent::ListingStored { listing });
            }
            Verdict::Accept
        }
        Ok(Ingested::Ignored(_)) => Verdict::Ignore,
        Ok(Ingested::Unconfirmed(e)) => {
            tracing::debug!(peer = ?from, error = %e, "refused an object by this node's clock or state");
            Verdict::Ignore
        }
        Ok(Ingested::Invalid(e)) => {
            tracing::warn!(peer = ?from, error = %e, "refused invalid object");
            Verdict::Reject
        }
        Err(e) => {
            tracing::error!(error = %e, "store write failed");
            Verdict::Ignore
        }
    }
}

/// Gossip messages verified and stored at once.
pub const GOSSIP_WORKERS: usize = 4;
/// Gossiped attestations and proofs checked at once (each up to 65 signatures).
pub const ATTESTATION_WORKERS: usize = 2;

/// Validates gossip off the swarm task: the topic must fit the object, then [`ingest`];
/// the verdict goes back to gossipsub (forward, drop, penalize) and an invalid object counts
/// as an offense of the peer that forwarded it.
#[derive(Debug, Clone)]
pub struct GossipValidator {
    store: Arc<Store>,
    network: Client,
    events: broadcast::Sender<NodeEvent>,
}

impl GossipValidator {
    /// A validator storing into `store`.
    pub fn new(store: Arc<Store>, network: Client, events: broadcast::Sender<NodeEvent>) -> Self {
        Self {
            store,
            network,
            events,
        }
    }

    /// Validates what the swarm task routes here, `workers` at a time, until `shutdown`.
    pub async fn run(
        self,
        inbound: mpsc::Receiver<GossipMessage>,
        workers: usize,
        shutdown: watch::Receiver<bool>,
    ) {
        serve_inbound(inbound, workers, shutdown, move |msg| {
            let this = self.clone();
            async move { this.validate(msg).await }
        })
        .await;
    }

    async fn validate(&self, msg: GossipMessage) {
        let GossipMessage {
            source,
            id,
            topic,
            data,
            slot,
            mut trace,
        } = msg;
        let (store, events) = (self.store.clone(), self.events.clone());
        let (verdict, trace) = tokio::task::spawn_blocking(move || {
            let kind = match topic {
                // A listing must travel in its category's shard.
                GossipTopic::Listings(shard) if listing_shard(&data) == Some(shard) => {
                    Kind::Listing
                }
                GossipTopic::Kind(k) => k,
                GossipTopic::Listings(_) | GossipTopic::Unknown => {
                    tracing::warn!(peer = %source, "object on the wrong topic");
                    return (Verdict::Reject, trace);
                }
            };
            let now = now_ms();
            let verified = verify_object(&data, now);
            if let Some(t) = trace.as_mut() {
                t.validated();
            }
            let outcome = store_verified(&store, verified, Some(kind), now, false);
            if let Some(t) = trace.as_mut() {
                t.stored(match &outcome {
                    Ok(Ingested::Stored { listing, .. }) => listing.as_deref(),
                    _ => None,
                });
            }
            (judge(outcome, Some(source), &events), trace)
        })
        .await
        .unwrap_or((Verdict::Ignore, None));
        // The peer's place in the attestation queue is free once the checks are done.
        drop(slot);
        let _ = self
            .network
            .report_validation(id, source, verdict.into(), trace)
            .await;
        if verdict.is_offense() {
            let _ = self.network.offense(source).await;
        }
    }
}

/// Milliseconds since the unix epoch (kept here for callers outside the node crate).
pub use crate::clock::now_ms;

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use jangteo_protocol::{Listing, ListingStatus, SignedObject};

    fn listing(nonce: u8, seq: u64, now: u64, title: &str) -> Listing {
        Listing {
            stamp: None,
            nonce: [nonce; 16],
            seq,
            created_at: now - 1000,
            updated_at: now - 1000
                + (seq - 1) * jangteo_protocol::listing::LISTING_VERSION_INTERVAL_MS,
            expires_at: now + 86_400_000,
            status: ListingStatus::Active,
            title: title.into(),
            description: String::new(),
            category: "general".into(),
            condition: None,
            price: 1000,
            currency: "KRW".into(),
            quantity: 1,
            images: vec![],
            moderators: vec![],
            location: None,
        }
    }

    /// A mix of everything the ingest path can meet: new listings, newer and older
    /// versions, repeats, altered signatures, garbage, a trade on the wrong channel.
    fn mixed(now: u64) -> Vec<Vec<u8>> {
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let sign = |l: &Listing| {
            SignedObject::sign(Kind::Listing, l.encode(), &key)
                .bytes()
                .to_vec()
        };
        let mut out = Vec::new();
        for i in 0..100u8 {
            let v1 = sign(&listing(i, 1, now, &format!("bike {i}")));
            let v2 = sign(&listing(i, 2, now, &format!("bike {i} (price cut)")));
            match i % 5 {
                0 => out.extend([v1.clone(), v2, v1]),
                1 => out.extend([v2, v1.clone(), v1]),
                2 => {
                    let mut bad = v1.clone();
                    let at = bad.len() - 3;
                    bad[at] ^= 0x40;
                    out.extend([bad, v1]);
                }
                3 => out.extend([vec![i; 40], v1]),
                _ => {
                    let mut expired = listing(i, 1, now, "old");
                    expired.expires_at = now - 10;
                    out.extend([sign(&expired), v2]);
                }
            }
        }
        out
    }

    fn judged(store: &Store, bytes: &[u8], now: u64) -> (String, Verdict) {
        let (events, _) = broadcast::channel(4);
        let outcome = ingest(store, bytes, Some(Kind::Listing), now, false).expect("ingest");
        let shown = format!("{outcome:?}");
        (shown, judge(Ok(outcome), None, &events))
    }

    #[test]
    fn a_future_dated_signed_listing_is_ignored_not_an_offense() {
        let now = now_ms();
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let mut l = listing(1, 1, now, "from a fast clock");
        l.updated_at = now + jangteo_protocol::MAX_CLOCK_SKEW_MS + 60_000;
        let bytes = SignedObject::sign(Kind::Listing, l.encode(), &key)
            .bytes()
            .to_vec();
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("store");
        let (outcome, verdict) = judged(&store, &bytes, now);
        assert!(outcome.starts_with("Unconfirmed"), "{outcome}");
        assert_eq!(verdict, Verdict::Ignore);
        assert!(!verdict.is_offense());
        // Not stored: by this clock it is still in the future.
        assert!(store.object(&ObjectId::of(&bytes)).expect("read").is_none());
        // Once this clock catches up, the same bytes are accepted.
        let later = l.updated_at;
        assert_eq!(judged(&store, &bytes, later).1, Verdict::Accept);
        // A bad signature is still an offense.
        let mut bad = bytes.clone();
        let at = bad.len() - 3;
        bad[at] ^= 0x40;
        let (_, verdict) = judged(&store, &bad, now);
        assert_eq!(verdict, Verdict::Reject);
        assert!(verdict.is_offense());
    }

    /// SPEC §3.1: a stamp below the network's base is an offense (checkable from the bytes
    /// alone); a stamp below what the key's listings held here ask is ignored, not an
    /// offense (another node may hold fewer). Neither is stored.
    #[test]
    fn a_stamp_below_the_base_is_an_offense_and_below_my_count_is_not() {
        let now = now_ms();
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let author = jangteo_protocol::PublicKey(key.verifying_key().to_bytes());
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("store");
        store.set_stamp_bits(8);
        // The lowest stamp worth exactly `bits`.
        let stamp = |l: &mut Listing, bits: u32| {
            let w = jangteo_protocol::stamp::Worker::new(
                jangteo_protocol::stamp::LISTING_CONTEXT,
                &l.stamp_subject(&author),
            );
            l.stamp = (0..).find(|&n| w.bits(n) == bits);
        };
        let sign = |l: &Listing| {
            SignedObject::sign(Kind::Listing, l.encode(), &key)
                .bytes()
                .to_vec()
        };
        let bare = sign(&listing(1, 1, now, "no stamp"));
        let (outcome, verdict) = judged(&store, &bare, now);
        assert!(outcome.contains("stamp"), "{outcome}");
        assert_eq!(verdict, Verdict::Reject);
        assert!(store.object(&ObjectId::of(&bare)).expect("read").is_none());
        for i in 0..16 {
            let mut l = listing(10 + i, 1, now, "stamped");
            stamp(&mut l, 8);
            assert_eq!(judged(&store, &sign(&l), now).1, Verdict::Accept);
        }
        let mut l = listing(40, 1, now, "the seventeenth");
        stamp(&mut l, 8);
        let bytes = sign(&l);
        let (outcome, verdict) = judged(&store, &bytes, now);
        assert!(outcome.starts_with("Unconfirmed"), "{outcome}");
        assert!(
            outcome.contains("16 other active listings needs 9"),
            "{outcome}"
        );
        assert_eq!(verdict, Verdict::Ignore);
        assert!(store.object(&ObjectId::of(&bytes)).expect("read").is_none());
    }

    /// A completed trade between `buyer` and `seller` (offer, accept, paid, received) and the
    /// buyer's rating of it dated `at`, stamped to exactly `bits` (none when `None`).
    fn rating(
        buyer: &SigningKey,
        seller: &SigningKey,
        n: u64,
        now: u64,
        at: u64,
        bits: Option<u32>,
    ) -> jangteo_protocol::attestation::Attestation {
        use jangteo_protocol::trade::{Role, Terms, TradeMessage};
        let pk = |k: &SigningKey| jangteo_protocol::PublicKey(k.verifying_key().to_bytes());
        let terms = Terms {
            listing: jangteo_protocol::ListingId([n as u8; 32]),
            listing_seq: 1,
            price: 10_000 + n,
            currency: "KRW".into(),
            quantity: 1,
        };
        let offer = TradeMessage {
            trade: None,
            prev: None,
            at: now - 60_000,
            seller: Some(pk(seller)),
            terms: Some(terms.clone()),
            moderators: vec![],
            note: String::new(),
            outcome: None,
        };
        let first = SignedObject::sign(Kind::Offer, offer.encode(), buyer);
        let (trade, mut prev) = (first.id(), first.id());
        let mut chain = vec![first.bytes().to_vec()];
        for (i, kind) in [Kind::Accept, Kind::Paid, Kind::Received]
            .into_iter()
            .enumerate()
        {
            let mut m = TradeMessage::follow(trade, prev, now - 50_000 + 1000 * i as u64);
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
        let mut a = jangteo_protocol::attestation::Attestation {
            chain,
            about: pk(seller),
            role: Role::Buyer,
            score: 5,
            comment: String::new(),
            at,
            stamp: None,
        };
        if let Some(bits) = bits {
            let w = jangteo_protocol::stamp::Worker::new(
                jangteo_protocol::stamp::ATTESTATION_CONTEXT,
                &a.stamp_subject(&pk(buyer)),
            );
            a.stamp = (0..).find(|&x| w.bits(x) == bits);
        }
        a
    }

    /// SPEC §7.1 against a lying sender: no stamp, a cheap one, one made for another author,
    /// trade or time is an offense and stored nowhere; the stamp is judged before any
    /// signature; a replay is ignored; a network at difficulty 0 asks for none.
    #[test]
    fn an_attestation_stamp_below_the_network_is_an_offense_and_checked_first() {
        use jangteo_protocol::attestation::Attestation;
        let now = now_ms();
        let (buyer, seller) = (
            SigningKey::from_bytes(&[21; 32]),
            SigningKey::from_bytes(&[22; 32]),
        );
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("store");
        // Listing difficulty 12: attestations need 10 bits.
        store.set_stamp_bits(12);
        assert_eq!(store.attestation_stamp_bits(), 10);
        let (events, _) = broadcast::channel(4);
        let sign = |a: &Attestation, by: &SigningKey| {
            SignedObject::sign(Kind::Attestation, a.encode(), by)
                .bytes()
                .to_vec()
        };
        let run = |bytes: &[u8]| {
            let outcome =
                ingest(&store, bytes, Some(Kind::Attestation), now, false).expect("ingest");
            let shown = format!("{outcome:?}");
            (shown, judge(Ok(outcome), None, &events))
        };
        let stored = |bytes: &[u8]| store.object(&ObjectId::of(bytes)).expect("read").is_some();
        let rejected = |bytes: &[u8], what: &str| {
            let (outcome, verdict) = run(bytes);
            assert_eq!(verdict, Verdict::Reject, "{what}: {outcome}");
            assert!(outcome.contains("stamp"), "{what}: {outcome}");
            assert!(!stored(bytes), "{what} stored");
        };
        rejected(
            &sign(&rating(&buyer, &seller, 1, now, now, None), &buyer),
            "unstamped",
        );
        rejected(
            &sign(&rating(&buyer, &seller, 1, now, now, Some(9)), &buyer),
            "9 bits",
        );
        // A good stamp with a broken signature: the signature is never checked.
        let mut bad_sig = sign(&rating(&buyer, &seller, 2, now, now, Some(3)), &buyer);
        let at = bad_sig.len() - 3;
        bad_sig[at] ^= 0x40;
        let (outcome, _) = run(&bad_sig);
        assert!(outcome.contains("stamp is worth 3 bits"), "{outcome}");
        // The honest one: stored and accepted; again (a replay): ignored.
        let good = rating(&buyer, &seller, 3, now, now, Some(10));
        let good_bytes = sign(&good, &buyer);
        assert_eq!(run(&good_bytes).1, Verdict::Accept);
        assert!(stored(&good_bytes));
        assert_eq!(run(&good_bytes).1, Verdict::Ignore, "replay");
        // Re-signed with a later `at` on the old stamp (to supersede for free).
        let later = Attestation {
            at: now + 1000,
            ..good.clone()
        };
        rejected(&sign(&later, &buyer), "re-signed later");
        // The seller taking the buyer's stamp for its own rating of the same trade.
        let theirs = Attestation {
            about: jangteo_protocol::PublicKey(buyer.verifying_key().to_bytes()),
            role: jangteo_protocol::trade::Role::Seller,
            ..good.clone()
        };
        rejected(&sign(&theirs, &seller), "the other party's stamp");
        // Moved onto another trade between the same keys.
        let other = Attestation {
            chain: rating(&buyer, &seller, 4, now, now, None).chain,
            ..good.clone()
        };
        rejected(&sign(&other, &buyer), "another trade's stamp");
        // Each rejected one was an offense; a node at difficulty 0 asks for none.
        let dir0 = tempfile::tempdir().expect("dir");
        let store0 = Store::open(dir0.path()).expect("store");
        let bare = sign(&rating(&buyer, &seller, 5, now, now, None), &buyer);
        let outcome = ingest(&store0, &bare, Some(Kind::Attestation), now, false).expect("ingest");
        assert!(matches!(outcome, Ingested::Stored { .. }), "{outcome:?}");
    }

    #[test]
    fn a_created_at_differing_from_the_held_version_is_not_an_offense() {
        let now = now_ms();
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let sign = |l: &Listing| {
            SignedObject::sign(Kind::Listing, l.encode(), &key)
                .bytes()
                .to_vec()
        };
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("store");
        assert_eq!(
            judged(&store, &sign(&listing(2, 1, now, "v1")), now).1,
            Verdict::Accept
        );
        let mut v2 = listing(2, 2, now, "v2");
        v2.created_at -= 1;
        let (outcome, verdict) = judged(&store, &sign(&v2), now);
        assert!(outcome.starts_with("Unconfirmed"), "{outcome}");
        assert_eq!(verdict, Verdict::Ignore);
        assert!(!verdict.is_offense());
    }

    #[test]
    fn a_report_of_a_listing_not_held_is_ignored_and_one_naming_another_seller_is_an_offense() {
        use jangteo_protocol::report::{Report, ReportReason};
        let now = now_ms();
        let seller = SigningKey::from_bytes(&[9u8; 32]);
        let reporter = SigningKey::from_bytes(&[10u8; 32]);
        let l = listing(3, 1, now, "phone");
        let lid = l.id(&jangteo_protocol::PublicKey(
            seller.verifying_key().to_bytes(),
        ));
        let report = |about: &SigningKey, reason| {
            let r = Report {
                about: jangteo_protocol::PublicKey(about.verifying_key().to_bytes()),
                listing: Some(lid.0),
                reason,
                text: String::new(),
                at: now,
            };
            SignedObject::sign(Kind::Report, r.encode(), &reporter)
                .bytes()
                .to_vec()
        };
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("store");
        let (events, _) = broadcast::channel(4);
        let judge_report = |bytes: &[u8]| {
            judge(
                ingest(&store, bytes, Some(Kind::Report), now, false),
                None,
                &events,
            )
        };
        let scam = report(&seller, ReportReason::Scam);
        assert_eq!(judge_report(&scam), Verdict::Ignore, "listing not held yet");
        assert!(store.object(&ObjectId::of(&scam)).expect("read").is_none());
        let lbytes = SignedObject::sign(Kind::Listing, l.encode(), &seller)
            .bytes()
            .to_vec();
        assert_eq!(judged(&store, &lbytes, now).1, Verdict::Accept);
        // The same bytes, offered again (by sync), are taken now.
        assert_eq!(judge_report(&scam), Verdict::Accept);
        // Naming someone else as the held listing's seller: an offense.
        let wrong = report(&SigningKey::from_bytes(&[11u8; 32]), ReportReason::Spam);
        let v = judge_report(&wrong);
        assert_eq!(v, Verdict::Reject);
        assert!(v.is_offense());
        // About oneself: refused by the bytes alone.
        let own = report(&reporter, ReportReason::Spam);
        assert_eq!(judge_report(&own), Verdict::Reject);
        // On the listings topic: wrong topic.
        assert_eq!(
            judge(
                ingest(&store, &scam, Some(Kind::Listing), now, false),
                None,
                &events
            ),
            Verdict::Reject
        );
    }

    #[test]
    fn a_batch_has_exactly_the_outcomes_of_one_by_one_ingest() {
        let now = now_ms();
        let objects = mixed(now);
        assert!(objects.len() >= 2 * PARALLEL_VERIFY_MIN);
        let (d1, d2) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let (s1, s2) = (
            Store::open(d1.path()).expect("store"),
            Store::open(d2.path()).expect("store"),
        );
        let one: Vec<String> = objects
            .iter()
            .map(|b| {
                format!(
                    "{:?}",
                    ingest(&s1, b, Some(Kind::Listing), now, false).expect("ingest")
                )
            })
            .collect();
        let batch: Vec<String> = ingest_batch(&s2, &objects, Some(Kind::Listing), now, false)
            .expect("batch")
            .iter()
            .map(|o| format!("{o:?}"))
            .collect();
        assert_eq!(one, batch);
        for kind in ["Stored", "Ignored", "Invalid"] {
            assert!(
                one.iter().any(|o| o.starts_with(kind)),
                "no {kind} outcome in the mix"
            );
        }
        // The store holds the same heads.
        let heads = |s: &Store| {
            let mut v = Vec::new();
            s.for_each_listing(None, |l| {
                v.push(l.bytes.clone());
                true
            })
            .expect("scan");
            v
        };
        assert_eq!(heads(&s1), heads(&s2));
    }
}
