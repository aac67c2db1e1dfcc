//! The contract of the local API `/v1`: every request and response body, in one place.
//!
//! The node's handlers answer with these types, the CLI's client sends and reads them, the
//! testnet and the end-to-end tests decode the CLI's JSON into them, and the OpenAPI document
//! (`GET /v1/openapi.json`, `docs/openapi.json`) is generated from them. States that travel
//! as strings are enums serialized as those same strings. This module holds data only: no
//! I/O, no store, no validation beyond what serde does (the services validate).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// The one error shape of the API: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// A stable code for programs and a message for people.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ErrorDetail {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// What failed and what to do, for people.
    pub message: String,
}

/// The stable error codes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request body is not valid JSON of the expected shape.
    BadRequest,
    /// The query string is not valid.
    BadQuery,
    /// An id in the path is malformed.
    BadId,
    /// A listing's fields are invalid.
    InvalidListing,
    /// A trade request's fields are invalid.
    InvalidTrade,
    /// A direct message's fields are invalid (empty or over-long text, too many photos).
    InvalidMessage,
    /// The action is not allowed in the trade's state.
    InvalidTransition,
    /// A field is invalid.
    Invalid,
    /// The per-author cap of reports is reached (10 a day, SPEC §7.2).
    ReportLimit,
    /// A blob is invalid.
    InvalidBlob,
    /// A blob is not an image of a format the node shows (JPEG, PNG, WebP, GIF).
    UnsupportedImage,
    /// A blob is such an image but does not decode, or is larger than the decode limits.
    InvalidImage,
    /// An object (or a sequence of them) is invalid.
    InvalidObject,
    /// The thing asked for does not exist here.
    NotFound,
    /// The listing belongs to someone else.
    NotYours,
    /// The listing was retracted.
    Retracted,
    /// The node refused.
    Refused,
    /// A peer's message broke the protocol.
    Offense,
    /// The body is larger than this route accepts.
    TooLarge,
    /// The body's content type is not one this route accepts.
    UnsupportedMediaType,
    /// Missing or wrong bearer token.
    Unauthorized,
    /// No such route.
    NoRoute,
    /// The route exists, not with this method.
    MethodNotAllowed,
    /// The network task is not available.
    Network,
    /// The node serves as many of these as it takes (event subscribers); try again later.
    Busy,
    /// The store failed.
    Store,
    /// The search index failed.
    Search,
    /// Any other failure of the node.
    Internal,
}

impl ErrorCode {
    /// The code as it travels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::BadQuery => "bad_query",
            ErrorCode::BadId => "bad_id",
            ErrorCode::InvalidListing => "invalid_listing",
            ErrorCode::InvalidTrade => "invalid_trade",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::InvalidTransition => "invalid_transition",
            ErrorCode::Invalid => "invalid",
            ErrorCode::ReportLimit => "report_limit",
            ErrorCode::InvalidBlob => "invalid_blob",
            ErrorCode::UnsupportedImage => "unsupported_image",
            ErrorCode::InvalidImage => "invalid_image",
            ErrorCode::InvalidObject => "invalid_object",
            ErrorCode::NotFound => "not_found",
            ErrorCode::NotYours => "not_yours",
            ErrorCode::Retracted => "retracted",
            ErrorCode::Refused => "refused",
            ErrorCode::Offense => "offense",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NoRoute => "no_route",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Network => "network",
            ErrorCode::Busy => "busy",
            ErrorCode::Store => "store",
            ErrorCode::Search => "search",
            ErrorCode::Internal => "internal",
        }
    }
}

// ---------------------------------------------------------------------------------------
// Node
// ---------------------------------------------------------------------------------------

/// The node's identity and dialable addresses (`GET /v1/id`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct IdView {
    /// Base58 peer id.
    pub peer_id: String,
    /// ed25519 public key, hex.
    pub public_key: String,
    /// Listen addresses with `/p2p/<peer id>`, each dialable with `--bootstrap`.
    pub addrs: Vec<String>,
}

/// Whether peers can dial this node directly.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Reachability {
    /// Dialable from outside.
    Public,
    /// Reachable only through relays.
    Private,
    /// Not probed yet.
    Unknown,
}

impl Reachability {
    /// From the network task's name for it (anything else is `unknown`).
    pub fn from_name(s: &str) -> Self {
        match s {
            "public" => Reachability::Public,
            "private" => Reachability::Private,
            _ => Reachability::Unknown,
        }
    }

    /// The name as it travels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reachability::Public => "public",
            Reachability::Private => "private",
            Reachability::Unknown => "unknown",
        }
    }
}

/// Catch-up sync: tells "the market is empty" from "not caught up yet".
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct SyncView {
    /// Where catch-up stands: caught up only once the bulk copy taken at start (if any)
    /// and reconciliation with the connected peers are both over, nothing left to fetch.
    #[serde(default)]
    pub status: SyncStatusName,
    /// Peers finished reconciling with since they connected.
    pub peers_reconciled: u64,
    /// Peers being reconciled with now, or waiting for their turn.
    pub in_progress: u64,
    /// Objects learned from peers and not fetched yet.
    pub to_fetch: u64,
    /// Milliseconds since the last reconciliation finished (absent: none yet).
    pub last_sync_ms_ago: Option<u64>,
    /// How long the last one took, in ms.
    pub last_sync_took_ms: Option<u64>,
    /// Objects fetched by sync since the node started.
    pub objects_fetched: u64,
    /// Bytes sent by sync.
    pub bytes_sent: u64,
    /// Bytes received by sync.
    pub bytes_received: u64,
    /// Of `bytes_received`, the bytes of the objects themselves.
    pub object_bytes_received: u64,
    /// Where catch-up stands for each followed listing category.
    #[serde(default)]
    pub categories: Vec<CategorySyncView>,
    /// The bulk copy taken from one peer at start (SPEC §8.9), if one was tried.
    #[serde(default)]
    pub bulk: Option<BulkView>,
}

/// How a bulk copy went, in one word.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BulkStateName {
    /// Pages are being taken.
    Running,
    /// Every shard was taken to its end.
    Done,
    /// Not worth it (the node held most of it, or the peer held little).
    Skipped,
    /// The peer was busy or unreachable; reconciliation took the rest.
    Failed,
    /// The peer lied (an invalid object, a page over the limits): penalized, and
    /// reconciliation took the rest.
    Refused,
}

impl From<crate::sync::bootstrap::BulkState> for BulkStateName {
    fn from(s: crate::sync::bootstrap::BulkState) -> Self {
        use crate::sync::bootstrap::BulkState as S;
        match s {
            S::Running => BulkStateName::Running,
            S::Done => BulkStateName::Done,
            S::Skipped => BulkStateName::Skipped,
            S::Failed => BulkStateName::Failed,
            S::Refused => BulkStateName::Refused,
        }
    }
}

