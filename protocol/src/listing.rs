//! The `listing` kind: what a seller offers, versioned by `seq`.
//!
//! A listing's identity is (author, nonce); every edit, sale or retraction is a new version
//! with a higher `seq`, and the highest valid `seq` wins. This module owns the body's fields,
//! their encoding and their limits. It does not decide what is stored: that is the node's.

use ciborium::value::Value;

use crate::cbor::{self, Fields, canonical_map, int, uint};
use crate::error::{DecodeError, FieldError};
use crate::ids::{ObjectId, PublicKey};
use crate::limits::{LAT_E6_MAX, LON_E6_MAX, MAX_CLOCK_SKEW_MS, MODERATORS_MAX};

pub use crate::limits::{
    CATEGORY_MAX_BYTES, DESCRIPTION_MAX_BYTES, EARLIEST_MS, IMAGES_MAX, LIFETIME_DEFAULT_MS,
    LIFETIME_MAX_MS, PRICE_MAX, QUANTITY_MAX, TITLE_MAX_BYTES, TITLE_MAX_CHARS,
};
pub use crate::limits::{
    LISTING_ACTIVE_MAX, LISTING_STAMP_BITS, LISTING_STAMP_FREE, LISTING_VERSION_INTERVAL_MS,
};
/// The category used when none is given.
pub const DEFAULT_CATEGORY: &str = "general";

/// The categories listings are sharded by (one gossip topic and one sync shard each). A
/// listing of any other category travels in the `other` shard.
pub const CATEGORIES: [&str; 19] = [
    "general",
    "digital",
    "appliances",
    "furniture",
    "home",
    "kids",
    "fashion",
    "beauty",
    "bikes",
    "sports",
    "hobbies",
    "books",
    "tickets",
    "pets",
    "plants",
    "vehicles",
    "services",
    "food",
    "other",
];

/// What a node does with a version of a listing whose head it holds (SPEC §3, "Which
/// version is the head").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadChoice {
    /// The new version becomes the head.
    Replace,
    /// The held head stays; the new version is older (or a later retraction of a retracted
    /// listing).
    Stale,
    /// The held head stays; the new version breaks a rule that needs the held one to see.
    Refused(&'static str),
    /// The two cannot be versions of one listing (`created` differs).
    Inconsistent,
}

/// Decides between the held head and another version of the same listing: a retraction wins
/// over every active version whatever the `seq`; otherwise the higher `seq` wins, and it may
/// not move `expires` earlier.
pub fn choose_head(held: &Listing, new: &Listing) -> HeadChoice {
    if held.created_at != new.created_at {
        return HeadChoice::Inconsistent;
    }
    let held_retracted = held.status == ListingStatus::Retracted;
    let new_retracted = new.status == ListingStatus::Retracted;
    match (held_retracted, new_retracted) {
        (true, false) if new.seq > held.seq => {
            HeadChoice::Refused("the listing is retracted; retraction is final")
        }
        // Two retractions: the higher seq, so every node ends on the same one (not more often
        // than versions may follow each other).
        (true, true) if new.seq > held.seq && too_soon(held, new) => HeadChoice::Refused(TOO_SOON),
        (true, true) if new.seq > held.seq => HeadChoice::Replace,
        (true, _) => HeadChoice::Stale,
        // A retraction may follow at any time.
        (false, true) => HeadChoice::Replace,
        _ if new.seq <= held.seq => HeadChoice::Stale,
        _ if new.expires_at < held.expires_at => {
            HeadChoice::Refused("a new version may not move expires earlier")
        }
        _ if too_soon(held, new) => HeadChoice::Refused(TOO_SOON),
        _ => HeadChoice::Replace,
    }
}

const TOO_SOON: &str =
    "too soon after the version held: versions of one listing are at least 10 s apart";

/// Whether `new` is dated less than [`LISTING_VERSION_INTERVAL_MS`] after `held`.
fn too_soon(held: &Listing, new: &Listing) -> bool {
    new.updated_at < held.updated_at.saturating_add(LISTING_VERSION_INTERVAL_MS)
}

