//! The local HTTP/JSON API that the `jangteo` CLI (and the web page) talks to.
//!
//! Owns the router: one module per resource (`status`, `listings`, `trades`, `reputation`,
//! `reports`, `blobs`, `objects`, `ui`, and the live stream `events`), the token check
//! ([`auth`]), the one error shape ([`error`]), the request and response types ([`types`]),
//! body limits, and the OpenAPI 3.1 document generated from the handlers ([`openapi`], served
//! without a token at `GET /v1/openapi.json`). It holds service handles and never the swarm.

pub mod auth;
mod blobs;
mod conversations;
pub mod error;
pub mod events;
mod listings;
mod notifications;
pub mod objects;
mod reports;
mod reputation;
mod status;
mod trades;
pub mod types;
mod ui;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{RefOr, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;

use crate::api::error::ApiError;
use crate::api::types::{ErrorBody, ErrorCode};
use crate::net::Client;
use crate::services::blobs::Blobs;
use crate::services::listings::Listings;
use crate::services::moderation::Moderation;
use crate::services::reputation::Reputation;
use crate::services::thumbs::Thumbs;
use crate::services::trades::Trades;
use crate::store::Store;

/// Largest JSON request body the API reads (blobs and imports have their own caps).
pub const API_BODY_MAX_BYTES: usize = 64 * 1024;
/// Path of the OpenAPI document.
pub const OPENAPI_PATH: &str = "/v1/openapi.json";

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// Listings service.
    pub listings: Listings,
    /// Trades service.
    pub trades: Trades,
    /// Conversations service.
    pub conversations: crate::services::conversations::Conversations,
    /// Reputation service.
    pub reputation: Reputation,
    /// Reports and moderators.
    pub moderation: Moderation,
    /// Blob service.
    pub blobs: Blobs,
    /// Thumbnails of image blobs.
    pub thumbs: Thumbs,
    /// Network handle.
    pub network: Client,
    /// The store, for raw objects.
    pub store: Arc<Store>,
    /// The bearer token.
    pub token: Arc<String>,
    /// When the node started.
    pub started: Instant,
    /// Our peer id.
    pub peer_id: String,
    /// Our public key, hex.
    pub public_key: String,
    /// The web page's login codes and sessions (codes are minted through the API).
    pub ui_sessions: Arc<crate::web::session::Sessions>,
    /// The node's data directory (the web page's key backup reads the key file there).
    pub data_dir: Arc<std::path::PathBuf>,
    /// Notifications and saved searches.
    pub alerts: crate::services::alerts::Alerts,
    /// Where `GET /v1/events` streams come from (shared with the web page's stream).
    pub events: events::EventFeed,
}

/// The document's frame: title, description, tags, the shared error schema.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "jangteo node API",
        description = "The local API of a jangteo node (a peer-to-peer marketplace). Every \
            route but this document needs `Authorization: Bearer <token>`, the token being in \
            the node's data directory, file `api.token`. Every error answers \
            `{\"error\": {\"code\", \"message\"}}` with the status listed per operation.",
        license(name = "MIT OR Apache-2.0"),
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "node", description = "Identity, state, peers"),
        (name = "listings", description = "Post, update, retract, show, search"),
        (name = "trades", description = "Offers and the trade chain"),
        (name = "conversations", description = "Direct messages about listings and trades, blocks"),
        (name = "reputation", description = "Ratings, trust, trust seeds"),
        (name = "reports", description = "Reports of listings and keys, and moderators"),
        (name = "blobs", description = "Images and other content-addressed blobs"),
        (name = "objects", description = "Signed objects as bytes, for other programs"),
        (name = "events", description = "What happens in the node, live (server-sent events)"),
        (name = "notifications", description = "Notifications, and saved searches that raise alerts"),
    )
)]
struct ApiDoc;

fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(status::routes())
        .merge(listings::routes())
        .merge(trades::routes())
        .merge(conversations::routes())
        .merge(reputation::routes())
        .merge(reports::routes())
        .merge(blobs::routes())
        .merge(objects::routes())
        .merge(ui::routes())
        .merge(events::routes())
        .merge(notifications::routes())
}

