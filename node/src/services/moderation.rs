//! Moderation this node's user can see: making reports, the moderators whose reports count
//! as the user's own, and what the reports held do to a listing here.
//!
//! Owns the `report`, `reports` and `moderators` operations and the weighing of reports
//! (SPEC §7.2, "Weight"): a report weighs 1 when it is this node's own or a moderator's,
//! else this node's trust in its author. A listing whose reports (and its seller's) weigh
//! [`HIDE_WEIGHT`] or more is hidden; less, above 0, carries a warning. Weighing is local
//! policy: it never decides whether a report is stored or forwarded (the protocol's rules
//! and the store do).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use jangteo_protocol::report::{
    REASON_EXPECTED, REPORT_TEXT_MAX_BYTES, REPORTS_PER_DAY_MAX, Report, ReportReason,
};
use jangteo_protocol::{
    Kind, ListingId, Object, PublicKey, SignedObject, public_key_from_peer_id, verify_object,
};

use crate::api::types::{
    ListingView, ModerationView, ModeratorChange, NewReport, ReportBasis, ReportMade, ReportView,
    ReportsQuery, SearchQuery,
};
use crate::clock::now_ms;
use crate::error::StoreError;
use crate::net::Client;
use crate::services::listings::Listings;
use crate::services::reputation::{Reputation, Snapshot};
use crate::store::{MODERATORS_MAX, ReportRecord, ReportWrite, Store};

/// A listing whose reports weigh this much or more is hidden.
pub const HIDE_WEIGHT: f64 = 1.0;
/// Most reports a listing's moderation view lists.
pub const REPORTS_SHOWN_MAX: usize = 50;
/// Most reports `GET /v1/reports` answers.
pub const REPORTS_LIST_MAX: usize = 200;

/// Why a moderation operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ModerationError {
    /// Not a listing id or peer id, an unknown reason, a text over its limit.
    #[error("{0}")]
    Invalid(String),
    /// The listing or key reported is not known here.
    #[error("{0}")]
    NotFound(String),
    /// A report about oneself.
    #[error("{0}")]
    Refused(String),
    /// The per-author cap of reports is reached.
    #[error("{0}")]
    Limit(String),
    /// Store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The search index failed (looking up a key's listings).
    #[error("search: {0}")]
    Search(String),
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Weighs reports by their authors, from one trust snapshot.
#[derive(Debug)]
pub struct Weigher<'a> {
    me: PublicKey,
    moderators: HashSet<PublicKey>,
    snap: &'a Snapshot,
}

impl<'a> Weigher<'a> {
    /// A weigher for the node `me` with its moderators, over a trust snapshot.
    pub fn new(me: PublicKey, moderators: Vec<PublicKey>, snap: &'a Snapshot) -> Self {
        Self {
            me,
            moderators: moderators.into_iter().collect(),
            snap,
        }
    }

    /// The weight of a report by `author` here (0..1), and why.
    pub fn weigh(&self, author: &PublicKey) -> (f64, ReportBasis) {
        if *author == self.me {
            (1.0, ReportBasis::Own)
        } else if self.moderators.contains(author) {
            (1.0, ReportBasis::Moderator)
        } else {
            let score = self.snap.view.get(author).score;
            let score = if score.is_finite() {
                score.clamp(0.0, 1.0)
            } else {
                0.0
            };
            (round3(score), ReportBasis::Trust)
        }
    }

    fn view(&self, store: &Store, r: &ReportRecord) -> ReportView {
        let (weight, basis) = self.weigh(&r.author);
        let text = store
            .object(&r.object)
            .ok()
            .flatten()
            .and_then(|b| SignedObject::decode_stored(&b).ok())
            .and_then(|o| Report::decode(&o.envelope().body).ok())
            .map(|rep| rep.text)
            .unwrap_or_default();
        ReportView {
            id: r.object.to_hex(),
            by: r.author.peer_id(),
            about: r.about.peer_id(),
            listing: r.listing.then(|| hex::encode(r.target)),
            reason: r.reason.name().to_owned(),
            text,
            at: r.at,
            weight,
            basis,
        }
    }