/// The bulk copy a fresh node takes from one peer before it reconciles.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct BulkView {
    /// The peer asked (base58).
    pub peer: String,
    /// How it went.
    pub state: BulkStateName,
    /// Objects the peer said it holds in the shards taken.
    pub advertised: u64,
    /// Objects received.
    pub received: u64,
    /// Of them, stored (new and valid).
    pub stored: u64,
    /// Bytes received (pages with their framing).
    pub bytes_received: u64,
    /// How long it took, in ms (absent while running).
    pub took_ms: Option<u64>,
    /// Why it was skipped, failed or refused.
    pub reason: Option<String>,
}

/// Where catch-up sync stands for one listing category (one shard).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct CategorySyncView {
    /// The category.
    pub category: String,
    /// Being compared or fetched now, compared to the end with a connected peer, or
    /// neither yet.
    pub status: SyncStatusName,
    /// Connected peers the category was compared with to the end since they connected.
    pub peers: u64,
    /// Listings of the category learned from peers and not fetched yet.
    pub to_fetch: u64,
    /// Milliseconds since a comparison of the category last finished (absent: none yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ms_ago: Option<u64>,
}

/// Sealed messages this node holds for offline peers (relays).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct MailboxStats {
    /// Messages held.
    pub items: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Trades held and deliveries waiting.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct TradeCounts {
    /// Trades this node holds.
    pub held: u64,
    /// Trade messages held.
    pub messages: u64,
    /// Messages of ours waiting to be delivered.
    pub queued_deliveries: u64,
}

/// The running node's state (`GET /v1/status`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct StatusView {
    /// Base58 peer id.
    pub peer_id: String,
    /// Connected peers.
    pub peers: u64,
    /// Peers on the listings topics (who a post reaches right away).
    pub gossip_peers: u64,
    /// Peers whose listing heads were fully received since they connected.
    pub synced_peers: u64,
    /// Open listings held.
    pub listings: u64,
    /// Seconds since the node started.
    pub uptime_s: u64,
    /// Relays known.
    pub relays: u64,
    /// Blobs held.
    pub blobs: u64,
    /// Catch-up sync.
    pub sync: SyncView,
    /// Whether peers can dial this node directly.
    pub reachability: Reachability,
    /// Peers banned for now.
    pub banned: Vec<String>,
    /// Listing shards (categories) followed.
    pub following: Vec<String>,
    /// Addresses through relays that accepted a reservation.
    pub relayed_addrs: Vec<String>,
    /// Sealed messages held for offline peers.
    pub mailbox: MailboxStats,
    /// Trades held (absent if the store could not count them).
    pub trades: Option<TradeCounts>,
    /// The node's version.
    pub version: String,
}

/// A one-time login code for the web page (`POST /v1/ui/login-code`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct UiLoginCode {
    /// The code (64 hex digits); it works once.
    pub code: String,
    /// Path to open on the API's address: `/login?code=<code>`.
    pub path: String,
    /// Seconds the code stays valid.
    pub expires_in_s: u64,
}

/// What `jangteo ui` prints.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UiUrl {
    /// The web page's address with a one-time login code.
    pub url: String,
}

/// A connected peer (`GET /v1/peers`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct PeerView {
    /// Base58 peer id.
    pub peer_id: String,
    /// Addresses of its connections.
    pub addrs: Vec<String>,
    /// Its gossipsub score as this node sees it (negative after invalid objects).
    pub score: Option<f64>,
}

// ---------------------------------------------------------------------------------------
// Listings
// ---------------------------------------------------------------------------------------

/// A pickup location in degrees.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct LatLon {
    /// Latitude, -90..90.
    pub lat: f64,
    /// Longitude, -180..180.
    pub lon: f64,
}

/// A new listing (`POST /v1/listings`). Amounts are in the currency's minor unit.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NewListing {
    /// Title.
    pub title: String,
    /// Price per unit.
    pub price: u64,
    /// ISO 4217 code.
    pub currency: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Category (a-z, 0-9, '-'); default general.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// new, like-new, good, fair or poor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Units (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u64>,
    /// Pickup location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<LatLon>,
    /// Days until it expires (default 30, at most 180).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u64>,
    /// Peer ids the seller accepts as moderators of disputes (at most 3).
    #[serde(default)]
    pub moderators: Vec<String>,
    /// Blob ids of images already added to this node (`POST /v1/blobs`), at most 8.
    #[serde(default)]
    pub images: Vec<String>,
}

/// Changes to a listing (`PATCH /v1/listings/{id}`); absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListingUpdate {
    /// New title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// New price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<u64>,
    /// New quantity (0 marks it sold out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u64>,
    /// New description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// New category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// New condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// New currency (ISO 4217); `price` is then read in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// New pickup location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<LatLon>,
    /// Removes the pickup location (ignored when `location` is given).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remove_location: bool,
    /// The photos, in order (the first is the cover): blob ids already added to this node
    /// (`POST /v1/blobs`), at most 8. Absent: the photos stay as they are; empty: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<String>>,
}

/// Where a listing stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ListingState {
    /// On offer.
    Active,
    /// Quantity 0.
    Sold,
    /// Past its expiry.
    Expired,
    /// Withdrawn by the seller.
    Retracted,
}

impl ListingState {
    /// The name as it travels.
    pub fn as_str(self) -> &'static str {
        match self {
            ListingState::Active => "active",
            ListingState::Sold => "sold",
            ListingState::Expired => "expired",
            ListingState::Retracted => "retracted",
        }
    }
}

/// A listing as the API and CLI show it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ListingView {
    /// Listing id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Price per unit in minor units.
    pub price: u64,
    /// ISO 4217 code.
    pub currency: String,
    /// Category.
    pub category: String,
    /// Condition, if given.
    pub condition: Option<String>,
    /// Units on offer.
    pub quantity: u64,
    /// Seller's peer id.
    pub seller: String,
    /// Version.
    pub seq: u64,
    /// First version (unix ms).
    pub created_at: u64,
    /// This version (unix ms).
    pub updated_at: u64,
    /// Expiry (unix ms).
    pub expires_at: u64,
    /// active, sold, expired or retracted.
    pub status: ListingState,
    /// Image blob ids.
    pub images: Vec<String>,
    /// Pickup location.
    pub location: Option<LatLon>,
    /// Distance from the search point, when searching near a place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_km: Option<f64>,
    /// Content id of this version's object.
    pub object: String,
    /// The seller's trust as this node sees it (0..1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller_score: Option<f64>,
    /// How much evidence stands behind `seller_score` (0..1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller_confidence: Option<f64>,
    /// The largest trade value (minor units of `currency`) the seller's trust supports, as
    /// this node sees it: an offer above it carries a warning (the amount gate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller_supports: Option<u64>,
    /// In the answer to a post (or an update of a listing whose stamp was too cheap): the
    /// difficulty, in bits, of the proof-of-work stamp this node made for it (SPEC §3.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp_bits: Option<u32>,
    /// With `stamp_bits`: how long making the stamp took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp_ms: Option<u64>,
    /// The reports this node holds about the listing or its seller and what they do here
    /// (hidden, a warning, nothing); absent when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moderation: Option<ModerationView>,
}

