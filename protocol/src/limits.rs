//! Every size, count and time limit of the wire format, in one place (SPEC.md names each).
//!
//! This module holds constants only and imports nothing from the crate, so any module may
//! use it without forming an import circle. The modules that apply a limit re-export it under
//! its old path (`listing::PRICE_MAX`, `trade::CHAIN_MAX`, …).

// --- Encoding and envelopes (SPEC §1, §2) ---

/// Deepest nesting a CBOR item may have: the top-level item is level 1, and every item inside
/// an array or a map (keys and values) is one level deeper than its container.
pub const CBOR_MAX_LEVELS: usize = 4;
/// Largest encoded envelope of every kind but attestations and equivocation proofs.
pub const MAX_OBJECT_BYTES: usize = 32 * 1024;
/// Largest encoded attestation envelope (it embeds a whole trade chain).
pub const MAX_ATTESTATION_BYTES: usize = 128 * 1024;
/// Largest encoded equivocation proof (it embeds two trade envelopes).
pub const MAX_EQUIVOCATION_BYTES: usize = 2 * MAX_OBJECT_BYTES + 1024;
/// Largest encoded envelope of any kind.
pub const MAX_ANY_OBJECT_BYTES: usize = MAX_ATTESTATION_BYTES;
/// Objects dated further than this into the future are refused (clock skew allowance).
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;
/// Earliest timestamp accepted (2024-01-01T00:00:00Z): catches seconds sent as milliseconds.
pub const EARLIEST_MS: u64 = 1_704_067_200_000;

// --- Listings (SPEC §3) ---

/// Longest title, in Unicode code points (scalar values).
pub const TITLE_MAX_CHARS: usize = 120;
/// Longest title, in bytes of UTF-8: follows from [`TITLE_MAX_CHARS`] (4 bytes per code point
/// at most), so it never binds on its own.
pub const TITLE_MAX_BYTES: usize = 4 * TITLE_MAX_CHARS;
/// Longest description, in bytes of UTF-8.
pub const DESCRIPTION_MAX_BYTES: usize = 8000;
/// Longest category name, in bytes (`[a-z0-9-]`).
pub const CATEGORY_MAX_BYTES: usize = 32;
/// Highest price, in minor units (10^15: beyond any second-hand trade).
pub const PRICE_MAX: u64 = 1_000_000_000_000_000;
/// Highest quantity on offer.
pub const QUANTITY_MAX: u64 = 100_000;
/// Most images a listing may name.
pub const IMAGES_MAX: usize = 8;
/// Longest a listing may live from its creation, in milliseconds (180 days).
pub const LIFETIME_MAX_MS: u64 = 180 * 24 * 3600 * 1000;
/// Default lifetime given by clients that do not choose one (30 days).
pub const LIFETIME_DEFAULT_MS: u64 = 30 * 24 * 3600 * 1000;
/// Largest |latitude| in microdegrees.
pub const LAT_E6_MAX: i32 = 90_000_000;
/// Largest |longitude| in microdegrees.
pub const LON_E6_MAX: i32 = 180_000_000;
/// Most moderators a listing or an offer may name.
pub const MODERATORS_MAX: usize = 3;

// --- Posting limits (SPEC §3.1) ---

/// The base difficulty of a listing's stamp, in bits, on the public network: every version
/// must carry a stamp worth at least this (about 1.5 s of one core here; 100 000 listings
/// from fresh keys cost about 1.8 CPU-days). A network-wide parameter: test networks set it
/// lower, and every node of one network must use the same value.
pub const LISTING_STAMP_BITS: u32 = 24;
/// A key's active listings (not retracted, not expired) a node holds at most; past this a
/// new listing of that key is not taken.
pub const LISTING_ACTIVE_MAX: u64 = 1000;
/// Active listings of one key that cost no more than the base difficulty; from here each
/// doubling of the count asks one more bit.
pub const LISTING_STAMP_FREE: u64 = 16;
/// Least time between two versions of one listing (their `updated`), but for a retraction,
/// which may follow at any time.
pub const LISTING_VERSION_INTERVAL_MS: u64 = 10_000;

