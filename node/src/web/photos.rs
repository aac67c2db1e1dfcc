//! Photos (blobs) as pages show them: `GET /photo/{id}`, from this node or fetched from
//! peers through the blob service. A blob's bytes come from strangers, so the content type
//! is decided from the bytes themselves: JPEG, PNG, WebP or GIF are served as that image
//! type; anything else (HTML, SVG, scripts) only as an `application/octet-stream`
//! attachment, so a browser never renders it as a document. Always with `nosniff` and a
//! policy that lets the answer run nothing.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::WebState;
use super::pages::{Page, error_page};
use crate::services::blobs::BlobServiceError;
use crate::services::thumbs::{THUMB_CACHE_CONTROL, ThumbError, ThumbSize};

/// The policy of a photo answer: nothing runs, nothing loads.
pub const PHOTO_CSP: &str = "default-src 'none'; sandbox";

/// The image type of these bytes, by their magic numbers; `None` for anything else.
pub fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// The answer for a blob's bytes.
pub fn photo_response(bytes: Vec<u8>) -> Response {
    let mut r = match sniff_image(&bytes) {
        Some(kind) => (
            [
                (header::CONTENT_TYPE, kind),
                (header::CACHE_CONTROL, "private, max-age=86400, immutable"),
            ],
            bytes,
        )
            .into_response(),
        None => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"blob.bin\"",
                ),
            ],
            bytes,
        )
            .into_response(),
    };
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PHOTO_CSP),
    );
    r
}

/// `GET /photo/{id}`.
pub async fn photo(State(w): State<WebState>, page: Page, Path(id): Path<String>) -> Response {
    match w.api.blobs.get(&id).await {
        Ok(bytes) => photo_response(bytes),
        Err(BlobServiceError::BadId(_)) | Err(BlobServiceError::NotFound { .. }) => error_page(
            &page,
            StatusCode::NOT_FOUND,
            page.t.error_not_found.to_owned(),
        ),
        Err(e) => error_page(
            &page,
            StatusCode::INTERNAL_SERVER_ERROR,
            super::i18n::fill(page.t.error_internal, &[("reason", &e.to_string())]),
        ),
    }
}

/// `?size=` of a thumbnail: 320 (cards, the default) or 800 (the gallery).
#[derive(Debug, serde::Deserialize)]
pub struct ThumbQuery {
    #[serde(default)]
    size: Option<u32>,
}

/// `GET /thumb/{id}?size=320|800`: a photo's thumbnail, made by the node from the blob's
/// bytes under its limits (a JPEG, `nosniff`, cached for good: the blob under an id never
/// changes). A blob that is not a supported image gets 415 with no body a browser could
/// render.
pub async fn thumb(
    State(w): State<WebState>,
    _page: Page,
    Path(id): Path<String>,
    Query(q): Query<ThumbQuery>,
) -> Response {
    let size = match ThumbSize::from_edge(q.size) {
        Ok(s) => s,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    match w.api.thumbs.thumbnail(&id, size).await {
        Ok(t) => (
            [
                (header::CONTENT_TYPE, t.content_type.to_owned()),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
                (header::CACHE_CONTROL, THUMB_CACHE_CONTROL.to_owned()),
            ],
            t.bytes,
        )
            .into_response(),
        Err(ThumbError::Blob(BlobServiceError::BadId(_) | BlobServiceError::NotFound { .. })) => {
            StatusCode::NOT_FOUND.into_response()
        }
        Err(ThumbError::Unsupported(_)) => StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response(),
        Err(e) => {
            tracing::debug!(blob = %id, error = %e, "no thumbnail");
            StatusCode::UNPROCESSABLE_ENTITY.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_raster_images_get_an_image_type() {
        assert_eq!(
            sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0, 0]),
            Some("image/jpeg")
        );
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(sniff_image(b"GIF89a...."), Some("image/gif"));
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        for hostile in [
            &b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>"[..],
            b"<!doctype html><script>alert(1)</script>",
            b"<html>",
            b"",
            b"RIFF",
            b"\xFF\xD8",
        ] {
            assert_eq!(sniff_image(hostile), None);
        }
    }

    #[test]
    fn anything_else_is_an_attachment() {
        let r = photo_response(b"<svg onload=alert(1)>".to_vec());
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/octet-stream"
        );
        assert!(
            r.headers()[header::CONTENT_DISPOSITION]
                .to_str()
                .expect("ascii")
                .starts_with("attachment")
        );
        assert_eq!(r.headers()[header::CONTENT_SECURITY_POLICY], PHOTO_CSP);
        let r = photo_response(b"\x89PNG\r\n\x1a\n".to_vec());
        assert_eq!(r.headers()[header::CONTENT_TYPE], "image/png");
    }
}
