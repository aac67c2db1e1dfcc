//! The API's one error shape, `{"error": {"code", "message"}}` ([`ErrorBody`]), and how
//! every failure becomes it: the services' errors, and axum's own rejections of a body or a
//! query string that does not parse (which would otherwise answer in plain text).
//! Owns status codes; must not log or retry.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::api::types::{ErrorBody, ErrorCode, ErrorDetail};
use crate::services::alerts::AlertError;
use crate::services::blobs::BlobServiceError;
use crate::services::conversations::ChatError;
use crate::services::listings::ListingError;
use crate::services::moderation::ModerationError;
use crate::services::reputation::ReputationError;
use crate::services::thumbs::ThumbError;
use crate::services::trades::TradeError;

/// An API error: status, stable code, and a message for people.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: ErrorCode,
    /// For people.
    pub message: String,
}

impl ApiError {
    /// An error with this status and code.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `bad_id`.
    pub fn bad_id(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadId, message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    /// 500 `internal`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            message,
        )
    }

    /// The body this error answers with.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<ListingError> for ApiError {
    fn from(e: ListingError) -> Self {
        let (status, code) = match &e {
            ListingError::Invalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidListing),
            ListingError::BadId(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadId),
            ListingError::BadQuery(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadQuery),
            ListingError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            ListingError::NotYours(_) => (StatusCode::FORBIDDEN, ErrorCode::NotYours),
            ListingError::Retracted(_) => (StatusCode::CONFLICT, ErrorCode::Retracted),
            ListingError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Store),
            ListingError::Search(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Search),
            ListingError::OverCap(_) | ListingError::TooSoon { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, ErrorCode::Refused)
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<AlertError> for ApiError {
    fn from(e: AlertError) -> Self {
        let (status, code) = match &e {
            AlertError::BadQuery(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadQuery),
            AlertError::TooMany(_) => (StatusCode::CONFLICT, ErrorCode::Refused),
            AlertError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            AlertError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Store),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<TradeError> for ApiError {
    fn from(e: TradeError) -> Self {
        let (status, code) = match &e {
            TradeError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            TradeError::Invalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidTrade),
            TradeError::Transition(_) => (StatusCode::CONFLICT, ErrorCode::InvalidTransition),
            TradeError::Refused(_) => (StatusCode::CONFLICT, ErrorCode::Refused),
            TradeError::Offense(_) => (StatusCode::BAD_REQUEST, ErrorCode::Offense),
            TradeError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Store),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        let (status, code) = match &e {
            ChatError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            ChatError::BadId(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadId),
            ChatError::Invalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidMessage),
            ChatError::Refused(_) | ChatError::Blocked(_) => {
                (StatusCode::CONFLICT, ErrorCode::Refused)
            }
            ChatError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Busy),
            ChatError::Offense(_) => (StatusCode::BAD_REQUEST, ErrorCode::Offense),
            ChatError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Store),
            ChatError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<ReputationError> for ApiError {
    fn from(e: ReputationError) -> Self {
        let (status, code) = match &e {
            ReputationError::Invalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::Invalid),
            ReputationError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            ReputationError::Refused(_) => (StatusCode::CONFLICT, ErrorCode::Refused),
            ReputationError::Trade(t) => {
                return ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Store,
                    t.to_string(),
                );
            }
            ReputationError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Store),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<ModerationError> for ApiError {
    fn from(e: ModerationError) -> Self {
        let (status, code) = match &e {
            ModerationError::Invalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::Invalid),
            ModerationError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            ModerationError::Refused(_) => (StatusCode::CONFLICT, ErrorCode::Refused),
            ModerationError::Limit(_) => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::ReportLimit),
            ModerationError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Store),
            ModerationError::Search(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Search),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<BlobServiceError> for ApiError {
    fn from(e: BlobServiceError) -> Self {
        let (status, code) = match &e {
            BlobServiceError::BadId(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadId),
            BlobServiceError::Invalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidBlob),
            BlobServiceError::NotFound { .. } => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            BlobServiceError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Store),
            BlobServiceError::Network(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Network),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<ThumbError> for ApiError {
    fn from(e: ThumbError) -> Self {
        let e = match e {
            ThumbError::Blob(b) => return b.into(),
            e => e,
        };
        let (status, code) = match &e {
            ThumbError::BadSize(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadQuery),
            ThumbError::Unsupported(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedImage,
            ),
            ThumbError::Undecodable(_) | ThumbError::TooLarge(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidImage)
            }
            ThumbError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Store),
            ThumbError::Internal(_) | ThumbError::Blob(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal)
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<crate::error::StoreError> for ApiError {
    fn from(e: crate::error::StoreError) -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Store,
            e.to_string(),
        )
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::internal(e.to_string())
    }
}

impl From<crate::error::NodeError> for ApiError {
    fn from(e: crate::error::NodeError) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Network,
            e.to_string(),
        )
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        let (status, code) = match &e {
            JsonRejection::MissingJsonContentType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
            ),
            JsonRejection::BytesRejection(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge)
            }
            _ => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
        };
        ApiError::new(status, code, e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadQuery, e.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadId, e.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            e.body_text(),
        )
    }
}

/// A JSON body whose rejection is an [`ApiError`].
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(v) = Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(v))
    }
}

/// A query string whose rejection is an [`ApiError`].
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(v) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(v))
    }
}

/// Path parameters whose rejection is an [`ApiError`].
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(v) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(ApiPath(v))
    }
}
