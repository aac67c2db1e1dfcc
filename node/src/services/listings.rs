//! The listings service: what the local user does with their own listings (post, update,
//! retract) and how any listing held here is shown and found.
//!
//! Authoring builds a new version, validates it with the protocol's rules, signs it, stores
//! it durably (synced before the API answers) and gossips it. It never touches the swarm
//! directly: it holds a network [`Client`]. Search here is a plain filter over the store; the
//! full-text engine replaces it in its own module.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use jangteo_protocol::listing::{
    DEFAULT_CATEGORY, IMAGES_MAX, LIFETIME_DEFAULT_MS, LIFETIME_MAX_MS, LISTING_ACTIVE_MAX,
    LISTING_VERSION_INTERVAL_MS,
};
use jangteo_protocol::{
    Condition, FieldError, Kind, Listing, ListingId, ListingStatus, Location, PublicKey,
    SignedObject,
};
use rand::RngCore;

use crate::clock::now_ms;
use crate::error::StoreError;
use crate::net::Client;
use crate::services::search::{SearchError, SearchIndex, SearchQuery};
use crate::store::{ListingWrite, Store, StoredListing};

/// Why a listing operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    /// A field is invalid.
    #[error("invalid listing: {0}")]
    Invalid(#[from] FieldError),
    /// No listing with that id is held here.
    #[error("no listing {0} on this node")]
    NotFound(String),
    /// The id is not 64 hex digits.
    #[error("{0:?} is not a listing id (64 hex digits)")]
    BadId(String),
    /// Someone else's listing.
    #[error("listing {0} belongs to another seller; only its seller can change it")]
    NotYours(String),
    /// A retracted listing cannot change.
    #[error("listing {0} is retracted; retraction is final")]
    Retracted(String),
    /// The search request is malformed.
    #[error("{0}")]
    BadQuery(String),
    /// The search engine failed.
    #[error("search: {0}")]
    Search(String),
    /// A posting limit (SPEC §3.1): this key has the most active listings one key may have.
    #[error(
        "you have {0} active listings, the most one key may have (SPEC §3.1); retract or let one expire first"
    )]
    OverCap(u64),
    /// A posting limit (SPEC §3.1): versions of one listing follow each other at least
    /// 10 s apart, and a version may be dated at most 5 minutes ahead.
    #[error(
        "too many versions of listing {id} in a short time (each at least 10 s after the one before); try again in {wait_s} s"
    )]
    TooSoon {
        /// The listing.
        id: String,
        /// Seconds until the next version may be made.
        wait_s: u64,
    },
    /// Store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub use crate::api::types::{LatLon, ListingState, ListingUpdate, ListingView, NewListing};

impl ListingView {
    fn new(s: &StoredListing, now: u64) -> Self {
        let l = &s.listing;
        let status = match () {
            _ if l.status == ListingStatus::Retracted => ListingState::Retracted,
            _ if l.expires_at <= now => ListingState::Expired,
            _ if l.quantity == 0 => ListingState::Sold,
            _ => ListingState::Active,
        };
        Self {
            id: s.id.to_hex(),
            title: l.title.clone(),
            description: l.description.clone(),
            price: l.price,
            currency: l.currency.clone(),
            category: l.category.clone(),
            condition: l.condition.map(|c| c.name().to_owned()),
            quantity: l.quantity,
            seller: s.author.peer_id(),
            seq: l.seq,
            created_at: l.created_at,
            updated_at: l.updated_at,
            expires_at: l.expires_at,
            status,
            images: l.images.iter().map(hex::encode).collect(),
            location: l.location.map(|p| LatLon {
                lat: p.lat(),
                lon: p.lon(),
            }),
            distance_km: None,
            object: s.head.object.to_hex(),
            seller_score: None,
            seller_confidence: None,
            seller_supports: None,
            stamp_bits: None,
            stamp_ms: None,
            moderation: None,
        }
    }
}