/// The difficulty, in bits, a listing's stamp must have when a node that holds `active`
/// other active listings of its seller takes it (SPEC §3.1): `base` up to
/// [`LISTING_STAMP_FREE`] of them, then one bit more per doubling, `base + ⌊log2 active⌋ − 3`.
/// A `base` of 0 (test networks only) asks for no stamp at all.
pub fn stamp_bits(base: u32, active: u64) -> u32 {
    if base == 0 {
        return 0;
    }
    let extra = if active < LISTING_STAMP_FREE {
        0
    } else {
        active.ilog2() - LISTING_STAMP_FREE.ilog2() + 1
    };
    (base + extra).min(crate::stamp::MAX_BITS)
}

/// The subject of a listing's stamp (SPEC §3.1): blake3 of the tag
/// `jangteo/v1/listing-stamp`, the listing id and `created` (8 bytes, little-endian). The
/// same for every version of one listing, and for no other listing.
pub fn stamp_subject(id: &ListingId, created_at: u64) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"jangteo/v1/listing-stamp");
    h.update(&id.0);
    h.update(&created_at.to_le_bytes());
    *h.finalize().as_bytes()
}

/// The shard a category's listings travel in.
pub fn shard_of(category: &str) -> &'static str {
    CATEGORIES
        .iter()
        .find(|c| **c == category)
        .copied()
        .unwrap_or("other")
}

/// Checks an amount and its currency: at most [`PRICE_MAX`] minor units, and a
/// three-letter ISO 4217 code in capitals. Shared by listings and trade terms.
pub fn check_price(price: u64, currency: &str) -> Result<(), FieldError> {
    if price > PRICE_MAX {
        return Err(FieldError::new(
            "price",
            format!("above the maximum {PRICE_MAX}"),
        ));
    }
    if !crate::currency::is_known(currency) {
        return Err(FieldError::new(
            "currency",
            "must be the ISO 4217 code of a circulating currency, in capitals, such as KRW or USD (SPEC §3)",
        ));
    }
    Ok(())
}

/// Checks a list of moderator keys (a listing's or an offer's): at most [`MODERATORS_MAX`],
/// no key twice, and not `author`'s own key (nobody moderates their own trade).
pub fn check_moderator_keys(keys: &[PublicKey], author: &PublicKey) -> Result<(), FieldError> {
    if keys.len() > MODERATORS_MAX {
        return Err(FieldError::new(
            "moderator",
            format!("at most {MODERATORS_MAX} moderators"),
        ));
    }
    if keys.iter().enumerate().any(|(i, k)| keys[..i].contains(k)) {
        return Err(FieldError::new("moderator", "a moderator is named twice"));
    }
    if keys.contains(author) {
        return Err(FieldError::new(
            "moderator",
            "a party to the trade cannot moderate it (the author names itself)",
        ));
    }
    Ok(())
}

/// The stable identity of a listing across its versions: blake3 of a domain tag, the
/// author's key and the nonce. Displayed in lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListingId(pub [u8; 32]);

impl ListingId {
    /// The id of the listing `nonce` by `author`.
    pub fn new(author: &PublicKey, nonce: &[u8; 16]) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"jangteo/v1/listing-id");
        h.update(&author.0);
        h.update(nonce);
        Self(*h.finalize().as_bytes())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        ObjectId::from_hex(s).map(|o| Self(o.0))
    }
}

impl std::fmt::Debug for ListingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ListingId({})", self.to_hex())
    }
}

impl std::fmt::Display for ListingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Whether a listing version is on offer or withdrawn for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListingStatus {
    /// On offer (while `quantity > 0` and not expired).
    Active,
    /// Withdrawn by the seller; final.
    Retracted,
}

impl ListingStatus {
    /// Wire name.
    pub fn name(self) -> &'static str {
        match self {
            ListingStatus::Active => "active",
            ListingStatus::Retracted => "retracted",
        }
    }
}