/// Filters, ordering and paging of a search (`GET /v1/listings`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, PartialEq)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Words that must all appear in the title or description ("quoted phrases" allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Seller peer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller: Option<String>,
    /// Currency the price bounds are in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Lowest price (minor units).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_price: Option<u64>,
    /// Highest price (minor units).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price: Option<u64>,
    /// `LAT,LON`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub near: Option<String>,
    /// Radius around `near`, in km.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radius_km: Option<f64>,
    /// relevance, price, price-desc, recent, distance or trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    /// Most results (1-1000, default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Results to skip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<usize>,
    /// Include sold, expired and retracted listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,
}

// ---------------------------------------------------------------------------------------
// Blobs
// ---------------------------------------------------------------------------------------

/// A blob added or fetched: its blake3 id and size.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct BlobView {
    /// Blob id (hex).
    pub id: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// Which thumbnail of an image blob (`GET /v1/blobs/{id}/thumb`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ThumbQuery {
    /// The longest edge in pixels: 320 (cards, the default) or 800 (gallery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(schema_with = thumb_size_schema)]
    pub size: Option<u32>,
}

fn thumb_size_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Integer)
        .enum_values(Some([320, 800]))
        .default(Some(serde_json::json!(320)))
        .build()
}

/// Raw bytes in a body (a blob, a signed object, a CBOR sequence): for the OpenAPI document.
#[derive(Debug, Clone, Copy)]
pub struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Binary,
            )))
            .into()
    }
}

impl ToSchema for Binary {}

// ---------------------------------------------------------------------------------------
// Trades
// ---------------------------------------------------------------------------------------

/// A new offer (`POST /v1/trades`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NewOffer {
    /// Listing id.
    pub listing: String,
    /// Price per unit (default: the listing's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<u64>,
    /// Units (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u64>,
    /// A message to the seller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Peer ids who may resolve a dispute (default: the listing's).
    #[serde(default)]
    pub moderators: Vec<String>,
}

/// What the local user asks to do to a trade (`POST /v1/trades/{id}/{action}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TradeAction {
    /// Counter: the new price per unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<u64>,
    /// Reject, cancel, dispute: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Paid: the payment reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Shipped: the tracking number (without one, the item was handed over).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<String>,
    /// Resolution: refund or release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// The actions of `POST /v1/trades/{id}/{action}`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TradeActionName {
    /// Seller accepts the offer, or buyer the counter.
    Accept,
    /// Refuse the proposed terms.
    Reject,
    /// Propose another price.
    Counter,
    /// Call the trade off before payment.
    Cancel,
    /// Buyer paid.
    Paid,
    /// Seller shipped or handed over.
    Shipped,
    /// Buyer received; completes the trade.
    Received,
    /// Raise a dispute.
    Dispute,
    /// Moderator closes a dispute.
    Resolve,
}

impl TradeActionName {
    /// Every action.
    pub const ALL: [TradeActionName; 9] = [
        TradeActionName::Accept,
        TradeActionName::Reject,
        TradeActionName::Counter,
        TradeActionName::Cancel,
        TradeActionName::Paid,
        TradeActionName::Shipped,
        TradeActionName::Received,
        TradeActionName::Dispute,
        TradeActionName::Resolve,
    ];

    /// The name as it travels (and in the path).
    pub fn as_str(self) -> &'static str {
        match self {
            TradeActionName::Accept => "accept",
            TradeActionName::Reject => "reject",
            TradeActionName::Counter => "counter",
            TradeActionName::Cancel => "cancel",
            TradeActionName::Paid => "paid",
            TradeActionName::Shipped => "shipped",
            TradeActionName::Received => "received",
            TradeActionName::Dispute => "dispute",
            TradeActionName::Resolve => "resolve",
        }
    }

    /// From its name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// Where a trade stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TradeStateName {
    /// The buyer offered.
    Offered,
    /// Other terms were proposed.
    Countered,
    /// Terms accepted: the contract.
    Accepted,
    /// The buyer paid.
    Paid,
    /// The seller shipped.
    Shipped,
    /// The buyer received.
    Completed,
    /// A proposal was refused.
    Rejected,
    /// Called off.
    Cancelled,
    /// In dispute.
    Disputed,
    /// A moderator closed the dispute.
    Resolved,
}

impl TradeStateName {
    /// Every state.
    pub const ALL: [TradeStateName; 10] = [
        TradeStateName::Offered,
        TradeStateName::Countered,
        TradeStateName::Accepted,
        TradeStateName::Paid,
        TradeStateName::Shipped,
        TradeStateName::Completed,
        TradeStateName::Rejected,
        TradeStateName::Cancelled,
        TradeStateName::Disputed,
        TradeStateName::Resolved,
    ];

    /// The name as it travels.
    pub fn as_str(self) -> &'static str {
        match self {
            TradeStateName::Offered => "offered",
            TradeStateName::Countered => "countered",
            TradeStateName::Accepted => "accepted",
            TradeStateName::Paid => "paid",
            TradeStateName::Shipped => "shipped",
            TradeStateName::Completed => "completed",
            TradeStateName::Rejected => "rejected",
            TradeStateName::Cancelled => "cancelled",
            TradeStateName::Disputed => "disputed",
            TradeStateName::Resolved => "resolved",
        }
    }
}

impl From<jangteo_protocol::trade::TradeState> for TradeStateName {
    fn from(s: jangteo_protocol::trade::TradeState) -> Self {
        use jangteo_protocol::trade::TradeState as S;
        match s {
            S::Offered => TradeStateName::Offered,
            S::Countered => TradeStateName::Countered,
            S::Accepted => TradeStateName::Accepted,
            S::Paid => TradeStateName::Paid,
            S::Shipped => TradeStateName::Shipped,
            S::Completed => TradeStateName::Completed,
            S::Rejected => TradeStateName::Rejected,
            S::Cancelled => TradeStateName::Cancelled,
            S::Disputed => TradeStateName::Disputed,
            S::Resolved => TradeStateName::Resolved,
        }
    }
}

impl std::fmt::Display for TradeStateName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who someone is in a trade.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TradeRole {
    /// The buyer.
    Buyer,
    /// The seller.
    Seller,
    /// A moderator named in the offer.
    Moderator,
    /// Not a party.
    None,
}