    /// What the reports about `listing` and about its `seller` do here; None without any.
    pub fn listing(
        &self,
        store: &Store,
        listing: &ListingId,
        seller: &PublicKey,
    ) -> Result<Option<ModerationView>, StoreError> {
        let mut records = store.reports_about(&listing.0)?;
        records.extend(
            store
                .reports_about(&seller.0)?
                .into_iter()
                .filter(|r| !r.listing),
        );
        if records.is_empty() {
            return Ok(None);
        }
        let mut by_author: HashMap<PublicKey, f64> = HashMap::new();
        let mut weighed: Vec<(f64, &ReportRecord)> = Vec::with_capacity(records.len());
        for r in &records {
            let w = self.weigh(&r.author).0;
            let best = by_author.entry(r.author).or_insert(0.0);
            *best = best.max(w);
            weighed.push((w, r));
        }
        let weight = round3(by_author.values().sum());
        weighed.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.at.cmp(&a.1.at)));
        let mut reasons: Vec<String> = Vec::new();
        for (w, r) in &weighed {
            let name = r.reason.name().to_owned();
            if *w > 0.0 && !reasons.contains(&name) {
                reasons.push(name);
            }
        }
        let hidden = weight >= HIDE_WEIGHT;
        Ok(Some(ModerationView {
            hidden,
            warning: !hidden && weight > 0.0,
            weight,
            threshold: HIDE_WEIGHT,
            reasons,
            reports: weighed
                .iter()
                .take(REPORTS_SHOWN_MAX)
                .map(|(_, r)| self.view(store, r))
                .collect(),
        }))
    }

    /// Adds the moderation of a listing view (its id and seller as the view names them).
    pub fn annotate(&self, store: &Store, v: &mut ListingView) -> Result<(), StoreError> {
        let (Some(id), Some(seller)) = (
            ListingId::from_hex(&v.id),
            public_key_from_peer_id(&v.seller),
        ) else {
            return Ok(());
        };
        v.moderation = self.listing(store, &id, &seller)?;
        Ok(())
    }
}

/// Whether a listing is hidden from search and the home page on this node: hidden by its
/// reports, and not this node's own (a seller always sees their listings, and why).
pub fn hidden_from(v: &ListingView, me: &str) -> bool {
    v.seller != me && v.moderation.as_ref().is_some_and(|m| m.hidden)
}

/// The moderation service.
#[derive(Debug, Clone)]
pub struct Moderation {
    key: Arc<SigningKey>,
    me: PublicKey,
    store: Arc<Store>,
    listings: Listings,
    reputation: Reputation,
    network: Client,
}

impl Moderation {
    /// A service over the node's store, listings and trust.
    pub fn new(
        key: Arc<SigningKey>,
        store: Arc<Store>,
        listings: Listings,
        reputation: Reputation,
        network: Client,
    ) -> Self {
        let me = PublicKey(key.verifying_key().to_bytes());
        Self {
            key,
            me,
            store,
            listings,
            reputation,
            network,
        }
    }

    fn parse_peer(peer: &str) -> Result<PublicKey, ModerationError> {
        public_key_from_peer_id(peer.trim()).ok_or_else(|| {
            ModerationError::Invalid(format!(
                "{peer:?} is not a peer id (12D3KooW…, as `jangteo id` prints it)"
            ))
        })
    }

