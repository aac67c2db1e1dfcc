//! Reputation: rating completed trades, and this node's own view of everyone's trust.
//!
//! Owns the `rate`, `reputation`, `trust` and `distrust` operations and a cached trust
//! snapshot. The snapshot is recomputed (off the async threads) when something it depends on
//! changed: an attestation was stored, one of our trades moved, or the user changed the
//! trusted keys. A background task keeps it fresh so searches sorted by trust read a cached
//! view; an explicit `reputation` query recomputes first if the cache is behind.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use jangteo_protocol::attestation::{Attestation, COMMENT_MAX_BYTES};
use jangteo_protocol::trade::{Role, TradeState};
use jangteo_protocol::trust::{self, PeerTrust, Rating, TrustView};
use jangteo_protocol::{
    FieldError, Kind, Object, ObjectId, PublicKey, SignedObject, public_key_from_peer_id,
    verify_object,
};
use serde::Serialize;
use tokio::sync::watch;

use crate::clock::now_ms;
use crate::error::StoreError;
use crate::net::Client;
use crate::services::listings::{ListingError, ListingView, Listings};
use crate::services::moderation::{Weigher, hidden_from};
use crate::services::search::{SEARCH_LIMIT_MAX, SearchQuery};
use crate::services::trades::{TradeError, Trades};
use crate::store::{AttestationWrite, Store};

/// How long the background task waits after a change before recomputing (changes often come
/// in bursts, e.g. a sync page of attestations).
pub const RECOMPUTE_DEBOUNCE: Duration = Duration::from_millis(500);
/// Score a completed trade of ours counts with until we rate it ourselves.
pub const UNRATED_OWN_TRADE_SCORE: u8 = 4;

/// Why a reputation operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ReputationError {
    /// Not a peer id, trade id or valid field.
    #[error("{0}")]
    Invalid(String),
    /// No such trade here.
    #[error("{0}")]
    NotFound(String),
    /// The trade cannot be rated (not completed, not ours).
    #[error("{0}")]
    Refused(String),
    /// Store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Trade store failure.
    #[error(transparent)]
    Trade(#[from] TradeError),
}

impl From<FieldError> for ReputationError {
    fn from(e: FieldError) -> Self {
        ReputationError::Invalid(e.to_string())
    }
}

pub use crate::api::types::NewRating;
use crate::api::types::{
    AmountCheck, RatingView, ReputationView, SupportedAmount, TradeRole, TradeView, TrustBasis,
    TrustChange, TrustThrough,
};

/// A day in milliseconds.
const DAY_MS: u64 = 24 * 3600 * 1000;

/// How to give a node with no seeds a point of view (shown by `reputation` until it has one).
pub const HOW_TO_SEED: &str = "this node has no completed trades and trusts no key yet, so these are the evidence it holds, not its own trust: `jangteo trust PEER_ID` adds a key you know personally, and every trade you complete adds the other party";

/// One node's trust in everyone, computed at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The store's trust generation it was computed from.
    pub generation: u64,
    /// Trust per peer.
    pub view: TrustView,
    /// The ratings it was computed from.
    pub ratings: Vec<Rating>,
    /// The currency of each of `ratings` (zeros: unknown).
    pub currencies: Vec<[u8; 3]>,
    /// Indexes into `ratings` of the ratings of each peer as a seller.
    pub as_seller: HashMap<PublicKey, Vec<usize>>,
    /// The earliest attestation by or about each peer held here (unix ms).
    pub first_seen: HashMap<PublicKey, u64>,
    /// Distinct completed trades per peer (seen in attestations and our own trades).
    pub completed: HashMap<PublicKey, u32>,
    /// Attestations held about each peer.
    pub attestations: HashMap<PublicKey, u32>,
    /// How long the computation took.
    pub took_ms: f64,
}

/// The trust of a listing's seller, as shown next to a listing.
#[derive(Debug, Clone, Copy, Serialize, Default, PartialEq)]
pub struct SellerTrust {
    /// 0..1, relative to the most trusted peer.
    pub score: f64,
    /// 0..1.
    pub confidence: f64,
}

/// Most reviews [`Reputation::reviews`] returns.
pub const REVIEWS_MAX: usize = 20;

/// One rating about a peer, as a seller card shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Review {
    /// Who rated (peer id).
    pub by: String,
    /// 1-5.
    pub score: u8,
    /// Their comment.
    pub comment: String,
    /// When (unix ms).
    pub at: u64,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The reputation service.