impl TradeRole {
    /// The name as it travels.
    pub fn as_str(self) -> &'static str {
        match self {
            TradeRole::Buyer => "buyer",
            TradeRole::Seller => "seller",
            TradeRole::Moderator => "moderator",
            TradeRole::None => "none",
        }
    }
}

/// A trade as listed (`GET /v1/trades`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TradeSummary {
    /// Trade id (the offer's object id).
    pub id: String,
    /// Listing id.
    pub listing: String,
    /// This node's role.
    pub role: TradeRole,
    /// Where the trade stands.
    pub state: TradeStateName,
    /// The other party's peer id.
    pub counterparty: String,
    /// Price per unit (minor units).
    pub price: u64,
    /// ISO 4217 code.
    pub currency: String,
    /// Units.
    pub quantity: u64,
    /// price × quantity.
    pub total: u64,
    /// Time of the last message (unix ms).
    pub updated_at: u64,
}

/// What became of a message: ours (queued, delivered, failed) or theirs (received).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet; retried.
    Queued,
    /// The other party's node has it.
    Delivered,
    /// Given up (see `reason`).
    Failed,
    /// A message this node received.
    Received,
}

impl DeliveryStatus {
    /// The name as it travels.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Received => "received",
        }
    }
}

/// The delivery of one trade message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct DeliveryView {
    /// Status.
    pub status: DeliveryStatus,
    /// Why it failed or is held, if it did or is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Attempts so far (messages of ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Peer ids of the relays holding a sealed copy in their mailboxes for a recipient that
    /// could not be reached (messages of ours).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relays: Vec<String>,
}

/// One message of a trade's history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TradeHistoryEntry {
    /// Message kind (offer, counter, accept, ...).
    pub kind: String,
    /// Author's peer id.
    pub by: String,
    /// Author's role.
    pub role: TradeRole,
    /// When it was signed (unix ms).
    pub at: u64,
    /// Message object id.
    pub id: String,
    /// Its note.
    pub note: String,
    /// Its delivery.
    pub delivery: DeliveryView,
}

/// Proof that a party signed two different messages after the same one.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct EquivocationView {
    /// The equivocating party's peer id.
    pub by: String,
    /// Its role.
    pub role: TradeRole,
    /// When (unix ms).
    pub at: u64,
    /// The message both follow.
    pub after: String,
    /// The message kept.
    pub kept: String,
    /// The message refused.
    pub refused: String,
    /// The refused message's kind.
    pub refused_kind: String,
}

/// A message held but outside the trade's chain, and why.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct SetAsideView {
    /// Message object id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// Author's peer id.
    pub by: String,
    /// Why it is not part of the chain.
    pub reason: String,
}

/// One trade in full (`GET /v1/trades/{id}`, and the answer to an offer or an action).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TradeView {
    /// Trade id.
    pub id: String,
    /// Listing id.
    pub listing: String,
    /// This node's role.
    pub role: TradeRole,
    /// Where the trade stands.
    pub state: TradeStateName,
    /// The other party's peer id.
    pub counterparty: String,
    /// Price per unit (minor units).
    pub price: u64,
    /// ISO 4217 code.
    pub currency: String,
    /// Units.
    pub quantity: u64,
    /// price × quantity.
    pub total: u64,
    /// Time of the last message (unix ms).
    pub updated_at: u64,
    /// Buyer's peer id.
    pub buyer: String,
    /// Seller's peer id.
    pub seller: String,
    /// Moderators named in the offer.
    pub moderators: Vec<String>,
    /// What this node may do now.
    pub allowed: Vec<TradeActionName>,
    /// The messages, in order, each with its delivery.
    pub history: Vec<TradeHistoryEntry>,
    /// Proofs of equivocation in this trade.
    pub equivocations: Vec<EquivocationView>,
    /// Messages held outside the chain.
    pub set_aside: Vec<SetAsideView>,
    /// For the buyer: whether the seller's trust, as this node sees it, supports the trade's
    /// value (the amount gate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_check: Option<AmountCheck>,
}

/// The amount gate on a trade: the largest value the seller's trust supports in the trade's
/// currency, against the trade's total (Bisq 2 gates trade amounts by reputation the same way).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct AmountCheck {
    /// The largest trade value (minor units of `currency`) the seller's trust supports.
    pub supported: u64,
    /// The trade's total (minor units).
    pub total: u64,
    /// ISO 4217 code.
    pub currency: String,
    /// Whether the total is above what the seller's trust supports.
    pub above: bool,
    /// What the buyer should know, when `above`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Reputation
// ---------------------------------------------------------------------------------------

/// A rating (`POST /v1/attestations`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NewRating {
    /// The completed trade.
    pub trade: String,
    /// 1-5.
    pub score: u8,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// An attestation made.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct RatingView {
    /// Attestation object id.
    pub id: String,
    /// Trade id.
    pub trade: String,
    /// Peer id of the party rated.
    pub about: String,
    /// 1-5.
    pub score: u8,
}

/// A change of this node's trust seeds (`PUT`/`DELETE /v1/trust/{peer}`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct TrustChange {
    /// Peer id.
    pub peer_id: String,
    /// Whether it is a seed now.
    pub trusted: bool,
    /// Whether this request changed anything.
    pub changed: bool,
}

// ---------------------------------------------------------------------------------------
// Reports and moderation
// ---------------------------------------------------------------------------------------

/// A report to make (`POST /v1/reports`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NewReport {
    /// What is reported: a listing id (64 hex digits) held by this node, or a peer id.
    pub target: String,
    /// scam, prohibited, spam, miscategorized or duplicate.
    pub reason: String,
    /// What happened (at most 500 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A report made and published (`POST /v1/reports`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ReportMade {
    /// The report's object id.
    pub id: String,
    /// The key reported (for a listing: its seller), as a peer id.
    pub about: String,
    /// The listing reported, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing: Option<String>,
    /// Why.
    pub reason: String,
}

/// Why a report weighs what it weighs on this node.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReportBasis {
    /// This node's own report: full weight.
    Own,
    /// By a key this node subscribed to as a moderator: full weight.
    Moderator,
    /// Weighed by this node's trust in its author (0 for a stranger).
    Trust,
}

/// A report held, with its weight as this node sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ReportView {
    /// The report's object id.
    pub id: String,
    /// Who reported (peer id).
    pub by: String,
    /// The key reported (for a listing: its seller), as a peer id.
    pub about: String,
    /// The listing reported; absent for a report of the key alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing: Option<String>,
    /// scam, prohibited, spam, miscategorized or duplicate.
    pub reason: String,
    /// What the reporter wrote (may be empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// When it was signed (unix ms).
    pub at: u64,
    /// Its weight here, 0..1.
    pub weight: f64,
    /// Why it weighs that.
    pub basis: ReportBasis,
}