    /// What a target names: (the key reported, the listing if one). Refuses what this node
    /// does not know, and oneself (blocking).
    fn resolve(&self, target: &str) -> Result<(PublicKey, Option<ListingId>), ModerationError> {
        let target = target.trim();
        if let Some(id) = ListingId::from_hex(target) {
            let Some(l) = self.store.listing(&id)? else {
                return Err(ModerationError::NotFound(format!(
                    "no listing {target} on this node: a report names a listing this node holds (find it with `jangteo search`, or wait for sync)"
                )));
            };
            if l.author == self.me {
                return Err(ModerationError::Refused(
                    "this is your own listing: nobody reports themselves (retract it instead)"
                        .into(),
                ));
            }
            return Ok((l.author, Some(id)));
        }
        let Some(key) = public_key_from_peer_id(target) else {
            return Err(ModerationError::Invalid(format!(
                "{target:?} is neither a listing id (64 hex digits) nor a peer id (12D3KooW…)"
            )));
        };
        if key == self.me {
            return Err(ModerationError::Refused(
                "this is this node's own key: nobody reports themselves".into(),
            ));
        }
        if !self.knows(&key)? {
            return Err(ModerationError::NotFound(format!(
                "{target} is not known here: this node holds no listing, rating or report of that key, so there is nothing to report yet"
            )));
        }
        Ok((key, None))
    }

    /// Whether this node holds anything of `key`: a listing, a rating by or about it, a
    /// report about it.
    fn knows(&self, key: &PublicKey) -> Result<bool, ModerationError> {
        let q = SearchQuery {
            seller: Some(key.peer_id()),
            all: Some(true),
            limit: Some(1),
            ..SearchQuery::default()
        };
        let listed = self
            .listings
            .search(&q)
            .map_err(|e| ModerationError::Search(e.to_string()))?;
        if !listed.is_empty() {
            return Ok(true);
        }
        if self.reputation.cached().first_seen.contains_key(key) {
            return Ok(true);
        }
        Ok(!self.store.reports_about(&key.0)?.is_empty())
    }

    /// Makes a report of a listing or a key, stores it and gossips it.
    pub async fn report(&self, n: NewReport) -> Result<ReportMade, ModerationError> {
        let reason = ReportReason::from_name(n.reason.trim()).ok_or_else(|| {
            ModerationError::Invalid(format!(
                "reason {:?}: must be one of {REASON_EXPECTED}",
                n.reason
            ))
        })?;
        let text = n.text.unwrap_or_default().replace("\r\n", "\n");
        let text = text.trim().to_owned();
        jangteo_protocol::text::check_free_text("text", &text, REPORT_TEXT_MAX_BYTES, &['\n'])
            .map_err(|e| ModerationError::Invalid(e.to_string()))?;
        let this = self.clone();
        let target = n.target.clone();
        let (about, listing) = tokio::task::spawn_blocking(move || this.resolve(&target))
            .await
            .map_err(|_| StoreError::Poisoned)??;
        let now = now_ms();
        let report = Report {
            about,
            listing: listing.map(|l| l.0),
            reason,
            text,
            at: now,
        };
        // Our own cap first: a report over it would push out one of ours of today.
        let mine = {
            let (store, me) = (self.store.clone(), self.me);
            tokio::task::spawn_blocking(move || store.reports_by(&me))
                .await
                .map_err(|_| StoreError::Poisoned)??
        };
        let today = mine
            .iter()
            .filter(|r| {
                r.at / jangteo_protocol::report::REPORT_DAY_MS == report.day()
                    && r.target != report.target()
            })
            .count();
        if today >= REPORTS_PER_DAY_MAX {
            return Err(ModerationError::Limit(format!(
                "you have made {today} reports today (UTC); every node keeps at most {REPORTS_PER_DAY_MAX} a day from one key, so this one would be lost: try again tomorrow"
            )));
        }
        let obj = SignedObject::sign(Kind::Report, report.encode(), &self.key);
        let (signed, object) = verify_object(obj.bytes(), now)
            .map_err(|e| ModerationError::Invalid(format!("report refused: {e}")))?;
        let Object::Report(checked) = object else {
            return Err(ModerationError::Invalid("not a report".into()));
        };
        let (store, signed2) = (self.store.clone(), signed.clone());
        let write = tokio::task::spawn_blocking(move || store.put_report(&signed2, &checked, true))
            .await
            .map_err(|_| StoreError::Poisoned)??;
        match write {
            ReportWrite::Stored => {}
            ReportWrite::ListingNotHeld => {
                return Err(ModerationError::NotFound(
                    "the listing is no longer held here".into(),
                ));
            }
            ReportWrite::WrongSeller => {
                return Err(ModerationError::Invalid(
                    "the listing's seller changed under the report".into(),
                ));
            }
            ReportWrite::Refused(why) => return Err(ModerationError::Limit(why.to_owned())),
        }
        match self
            .network
            .publish(Kind::Report, signed.bytes().to_vec())
            .await
        {
            Ok(Ok(())) => tracing::info!(id = %signed.id(), "report published"),
            Ok(Err(e)) => {
                tracing::info!(id = %signed.id(), reason = %e, "report stored; peers will fetch it by sync")
            }
            Err(e) => tracing::warn!(error = %e, "report stored; network unavailable"),
        }
        Ok(ReportMade {
            id: signed.id().to_hex(),
            about: about.peer_id(),
            listing: listing.map(|l| l.to_hex()),
            reason: reason.name().to_owned(),
        })
    }

