//! `/v1/objects`: the node's signed objects as bytes, for other programs. One object's exact
//! bytes (`application/cbor`), a page of them as a CBOR sequence (RFC 8742: the envelopes'
//! exact bytes, concatenated; `application/cbor-seq`), and import of such a sequence through
//! the same verify-then-store path as objects from the network ([`crate::ingest`]).
//! Also owns [`split_sequence`], which the CLI uses to batch a file. Every read is capped.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jangteo_protocol::{Envelope, Kind, ObjectId};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::ApiState;
use crate::api::error::{ApiError, ApiPath, ApiQuery};
#[allow(unused_imports)]
use crate::api::types::{Binary, ErrorBody};
use crate::api::types::{ErrorCode, ImportError, ImportReport, ObjectsQuery};
use crate::clock::now_ms;
use crate::ingest::{Ingested, ingest_batch};

/// Objects in a page of `GET /v1/objects` when no limit is given.
pub const OBJECTS_PAGE_DEFAULT: usize = 1000;
/// Most objects in a page of `GET /v1/objects`.
pub const OBJECTS_PAGE_MAX: usize = 10_000;
/// Most bytes in a page of `GET /v1/objects` (a page holds at least one object).
pub const OBJECTS_PAGE_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Largest body `POST /v1/objects` reads; the CLI sends bigger files in batches.
pub const IMPORT_BODY_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Reasons an import report lists at most.
pub const IMPORT_ERRORS_MAX: usize = 20;
/// Deepest nesting of a CBOR item [`split_sequence`] follows.
pub const CBOR_DEPTH_MAX: u32 = 32;
/// Response header naming the last object id of a page when more may follow.
pub const NEXT_HEADER: &str = "jangteo-next";
/// Media type of a CBOR sequence.
pub const CBOR_SEQ: &str = "application/cbor-seq";

pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_objects, import_objects))
        .routes(routes!(get_object))
}

/// Length of the CBOR item at the start of `b` (definite lengths only, as the protocol
/// writes), or why there is none.
fn item_len(b: &[u8], depth: u32) -> Result<usize, &'static str> {
    if depth > CBOR_DEPTH_MAX {
        return Err("nested too deeply");
    }
    let first = *b.first().ok_or("truncated")?;
    let (major, info) = (first >> 5, first & 0x1f);
    let width = match info {
        0..=23 => 0,
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        31 => return Err("indefinite length (not canonical)"),
        _ => return Err("reserved additional information"),
    };
    let head = b.get(1..1 + width).ok_or("truncated")?;
    let arg = if width == 0 {
        u64::from(info)
    } else {
        head.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x))
    };
    let mut pos = 1 + width;
    match major {
        0 | 1 | 7 => Ok(pos),
        2 | 3 => {
            let n = usize::try_from(arg).map_err(|_| "truncated")?;
            let end = pos.checked_add(n).ok_or("truncated")?;
            if end > b.len() {
                return Err("truncated");
            }
            Ok(end)
        }
        4 | 5 => {
            let items = if major == 5 {
                arg.saturating_mul(2)
            } else {
                arg
            };
            // Each item takes at least one byte, so this ends within `b`.
            let mut left = items;
            while left > 0 {
                pos += item_len(b.get(pos..).ok_or("truncated")?, depth + 1)?;
                left -= 1;
            }
            Ok(pos)
        }
        _ => Ok(pos + item_len(b.get(pos..).ok_or("truncated")?, depth + 1)?),
    }
}

/// A CBOR sequence split: its items, each with its byte offset, and where and why the bytes
/// stopped being a CBOR item (`None` when they did not).
pub type SplitSequence<'a> = (Vec<(usize, &'a [u8])>, Option<(usize, &'static str)>);

/// Splits a CBOR sequence into its items, each with its byte offset. When the bytes stop
/// being a CBOR item part way, returns the items before, and the offset and reason.
pub fn split_sequence(bytes: &[u8]) -> SplitSequence<'_> {
    let mut items = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        match item_len(&bytes[pos..], 0) {
            Ok(n) => {
                items.push((pos, &bytes[pos..pos + n]));
                pos += n;
            }
            Err(why) => return (items, Some((pos, why))),
        }
    }
    (items, None)
}

