//! The page's stylesheet and script, embedded in the binary (`assets/`), served at
//! `/assets/…` with their content type. No build step: plain CSS and one plain JavaScript
//! module for progressive enhancement (photo previews); every page works without it.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The stylesheet.
pub const APP_CSS: &str = include_str!("assets/app.css");
/// The script (an ES module).
pub const APP_JS: &str = include_str!("assets/app.js");

/// How long browsers may keep an asset before asking again.
const ASSET_CACHE: &str = "max-age=300";

/// `GET /assets/app.css`.
pub async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, ASSET_CACHE),
        ],
        APP_CSS,
    )
        .into_response()
}

/// `GET /assets/app.js`.
pub async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, ASSET_CACHE),
        ],
        APP_JS,
    )
        .into_response()
}