    /// A weigher from the freshest trust snapshot and the moderators (blocking).
    fn with_weigher<T>(
        &self,
        f: impl FnOnce(&Weigher<'_>) -> Result<T, ModerationError>,
    ) -> Result<T, ModerationError> {
        let snap = self
            .reputation
            .fresh()
            .unwrap_or_else(|_| self.reputation.cached());
        let w = Weigher::new(self.me, self.store.moderators()?, &snap);
        f(&w)
    }

    /// The reports held by one author or about one listing or key, with their weights here
    /// (blocking).
    pub fn reports(&self, q: &ReportsQuery) -> Result<Vec<ReportView>, ModerationError> {
        let records = match (q.by.as_deref(), q.about.as_deref()) {
            (Some(by), None) => self.store.reports_by(&Self::parse_peer(by)?)?,
            (None, Some(about)) => {
                let about = about.trim();
                let target = match ListingId::from_hex(about) {
                    Some(id) => id.0,
                    None => {
                        Self::parse_peer(about)
                            .map_err(|_| {
                                ModerationError::Invalid(format!(
                                    "about {about:?}: a listing id (64 hex digits) or a peer id"
                                ))
                            })?
                            .0
                    }
                };
                self.store.reports_about(&target)?
            }
            _ => {
                return Err(ModerationError::Invalid(
                    "give exactly one of by (a peer id) or about (a listing id or peer id)".into(),
                ));
            }
        };
        self.with_weigher(|w| {
            let mut out: Vec<ReportView> = records
                .iter()
                .rev()
                .take(REPORTS_LIST_MAX)
                .map(|r| w.view(&self.store, r))
                .collect();
            out.sort_by_key(|r| std::cmp::Reverse(r.at));
            Ok(out)
        })
    }

    /// The moderators' peer ids.
    pub fn moderators(&self) -> Result<Vec<String>, ModerationError> {
        Ok(self
            .store
            .moderators()?
            .iter()
            .map(PublicKey::peer_id)
            .collect())
    }

    /// Subscribes to a moderator: its reports count as this node's own.
    pub fn add_moderator(&self, peer: &str) -> Result<ModeratorChange, ModerationError> {
        let key = Self::parse_peer(peer)?;
        if key == self.me {
            return Err(ModerationError::Invalid(
                "this is this node's own key; its reports always count in full".into(),
            ));
        }
        if self.store.moderators()?.len() >= MODERATORS_MAX
            && !self.store.moderators()?.contains(&key)
        {
            return Err(ModerationError::Refused(format!(
                "at most {MODERATORS_MAX} moderators; remove one first (`jangteo moderators rm`)"
            )));
        }
        let changed = self.store.set_moderator(&key, true)?;
        Ok(ModeratorChange {
            peer_id: key.peer_id(),
            moderator: true,
            changed,
        })
    }

    /// Drops a moderator.
    pub fn remove_moderator(&self, peer: &str) -> Result<ModeratorChange, ModerationError> {
        let key = Self::parse_peer(peer)?;
        let changed = self.store.set_moderator(&key, false)?;
        Ok(ModeratorChange {
            peer_id: key.peer_id(),
            moderator: false,
            changed,
        })
    }
}