#[derive(Debug, Clone)]
pub struct Reputation {
    key: Arc<SigningKey>,
    me: PublicKey,
    store: Arc<Store>,
    trades: Trades,
    network: Client,
    cache: Arc<Mutex<Arc<Snapshot>>>,
}

impl Reputation {
    /// A service over the node's store and trades.
    pub fn new(key: Arc<SigningKey>, store: Arc<Store>, trades: Trades, network: Client) -> Self {
        let me = PublicKey(key.verifying_key().to_bytes());
        Self {
            key,
            me,
            store,
            trades,
            network,
            cache: Arc::new(Mutex::new(Arc::new(Snapshot::default()))),
        }
    }

    fn parse_peer(peer: &str) -> Result<PublicKey, ReputationError> {
        public_key_from_peer_id(peer.trim()).ok_or_else(|| {
            ReputationError::Invalid(format!(
                "{peer:?} is not a peer id (12D3KooW…, as `jangteo id` prints it)"
            ))
        })
    }

    /// Rates the other party of one of our completed trades; stores and gossips the
    /// attestation. A later rating of the same trade replaces the earlier one.
    pub async fn rate(&self, r: NewRating) -> Result<RatingView, ReputationError> {
        if !(1..=5).contains(&r.score) {
            return Err(ReputationError::Invalid(format!(
                "score {}: must be 1-5",
                r.score
            )));
        }
        let comment = r.comment.unwrap_or_default();
        if comment.len() > COMMENT_MAX_BYTES {
            return Err(ReputationError::Invalid(format!(
                "comment: at most {COMMENT_MAX_BYTES} bytes"
            )));
        }
        let tid = ObjectId::from_hex(r.trade.trim()).ok_or_else(|| {
            ReputationError::Invalid(format!("{:?} is not a trade id (64 hex digits)", r.trade))
        })?;
        let chain = self.trades.load(&tid)?.ok_or_else(|| {
            ReputationError::NotFound(format!("no trade {} on this node", r.trade))
        })?;
        let (role, about) = match chain.role_of(&self.me) {
            Some(Role::Buyer) => (Role::Buyer, chain.seller),
            Some(Role::Seller) => (Role::Seller, chain.buyer),
            _ => {
                return Err(ReputationError::Refused(
                    "only the buyer or the seller of a trade may rate it; this node was not a party"
                        .into(),
                ));
            }
        };
        if chain.state != TradeState::Completed {
            return Err(ReputationError::Refused(format!(
                "trade {} is {}: only a completed trade (the buyer sent received) can be rated",
                r.trade,
                chain.state.name()
            )));
        }
        let completed_at = chain.messages.last().map_or(0, |m| m.message.at);
        let mut attestation = Attestation {
            chain: chain
                .messages
                .iter()
                .map(|m| m.object.bytes().to_vec())
                .collect(),
            about,
            role,
            score: r.score,
            comment,
            at: now_ms().max(completed_at),
            stamp: None,
        };
        // SPEC §7.1: the stamp covers `at`, so it is made after `at` is set (0.4 s on
        // average at the public network's 22 bits), off the async runtime.
        let bits = self.store.attestation_stamp_bits();
        let me = self.me;
        let attestation = tokio::task::spawn_blocking(move || {
            attestation.solve_stamp(&me, bits);
            attestation
        })
        .await
        .map_err(|_| StoreError::Poisoned)?;
        let obj = SignedObject::sign(Kind::Attestation, attestation.encode(), &self.key);
        // Check it exactly as a receiver will (limits, size, the chain).
        let (signed, object) = verify_object(obj.bytes(), now_ms())
            .map_err(|e| ReputationError::Invalid(format!("attestation refused: {e}")))?;
        let Object::Attestation(attested) = object else {
            return Err(ReputationError::Invalid("not an attestation".into()));
        };
        let store = self.store.clone();
        let signed2 = signed.clone();
        let write = tokio::task::spawn_blocking(move || {
            store.put_attestation(&signed2, &attested, now_ms(), true)
        })
        .await
        .map_err(|_| StoreError::Poisoned)??;
        match write {
            AttestationWrite::Stored => {}
            AttestationWrite::Superseded => {
                return Err(ReputationError::Refused(
                    "a later rating of this trade by you is already held".into(),
                ));
            }
            AttestationWrite::OverCap { held } => {
                return Err(ReputationError::Refused(format!(
                    "you have {held} ratings held here, the most one key may have (SPEC §7.1)"
                )));
            }
            AttestationWrite::Old => {
                return Err(ReputationError::Refused(
                    "the trade completed longer ago than ratings are kept (two years)".into(),
                ));
            }
            AttestationWrite::TooCheap { got, needed } => {
                return Err(ReputationError::Invalid(format!(
                    "the rating's stamp is worth {got} bits, the network asks {needed} (SPEC §7.1)"
                )));
            }
        }
        match self
            .network
            .publish(Kind::Attestation, signed.bytes().to_vec())
            .await
        {
            Ok(Ok(())) => tracing::info!(id = %signed.id(), "attestation published"),
            Ok(Err(e)) => {
                tracing::info!(id = %signed.id(), reason = %e, "attestation stored; peers will fetch it by sync")
            }
            Err(e) => tracing::warn!(error = %e, "attestation stored; network unavailable"),
        }
        Ok(RatingView {
            id: signed.id().to_hex(),
            trade: tid.to_hex(),
            about: about.peer_id(),
            score: r.score,
        })
    }