/// What the reports about a listing (and its seller) do on this node.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ModerationView {
    /// Left out of search and the home page; the web page shows why before the listing.
    pub hidden: bool,
    /// Shown with a warning (some weight, below the threshold).
    pub warning: bool,
    /// The sum over reporters of each one's largest weight.
    pub weight: f64,
    /// The weight at which a listing is hidden.
    pub threshold: f64,
    /// The reasons of the reports that weigh something, heaviest first.
    pub reasons: Vec<String>,
    /// The reports, heaviest first (at most 50), weight 0 included.
    pub reports: Vec<ReportView>,
}

/// Which reports to list (`GET /v1/reports`): by one author, or about one listing or key.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportsQuery {
    /// Reports by this peer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Reports about this listing id or peer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub about: Option<String>,
}

/// A change of this node's moderators (`PUT`/`DELETE /v1/moderators/{peer}`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ModeratorChange {
    /// Peer id.
    pub peer_id: String,
    /// Whether its reports count as this node's own now.
    pub moderator: bool,
    /// Whether this request changed anything.
    pub changed: bool,
}

/// What this node concludes about a peer (`GET /v1/reputation/{peer}`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ReputationView {
    /// Peer id.
    pub peer_id: String,
    /// Trust 0..1, relative to the most trusted peer.
    pub score: f64,
    /// Evidence behind it, 0..1.
    pub confidence: f64,
    /// Attestations held about the peer.
    pub attestations: u64,
    /// Distinct completed trades of the peer seen.
    pub completed_trades: u64,
    /// Mean stars (1-5) from trusted raters, if any.
    pub rating: Option<f64>,
    /// Raters behind `rating`.
    pub raters: u64,
    /// Whether the peer is one of this node's trust seeds.
    pub trusted: bool,
    /// Whether this node has any evidence to start trust from.
    pub seeded: bool,
    /// Whether the peer was caught signing two histories.
    pub equivocated: bool,
    /// Whether `score` is this node's own trust, or (no seeds yet) only the evidence held.
    pub basis: TrustBasis,
    /// 0..1: how little of the trusted evidence about the peer is complaints (1: none).
    pub standing: f64,
    /// Distinct raters whose experience of the peer is negative on balance.
    pub negative_raters: u64,
    /// The earliest attestation by or about the peer held here (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen_at: Option<u64>,
    /// Whole days since `first_seen_at`: how long the key has been trading, as far as this
    /// node knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_age_days: Option<u64>,
    /// Per currency the peer has sold in: the largest trade value its trust supports (the
    /// amount gate).
    #[serde(default)]
    pub supports: Vec<SupportedAmount>,
    /// How to give this node a point of view, while it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
    /// Through whom this node's trust reaches the peer.
    #[serde(default)]
    pub through: TrustThrough,
}

/// Through whom this node's trust reaches a peer: how many of its trade partners (peers it
/// rated well) and of the keys its user trusts have a chain of good ratings to the peer.
/// The peer's trust flows only along such chains.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct TrustThrough {
    /// Trade partners of this node from which a chain reaches the peer (the peer itself
    /// counts when it is one).
    pub partners: u32,
    /// Keys the user trusts from which a chain reaches the peer (itself included).
    pub trusted_keys: u32,
}

/// Whose point of view a reputation is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TrustBasis {
    /// This node's own trust, from its completed trades and the keys its user trusts.
    Personal,
    /// This node has no seeds yet: the view shows the evidence it holds (completed trades,
    /// raters, the key's age), and its score is 0.
    NotYetPersonal,
}

/// The largest trade value a seller's trust supports in one currency.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct SupportedAmount {
    /// ISO 4217 code.
    pub currency: String,
    /// Minor units.
    pub value: u64,
}

// ---------------------------------------------------------------------------------------
// Objects
// ---------------------------------------------------------------------------------------

/// Which objects `GET /v1/objects` returns, and the page.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ObjectsQuery {
    /// Only this kind (listing, profile, attestation, offer, ..., equivocation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Only objects whose own time (a listing's update, an attestation's date) is at or
    /// after this unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// Start after this object id (hex), from the `jangteo-next` header of the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Most objects in this page (1-10000, default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// What an import did (`POST /v1/objects`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ImportReport {
    /// Valid and new: stored.
    pub stored: u64,
    /// Valid, already held (or older than the version held).
    pub duplicate: u64,
    /// Invalid or not importable (bad signature, malformed, trade messages): refused.
    pub refused: u64,
    /// Why the first refused ones were refused (at most 20).
    pub errors: Vec<ImportError>,
}

/// One refused object of an import.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ImportError {
    /// Its position in the sequence (0-based).
    pub index: u64,
    /// Its byte offset in the body.
    pub offset: u64,
    /// Why it was refused.
    pub reason: String,
}

/// What `jangteo export` wrote.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ExportReport {
    /// Objects written.
    pub objects: u64,
    /// Bytes written.
    pub bytes: u64,
}

// ---------------------------------------------------------------------------------------
// Conversations
// ---------------------------------------------------------------------------------------

/// Where a message of a conversation stands: ours (`queued`, `delivered`, `read`, `failed`)
/// or theirs (`received`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Not delivered yet (`reason` says why, and which relay holds it); retried.
    Queued,
    /// The other person's node stored it (their signed receipt says so).
    Delivered,
    /// The other person opened the conversation and saw it.
    Read,
    /// Given up (`reason` says why).
    Failed,
    /// A message from the other person.
    Received,
}

impl MessageStatus {
    /// The name as it travels.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "queued",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Read => "read",
            MessageStatus::Failed => "failed",
            MessageStatus::Received => "received",
        }
    }
}

/// A question about a listing to its seller (`jangteo ask`): starts, or continues, the
/// conversation about that listing.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct NewQuestion {
    /// The listing (64 hex digits), held by this node.
    pub listing: String,
    /// The text: 1 to 2,000 characters.
    pub text: String,
    /// Photos: up to 4 blob ids (add them with `POST /v1/blobs` first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub photos: Vec<String>,
}

/// A message in a conversation that exists (`jangteo say`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct NewChatMessage {
    /// The text: 1 to 2,000 characters.
    pub text: String,
    /// Photos: up to 4 blob ids (add them with `POST /v1/blobs` first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub photos: Vec<String>,
}

/// A message sent (`ask` and `say` print it): its thread, its id and where it stands after
/// the first delivery attempt.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct MessageSent {
    /// The conversation (thread id, 64 hex digits).
    pub thread: String,
    /// The message id.
    pub message: String,
    /// Where it stands.
    pub status: MessageStatus,
    /// Why it is queued or failed, and which relay holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One conversation in the inbox.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ThreadSummary {
    /// Thread id.
    pub thread: String,
    /// The other person's peer id.
    pub peer: String,
    /// The listing it is about.
    pub listing: String,
    /// The listing's title, when this node holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The latest trade of the two on that listing, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade: Option<String>,
    /// The last message's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    /// When the conversation last changed (unix ms).
    pub updated_at: u64,
    /// Messages from the other person not read yet.
    pub unread: u32,
}