/// An object's own time: a listing's or profile's update, an attestation's, report's or
/// trade message's date. `None` for kinds without one (equivocation proofs) or bodies that do not
/// decode.
fn object_time(env: &Envelope) -> Option<u64> {
    match env.kind {
        Kind::Listing => jangteo_protocol::Listing::decode(&env.body)
            .ok()
            .map(|l| l.updated_at),
        Kind::Profile => jangteo_protocol::Profile::decode(&env.body)
            .ok()
            .map(|p| p.updated_at),
        Kind::Attestation => jangteo_protocol::attestation::Attestation::decode(&env.body)
            .ok()
            .map(|a| a.at),
        Kind::Report => jangteo_protocol::report::Report::decode(&env.body)
            .ok()
            .map(|r| r.at),
        Kind::Equivocation => None,
        k => jangteo_protocol::trade::TradeMessage::decode(k, &env.body)
            .ok()
            .map(|m| m.at),
    }
}

/// One object's exact signed bytes.
#[utoipa::path(get, path = "/v1/objects/{id}", tag = "objects", operation_id = "get_object",
    params(("id" = String, Path, description = "Object id: blake3 of its bytes (64 hex digits)")),
    responses(
        (status = 200, description = "The signed envelope, byte for byte", body = Binary, content_type = "application/cbor"),
        (status = 400, description = "Not an object id (`bad_id`)", body = ErrorBody),
        (status = 404, description = "Not held here (`not_found`)", body = ErrorBody),
    ))]
async fn get_object(
    State(s): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let oid = ObjectId::from_hex(id.trim())
        .ok_or_else(|| ApiError::bad_id(format!("{id:?} is not an object id (64 hex digits)")))?;
    let store = s.store.clone();
    let bytes = tokio::task::spawn_blocking(move || store.object(&oid))
        .await??
        .ok_or_else(|| ApiError::not_found(format!("no object {} on this node", oid.to_hex())))?;
    Ok(([(header::CONTENT_TYPE, "application/cbor")], bytes).into_response())
}

/// A page of the objects this node holds (or of one kind, or at or after a time), in id
/// order, as a CBOR sequence. When the page is full, the `jangteo-next` header names the
/// last id: pass it as `after` for the next page.
#[utoipa::path(get, path = "/v1/objects", tag = "objects", operation_id = "list_objects",
    params(ObjectsQuery),
    responses(
        (status = 200, description = "The objects' exact bytes, concatenated (RFC 8742)",
            body = Binary, content_type = "application/cbor-seq",
            headers(("jangteo-next" = String, description = "Present when more may follow: the `after` of the next page"))),
        (status = 400, description = "Unknown kind, bad `after` or `limit` (`bad_query`)", body = ErrorBody),
    ))]
async fn list_objects(
    State(s): State<ApiState>,
    ApiQuery(q): ApiQuery<ObjectsQuery>,
) -> Result<Response, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadQuery, m);
    let kind = match q.kind.as_deref() {
        None => None,
        Some(k) => Some(Kind::from_name(k).ok_or_else(|| {
            bad(format!(
                "kind {k:?}: not a kind; use listing, profile, attestation, equivocation or a trade message kind"
            ))
        })?),
    };
    let after = match q.after.as_deref() {
        None => None,
        Some(a) => Some(
            ObjectId::from_hex(a.trim())
                .ok_or_else(|| bad(format!("after {a:?}: not an object id (64 hex digits)")))?,
        ),
    };
    let limit = q.limit.unwrap_or(OBJECTS_PAGE_DEFAULT);
    if limit == 0 || limit > OBJECTS_PAGE_MAX {
        return Err(bad(format!("limit {limit}: must be 1-{OBJECTS_PAGE_MAX}")));
    }
    let since = q.since;
    let store = s.store.clone();
    let (body, next) = tokio::task::spawn_blocking(move || {
        let mut body = Vec::new();
        let (mut count, mut last, mut next) = (0usize, None, None);
        store.for_each_object(after.as_ref(), |id, bytes| {
            let Ok(env) = Envelope::decode(bytes) else {
                return true;
            };
            if kind.is_some_and(|k| k != env.kind)
                || since.is_some_and(|t| object_time(&env).is_some_and(|at| at < t))
            {
                return true;
            }
            if count > 0 && body.len() + bytes.len() > OBJECTS_PAGE_MAX_BYTES {
                next = last;
                return false;
            }
            body.extend_from_slice(bytes);
            count += 1;
            last = Some(id);
            if count == limit {
                next = last;
                return false;
            }
            true
        })?;
        Ok::<_, crate::error::StoreError>((body, next))
    })
    .await??;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(CBOR_SEQ),
    );
    if let Some(n) = next
        && let Ok(v) = header::HeaderValue::from_str(&n.to_hex())
    {
        headers.insert(NEXT_HEADER, v);
    }
    Ok((headers, body).into_response())
}