/// The condition of a second-hand item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Never used.
    New,
    /// Used, no visible wear.
    LikeNew,
    /// Light wear.
    Good,
    /// Visible wear, works.
    Fair,
    /// Heavy wear or faults, described.
    Poor,
}

impl Condition {
    /// Wire and CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Condition::New => "new",
            Condition::LikeNew => "like-new",
            Condition::Good => "good",
            Condition::Fair => "fair",
            Condition::Poor => "poor",
        }
    }

    /// Parses a wire or CLI name.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "new" => Condition::New,
            "like-new" => Condition::LikeNew,
            "good" => Condition::Good,
            "fair" => Condition::Fair,
            "poor" => Condition::Poor,
            _ => return None,
        })
    }
}

/// A pickup location in microdegrees (WGS 84), integers so encoding is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Latitude × 10^6, in ±90 000 000.
    pub lat_e6: i32,
    /// Longitude × 10^6, in ±180 000 000.
    pub lon_e6: i32,
}

impl Location {
    /// From degrees, each × 10^6 rounded to the nearest integer, halves away from zero;
    /// `None` when out of range or not finite.
    pub fn from_degrees(lat: f64, lon: f64) -> Option<Self> {
        if !lat.is_finite() || !lon.is_finite() || lat.abs() > 90.0 || lon.abs() > 180.0 {
            return None;
        }
        Some(Self {
            lat_e6: (lat * 1e6).round() as i32,
            lon_e6: (lon * 1e6).round() as i32,
        })
    }

    /// Latitude in degrees.
    pub fn lat(&self) -> f64 {
        f64::from(self.lat_e6) / 1e6
    }

    /// Longitude in degrees.
    pub fn lon(&self) -> f64 {
        f64::from(self.lon_e6) / 1e6
    }

    /// Great-circle distance in kilometres (haversine).
    pub fn distance_km(&self, other: &Location) -> f64 {
        let (la1, lo1, la2, lo2) = (
            self.lat().to_radians(),
            self.lon().to_radians(),
            other.lat().to_radians(),
            other.lon().to_radians(),
        );
        let a = ((la2 - la1) / 2.0).sin().powi(2)
            + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
        2.0 * 6371.0088 * a.sqrt().asin()
    }
}

/// One version of a listing (the body of a `listing` object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Random per listing; with the author it forms the [`ListingId`].
    pub nonce: [u8; 16],
    /// Version number, from 1, strictly increasing.
    pub seq: u64,
    /// When the first version was made (unix ms).
    pub created_at: u64,
    /// When this version was made (unix ms).
    pub updated_at: u64,
    /// When the listing stops being on offer (unix ms).
    pub expires_at: u64,
    /// Active or retracted.
    pub status: ListingStatus,
    /// Short title.
    pub title: String,
    /// Free text.
    pub description: String,
    /// Category (`[a-z0-9-]`).
    pub category: String,
    /// Item condition, when it applies.
    pub condition: Option<Condition>,
    /// Price per unit in the currency's minor unit.
    pub price: u64,
    /// ISO 4217 code.
    pub currency: String,
    /// Units still on offer; 0 means sold out.
    pub quantity: u64,
    /// blake3 ids of images.
    pub images: Vec<[u8; 32]>,
    /// Pickup location.
    pub location: Option<Location>,
    /// Keys the seller accepts as moderators of disputes (copied into offers).
    pub moderators: Vec<PublicKey>,
    /// The listing's proof-of-work stamp (SPEC §3.1): made once for the listing and carried
    /// by each of its versions; None: no stamp (worth 0 bits).
    pub stamp: Option<u64>,
}