    /// Adds a key to this node's trust seeds.
    pub fn trust(&self, peer: &str) -> Result<TrustChange, ReputationError> {
        let key = Self::parse_peer(peer)?;
        if key == self.me {
            return Err(ReputationError::Invalid(
                "this is this node's own key; it is always the starting point".into(),
            ));
        }
        let changed = self.store.set_trusted(&key, true)?;
        Ok(TrustChange {
            peer_id: key.peer_id(),
            trusted: true,
            changed,
        })
    }

    /// Removes a key from this node's trust seeds.
    pub fn distrust(&self, peer: &str) -> Result<TrustChange, ReputationError> {
        let key = Self::parse_peer(peer)?;
        let changed = self.store.set_trusted(&key, false)?;
        Ok(TrustChange {
            peer_id: key.peer_id(),
            trusted: false,
            changed,
        })
    }

    /// The keys this node trusts.
    pub fn trusted(&self) -> Result<Vec<String>, ReputationError> {
        Ok(self
            .store
            .trusted()?
            .iter()
            .map(PublicKey::peer_id)
            .collect())
    }

    /// Computes a fresh snapshot from the store (blocking).
    pub fn compute(&self) -> Result<Snapshot, ReputationError> {
        let start = Instant::now();
        let generation = self.store.trust_generation();
        let mut ratings = Vec::new();
        let mut completed: HashMap<PublicKey, HashSet<ObjectId>> = HashMap::new();
        let mut attestations: HashMap<PublicKey, u32> = HashMap::new();
        let mut currencies = Vec::new();
        let mut first_seen: HashMap<PublicKey, u64> = HashMap::new();
        let mut own_rated: HashSet<ObjectId> = HashSet::new();
        self.store.for_each_attestation(None, |rec| {
            ratings.push(Rating {
                rater: rec.author,
                subject: rec.about,
                score: rec.score,
                value: rec.value,
                at: rec.at,
                about_seller: rec.about_seller,
            });
            currencies.push(rec.currency);
            for k in [rec.author, rec.about] {
                let seen = first_seen.entry(k).or_insert(rec.at);
                *seen = (*seen).min(rec.at);
            }
            *attestations.entry(rec.about).or_default() += 1;
            completed.entry(rec.about).or_default().insert(rec.trade);
            completed.entry(rec.author).or_default().insert(rec.trade);
            if rec.author == self.me {
                own_rated.insert(rec.trade);
            }
            true
        })?;
        // Our completed trades seed trust even before we rate them.
        for tid in self.store.trade_ids()? {
            if own_rated.contains(&tid) {
                continue;
            }
            let Some(chain) = self.trades.load(&tid)? else {
                continue;
            };
            if chain.state != TradeState::Completed {
                continue;
            }
            let (other, about_seller) = match chain.role_of(&self.me) {
                Some(Role::Buyer) => (chain.seller, true),
                Some(Role::Seller) => (chain.buyer, false),
                _ => continue,
            };
            let at = chain.messages.last().map_or(0, |m| m.message.at);
            ratings.push(Rating {
                rater: self.me,
                subject: other,
                score: UNRATED_OWN_TRADE_SCORE,
                value: chain.terms.total(),
                at,
                about_seller,
            });
            currencies.push(chain.terms.currency.as_bytes().try_into().unwrap_or([0; 3]));
            for k in [self.me, other] {
                let seen = first_seen.entry(k).or_insert(at);
                *seen = (*seen).min(at);
            }
            completed.entry(other).or_default().insert(tid);
            completed.entry(self.me).or_default().insert(tid);
        }
        let trusted = self.store.trusted()?;
        // A key proven to have equivocated in a trade gets no trust, and its word none either:
        // the trust computation counts the proof as this node's own evidence.
        let equivocators = self.store.equivocators()?;
        let view = trust::compute(
            &self.me,
            &ratings,
            &trusted,
            &equivocators,
            &trust::Params::at(now_ms()),
        );
        let mut as_seller: HashMap<PublicKey, Vec<usize>> = HashMap::new();
        for (i, r) in ratings.iter().enumerate() {
            if r.about_seller {
                as_seller.entry(r.subject).or_default().push(i);
            }
        }
        Ok(Snapshot {
            generation,
            view,
            ratings,
            currencies,
            as_seller,
            first_seen,
            completed: completed
                .into_iter()
                .map(|(k, v)| (k, v.len() as u32))
                .collect(),
            attestations,
            took_ms: start.elapsed().as_secs_f64() * 1000.0,
        })
    }