/// Verifies and stores a CBOR sequence of signed objects through the node's one ingest
/// path. Valid new objects are stored, valid known ones counted as duplicates, invalid ones
/// refused with their reasons; one bad object loses none of the others.
#[utoipa::path(post, path = "/v1/objects", tag = "objects", operation_id = "import_objects",
    request_body(
        description = "Signed objects' exact bytes, concatenated (RFC 8742), at most 8 MiB",
        content(
            (Binary = "application/cbor-seq"),
            (Binary = "application/octet-stream"),
        )),
    responses(
        (status = 200, description = "What was stored, known already, refused", body = ImportReport),
        (status = 413, description = "Body too large (`too_large`)", body = ErrorBody),
        (status = 415, description = "Neither application/cbor-seq nor application/octet-stream (`unsupported_media_type`)", body = ErrorBody),
    ))]
async fn import_objects(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ImportReport>, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case(CBOR_SEQ)
        && !essence.eq_ignore_ascii_case("application/octet-stream")
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            format!("content type {ct:?}: send {CBOR_SEQ}"),
        ));
    }
    let bytes = axum::body::to_bytes(body, IMPORT_BODY_MAX_BYTES)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::TooLarge,
                format!("{e}: an import may be at most {IMPORT_BODY_MAX_BYTES} bytes; send a larger file in parts (jangteo import does)"),
            )
        })?;
    let store = s.store.clone();
    let report = tokio::task::spawn_blocking(move || {
        let (items, tail) = split_sequence(&bytes);
        let objects: Vec<&[u8]> = items.iter().map(|(_, b)| *b).collect();
        let outcomes = ingest_batch(&store, &objects, None, now_ms(), true)?;
        let mut r = ImportReport::default();
        let refuse = |r: &mut ImportReport, index: usize, offset: usize, reason: String| {
            r.refused += 1;
            if r.errors.len() < IMPORT_ERRORS_MAX {
                r.errors.push(ImportError {
                    index: index as u64,
                    offset: offset as u64,
                    reason,
                });
            }
        };
        for (i, (o, (offset, _))) in outcomes.into_iter().zip(&items).enumerate() {
            match o {
                Ingested::Stored { .. } => r.stored += 1,
                Ingested::Ignored(_) => r.duplicate += 1,
                Ingested::Invalid(e) => refuse(&mut r, i, *offset, e.to_string()),
                Ingested::Unconfirmed(e) => refuse(
                    &mut r,
                    i,
                    *offset,
                    format!("not taken by this node now: {e}"),
                ),
            }
        }
        if let Some((offset, why)) = tail {
            refuse(
                &mut r,
                items.len(),
                offset,
                format!(
                    "bytes {offset}..{}: not a CBOR item ({why}); the rest of the body was skipped",
                    bytes.len()
                ),
            );
        }
        Ok::<_, crate::error::StoreError>(r)
    })
    .await??;
    tracing::info!(
        stored = report.stored,
        duplicate = report.duplicate,
        refused = report.refused,
        "objects imported"
    );
    Ok(Json(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: u8) -> Vec<u8> {
        let key = ed25519_dalek::SigningKey::from_bytes(&[n; 32]);
        jangteo_protocol::SignedObject::sign(Kind::Profile, vec![0xa0], &key)
            .bytes()
            .to_vec()
    }

    #[test]
    fn a_sequence_splits_into_its_envelopes() {
        let (a, b) = (sample(1), sample(2));
        let seq = [a.clone(), b.clone()].concat();
        let (items, tail) = split_sequence(&seq);
        assert!(tail.is_none());
        assert_eq!(items, vec![(0, &a[..]), (a.len(), &b[..])]);
    }

    #[test]
    fn a_broken_tail_keeps_the_items_before() {
        let a = sample(1);
        let mut seq = a.clone();
        seq.extend_from_slice(&sample(2)[..10]);
        let (items, tail) = split_sequence(&seq);
        assert_eq!(items, vec![(0, &a[..])]);
        assert_eq!(tail, Some((a.len(), "truncated")));
        // Indefinite lengths and absurd counts end with a reason, not a panic.
        assert_eq!(
            split_sequence(&[0x9f, 0x01]).1,
            Some((0, "indefinite length (not canonical)"))
        );
        let (none, why) = split_sequence(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(none.is_empty());
        assert_eq!(why, Some((0, "truncated")));
        let deep = vec![0x81; 100];
        assert_eq!(split_sequence(&deep).1, Some((0, "nested too deeply")));
    }
}