/// One message of a conversation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ChatMessageView {
    /// Message id.
    pub id: String,
    /// Its author's peer id.
    pub from: String,
    /// Whether this node wrote it.
    pub mine: bool,
    /// The text.
    pub text: String,
    /// When it was written (unix ms, the author's clock).
    pub at: u64,
    /// Photos (blob ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub photos: Vec<String>,
    /// The trade it was written in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade: Option<String>,
    /// Where it stands.
    pub status: MessageStatus,
    /// Why it is queued or failed, and which relay holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Relays holding a sealed copy while the other person is offline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relays: Vec<String>,
    /// Whether it carried a first-contact stamp (proof of work).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stamped: bool,
}

/// A conversation with its history (`jangteo chat`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ThreadView {
    /// Thread id.
    pub thread: String,
    /// The other person's peer id.
    pub peer: String,
    /// The listing it is about.
    pub listing: String,
    /// The listing's title, when this node holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The latest trade of the two on that listing, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade: Option<String>,
    /// Messages from the other person not read yet.
    pub unread: u32,
    /// The messages, oldest first (in the order this node took them).
    pub messages: Vec<ChatMessageView>,
}

/// A blocked key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct BlockedView {
    /// Its peer id.
    pub peer_id: String,
    /// When it was blocked (unix ms).
    pub at: u64,
}

/// What `block` and `unblock` print.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct BlockChange {
    /// The peer id.
    pub peer_id: String,
    /// Whether it is blocked now.
    pub blocked: bool,
    /// Whether this changed anything.
    pub changed: bool,
}

// ---------------------------------------------------------------------------------------
// Live events
// ---------------------------------------------------------------------------------------

/// The kinds of event `GET /v1/events` sends: each server-sent event's `event:` field and the
/// `kind` of its JSON ([`EventView`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The first event of every stream (always sent).
    Subscribed,
    /// This subscriber fell behind and missed events (always sent).
    Lagged,
    /// A listing version from the network was stored.
    ListingStored,
    /// A trade changed state on this node.
    TradeUpdated,
    /// A message of ours was delivered, or given up on.
    Delivery,
    /// Where catch-up sync stands changed.
    SyncProgress,
    /// Catch-up with a peer finished.
    Synced,
    /// The search index took in new listing versions.
    Indexed,
    /// A peer connected.
    PeerConnected,
    /// A peer was banned for sending invalid objects.
    PeerBanned,
    /// A relay accepted our reservation: we are reachable through it.
    RelayReserved,
    /// A relay that holds mailboxes connected.
    RelayConnected,
    /// A peer was first reached over a relayed connection (both behind NAT, say).
    RelayedConnection,
    /// Hole punching (DCUtR) of a relayed connection ended: direct, or failed.
    HolePunch,
    /// A notification was raised (it is in `GET /v1/notifications` too).
    Notification,
    /// A direct message arrived.
    MessageReceived,
    /// A message of ours changed status (queued with a new reason, delivered, read, failed).
    MessageStatus,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 17] = [
        EventKind::Subscribed,
        EventKind::Lagged,
        EventKind::ListingStored,
        EventKind::TradeUpdated,
        EventKind::Delivery,
        EventKind::SyncProgress,
        EventKind::Synced,
        EventKind::Indexed,
        EventKind::PeerConnected,
        EventKind::PeerBanned,
        EventKind::RelayReserved,
        EventKind::RelayConnected,
        EventKind::RelayedConnection,
        EventKind::HolePunch,
        EventKind::Notification,
        EventKind::MessageReceived,
        EventKind::MessageStatus,
    ];

    /// The name as it travels (the SSE `event:` field, the JSON `kind`, the `kinds` filter).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Subscribed => "subscribed",
            EventKind::Lagged => "lagged",
            EventKind::ListingStored => "listing_stored",
            EventKind::TradeUpdated => "trade_updated",
            EventKind::Delivery => "delivery",
            EventKind::SyncProgress => "sync_progress",
            EventKind::Synced => "synced",
            EventKind::Indexed => "indexed",
            EventKind::PeerConnected => "peer_connected",
            EventKind::PeerBanned => "peer_banned",
            EventKind::RelayReserved => "relay_reserved",
            EventKind::RelayConnected => "relay_connected",
            EventKind::RelayedConnection => "relayed_connection",
            EventKind::HolePunch => "hole_punch",
            EventKind::Notification => "notification",
            EventKind::MessageReceived => "message_received",
            EventKind::MessageStatus => "message_status",
        }
    }

    /// From its name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How hole punching of a relayed connection ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HolePunchOutcome {
    /// A direct connection to the peer was established.
    Direct,
    /// Every attempt failed: the connection stays relayed.
    Failed,
}

/// Where catch-up sync stands, in one word.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatusName {
    /// Not compared with any connected peer yet: listings may be missing.
    #[default]
    NotReconciled,
    /// A reconciliation or its fetches are under way.
    CatchingUp,
    /// Compared with at least one peer, and nothing is left to fetch.
    CaughtUp,
}

impl From<crate::sync::SyncStatus> for SyncStatusName {
    fn from(s: crate::sync::SyncStatus) -> Self {
        match s {
            crate::sync::SyncStatus::NotReconciled => SyncStatusName::NotReconciled,
            crate::sync::SyncStatus::CatchingUp => SyncStatusName::CatchingUp,
            crate::sync::SyncStatus::CaughtUp => SyncStatusName::CaughtUp,
        }
    }
}

/// Which kinds `GET /v1/events` sends.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Comma-separated kinds, such as `trade_updated,delivery` (default: every kind);
    /// `subscribed` and `lagged` are always sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinds: Option<String>,
}

