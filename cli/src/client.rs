//! The CLI's typed client of a running node's local API: finds the address and token in the
//! data directory, sends one request per call with the contract's types
//! ([`jangteo_node::api::types`]), and turns every failure into a [`CliError`] with the
//! right exit code and a message that says what to do.

use std::path::Path;
use std::time::Duration;

use jangteo_node::api::types::{
    ApiAddrFile, BlobView, BlockChange, BlockedView, ErrorBody, EventView, IdView, ImportReport,
    ListingUpdate, ListingView, MarkRead, MarkedRead, MessageSent, ModeratorChange, NewChatMessage,
    NewListing, NewOffer, NewQuestion, NewRating, NewReport, NewSavedSearch, NotificationList,
    NotificationsQuery, ObjectsQuery, PeerView, RatingView, ReportMade, ReportView, ReportsQuery,
    ReputationView, SavedSearchView, SearchQuery, StatusView, ThreadSummary, ThreadView,
    TradeAction, TradeActionName, TradeSummary, TradeView, TrustChange, UiLoginCode,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A failure the CLI reports: exit code, stable code, message.
#[derive(Debug)]
pub struct CliError {
    /// Process exit code (1 refused or not found, 2 usage or unreachable).
    pub exit: u8,
    /// Stable machine-readable code.
    pub code: String,
    /// One line for people.
    pub message: String,
    /// The command already printed its JSON answer (which tells what failed): print no
    /// error JSON after it.
    pub answered: bool,
}

impl CliError {
    fn new(exit: u8, code: &str, message: String) -> Self {
        Self {
            exit,
            code: code.into(),
            message,
            answered: false,
        }
    }

    /// Refused, from any error.
    pub fn refused(e: impl std::fmt::Display) -> Self {
        Self::new(1, "refused", e.to_string())
    }

    /// Refused with a code.
    pub fn refused_msg(code: &str, message: String) -> Self {
        Self::new(1, code, message)
    }

    /// A usage error.
    pub fn usage(message: String) -> Self {
        Self::new(2, "usage", message)
    }

    /// Exit 1 after the answer was printed (it says what was refused).
    pub fn after_answer(code: &str, message: String) -> Self {
        Self {
            answered: true,
            ..Self::new(1, code, message)
        }
    }

    fn unreachable(dir: &Path, why: &str) -> Self {
        Self::new(
            2,
            "node_unreachable",
            format!(
                "no running node found for data directory {} ({why}); start one with `jangteo --data-dir {} node`",
                dir.display(),
                dir.display()
            ),
        )
    }

    /// The node could not be reached, or stopped answering (exit 2).
    pub fn transport(message: String) -> Self {
        Self::new(2, "node_unreachable", message)
    }
}

/// Percent-encodes a user-given id for use as one path segment.
pub fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A client bound to one node.
#[derive(Debug)]
pub struct ApiClient {
    base: String,
    token: String,
    dir: std::path::PathBuf,
    http: reqwest::Client,
}

/// No body.
const NO_BODY: Option<&()> = None;

impl ApiClient {
    /// Finds the node of `dir`.
    pub fn open(dir: &Path) -> Result<Self, CliError> {
        let addr_file = dir.join(jangteo_node::API_ADDR_FILE);
        let raw = std::fs::read_to_string(&addr_file)
            .map_err(|_| CliError::unreachable(dir, "no api.json"))?;
        let addr: ApiAddrFile = serde_json::from_str(&raw)
            .map_err(|_| CliError::unreachable(dir, "api.json unreadable"))?;
        let token = std::fs::read_to_string(dir.join(jangteo_node::API_TOKEN_FILE))
            .map_err(|_| CliError::unreachable(dir, "no api.token"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .no_proxy()
            .build()
            .map_err(|e| CliError::usage(format!("HTTP client: {e}")))?;
        Ok(Self {
            base: format!("http://{}", addr.addr),
            token: token.trim().to_owned(),
            dir: dir.to_owned(),
            http,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &impl Serialize,
    ) -> Result<T, CliError> {
        let req = self.http.get(self.url(path)).query(query);
        self.finish(req).await
    }

    async fn send_json<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, CliError> {
        let mut req = self.http.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(b);
        }
        self.finish(req).await
    }

    /// `GET /v1/id`.
    pub async fn id(&self) -> Result<IdView, CliError> {
        self.get_json("/v1/id", &()).await
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<StatusView, CliError> {
        self.get_json("/v1/status", &()).await
    }

    /// `POST /v1/ui/login-code`.
    pub async fn ui_login_code(&self) -> Result<UiLoginCode, CliError> {
        self.send_json(reqwest::Method::POST, "/v1/ui/login-code", NO_BODY)
            .await
    }

    /// The address of the node's web page at `path`.
    pub fn page_url(&self, path: &str) -> String {
        self.url(path)
    }

    /// `GET /v1/peers`.
    pub async fn peers(&self) -> Result<Vec<PeerView>, CliError> {
        self.get_json("/v1/peers", &()).await
    }

    /// `POST /v1/listings`.
    pub async fn post_listing(&self, l: &NewListing) -> Result<ListingView, CliError> {
        self.send_json(reqwest::Method::POST, "/v1/listings", Some(l))
            .await
    }

    /// `PATCH /v1/listings/{id}`.
    pub async fn update_listing(
        &self,
        id: &str,
        u: &ListingUpdate,
    ) -> Result<ListingView, CliError> {
        let path = format!("/v1/listings/{}", path_segment(id));
        self.send_json(reqwest::Method::PATCH, &path, Some(u)).await
    }

    /// `POST /v1/listings/{id}/retract`.
    pub async fn retract_listing(&self, id: &str) -> Result<ListingView, CliError> {
        let path = format!("/v1/listings/{}/retract", path_segment(id));
        self.send_json(reqwest::Method::POST, &path, NO_BODY).await
    }

    /// `GET /v1/listings/{id}`.
    pub async fn listing(&self, id: &str) -> Result<ListingView, CliError> {
        let path = format!("/v1/listings/{}", path_segment(id));
        self.get_json(&path, &()).await
    }

    /// `GET /v1/listings?…`.
    pub async fn search(&self, q: &SearchQuery) -> Result<Vec<ListingView>, CliError> {
        self.get_json("/v1/listings", q).await
    }

    /// `POST /v1/blobs`.
    pub async fn add_blob(&self, bytes: Vec<u8>) -> Result<BlobView, CliError> {
        let req = self
            .http
            .post(self.url("/v1/blobs"))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes);
        self.finish(req).await
    }

    /// `GET /v1/blobs/{id}`.
    pub async fn blob(&self, id: &str) -> Result<Vec<u8>, CliError> {
        let path = format!("/v1/blobs/{}", path_segment(id));
        let (bytes, _) = self.get_bytes(&path, &()).await?;
        Ok(bytes)
    }

    /// `POST /v1/trades`.
    pub async fn make_offer(&self, o: &NewOffer) -> Result<TradeView, CliError> {
        self.send_json(reqwest::Method::POST, "/v1/trades", Some(o))
            .await
    }

    /// `GET /v1/trades`.
    pub async fn trades(&self) -> Result<Vec<TradeSummary>, CliError> {
        self.get_json("/v1/trades", &()).await
    }

    /// `GET /v1/trades/{id}`.
    pub async fn trade(&self, id: &str) -> Result<TradeView, CliError> {
        self.get_json(&format!("/v1/trades/{}", path_segment(id)), &())
            .await
    }

    /// `POST /v1/trades/{id}/{action}`.
    pub async fn trade_action(
        &self,
        id: &str,
        action: TradeActionName,
        a: &TradeAction,
    ) -> Result<TradeView, CliError> {
        let path = format!("/v1/trades/{}/{}", path_segment(id), action.as_str());
        self.send_json(reqwest::Method::POST, &path, Some(a)).await
    }

    /// `POST /v1/conversations`.
    pub async fn ask(&self, q: &NewQuestion) -> Result<MessageSent, CliError> {
        self.send_json(reqwest::Method::POST, "/v1/conversations", Some(q))
            .await
    }

    /// `GET /v1/conversations`.
    pub async fn inbox(&self) -> Result<Vec<ThreadSummary>, CliError> {
        self.get_json("/v1/conversations", &()).await
    }

    /// `POST /v1/conversations/{thread}/read`.
    pub async fn read_thread(&self, thread: &str) -> Result<ThreadView, CliError> {
        let path = format!("/v1/conversations/{}/read", path_segment(thread));
        self.send_json(reqwest::Method::POST, &path, NO_BODY).await
    }

    /// `POST /v1/conversations/{thread}/messages`.
    pub async fn say(&self, thread: &str, m: &NewChatMessage) -> Result<MessageSent, CliError> {
        let path = format!("/v1/conversations/{}/messages", path_segment(thread));
        self.send_json(reqwest::Method::POST, &path, Some(m)).await
    }

    /// `GET /v1/blocked`.
    pub async fn blocked(&self) -> Result<Vec<BlockedView>, CliError> {
        self.get_json("/v1/blocked", &()).await
    }

    /// `PUT /v1/blocked/{peer}` (block) or `DELETE` (unblock).
    pub async fn block(&self, peer: &str, block: bool) -> Result<BlockChange, CliError> {
        let path = format!("/v1/blocked/{}", path_segment(peer));
        let method = if block {
            reqwest::Method::PUT
        } else {
            reqwest::Method::DELETE
        };
        self.send_json(method, &path, NO_BODY).await
    }

    /// `POST /v1/attestations`.
    pub async fn rate(&self, r: &NewRating) -> Result<RatingView, CliError> {
        self.send_json(reqwest::Method::POST, "/v1/attestations", Some(r))
            .await
    }

    /// `POST /v1/reports`.
    pub async fn report(&self, r: &NewReport) -> Result<ReportMade, CliError> {
        self.send_json(reqwest::Method::POST, "/v1/reports", Some(r))
            .await
    }

    /// `GET /v1/reports?by=…|about=…`.
    pub async fn reports(&self, q: &ReportsQuery) -> Result<Vec<ReportView>, CliError> {
        self.get_json("/v1/reports", q).await
    }

    /// `GET /v1/moderators`.
    pub async fn moderators(&self) -> Result<Vec<String>, CliError> {
        self.get_json("/v1/moderators", &()).await
    }

    /// `PUT /v1/moderators/{peer}` (`on`) or `DELETE`.
    pub async fn set_moderator(&self, peer: &str, on: bool) -> Result<ModeratorChange, CliError> {
        let path = format!("/v1/moderators/{}", path_segment(peer));
        let method = if on {
            reqwest::Method::PUT
        } else {
            reqwest::Method::DELETE
        };
        self.send_json(method, &path, NO_BODY).await
    }

    /// `GET /v1/reputation/{peer}`.
    pub async fn reputation(&self, peer: &str) -> Result<ReputationView, CliError> {
        self.get_json(&format!("/v1/reputation/{}", path_segment(peer)), &())
            .await
    }

    /// `PUT /v1/trust/{peer}`.
    pub async fn trust(&self, peer: &str) -> Result<TrustChange, CliError> {
        let path = format!("/v1/trust/{}", path_segment(peer));
        self.send_json(reqwest::Method::PUT, &path, NO_BODY).await
    }

    /// `DELETE /v1/trust/{peer}`.
    pub async fn distrust(&self, peer: &str) -> Result<TrustChange, CliError> {
        let path = format!("/v1/trust/{}", path_segment(peer));
        self.send_json(reqwest::Method::DELETE, &path, NO_BODY)
            .await
    }

    /// `GET /v1/objects?…`: one page of objects as a CBOR sequence, and the `after` of the
    /// next page when more may follow.
    pub async fn objects_page(
        &self,
        q: &ObjectsQuery,
    ) -> Result<(Vec<u8>, Option<String>), CliError> {
        self.get_bytes("/v1/objects", q).await
    }

    /// `POST /v1/objects`: import a CBOR sequence.
    pub async fn import_objects(&self, seq: Vec<u8>) -> Result<ImportReport, CliError> {
        let req = self
            .http
            .post(self.url("/v1/objects"))
            .header(
                reqwest::header::CONTENT_TYPE,
                jangteo_node::api::objects::CBOR_SEQ,
            )
            .body(seq);
        self.finish(req).await
    }

    /// `GET /v1/notifications`.
    pub async fn notifications(
        &self,
        q: &NotificationsQuery,
    ) -> Result<NotificationList, CliError> {
        self.get_json("/v1/notifications", q).await
    }

    /// `POST /v1/notifications/read`.
    pub async fn mark_read(&self, m: &MarkRead) -> Result<MarkedRead, CliError> {
        self.send_json(reqwest::Method::POST, "/v1/notifications/read", Some(m))
            .await
    }

    /// `GET /v1/alerts`.
    pub async fn alerts(&self) -> Result<Vec<SavedSearchView>, CliError> {
        self.get_json("/v1/alerts", &()).await
    }

    /// `POST /v1/alerts`.
    pub async fn add_alert(&self, n: &NewSavedSearch) -> Result<SavedSearchView, CliError> {
        self.send_json(reqwest::Method::POST, "/v1/alerts", Some(n))
            .await
    }

    /// `DELETE /v1/alerts/{id}`.
    pub async fn remove_alert(&self, id: &str) -> Result<SavedSearchView, CliError> {
        let path = format!("/v1/alerts/{}", path_segment(id));
        self.send_json(reqwest::Method::DELETE, &path, NO_BODY)
            .await
    }

    /// `GET /v1/events?kinds=…`, kept open: the events as they come, until the node ends the
    /// stream (None) or `f` returns false. No overall timeout: it runs as long as the node
    /// sends (a keep-alive every 15 s).
    pub async fn events(
        &self,
        kinds: &str,
        mut f: impl FnMut(EventView) -> bool,
    ) -> Result<(), CliError> {
        /// Longest event frame read (an event is well under a kilobyte).
        const FRAME_MAX: usize = 1 << 20;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .map_err(|e| CliError::usage(format!("HTTP client: {e}")))?;
        let req = http
            .get(self.url("/v1/events"))
            .query(&[("kinds", kinds)])
            .header(reqwest::header::ACCEPT, "text/event-stream");
        let mut resp = self.send_req(req).await?;
        if !resp.status().is_success() {
            return Err(Self::error(resp).await);
        }
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let chunk = resp
                .chunk()
                .await
                .map_err(|e| CliError::transport(format!("reading the event stream: {e}")))?;
            let Some(chunk) = chunk else {
                return Ok(());
            };
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = pending.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&frame).into_owned();
                let json: String = text
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect::<Vec<&str>>()
                    .join("\n");
                if json.is_empty() {
                    continue;
                }
                match serde_json::from_str::<EventView>(&json) {
                    Ok(ev) => {
                        if !f(ev) {
                            return Ok(());
                        }
                    }
                    Err(e) => eprintln!("jangteo: an event this jangteo does not know: {e}"),
                }
            }
            if pending.len() > FRAME_MAX {
                return Err(CliError::transport(format!(
                    "an event of the stream is over {FRAME_MAX} bytes; is the address a jangteo node?"
                )));
            }
        }
    }

    /// Downloads raw bytes (errors come as JSON), with the next-page header if any.
    async fn get_bytes(
        &self,
        path: &str,
        query: &impl Serialize,
    ) -> Result<(Vec<u8>, Option<String>), CliError> {
        let req = self.http.get(self.url(path)).query(query);
        let resp = self.send_req(req).await?;
        if !resp.status().is_success() {
            return Err(Self::error(resp).await);
        }
        let next = resp
            .headers()
            .get(jangteo_node::api::objects::NEXT_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| CliError::transport(format!("reading the node's answer: {e}")))?;
        Ok((bytes.to_vec(), next))
    }

    async fn send_req(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, CliError> {
        req.bearer_auth(&self.token).send().await.map_err(|e| {
            if e.is_connect() {
                CliError::unreachable(&self.dir, "connection refused")
            } else {
                CliError::transport(format!("talking to the node: {e}"))
            }
        })
    }

    async fn error(resp: reqwest::Response) -> CliError {
        let status = resp.status();
        let (code, message) = match resp.json::<ErrorBody>().await {
            Ok(b) => (b.error.code.as_str().to_owned(), b.error.message),
            Err(_) => ("error".to_owned(), format!("node answered {status}")),
        };
        let exit = if status == reqwest::StatusCode::UNAUTHORIZED
            || status.is_server_error() && code == "network"
        {
            2
        } else {
            1
        };
        CliError::new(exit, &code, message)
    }

    async fn finish<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, CliError> {
        let resp = self.send_req(req).await?;
        if !resp.status().is_success() {
            return Err(Self::error(resp).await);
        }
        resp.json::<T>().await.map_err(|e| {
            CliError::transport(format!(
                "the node's answer is not what this jangteo expects (is it another version?): {e}"
            ))
        })
    }
}
