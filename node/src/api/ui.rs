//! `/v1/ui/login-code`: mints a one-time login code for the web page (what `jangteo ui`
//! opens). Only a holder of the API token can ask, so only the node's own user gets in;
//! the page itself never sees the token. The code table lives in [`crate::web::session`].

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::ApiState;
use crate::api::types::UiLoginCode;
use crate::web::session::CODE_TTL;

pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(login_code))
}

/// A one-time code that logs a browser into the web page: open `path` on the API's
/// address within `expires_in_s` seconds; it works once.
#[utoipa::path(post, path = "/v1/ui/login-code", tag = "node", operation_id = "ui_login_code",
    responses((status = 201, description = "A fresh one-time login code", body = UiLoginCode)))]
async fn login_code(State(s): State<ApiState>) -> (StatusCode, Json<UiLoginCode>) {
    let code = s.ui_sessions.mint_code();
    (
        StatusCode::CREATED,
        Json(UiLoginCode {
            path: format!("/login?code={code}"),
            code,
            expires_in_s: CODE_TTL.as_secs(),
        }),
    )
}