impl Listing {
    /// The deterministic CBOR body.
    pub fn encode(&self) -> Vec<u8> {
        let mut e: Vec<(&'static str, Value)> = vec![
            ("nonce", Value::Bytes(self.nonce.to_vec())),
            ("seq", uint(self.seq)),
            ("created", uint(self.created_at)),
            ("updated", uint(self.updated_at)),
            ("expires", uint(self.expires_at)),
            ("status", Value::Text(self.status.name().to_owned())),
            ("title", Value::Text(self.title.clone())),
            ("category", Value::Text(self.category.clone())),
            ("price", uint(self.price)),
            ("currency", Value::Text(self.currency.clone())),
            ("quantity", uint(self.quantity)),
        ];
        if !self.description.is_empty() {
            e.push(("desc", Value::Text(self.description.clone())));
        }
        if let Some(c) = self.condition {
            e.push(("condition", Value::Text(c.name().to_owned())));
        }
        if !self.images.is_empty() {
            e.push((
                "images",
                Value::Array(
                    self.images
                        .iter()
                        .map(|i| Value::Bytes(i.to_vec()))
                        .collect(),
                ),
            ));
        }
        cbor::push_keys(&mut e, "mods", &self.moderators);
        if let Some(n) = self.stamp {
            e.push(("stamp", uint(n)));
        }
        if let Some(l) = self.location {
            e.push((
                "location",
                Value::Array(vec![int(l.lat_e6.into()), int(l.lon_e6.into())]),
            ));
        }
        cbor::to_vec(&canonical_map(e))
    }

