//! The listings service: what the local user does with their own listings (post, update,
//! retract) and how any listing held here is shown and found.
//!
//! Authoring builds a new version, validates it with the protocol's rules, signs it, stores
//! it durably (synced before the API answers) and gossips it. It never touches the swarm
//! directly: it holds a network [`Client`]. Search here is a plain filter over the store; the
//! full-text engine replaces it in its own module.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use jangteo_protocol::listing::{DEFAULT_CATEGORY, LIFETIME_DEFAULT_MS, LIFETIME_MAX_MS};
use jangteo_protocol::{
    Condition, FieldError, Kind, Listing, ListingId, ListingStatus, Location, PublicKey,
    SignedObject,
};
use rand::RngCore;

use crate::clock::now_ms;
use crate::error::StoreError;
use crate::net::Client;
use crate::services::search::{SearchError, SearchIndex, SearchQuery};
use crate::store::{Store, StoredListing};

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
        }
    }
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

    /// Signs, stores (durably) and gossips a version; returns the listing id.
    async fn commit(&self, listing: Listing) -> Result<ListingId, ListingError> {
        listing.validate(now_ms())?;
        let obj = SignedObject::sign(Kind::Listing, listing.encode(), &self.key);
        let id = listing.id(&self.me());
        let store = self.store.clone();
        let obj2 = obj.clone();
        let write =
            tokio::task::spawn_blocking(move || store.put_listing(&obj2, &listing, now_ms(), true))
                .await
                .map_err(|_| StoreError::Poisoned)??;
        if !write.stored() {
            return Err(ListingError::Invalid(FieldError::new(
                "seq",
                format!("not stored: {write:?}"),
            )));
        }
        match self
            .network
            .publish(Kind::Listing, obj.bytes().to_vec())
            .await
        {
            Ok(Ok(())) => tracing::info!(listing = %id, "listing published"),
            Ok(Err(e)) => {
                tracing::info!(listing = %id, reason = %e, "listing stored; peers will fetch it by sync")
            }
            Err(e) => {
                tracing::warn!(listing = %id, error = %e, "listing stored; network unavailable")
            }
        }
        Ok(id)
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
            images: n
                .images
                .iter()
                .map(|i| {
                    let id = jangteo_protocol::ObjectId::from_hex(i).ok_or_else(|| {
                        FieldError::new("image", format!("{i:?} is not a blob id"))
                    })?;
                    match self.store.blob_manifest(&id) {
                        Ok(Some(_)) => Ok(id.0),
                        Ok(None) => Err(FieldError::new(
                            "image",
                            format!("blob {i} is not stored on this node; add the file first"),
                        )),
                        Err(e) => Err(FieldError::new("image", e.to_string())),
                    }
                })
                .collect::<Result<_, _>>()?,
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

    /// Checks a new listing's fields as [`Listings::post`] would, and stores and sends
    /// nothing: the web page asks before it stores the photos. Blocking.
    pub fn check(&self, n: &NewListing) -> Result<(), ListingError> {
        let now = now_ms();
        self.first_version(n.clone(), now)?.validate(now)?;
        Ok(())
    }

    /// Posts a new listing.
    pub async fn post(&self, n: NewListing) -> Result<ListingView, ListingError> {
        let listing = self.first_version(n, now_ms())?;
        let id = self.commit(listing).await?;
        self.show(&id.to_hex())
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

    fn next_version(cur: &Listing) -> Listing {
        let mut next = cur.clone();
        next.seq = cur.seq + 1;
        next.updated_at = now_ms().max(cur.updated_at);
        next
    }

    /// Publishes a new version with the given changes.
    pub async fn update(&self, id: &str, u: ListingUpdate) -> Result<ListingView, ListingError> {
        let (_, cur) = self.own_head(id)?;
        let mut next = Self::next_version(&cur.listing);
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
        let id = self.commit(next).await?;
        self.show(&id.to_hex())
    }

    /// Retracts a listing for good.
    pub async fn retract(&self, id: &str) -> Result<ListingView, ListingError> {
        let (_, cur) = self.own_head(id)?;
        let mut next = Self::next_version(&cur.listing);
        next.status = ListingStatus::Retracted;
        let id = self.commit(next).await?;
        self.show(&id.to_hex())
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
