//! The one path by which objects from outside (gossip, sync, the local API) enter the store:
//! decode, verify the signature, validate every field, then write. Nothing that fails a step
//! is stored. Owns no I/O beyond the store call.

use jangteo_protocol::{Kind, Object, ObjectError, ObjectId, verify_object};

use crate::error::StoreError;
use crate::store::{ListingWrite, Store};

/// The gossipsub topic objects of a kind travel on.
pub fn topic_for(kind: Kind) -> &'static str {
    match kind {
        Kind::Listing => "jangteo/v1/listings",
        Kind::Profile => "jangteo/v1/profiles",
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
    let (signed, object) = match verify_object(bytes, now_ms) {
        Ok(v) => v,
        Err(e) => return Ok(Ingested::Invalid(e)),
    };
    let kind = signed.envelope().kind;
    if expected.is_some_and(|k| k != kind) {
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
                ListingWrite::Inconsistent => {
                    Ingested::Invalid(ObjectError::Invalid(jangteo_protocol::FieldError::new(
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

/// Milliseconds since the unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