    /// Decodes a body (deterministic CBOR, known fields only). Does not validate limits.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut f = Fields::from_value(cbor::from_slice_canonical(body)?)?;
        let nonce: [u8; 16] = f
            .bytes("nonce")?
            .try_into()
            .map_err(|_| DecodeError::WrongType {
                field: "nonce",
                expected: "16 bytes",
            })?;
        let status = match f.text("status")?.as_str() {
            "active" => ListingStatus::Active,
            "retracted" => ListingStatus::Retracted,
            _ => {
                return Err(DecodeError::WrongType {
                    field: "status",
                    expected: "active|retracted",
                });
            }
        };
        let condition = match f.opt_text("condition")? {
            None => None,
            Some(c) => Some(Condition::from_name(&c).ok_or(DecodeError::WrongType {
                field: "condition",
                expected: "new|like-new|good|fair|poor",
            })?),
        };
        let images = match f.opt_array("images")? {
            None => Vec::new(),
            Some(items) => {
                if items.len() > IMAGES_MAX {
                    return Err(DecodeError::WrongType {
                        field: "images",
                        expected: "at most 8",
                    });
                }
                items
                    .into_iter()
                    .map(|v| match v {
                        Value::Bytes(b) => b.try_into().map_err(|_| DecodeError::WrongType {
                            field: "images",
                            expected: "32-byte ids",
                        }),
                        _ => Err(DecodeError::WrongType {
                            field: "images",
                            expected: "bytes",
                        }),
                    })
                    .collect::<Result<Vec<[u8; 32]>, _>>()?
            }
        };
        let location = match f.opt_array("location")? {
            None => None,
            Some(items) => {
                let [lat, lon]: [Value; 2] =
                    items.try_into().map_err(|_| DecodeError::WrongType {
                        field: "location",
                        expected: "[lat, lon]",
                    })?;
                let lat = i32::try_from(cbor::as_i64(lat, "location")?).map_err(|_| {
                    DecodeError::WrongType {
                        field: "location",
                        expected: "i32",
                    }
                })?;
                let lon = i32::try_from(cbor::as_i64(lon, "location")?).map_err(|_| {
                    DecodeError::WrongType {
                        field: "location",
                        expected: "i32",
                    }
                })?;
                Some(Location {
                    lat_e6: lat,
                    lon_e6: lon,
                })
            }
        };
        let l = Listing {
            nonce,
            seq: f.u64("seq")?,
            created_at: f.u64("created")?,
            updated_at: f.u64("updated")?,
            expires_at: f.u64("expires")?,
            status,
            title: f.text("title")?,
            description: f.opt_text("desc")?.unwrap_or_default(),
            category: f.text("category")?,
            condition,
            price: f.u64("price")?,
            currency: f.text("currency")?,
            quantity: f.u64("quantity")?,
            images,
            location,
            moderators: f.opt_keys("mods", MODERATORS_MAX)?,
            stamp: f.opt_u64("stamp")?,
        };
        f.finish()?;
        Ok(l)
    }

    /// Checks every field against its limit. `now_ms` bounds how far in the future a
    /// version may be dated. Field names in errors are the CLI's names.
    pub fn validate(&self, now_ms: u64) -> Result<(), FieldError> {
        crate::text::check_line("title", &self.title, TITLE_MAX_CHARS)?;
        crate::text::check_free_text(
            "description",
            &self.description,
            DESCRIPTION_MAX_BYTES,
            &['\n', '\t'],
        )?;
        if self.category.is_empty()
            || self.category.len() > CATEGORY_MAX_BYTES
            || !self
                .category
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(FieldError::new(
                "category",
                format!("must be 1-{CATEGORY_MAX_BYTES} characters of a-z, 0-9 and '-'"),
            ));
        }
        check_price(self.price, &self.currency)?;
        if self.quantity > QUANTITY_MAX {
            return Err(FieldError::new(
                "quantity",
                format!("above the maximum {QUANTITY_MAX}"),
            ));
        }
        if self.moderators.len() > MODERATORS_MAX {
            return Err(FieldError::new(
                "moderator",
                format!("at most {} moderators", MODERATORS_MAX),
            ));
        }
        if self.images.len() > IMAGES_MAX {
            return Err(FieldError::new(
                "image",
                format!("at most {IMAGES_MAX} images"),
            ));
        }
        if let Some(l) = self.location
            && (l.lat_e6.abs() > LAT_E6_MAX || l.lon_e6.abs() > LON_E6_MAX)
        {
            return Err(FieldError::new(
                "location",
                "latitude must be within ±90 and longitude within ±180",
            ));
        }
        if self.seq == 0 {
            return Err(FieldError::new("seq", "starts at 1"));
        }
        if self.created_at < EARLIEST_MS {
            return Err(FieldError::new(
                "created_at",
                "before 2024 (seconds instead of milliseconds?)",
            ));
        }
        if self.updated_at < self.created_at {
            return Err(FieldError::new("updated_at", "earlier than created_at"));
        }
        if self.updated_at > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
            return Err(FieldError::dated_in_future("updated_at"));
        }
        if self.expires_at <= self.created_at || self.expires_at - self.created_at > LIFETIME_MAX_MS
        {
            return Err(FieldError::new(
                "expires_at",
                "must be after created_at and at most 180 days later",
            ));
        }
        Ok(())
    }

    /// Checks the moderators against the listing's author (who signs it): distinct, and the
    /// seller never names itself.
    pub fn check_moderators(&self, author: &PublicKey) -> Result<(), FieldError> {
        check_moderator_keys(&self.moderators, author)
    }

    /// The subject of this listing's stamp by `author` (see [`stamp_subject`]).
    pub fn stamp_subject(&self, author: &PublicKey) -> [u8; 32] {
        stamp_subject(&self.id(author), self.created_at)
    }

    /// What this version's stamp is worth, in bits, for `author` (0 without a stamp). One
    /// hash.
    pub fn stamp_work(&self, author: &PublicKey) -> u32 {
        self.stamp.map_or(0, |n| {
            crate::stamp::work(
                crate::stamp::LISTING_CONTEXT,
                &self.stamp_subject(author),
                n,
            )
        })
    }

    /// Finds the lowest stamp worth `bits` for this listing by `author` and sets it.
    /// Blocking: 2^`bits` hashes on average (run it off an async runtime).
    pub fn solve_stamp(&mut self, author: &PublicKey, bits: u32) {
        let subject = self.stamp_subject(author);
        self.stamp = Some(crate::stamp::solve(
            crate::stamp::LISTING_CONTEXT,
            &subject,
            bits,
        ));
    }

    /// The listing's stable id for the given author.
    pub fn id(&self, author: &PublicKey) -> ListingId {
        ListingId::new(author, &self.nonce)
    }

    /// Whether this version is on offer at `now_ms`.
    pub fn is_open(&self, now_ms: u64) -> bool {
        self.status == ListingStatus::Active && self.quantity > 0 && self.expires_at > now_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Listing {
        Listing {
            stamp: None,
            nonce: [9; 16],
            seq: 1,
            created_at: 1_760_000_000_000,
            updated_at: 1_760_000_000_000,
            expires_at: 1_760_000_000_000 + LIFETIME_DEFAULT_MS,
            status: ListingStatus::Active,
            title: "중고 자전거를 팝니다".into(),
            description: "Rides well.\nPickup only.".into(),
            category: "bikes".into(),
            condition: Some(Condition::Good),
            price: 150_000,
            currency: "KRW".into(),
            quantity: 1,
            images: vec![[1; 32]],
            location: Some(Location {
                lat_e6: 37_566_500,
                lon_e6: 126_978_000,
            }),
            moderators: vec![],
        }
    }

    const NOW: u64 = 1_760_000_000_000;

    #[test]
    fn roundtrip_and_valid() {
        let l = sample();
        let bytes = l.encode();
        assert_eq!(Listing::decode(&bytes).expect("decodes"), l);
        l.validate(NOW).expect("valid");
    }

    #[test]
    fn every_limit_names_its_field() {
        type Mutation = Box<dyn Fn(&mut Listing)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("title", Box::new(|l| l.title = String::new())),
            (
                "title",
                Box::new(|l| l.title = "가".repeat(TITLE_MAX_CHARS + 1)),
            ),
            ("title", Box::new(|l| l.title = "bell\u{7}".into())),
            (
                "description",
                Box::new(|l| l.description = "x".repeat(DESCRIPTION_MAX_BYTES + 1)),
            ),
            ("category", Box::new(|l| l.category = "Bikes".into())),
            (
                "category",
                Box::new(|l| l.category = "a".repeat(CATEGORY_MAX_BYTES + 1)),
            ),
            ("price", Box::new(|l| l.price = PRICE_MAX + 1)),
            ("currency", Box::new(|l| l.currency = "krw".into())),
            ("currency", Box::new(|l| l.currency = "EURO".into())),
            ("quantity", Box::new(|l| l.quantity = QUANTITY_MAX + 1)),
            (
                "image",
                Box::new(|l| l.images = vec![[0; 32]; IMAGES_MAX + 1]),
            ),
            (
                "location",
                Box::new(|l| {
                    l.location = Some(Location {
                        lat_e6: 90_000_001,
                        lon_e6: 0,
                    })
                }),
            ),
            (
                "location",
                Box::new(|l| {
                    l.location = Some(Location {
                        lat_e6: 0,
                        lon_e6: -180_000_001,
                    })
                }),
            ),
            ("seq", Box::new(|l| l.seq = 0)),
            (
                "updated_at",
                Box::new(|l| l.updated_at = NOW + MAX_CLOCK_SKEW_MS + 1),
            ),
            (
                "created_at",
                Box::new(|l| {
                    l.created_at = 1_700_000_000;
                    l.updated_at = l.created_at;
                }),
            ),
            ("expires_at", Box::new(|l| l.expires_at = l.created_at)),
            (
                "expires_at",
                Box::new(|l| l.expires_at = l.created_at + LIFETIME_MAX_MS + 1),
            ),
        ];
        for (field, mutate) in cases {
            let mut l = sample();
            mutate(&mut l);
            let err = l.validate(NOW).expect_err(field);
            assert_eq!(err.field, field, "{err}");
        }
    }

    #[test]
    fn unknown_field_refused() {
        let mut v = cbor::from_slice_canonical(&sample().encode()).expect("canonical");
        if let Value::Map(m) = &mut v {
            m.push((Value::Text("zzzzzzzzzzzz".into()), uint(1)));
        }
        let bytes = cbor::to_vec(&v);
        assert!(matches!(
            Listing::decode(&bytes),
            Err(DecodeError::UnknownField(_))
        ));
    }

    /// SPEC §3.1: what the stamp must be worth by the seller's other active listings.
    #[test]
    fn stamp_difficulty_grows_by_doublings_from_the_sixteenth_listing() {
        for (active, bits) in [
            (0, 24),
            (15, 24),
            (16, 25),
            (31, 25),
            (32, 26),
            (64, 27),
            (128, 28),
            (256, 29),
            (512, 30),
            (999, 30),
        ] {
            assert_eq!(stamp_bits(LISTING_STAMP_BITS, active), bits, "{active}");
        }
        assert_eq!(stamp_bits(8, 100), 11);
        // A test network without stamps asks for none, however many listings.
        assert_eq!(stamp_bits(0, 900), 0);
        assert_eq!(LISTING_STAMP_BITS, 24);
        // The attacker's bill of SPEC §3.1: 100 000 listings from fresh keys at the base
        // difficulty, at 11 million work hashes a second on one core, is more than a day.
        let seconds = 100_000.0 * 2f64.powi(LISTING_STAMP_BITS as i32) / 11e6;
        assert!(seconds > 86_400.0, "{seconds}");
    }

    /// SPEC §3.1: one stamp serves every version of its listing, and no other listing; it is
    /// carried in the body (absent: no field, worth nothing).
    #[test]
    fn a_stamp_binds_the_listing_not_the_version() {
        let author = PublicKey([5; 32]);
        let mut l = sample();
        assert_eq!(l.stamp_work(&author), 0);
        assert!(
            !cbor::to_vec(&cbor::from_slice_canonical(&l.encode()).expect("cbor"))
                .windows(5)
                .any(|w| w == b"stamp")
        );
        l.solve_stamp(&author, 12);
        assert!(l.stamp_work(&author) >= 12);
        assert_eq!(Listing::decode(&l.encode()).expect("decodes"), l);
        // The next version keeps the stamp and its worth.
        let mut next = l.clone();
        next.seq = 2;
        next.price = 1;
        next.updated_at += LISTING_VERSION_INTERVAL_MS;
        assert_eq!(next.stamp_work(&author), l.stamp_work(&author));
        // Another listing (nonce), another `created` or another author: worth (almost
        // surely; these were checked) less.
        let mut other = l.clone();
        other.nonce[0] ^= 1;
        assert!(other.stamp_work(&author) < 12);
        let mut moved = l.clone();
        moved.created_at += 1;
        assert!(moved.stamp_work(&author) < 12);
        assert!(l.stamp_work(&PublicKey([6; 32])) < 12);
    }

    /// SPEC §3.1: versions of one listing at least 10 s apart, but a retraction at any time.
    #[test]
    fn versions_follow_at_least_the_interval_apart_but_retraction_any_time() {
        let v1 = sample();
        let mut soon = v1.clone();
        soon.seq = 2;
        soon.updated_at = v1.updated_at + LISTING_VERSION_INTERVAL_MS - 1;
        assert!(matches!(choose_head(&v1, &soon), HeadChoice::Refused(_)));
        let mut later = soon.clone();
        later.updated_at = v1.updated_at + LISTING_VERSION_INTERVAL_MS;
        assert_eq!(choose_head(&v1, &later), HeadChoice::Replace);
        let mut retracted = soon.clone();
        retracted.status = ListingStatus::Retracted;
        assert_eq!(choose_head(&v1, &retracted), HeadChoice::Replace);
        // A retraction over a retraction is a version like another.
        let mut again = retracted.clone();
        again.seq = 3;
        again.updated_at += 1;
        assert!(matches!(
            choose_head(&retracted, &again),
            HeadChoice::Refused(_)
        ));
        again.updated_at = retracted.updated_at + LISTING_VERSION_INTERVAL_MS;
        assert_eq!(choose_head(&retracted, &again), HeadChoice::Replace);
    }

    #[test]
    fn distance_seoul_busan() {
        let seoul = Location::from_degrees(37.5665, 126.9780).expect("in range");
        let busan = Location::from_degrees(35.1796, 129.0756).expect("in range");
        let d = seoul.distance_km(&busan);
        assert!((320.0..330.0).contains(&d), "{d}");
    }
}