    /// The cached snapshot, whatever its age.
    pub fn cached(&self) -> Arc<Snapshot> {
        self.cache
            .lock()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// A snapshot no older than the store's last change (recomputes if needed; blocking).
    pub fn fresh(&self) -> Result<Arc<Snapshot>, ReputationError> {
        let cached = self.cached();
        if cached.generation == self.store.trust_generation() {
            return Ok(cached);
        }
        let snap = Arc::new(self.compute()?);
        if let Ok(mut g) = self.cache.lock()
            && g.generation <= snap.generation
        {
            *g = snap.clone();
        }
        tracing::debug!(
            edges = snap.view.edges,
            iterations = snap.view.iterations,
            took_ms = snap.took_ms,
            "trust recomputed"
        );
        Ok(snap)
    }

    /// What this node concludes about `peer` (blocking).
    pub fn reputation(&self, peer: &str) -> Result<ReputationView, ReputationError> {
        let key = Self::parse_peer(peer)?;
        let snap = self.fresh()?;
        let t: PeerTrust = snap.view.get(&key);
        let first_seen_at = snap.first_seen.get(&key).copied();
        let mut currencies: Vec<[u8; 3]> = snap
            .as_seller
            .get(&key)
            .into_iter()
            .flatten()
            .map(|&i| snap.currencies[i])
            .filter(|c| *c != [0; 3])
            .collect();
        currencies.sort_unstable();
        currencies.dedup();
        let supports = currencies
            .iter()
            .filter_map(|c| std::str::from_utf8(c).ok())
            .map(|c| SupportedAmount {
                currency: c.to_owned(),
                value: Self::supported(&snap, &key, c),
            })
            .collect();
        let seeded = snap.view.seeded;
        Ok(ReputationView {
            peer_id: key.peer_id(),
            score: round3(t.score),
            confidence: round3(t.confidence),
            attestations: u64::from(snap.attestations.get(&key).copied().unwrap_or(0)),
            completed_trades: u64::from(snap.completed.get(&key).copied().unwrap_or(0)),
            rating: t.rating.map(|r| (r * 100.0).round() / 100.0),
            raters: u64::from(t.raters),
            trusted: self.store.trusted()?.contains(&key),
            seeded,
            equivocated: self.store.equivocators()?.contains(&key),
            basis: if seeded {
                TrustBasis::Personal
            } else {
                TrustBasis::NotYetPersonal
            },
            standing: round3(t.standing),
            negative_raters: u64::from(t.negative_raters),
            first_seen_at,
            key_age_days: first_seen_at.map(|at| now_ms().saturating_sub(at) / DAY_MS),
            supports,
            advice: (!seeded).then(|| HOW_TO_SEED.to_owned()),
            through: self.through(&snap, &key)?,
        })
    }

    /// How many of this node's trade partners and trusted keys its trust in `peer` flows
    /// through (blocking: reads the trusted keys and the proven equivocators).
    fn through(&self, snap: &Snapshot, peer: &PublicKey) -> Result<TrustThrough, ReputationError> {
        let paths = trust::trust_paths(
            &self.me,
            &snap.ratings,
            &self.store.trusted()?,
            &self.store.equivocators()?,
            peer,
            &trust::Params::at(now_ms()),
        );
        Ok(TrustThrough {
            partners: paths.partners,
            trusted_keys: paths.trusted,
        })
    }

    /// The amount gate: the largest trade value in `currency` (minor units) that this node's
    /// trust in `seller` supports, from the ratings of the seller in that currency.
    pub fn supported(snap: &Snapshot, seller: &PublicKey, currency: &str) -> u64 {
        let Some(idx) = snap.as_seller.get(seller) else {
            return 0;
        };
        let ratings: Vec<Rating> = idx
            .iter()
            .filter(|&&i| snap.currencies[i] == currency.as_bytes())
            .map(|&i| snap.ratings[i])
            .collect();
        trust::supported_value(&snap.view, seller, &ratings)
    }

    /// The amount check of a trade for its buyer (none for the seller or a moderator).
    pub fn amount_check(snap: &Snapshot, v: &TradeView) -> Option<AmountCheck> {
        if v.role != TradeRole::Buyer {
            return None;
        }
        let seller = public_key_from_peer_id(&v.seller)?;
        let supported = Self::supported(snap, &seller, &v.currency);
        let above = v.total > supported;
        Some(AmountCheck {
            supported,
            total: v.total,
            currency: v.currency.clone(),
            above,
            warning: above.then(|| {
                if supported == 0 {
                    format!(
                        "no one this node trusts has vouched for this seller yet: {} {} is more than its trust supports (0); pay only on handover, or trade a smaller amount first",
                        v.total, v.currency
                    )
                } else {
                    format!(
                        "{} {} is more than this seller's trust supports ({} {}, twice what people this node trusts have handed it); pay only on handover, or trade a smaller amount first",
                        v.total, v.currency, supported, v.currency
                    )
                }
            }),
        })
    }

    /// A trade with the amount check for its buyer (blocking).
    pub fn gate(&self, mut v: TradeView) -> TradeView {
        let snap = self.fresh().unwrap_or_else(|_| self.cached());
        v.amount_check = Self::amount_check(&snap, &v);
        v
    }

    /// This node's own rating of `trade`, if it has rated it (blocking; reads only that
    /// trade's records).
    pub fn my_rating(&self, trade: &str) -> Result<Option<Review>, ReputationError> {
        let tid = ObjectId::from_hex(trade.trim()).ok_or_else(|| {
            ReputationError::Invalid(format!("{trade:?} is not a trade id (64 hex digits)"))
        })?;
        let me = self.key.verifying_key().to_bytes();
        let mut start = [0u8; 64];
        start[..32].copy_from_slice(&tid.0);
        let mut mine = None;
        self.store.for_each_attestation(Some(&start), |r| {
            if r.trade != tid {
                return false;
            }
            if r.author.0 == me {
                mine = Some(r);
                return false;
            }
            true
        })?;
        let Some(r) = mine else { return Ok(None) };
        let comment = self
            .store
            .object(&r.object)?
            .and_then(|b| SignedObject::decode_stored(&b).ok())
            .and_then(|s| Attestation::decode(&s.envelope().body).ok())
            .map(|a| a.comment)
            .unwrap_or_default();
        Ok(Some(Review {
            by: r.author.peer_id(),
            score: r.score,
            comment,
            at: r.at,
        }))
    }

    /// The latest `limit` ratings about `peer` held here, newest first, with their comments
    /// (blocking; reads every attestation record held).
    pub fn reviews(&self, peer: &str, limit: usize) -> Result<Vec<Review>, ReputationError> {
        let key = Self::parse_peer(peer)?;
        let limit = limit.min(REVIEWS_MAX);
        let mut latest: Vec<crate::store::AttestationRecord> = Vec::new();
        self.store.for_each_attestation(None, |r| {
            if r.about == key {
                latest.push(r);
                if latest.len() > 4 * limit.max(1) {
                    latest.sort_by_key(|r| std::cmp::Reverse(r.at));
                    latest.truncate(limit);
                }
            }
            true
        })?;
        latest.sort_by_key(|r| std::cmp::Reverse(r.at));
        latest.truncate(limit);
        let mut out = Vec::with_capacity(latest.len());
        for r in latest {
            let Some(bytes) = self.store.object(&r.object)? else {
                continue;
            };
            let comment = SignedObject::decode_stored(&bytes)
                .ok()
                .and_then(|s| Attestation::decode(&s.envelope().body).ok())
                .map(|a| a.comment)
                .unwrap_or_default();
            out.push(Review {
                by: r.author.peer_id(),
                score: r.score,
                comment,
                at: r.at,
            });
        }
        Ok(out)
    }

    /// The trust shown next to a seller's listings (from the cached snapshot).
    pub fn seller_trust(snap: &Snapshot, seller: &str) -> SellerTrust {
        public_key_from_peer_id(seller)
            .map(|k| {
                let t = snap.view.get(&k);
                SellerTrust {
                    score: round3(t.score),
                    confidence: round3(t.confidence),
                }
            })
            .unwrap_or_default()
    }

    fn annotate(snap: &Snapshot, v: &mut ListingView) {
        let t = Self::seller_trust(snap, &v.seller);
        v.seller_score = Some(t.score);
        v.seller_confidence = Some(t.confidence);
        v.seller_supports =
            public_key_from_peer_id(&v.seller).map(|k| Self::supported(snap, &k, &v.currency));
    }

    /// A listing with its seller's trust and what reports do to it here (blocking).
    pub fn show(&self, listings: &Listings, id: &str) -> Result<ListingView, ListingError> {
        let mut v = listings.show(id)?;
        let snap = self.fresh().unwrap_or_else(|_| self.cached());
        Self::annotate(&snap, &mut v);
        Weigher::new(self.me, self.store.moderators()?, &snap).annotate(&self.store, &mut v)?;
        Ok(v)
    }

    /// Searches, adding each seller's trust and the listing's moderation, leaving out the
    /// listings hidden by reports (but this node's own); `sort=trust` ranks the best matches
    /// (up to [`SEARCH_LIMIT_MAX`] by relevance or recency) by their seller's trust, then
    /// confidence.
    pub fn search(
        &self,
        listings: &Listings,
        q: &SearchQuery,
    ) -> Result<Vec<ListingView>, ListingError> {
        let snap = self.fresh().unwrap_or_else(|_| self.cached());
        let by_trust = q.sort.as_deref() == Some("trust");
        let mut hits = if by_trust {
            let limit = q
                .limit
                .unwrap_or(crate::services::search::SEARCH_LIMIT_DEFAULT);
            if limit == 0 || limit > SEARCH_LIMIT_MAX {
                return Err(ListingError::BadQuery(format!(
                    "limit {limit}: must be 1-{SEARCH_LIMIT_MAX}"
                )));
            }
            let mut wide = q.clone();
            wide.sort = None;
            wide.limit = Some(SEARCH_LIMIT_MAX);
            wide.offset = None;
            listings.search(&wide)?
        } else {
            listings.search(q)?
        };
        let weigher = Weigher::new(self.me, self.store.moderators()?, &snap);
        for h in &mut hits {
            Self::annotate(&snap, h);
            weigher.annotate(&self.store, h)?;
        }
        let me = self.me.peer_id();
        hits.retain(|h| !hidden_from(h, &me));
        if by_trust {
            let key = |h: &ListingView| {
                (
                    h.seller_score.unwrap_or(0.0),
                    h.seller_confidence.unwrap_or(0.0),
                )
            };
            // Stable: among equally trusted sellers the search order stays.
            hits.sort_by(|a, b| {
                let (x, y) = (key(a), key(b));
                y.0.total_cmp(&x.0).then(y.1.total_cmp(&x.1))
            });
            let offset = q.offset.unwrap_or(0);
            let limit = q
                .limit
                .unwrap_or(crate::services::search::SEARCH_LIMIT_DEFAULT);
            hits = hits.into_iter().skip(offset).take(limit).collect();
        }
        Ok(hits)
    }

    /// Keeps the cached snapshot fresh until shutdown.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(RECOMPUTE_DEBOUNCE);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tick.tick() => {
                    if self.cached().generation == self.store.trust_generation() {
                        continue;
                    }
                    let me = self.clone();
                    match tokio::task::spawn_blocking(move || me.fresh()).await {
                        Ok(Err(e)) => tracing::warn!(error = %e, "trust recomputation failed"),
                        Err(e) => tracing::warn!(error = %e, "trust task failed"),
                        Ok(Ok(_)) => {}
                    }
                }
            }
        }
    }
}