/// One event of `GET /v1/events`: the `data:` of a server-sent event, whose `event:` field is
/// the same `kind`. Ids are hex like everywhere in the API, peers base58 peer ids.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventView {
    /// The first event of every stream: from here on nothing is missed (short of a `lagged`).
    /// What happened before is not sent again: read it with the other routes.
    Subscribed {
        /// This node's peer id.
        peer_id: String,
        /// The kinds this stream sends.
        kinds: Vec<EventKind>,
    },
    /// This subscriber read too slowly and `missed` events were dropped for it: read the
    /// state again with the other routes.
    Lagged {
        /// Events dropped.
        missed: u64,
    },
    /// A listing version from the network was stored (`GET /v1/listings/{id}` shows it).
    ListingStored {
        /// Listing id.
        listing: String,
    },
    /// A trade changed state on this node: a step of ours, or of the other party.
    TradeUpdated {
        /// Trade id.
        trade: String,
        /// Its new state.
        state: TradeStateName,
    },
    /// A trade message of ours reached the other party (`delivered`) or was given up on
    /// (`failed`; `GET /v1/trades/{id}` says why).
    Delivery {
        /// Message object id (the first message's is the trade id).
        message: String,
        /// What became of it.
        status: DeliveryStatus,
    },
    /// Where catch-up sync stands changed (what `GET /v1/status` shows under `sync`): at
    /// most one a second while catching up, at once when `status` changes.
    SyncProgress {
        /// Where catch-up stands.
        status: SyncStatusName,
        /// Peers being reconciled with now, or waiting for their turn.
        in_progress: u64,
        /// Objects learned from peers and not fetched yet.
        to_fetch: u64,
        /// Peers reconciled with since they connected.
        peers_reconciled: u64,
    },
    /// Catch-up with a peer finished.
    Synced {
        /// Its peer id.
        peer: String,
    },
    /// The search index took in new listing versions: searches see them now.
    Indexed {
        /// Listing versions applied.
        count: u64,
    },
    /// A peer connected.
    PeerConnected {
        /// Its peer id.
        peer: String,
    },
    /// A peer was banned for sending invalid objects.
    PeerBanned {
        /// Its peer id.
        peer: String,
    },
    /// A circuit relay accepted our reservation: we are reachable through it.
    RelayReserved {
        /// The relay's peer id.
        relay: String,
    },
    /// A relay that holds mailboxes connected.
    RelayConnected {
        /// Its peer id.
        peer: String,
    },
    /// A peer was first reached over a relayed connection (a circuit through a relay, as
    /// between two nodes behind NAT); hole punching (DCUtR) now tries to make it direct.
    RelayedConnection {
        /// Its peer id.
        peer: String,
    },
    /// Hole punching (DCUtR) of a relayed connection ended.
    HolePunch {
        /// The other peer's id.
        peer: String,
        /// `direct`: a direct connection now exists; `failed`: the connection stays relayed.
        outcome: HolePunchOutcome,
        /// Milliseconds from the relayed connection to this outcome (absent when this node
        /// did not see the relayed connection start).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ms: Option<u64>,
        /// Why it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A notification was raised and stored (`GET /v1/notifications` lists it too).
    Notification {
        /// The notification.
        notification: Box<NotificationView>,
    },
    /// A direct message arrived and was stored (`GET /v1/conversations/{thread}` shows it).
    MessageReceived {
        /// Thread id.
        thread: String,
        /// Message id.
        message: String,
        /// Its author's peer id.
        from: String,
    },
    /// A message of ours changed status.
    MessageStatus {
        /// Thread id.
        thread: String,
        /// Message id.
        message: String,
        /// Where it stands now.
        status: MessageStatus,
        /// Why it is queued or failed, and which relay holds it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

impl EventView {
    /// Its kind.
    pub fn kind(&self) -> EventKind {
        match self {
            EventView::Subscribed { .. } => EventKind::Subscribed,
            EventView::Lagged { .. } => EventKind::Lagged,
            EventView::ListingStored { .. } => EventKind::ListingStored,
            EventView::TradeUpdated { .. } => EventKind::TradeUpdated,
            EventView::Delivery { .. } => EventKind::Delivery,
            EventView::SyncProgress { .. } => EventKind::SyncProgress,
            EventView::Synced { .. } => EventKind::Synced,
            EventView::Indexed { .. } => EventKind::Indexed,
            EventView::PeerConnected { .. } => EventKind::PeerConnected,
            EventView::PeerBanned { .. } => EventKind::PeerBanned,
            EventView::RelayReserved { .. } => EventKind::RelayReserved,
            EventView::RelayConnected { .. } => EventKind::RelayConnected,
            EventView::RelayedConnection { .. } => EventKind::RelayedConnection,
            EventView::HolePunch { .. } => EventKind::HolePunch,
            EventView::Notification { .. } => EventKind::Notification,
            EventView::MessageReceived { .. } => EventKind::MessageReceived,
            EventView::MessageStatus { .. } => EventKind::MessageStatus,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Notifications and saved searches (alerts)
// ---------------------------------------------------------------------------------------

/// What a notification is about.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// A direct message arrived (`thread`, `peer`, `message`). Raised by the messages service
    /// in the batch that stores the message.
    Message,
    /// The other party (or a moderator) took a step in one of our trades (`trade`, `peer`,
    /// `step`, `state`).
    TradeStep,
    /// One of our trade messages was given up on (`trade`, `message`, `reason`).
    DeliveryFailed,
    /// A trade reserved units of one of our listings (`listing`, `trade`, `quantity`).
    ListingReserved,
    /// One of our listings was sold: the buyer confirmed receipt (`listing`, `trade`).
    ListingSold,
    /// A listing new to this node matches saved searches (`listing`, `title`, `price`,
    /// `currency`, `searches`).
    SavedSearch,
}

impl NotificationKind {
    /// The name as it travels.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Message => "message",
            NotificationKind::TradeStep => "trade_step",
            NotificationKind::DeliveryFailed => "delivery_failed",
            NotificationKind::ListingReserved => "listing_reserved",
            NotificationKind::ListingSold => "listing_sold",
            NotificationKind::SavedSearch => "saved_search",
        }
    }
}

/// One notification: what happened, when, whether it was read, and the ids to follow up
/// with (which fields are set depends on `kind`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct NotificationView {
    /// Number, increasing: a later notification has a higher one.
    pub id: u64,
    /// What it is about.
    pub kind: NotificationKind,
    /// When it was raised (unix ms).
    pub at: u64,
    /// Whether it was marked read.
    pub read: bool,
    /// One line for people.
    pub text: String,
    /// Listing id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing: Option<String>,
    /// Trade id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade: Option<String>,
    /// Conversation thread id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    /// Message object id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The other person's peer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The trade step taken (`offer`, `accept`, `paid`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The trade's state after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<TradeStateName>,
    /// Why a delivery failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The listing's title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The listing's price (minor units).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<u64>,
    /// The price's currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Units reserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u64>,
    /// The saved searches the listing matched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub searches: Vec<u64>,
}

impl NotificationView {
    /// A notification of `kind` with `text` and no ids yet (the store numbers it).
    pub fn new(kind: NotificationKind, at: u64, text: impl Into<String>) -> Self {
        Self {
            id: 0,
            kind,
            at,
            read: false,
            text: text.into(),
            listing: None,
            trade: None,
            thread: None,
            message: None,
            peer: None,
            step: None,
            state: None,
            reason: None,
            title: None,
            price: None,
            currency: None,
            quantity: None,
            searches: Vec::new(),
        }
    }
}

/// Which notifications `GET /v1/notifications` lists.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NotificationsQuery {
    /// Only those not marked read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread: Option<bool>,
    /// Most notifications listed, newest first (1-1000, default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// What `GET /v1/notifications` (and `jangteo notifications`) answers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct NotificationList {
    /// Newest first.
    pub notifications: Vec<NotificationView>,
    /// Notifications not marked read, in all.
    pub unread: u64,
}