/// The cost of a stamp made for a version.
#[derive(Debug, Clone, Copy)]
struct Stamped {
    bits: u32,
    ms: u64,
}

/// How far ahead of this node's clock the author dates a version to keep the interval
/// between versions (SPEC §3.1): a minute less than other nodes allow, for their clocks.
pub const VERSION_AHEAD_MAX_MS: u64 = jangteo_protocol::MAX_CLOCK_SKEW_MS - 60_000;

/// The `updated` of the version after `cur`: now, or [`LISTING_VERSION_INTERVAL_MS`] after
/// `cur` if that is later (a retraction: now, or `cur`'s); None when that would be dated
/// more than [`VERSION_AHEAD_MAX_MS`] ahead of `now`.
pub fn next_updated_at(cur: &Listing, now: u64, retraction: bool) -> Option<u64> {
    if retraction && cur.status == ListingStatus::Active {
        return Some(now.max(cur.updated_at));
    }
    let at = now.max(cur.updated_at + LISTING_VERSION_INTERVAL_MS);
    (at <= now + VERSION_AHEAD_MAX_MS).then_some(at)
}

/// What the stamp of `listing` by `me` must be worth for this node to take it (SPEC §3.1):
/// the base difficulty for a listing held here already or a retraction; for a new one, what
/// `me`'s other active listings held here ask. Refuses a new listing over the cap. Blocking.
fn stamp_needed(
    store: &Store,
    me: &PublicKey,
    listing: &Listing,
    now: u64,
) -> Result<u32, ListingError> {
    let base = store.stamp_bits();
    let id = listing.id(me);
    if listing.status == ListingStatus::Retracted || store.listing_head(&id)?.is_some() {
        return Ok(base);
    }
    let active = store.active_listings(me, Some(&id), now)?;
    if active >= LISTING_ACTIVE_MAX {
        return Err(ListingError::OverCap(active));
    }
    Ok(jangteo_protocol::listing::stamp_bits(base, active))
}

/// Parses `LAT,LON`.
pub fn parse_lat_lon(s: &str) -> Option<LatLon> {
    let (a, b) = s.split_once(',')?;
    let lat: f64 = a.trim().parse().ok()?;
    let lon: f64 = b.trim().parse().ok()?;
    Location::from_degrees(lat, lon).map(|_| LatLon { lat, lon })
}

/// The listings service.
#[derive(Debug, Clone)]
pub struct Listings {
    key: Arc<SigningKey>,
    store: Arc<Store>,
    index: Arc<SearchIndex>,
    network: Client,
}

fn condition(s: Option<&str>) -> Result<Option<Condition>, FieldError> {
    s.map(|c| {
        Condition::from_name(c).ok_or_else(|| {
            FieldError::new("condition", "must be new, like-new, good, fair or poor")
        })
    })
    .transpose()
}

fn location(p: Option<LatLon>) -> Result<Option<Location>, FieldError> {
    p.map(|p| {
        Location::from_degrees(p.lat, p.lon).ok_or_else(|| {
            FieldError::new(
                "location",
                "latitude must be within ±90 and longitude within ±180",
            )
        })
    })
    .transpose()
}

impl Listings {
    /// A service signing with `key`.
    pub fn new(
        key: Arc<SigningKey>,
        store: Arc<Store>,
        index: Arc<SearchIndex>,
        network: Client,
    ) -> Self {
        Self {
            key,
            store,
            index,
            network,
        }
    }

    fn me(&self) -> PublicKey {
        PublicKey(self.key.verifying_key().to_bytes())
    }