/// Adds what every route behind the token shares: the bearer requirement, and the 401 and
/// 500 answers in the one error shape.
fn finish(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        auth::SECURITY_SCHEME,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "The token in the node's data directory, file api.token",
                ))
                .build(),
        ),
    );
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(RefOr::<utoipa::openapi::schema::Schema>::Ref(
                            utoipa::openapi::Ref::from_schema_name("ErrorBody"),
                        )))
                        .build(),
                )
                .build(),
        )
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        let secured = path != OPENAPI_PATH;
        for op in [
            item.get.as_mut(),
            item.put.as_mut(),
            item.post.as_mut(),
            item.delete.as_mut(),
            item.patch.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            if secured {
                op.security = Some(vec![SecurityRequirement::new::<_, _, &str>(
                    auth::SECURITY_SCHEME,
                    [],
                )]);
                op.responses.responses.insert(
                    "401".into(),
                    error("Missing or wrong bearer token (`unauthorized`)"),
                );
            }
            op.responses.responses.insert(
                "500".into(),
                error("The node failed (`store`, `search`, `internal`)"),
            );
        }
    }
    doc
}

/// The API's OpenAPI 3.1 document, generated from the handlers and [`types`].
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, doc) = routes()
        .routes(utoipa_axum::routes!(openapi_doc_route))
        .split_for_parts();
    finish(doc)
}

/// The OpenAPI document as the API serves it and `docs/openapi.json` holds it. Unsigned
/// integers carry the format names `uint32`/`uint64` (utoipa writes `u-int64`), so no
/// client takes them for signed `int64` with its lower maximum.
pub fn openapi_json() -> String {
    fn unsigned_formats(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if k == "format"
                        && let Some(f) = x.as_str().and_then(|f| f.strip_prefix("u-"))
                    {
                        *x = serde_json::Value::String(format!("u{f}"));
                    } else {
                        unsigned_formats(x);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(unsigned_formats),
            _ => {}
        }
    }
    let mut doc = serde_json::to_value(openapi()).unwrap_or_default();
    unsigned_formats(&mut doc);
    let mut s =
        serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

/// Serves the OpenAPI document (no token needed).
#[utoipa::path(get, path = "/v1/openapi.json", tag = "node", operation_id = "openapi",
    security(()),
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json")))]
async fn openapi_doc_route() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json())
}

async fn no_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NoRoute,
        "no such API route",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "this API route does not take that method",
    )
}

/// The API's routes, behind the token check (but the OpenAPI document) and the body limit.
pub fn router(state: ApiState) -> Router {
    let (authed, _) = routes().split_for_parts();
    let authed = authed.layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_token,
    ));
    Router::new()
        .route(
            OPENAPI_PATH,
            get(|| async {
                // Made on first request, not at start: generating it touches every schema.
                static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
                let body = DOCUMENT.get_or_init(openapi_json).clone();
                ([(header::CONTENT_TYPE, "application/json")], body)
            }),
        )
        .merge(authed)
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(API_BODY_MAX_BYTES))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/openapi.json` is the document the API serves. Regenerate it with
    /// `cargo run --release -p jangteo-cli -- openapi --out docs/openapi.json`.
    #[test]
    fn docs_openapi_json_is_the_served_document() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
        let held = std::fs::read_to_string(path).unwrap_or_default();
        let now = openapi_json();
        assert!(
            held == now,
            "docs/openapi.json is not the API's document any more; regenerate it with\n  \
             cargo run --release -p jangteo-cli -- openapi --out docs/openapi.json\nand commit it"
        );
    }

    #[test]
    fn every_operation_lists_its_errors_in_the_one_shape_and_needs_the_token_but_one() {
        let doc = serde_json::to_value(openapi()).expect("document as JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(
            doc["components"]["securitySchemes"][auth::SECURITY_SCHEME]["scheme"],
            "bearer"
        );
        let paths = doc["paths"].as_object().expect("paths");
        let mut operations = 0;
        for (path, item) in paths {
            for (method, op) in item.as_object().expect("path item") {
                operations += 1;
                let responses = op["responses"].as_object().expect("responses");
                let errors: Vec<_> = responses
                    .iter()
                    .filter(|(status, _)| !status.starts_with('2'))
                    .collect();
                assert!(errors.iter().any(|(s, _)| *s == "500"), "{method} {path}");
                for (status, r) in errors {
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
                if path == OPENAPI_PATH {
                    assert!(!responses.contains_key("401"));
                } else {
                    assert!(responses.contains_key("401"), "{method} {path}");
                    assert_eq!(
                        op["security"][0][auth::SECURITY_SCHEME],
                        serde_json::json!([]),
                        "{method} {path}"
                    );
                }
            }
        }
        assert_eq!(operations, 44, "{operations} operations documented");
    }
}