/// Which notifications to mark read (`POST /v1/notifications/read`): `ids`, or `all`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MarkRead {
    /// These notifications (at most 1000).
    #[serde(default)]
    pub ids: Vec<u64>,
    /// Every notification held.
    #[serde(default)]
    pub all: bool,
}

/// What marking read did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct MarkedRead {
    /// Notifications that were unread and are read now.
    pub marked: u64,
    /// Notifications still unread.
    pub unread: u64,
}

/// A saved search: the text and the filters of `GET /v1/listings`, matched against every
/// listing that reaches this node from now on (`POST /v1/alerts`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NewSavedSearch {
    /// Words that must all appear in the title or description ("quoted phrases", OR, -word
    /// allowed), as in search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Condition: new, like-new, good, fair or poor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Seller peer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller: Option<String>,
    /// Currency of the price bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Lowest price (minor units).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_price: Option<u64>,
    /// Highest price (minor units).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price: Option<u64>,
    /// `LAT,LON`: only listings that name a place (within `radius_km`, if given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub near: Option<String>,
    /// Radius around `near`, in km.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radius_km: Option<f64>,
}

impl NewSavedSearch {
    /// The search it stands for (first page, default order, open listings only).
    pub fn as_query(&self) -> SearchQuery {
        SearchQuery {
            q: self.q.clone(),
            category: self.category.clone(),
            condition: self.condition.clone(),
            seller: self.seller.clone(),
            currency: self.currency.clone(),
            min_price: self.min_price,
            max_price: self.max_price,
            near: self.near.clone(),
            radius_km: self.radius_km,
            ..SearchQuery::default()
        }
    }
}

/// A saved search held by this node.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct SavedSearchView {
    /// Its number (`DELETE /v1/alerts/{id}`, `jangteo alert rm ID`).
    pub id: u64,
    /// When it was saved (unix ms): listing versions dated earlier do not alert.
    pub created_at: u64,
    /// The text and filters.
    pub search: NewSavedSearch,
}

// ---------------------------------------------------------------------------------------
// The CLI's own answers (the JSON it prints, kept here so tests decode it typed)
// ---------------------------------------------------------------------------------------

/// What `post`, `update` and `retract` print.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ListingRef {
    /// Listing id.
    pub id: String,
    /// Version.
    pub seq: u64,
    /// The difficulty, in bits, of the proof-of-work stamp made for it (SPEC §3.1), when one
    /// was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp_bits: Option<u32>,
    /// How long making that stamp took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp_ms: Option<u64>,
}

/// What `offer` prints.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct OfferMade {
    /// Trade id.
    pub id: String,
    /// Its state.
    pub state: TradeStateName,
    /// The offer's delivery.
    pub delivery: Option<DeliveryView>,
    /// Whether the seller's trust supports the offer's value (the amount gate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_check: Option<AmountCheck>,
}

/// What the trade transitions print.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct TradeRef {
    /// Trade id.
    pub id: String,
    /// Its state.
    pub state: TradeStateName,
}

/// What `init` prints.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InitView {
    /// Peer id.
    pub peer_id: String,
    /// Whether the key was created now.
    pub created: bool,
    /// The data directory.
    pub data_dir: String,
}

/// The API address file (`api.json` in the data directory), written by the node at start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiAddrFile {
    /// `HOST:PORT` of the API.
    pub addr: String,
    /// Base58 peer id of the node.
    pub peer_id: String,
    /// Process id of the node that wrote it (a killed node leaves its file behind).
    pub pid: u32,
}

/// What the CLI prints on stdout with `--json` when a command fails: the API's error shape
/// ([`ErrorBody`]), with a code that is either one of the API's ([`ErrorCode::as_str`])
/// passed through, or one of the CLI's own (`usage`, `node_unreachable`, `io`, `refused`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CliErrorBody {
    /// What went wrong.
    pub error: CliErrorDetail,
}

/// The code and message of a [`CliErrorBody`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CliErrorDetail {
    /// Stable machine-readable code: an API code or one of the CLI's own.
    pub code: String,
    /// What failed and what to do, for people.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_travel_as_the_old_strings() {
        for s in TradeStateName::ALL {
            assert_eq!(
                serde_json::to_value(s).expect("ser"),
                serde_json::Value::String(s.as_str().into())
            );
        }
        for a in TradeActionName::ALL {
            assert_eq!(TradeActionName::from_name(a.as_str()), Some(a));
            assert_eq!(
                serde_json::to_value(a).expect("ser"),
                serde_json::Value::String(a.as_str().into())
            );
        }
        for s in [
            DeliveryStatus::Queued,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
            DeliveryStatus::Received,
        ] {
            let d = s.as_str();
            assert_eq!(serde_json::to_value(s).expect("ser"), d);
        }
        assert_eq!(
            serde_json::to_value(ErrorCode::InvalidTransition).expect("ser"),
            "invalid_transition"
        );
        assert_eq!(ErrorCode::NotFound.as_str(), "not_found");
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_name(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).expect("ser"), k.as_str());
        }
        let v = EventView::TradeUpdated {
            trade: "ab".into(),
            state: TradeStateName::Paid,
        };
        assert_eq!(
            serde_json::to_value(&v).expect("ser"),
            serde_json::json!({"kind": "trade_updated", "trade": "ab", "state": "paid"})
        );
        assert_eq!(
            serde_json::to_value(v.kind()).expect("ser"),
            serde_json::to_value(&v).expect("ser")["kind"]
        );
        for r in ["public", "private", "unknown"] {
            assert_eq!(Reachability::from_name(r).as_str(), r);
        }
        for st in [
            ListingState::Active,
            ListingState::Sold,
            ListingState::Expired,
            ListingState::Retracted,
        ] {
            assert_eq!(serde_json::to_value(st).expect("ser"), st.as_str());
        }
    }

    #[test]
    fn protocol_states_map_to_their_names() {
        use jangteo_protocol::trade::TradeState as S;
        for s in [
            S::Offered,
            S::Countered,
            S::Accepted,
            S::Paid,
            S::Shipped,
            S::Completed,
            S::Rejected,
            S::Cancelled,
            S::Disputed,
            S::Resolved,
        ] {
            assert_eq!(TradeStateName::from(s).as_str(), s.name());
        }
    }
}