    /// Stamps (when the version's stamp is worth less than the network asks of it), signs,
    /// stores and gossips a version, then syncs the store (durable before it returns);
    /// returns the listing id and the stamp made, if one was. The stamp is solved on a blocking thread, off the async runtime.
    async fn commit(&self, listing: Listing) -> Result<(ListingId, Option<Stamped>), ListingError> {
        let mut trace = crate::trace::PublishTrace::start();
        listing.validate(now_ms())?;
        let me = self.me();
        let id = listing.id(&me);
        let store = self.store.clone();
        let (listing, stamped) = tokio::task::spawn_blocking(move || {
            let mut listing = listing;
            let needed = stamp_needed(&store, &me, &listing, now_ms())?;
            if listing.stamp_work(&me) >= needed {
                return Ok((listing, None));
            }
            let started = std::time::Instant::now();
            listing.solve_stamp(&me, needed);
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            tracing::info!(listing = %id, bits = needed, ms, "listing stamped");
            Ok::<_, ListingError>((listing, Some(Stamped { bits: needed, ms })))
        })
        .await
        .map_err(|_| StoreError::Poisoned)??;
        let obj = SignedObject::sign(Kind::Listing, listing.encode(), &self.key);
        if let Some(t) = trace.as_mut() {
            t.validated();
        }
        let store = self.store.clone();
        let obj2 = obj.clone();
        // Written (every check of the store made) but not yet synced: gossip need not wait
        // for the disk. The post is answered only after the sync below, so an acknowledged
        // post still survives a crash; a crash between the two can only leave a valid,
        // published version that this node fetches back by sync.
        let write = tokio::task::spawn_blocking(move || {
            store.put_listing(&obj2, &listing, now_ms(), false)
        })
        .await
        .map_err(|_| StoreError::Poisoned)??;
        match write {
            w if w.stored() => {}
            ListingWrite::OverCap { active } => return Err(ListingError::OverCap(active)),
            w @ (ListingWrite::TooCheap { .. } | ListingWrite::StampBelowCount { .. }) => {
                return Err(ListingError::Invalid(crate::ingest::over_limit(w)));
            }
            w => {
                return Err(ListingError::Invalid(FieldError::new(
                    "seq",
                    format!("not stored: {w:?}"),
                )));
            }
        }
        if let Some(t) = trace.as_mut() {
            t.stored();
        }
        let published = self
            .network
            .publish(Kind::Listing, obj.bytes().to_vec())
            .await;
        if let Some(t) = &trace {
            t.published(&id.to_hex());
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.sync())
            .await
            .map_err(|_| StoreError::Poisoned)??;
        match published {
            Ok(Ok(())) => tracing::info!(listing = %id, "listing published"),
            Ok(Err(e)) => {
                tracing::info!(listing = %id, reason = %e, "listing stored; peers will fetch it by sync")
            }
            Err(e) => {
                tracing::warn!(listing = %id, error = %e, "listing stored; network unavailable")
            }
        }
        Ok((id, stamped))
    }

    /// The answer to a post, update or retraction: the version as held, and its stamp's cost.
    fn answer(
        &self,
        id: &ListingId,
        stamped: Option<Stamped>,
    ) -> Result<ListingView, ListingError> {
        let mut v = self.show(&id.to_hex())?;
        if let Some(s) = stamped {
            v.stamp_bits = Some(s.bits);
            v.stamp_ms = Some(s.ms);
        }
        Ok(v)
    }

    /// The first version of a new listing, built and checked as [`Listings::post`] would,
    /// without signing or storing anything (blocking for the image look-ups).
    fn first_version(&self, n: NewListing, now: u64) -> Result<Listing, ListingError> {
        let days = n
            .expires_in_days
            .unwrap_or(LIFETIME_DEFAULT_MS / 86_400_000);
        if days == 0 || days > LIFETIME_MAX_MS / 86_400_000 {
            return Err(FieldError::new("expires_in_days", "must be 1-180").into());
        }
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        Ok(Listing {
            stamp: None,
            nonce,
            seq: 1,
            created_at: now,
            updated_at: now,
            expires_at: now + days * 86_400_000,
            status: ListingStatus::Active,
            title: n.title,
            description: n.description.unwrap_or_default(),
            category: n.category.unwrap_or_else(|| DEFAULT_CATEGORY.to_owned()),
            condition: condition(n.condition.as_deref())?,
            price: n.price,
            currency: n.currency,
            quantity: n.quantity.unwrap_or(1),
            images: self.images(&n.images)?,
            location: location(n.location)?,
            moderators: n
                .moderators
                .iter()
                .map(|p| {
                    jangteo_protocol::public_key_from_peer_id(p).ok_or_else(|| {
                        FieldError::new("moderator", format!("{p:?} is not a peer id"))
                    })
                })
                .collect::<Result<_, _>>()?,
        })
    }