// --- Attestation limits (SPEC §7.1) ---

/// Attestations of one author a node holds at most; past this a new one is not taken.
pub const ATTESTATIONS_PER_AUTHOR_MAX: u64 = 256;
/// An attestation is kept while its trade completed less than this long ago (two years,
/// when its weight in trust has fallen to a sixteenth).
pub const ATTESTATION_RETENTION_MS: u64 = 730 * 24 * 3600 * 1000;

/// The difficulty of an attestation's stamp, in bits, on the public network (SPEC §7.1):
/// 2^22 hashes, about 0.4 s of one core here; 10 000 attestations cost about an hour. A
/// network's attestation difficulty follows its listing difficulty `D`: `D` −
/// ([`LISTING_STAMP_BITS`] − this), so one parameter sets both and test networks (`D = 0`)
/// ask for none.
pub const ATTESTATION_STAMP_BITS: u32 = 22;

// --- Profiles (SPEC §4) ---

/// Longest display name, in Unicode code points.
pub const NAME_MAX_CHARS: usize = 64;
/// Longest bio, in bytes.
pub const BIO_MAX_BYTES: usize = 1000;

// --- Trades (SPEC §5) ---

/// Longest free-text note (offer message, reason, payment reference, tracking), in bytes.
pub const NOTE_MAX_BYTES: usize = 1000;
/// Most messages a trade chain may hold.
pub const CHAIN_MAX: usize = 64;
/// Most counters in one trade, so a haggle always leaves room to finish the trade.
pub const COUNTERS_MAX: usize = 16;

// --- Attestations (SPEC §7) ---

/// Longest comment, in bytes.
pub const COMMENT_MAX_BYTES: usize = 500;
/// Fewest messages of a completed trade: offer, accept, paid, received.
pub const ATTESTATION_CHAIN_MIN: usize = 4;

// --- Direct messages (SPEC §13) ---

/// Longest direct message text, in Unicode code points.
pub const MESSAGE_TEXT_MAX_CHARS: usize = 2000;
/// Most photos (blob ids) one direct message may name.
pub const MESSAGE_PHOTOS_MAX: usize = 4;
/// Most messages one receipt may acknowledge.
pub const RECEIPT_MESSAGES_MAX: usize = 64;
/// Work a first-contact message's stamp must be worth, in bits: about 4.2 million hashes,
/// 0.4 s on one core of the reference machine; 10,000 such messages cost about an hour.
pub const FIRST_CONTACT_STAMP_BITS: u32 = 22;

// --- Mailboxes (SPEC §6) ---

/// Largest sealed item a relay accepts.
pub const SEALED_MAX_BYTES: usize = 256 * 1024;

// --- Blobs (SPEC §8) ---

/// Blob chunk size.
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Largest blob (an image).
pub const MAX_BLOB_BYTES: usize = 5 * 1024 * 1024;
/// Most chunks a blob can have.
pub const MAX_CHUNKS: usize = MAX_BLOB_BYTES.div_ceil(CHUNK_BYTES);
/// Largest blob manifest.
pub const MAX_MANIFEST_BYTES: usize = 8 + 32 * MAX_CHUNKS;

// --- Reports (SPEC §7.2) ---

/// Longest free text of a report, in bytes.
pub const REPORT_TEXT_MAX_BYTES: usize = 500;
/// Most reports one author may have held by a node, dated within one UTC day (by `at`).
pub const REPORTS_PER_DAY_MAX: usize = 10;
/// Most reports of one author a node holds in all.
pub const REPORTS_HELD_MAX: usize = 100;
/// A UTC day, in milliseconds: the unit of [`REPORTS_PER_DAY_MAX`].
pub const REPORT_DAY_MS: u64 = 24 * 3600 * 1000;
