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
use crate::services::search::{SEARCH_LIMIT_MAX, SearchQuery};
use crate::services::trades::{TradeError, Trades};
use crate::store::Store;

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
use crate::api::types::{RatingView, ReputationView, TrustChange};

/// One node's trust in everyone, computed at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The store's trust generation it was computed from.
    pub generation: u64,
    /// Trust per peer.
    pub view: TrustView,
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
        let attestation = Attestation {
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
        };
        let obj = SignedObject::sign(Kind::Attestation, attestation.encode(), &self.key);
        // Check it exactly as a receiver will (limits, size, the chain).
        let (signed, object) = verify_object(obj.bytes(), now_ms())
            .map_err(|e| ReputationError::Invalid(format!("attestation refused: {e}")))?;
        let Object::Attestation(attested) = object else {
            return Err(ReputationError::Invalid("not an attestation".into()));
        };
        let store = self.store.clone();
        let signed2 = signed.clone();
        let stored =
            tokio::task::spawn_blocking(move || store.put_attestation(&signed2, &attested, true))
                .await
                .map_err(|_| StoreError::Poisoned)??;
        if !stored {
            return Err(ReputationError::Refused(
                "a later rating of this trade by you is already held".into(),
            ));
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
        let mut own_rated: HashSet<ObjectId> = HashSet::new();
        self.store.for_each_attestation(None, |rec| {
            ratings.push(Rating {
                rater: rec.author,
                subject: rec.about,
                score: rec.score,
                value: rec.value,
            });
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
            let other = match chain.role_of(&self.me) {
                Some(Role::Buyer) => chain.seller,
                Some(Role::Seller) => chain.buyer,
                _ => continue,
            };
            ratings.push(Rating {
                rater: self.me,
                subject: other,
                score: UNRATED_OWN_TRADE_SCORE,
                value: chain.terms.total(),
            });
            completed.entry(other).or_default().insert(tid);
            completed.entry(self.me).or_default().insert(tid);
        }
        let trusted = self.store.trusted()?;
        // A key proven to have equivocated in a trade gets no trust, and its word none either.
        let equivocators: std::collections::HashSet<_> =
            self.store.equivocators()?.into_iter().collect();
        ratings.retain(|r| !equivocators.contains(&r.rater) && !equivocators.contains(&r.subject));
        let view = trust::compute(&self.me, &ratings, &trusted, &trust::Params::default());
        Ok(Snapshot {
            generation,
            view,
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
        Ok(ReputationView {
            peer_id: key.peer_id(),
            score: round3(t.score),
            confidence: round3(t.confidence),
            attestations: u64::from(snap.attestations.get(&key).copied().unwrap_or(0)),
            completed_trades: u64::from(snap.completed.get(&key).copied().unwrap_or(0)),
            rating: t.rating.map(|r| (r * 100.0).round() / 100.0),
            raters: u64::from(t.raters),
            trusted: self.store.trusted()?.contains(&key),
            seeded: snap.view.seeded,
            equivocated: self.store.equivocators()?.contains(&key),
        })
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
    }

    /// A listing with its seller's trust (blocking).
    pub fn show(&self, listings: &Listings, id: &str) -> Result<ListingView, ListingError> {
        let mut v = listings.show(id)?;
        let snap = self.fresh().unwrap_or_else(|_| self.cached());
        Self::annotate(&snap, &mut v);
        Ok(v)
    }

    /// Searches, adding each seller's trust; `sort=trust` ranks the best matches (up to
    /// [`SEARCH_LIMIT_MAX`] by relevance or recency) by their seller's trust, then confidence.
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
        for h in &mut hits {
            Self::annotate(&snap, h);
        }
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