    /// The blob ids of a listing's photos, each one stored on this node (blocking).
    fn images(&self, ids: &[String]) -> Result<Vec<[u8; 32]>, FieldError> {
        ids.iter()
            .map(|i| {
                let id = jangteo_protocol::ObjectId::from_hex(i)
                    .ok_or_else(|| FieldError::new("image", format!("{i:?} is not a blob id")))?;
                match self.store.blob_manifest(&id) {
                    Ok(Some(_)) => Ok(id.0),
                    Ok(None) => Err(FieldError::new(
                        "image",
                        format!("blob {i} is not stored on this node; add the file first"),
                    )),
                    Err(e) => Err(FieldError::new("image", e.to_string())),
                }
            })
            .collect()
    }

    /// Checks a new listing's fields as [`Listings::post`] would, and stores and sends
    /// nothing: the web page asks before it stores the photos. Blocking.
    pub fn check(&self, n: &NewListing) -> Result<(), ListingError> {
        let now = now_ms();
        self.first_version(n.clone(), now)?.validate(now)?;
        Ok(())
    }

    /// Posts a new listing: stamps it as the listings of this key held here ask (SPEC §3.1),
    /// which takes about 1.5 s of one core on the public network for a seller's first 15
    /// active listings, and twice as long for each doubling beyond.
    pub async fn post(&self, n: NewListing) -> Result<ListingView, ListingError> {
        let listing = self.first_version(n, now_ms())?;
        let (id, stamped) = self.commit(listing).await?;
        self.answer(&id, stamped)
    }

    fn own_head(&self, id: &str) -> Result<(ListingId, StoredListing), ListingError> {
        let lid = ListingId::from_hex(id).ok_or_else(|| ListingError::BadId(id.to_owned()))?;
        let cur = self
            .store
            .listing(&lid)?
            .ok_or_else(|| ListingError::NotFound(id.to_owned()))?;
        if cur.author != self.me() {
            return Err(ListingError::NotYours(id.to_owned()));
        }
        if cur.listing.status == ListingStatus::Retracted {
            return Err(ListingError::Retracted(id.to_owned()));
        }
        Ok((lid, cur))
    }

    /// The next version of `cur` (same stamp), dated at least
    /// [`LISTING_VERSION_INTERVAL_MS`] after it (SPEC §3.1: up to 5 minutes ahead of now, so
    /// that a quick correction still goes out at once); a retraction may follow at any time.
    fn next_version(id: &str, cur: &Listing, retraction: bool) -> Result<Listing, ListingError> {
        let now = now_ms();
        let mut next = cur.clone();
        next.seq = cur.seq + 1;
        next.updated_at = next_updated_at(cur, now, retraction).ok_or_else(|| {
            let earliest = cur.updated_at + LISTING_VERSION_INTERVAL_MS;
            ListingError::TooSoon {
                id: id.to_owned(),
                wait_s: earliest
                    .saturating_sub(now + VERSION_AHEAD_MAX_MS)
                    .div_ceil(1000),
            }
        })?;
        Ok(next)
    }

    /// The next version of one of my listings with the given changes, built and checked as
    /// [`Listings::update`] would, without signing or storing anything (blocking: reads the
    /// listing and the photos' blobs).
    fn next_of(&self, id: &str, u: ListingUpdate) -> Result<Listing, ListingError> {
        let (_, cur) = self.own_head(id)?;
        let mut next = Self::next_version(id, &cur.listing, false)?;
        if let Some(t) = u.title {
            next.title = t;
        }
        if let Some(p) = u.price {
            next.price = p;
        }
        if let Some(q) = u.quantity {
            next.quantity = q;
        }
        if let Some(d) = u.description {
            next.description = d;
        }
        if let Some(c) = u.category {
            next.category = c;
        }
        if u.condition.is_some() {
            next.condition = condition(u.condition.as_deref())?;
        }
        if let Some(c) = u.currency {
            next.currency = c;
        }
        if u.location.is_some() {
            next.location = location(u.location)?;
        } else if u.remove_location {
            next.location = None;
        }
        if let Some(images) = &u.images {
            if images.len() > IMAGES_MAX {
                return Err(
                    FieldError::new("image", format!("at most {IMAGES_MAX} images")).into(),
                );
            }
            next.images = self.images(images)?;
        }
        next.validate(now_ms())?;
        Ok(next)
    }

    /// Checks an update of one of my listings as [`Listings::update`] would, and stores and
    /// sends nothing: the web page asks before it stores new photos. Blocking.
    pub fn check_update(&self, id: &str, u: &ListingUpdate) -> Result<(), ListingError> {
        self.next_of(id, u.clone()).map(|_| ())
    }

    /// Publishes a new version with the given changes: any of the text fields, price and
    /// currency, quantity, location, and the photos (a new list, in order).
    pub async fn update(&self, id: &str, u: ListingUpdate) -> Result<ListingView, ListingError> {
        let next = self.next_of(id, u)?;
        let (id, stamped) = self.commit(next).await?;
        self.answer(&id, stamped)
    }

    /// Retracts a listing for good (at any time: no interval applies).
    pub async fn retract(&self, id: &str) -> Result<ListingView, ListingError> {
        let (_, cur) = self.own_head(id)?;
        let mut next = Self::next_version(id, &cur.listing, true)?;
        next.status = ListingStatus::Retracted;
        let (id, stamped) = self.commit(next).await?;
        self.answer(&id, stamped)
    }

    /// The current version of a listing held here.
    pub fn show(&self, id: &str) -> Result<ListingView, ListingError> {
        let lid = ListingId::from_hex(id).ok_or_else(|| ListingError::BadId(id.to_owned()))?;
        let cur = self
            .store
            .listing(&lid)?
            .ok_or_else(|| ListingError::NotFound(id.to_owned()))?;
        Ok(ListingView::new(&cur, now_ms()))
    }

    /// Number of open listings held here, as the search index counts them (it follows the
    /// store within moments; reading the store would decode every listing).
    pub fn open_count(&self) -> Result<u64, ListingError> {
        self.index
            .open_count(now_ms())
            .map_err(|e| ListingError::Search(e.to_string()))
    }

    /// Searches the listings held here with the local search engine.
    pub fn search(&self, q: &SearchQuery) -> Result<Vec<ListingView>, ListingError> {
        let now = now_ms();
        let hits = self.index.search(&self.store, q).map_err(|e| match e {
            SearchError::BadQuery(m) => ListingError::BadQuery(m),
            other => ListingError::Search(other.to_string()),
        })?;
        // Listings of keys this node's person blocked are hidden from them.
        let blocked: std::collections::HashSet<_> = self
            .store
            .blocked()
            .map(|b| b.into_iter().map(|(k, _)| k).collect())
            .unwrap_or_default();
        Ok(hits
            .into_iter()
            .filter(|h| !blocked.contains(&h.listing.author))
            .map(|h| {
                let mut v = ListingView::new(&h.listing, now);
                v.distance_km = h.distance_km.map(|d| (d * 100.0).round() / 100.0);
                v
            })
            .collect())
    }
}
