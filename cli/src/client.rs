//! The CLI's client of a running node's local API: finds the address and token in the data
//! directory, sends one request, and turns every failure into a [`CliError`] with the right
//! exit code and a message that says what to do.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// A failure the CLI reports: exit code, stable code, message.
#[derive(Debug)]
pub struct CliError {
    /// Process exit code (1 refused or not found, 2 usage or unreachable).
    pub exit: u8,
    /// Stable machine-readable code.
    pub code: String,
    /// One line for people.
    pub message: String,
}

impl CliError {
    /// Refused, from any error.
    pub fn refused(e: impl std::fmt::Display) -> Self {
        Self {
            exit: 1,
            code: "refused".into(),
            message: e.to_string(),
        }
    }

    /// Refused with a code.
    pub fn refused_msg(code: &str, message: String) -> Self {
        Self {
            exit: 1,
            code: code.into(),
            message,
        }
    }

    /// A usage error.
    pub fn usage(message: String) -> Self {
        Self {
            exit: 2,
            code: "usage".into(),
            message,
        }
    }

    fn unreachable(dir: &Path, why: &str) -> Self {
        Self {
            exit: 2,
            code: "node_unreachable".into(),
            message: format!(
                "no running node found for data directory {} ({why}); start one with `jangteo --data-dir {} node`",
                dir.display(),
                dir.display()
            ),
        }
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

impl ApiClient {
    /// Finds the node of `dir`.
    pub fn open(dir: &Path) -> Result<Self, CliError> {
        let addr_file = dir.join(jangteo_node::API_ADDR_FILE);
        let raw = std::fs::read_to_string(&addr_file)
            .map_err(|_| CliError::unreachable(dir, "no api.json"))?;
        let v: Value = serde_json::from_str(&raw)
            .map_err(|_| CliError::unreachable(dir, "api.json unreadable"))?;
        let addr = v["addr"]
            .as_str()
            .ok_or_else(|| CliError::unreachable(dir, "api.json has no addr"))?;
        let token = std::fs::read_to_string(dir.join(jangteo_node::API_TOKEN_FILE))
            .map_err(|_| CliError::unreachable(dir, "no api.token"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .map_err(|e| CliError::usage(format!("HTTP client: {e}")))?;
        Ok(Self {
            base: format!("http://{addr}"),
            token: token.trim().to_owned(),
            dir: dir.to_owned(),
            http,
        })
    }

    /// GET with query parameters.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CliError> {
        let req = self.http.get(format!("{}{path}", self.base)).query(query);
        self.finish(req).await
    }

    /// A request with an optional JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(b);
        }
        self.finish(req).await
    }

    /// Uploads raw bytes; the answer is JSON.
    pub async fn post_bytes(&self, path: &str, bytes: Vec<u8>) -> Result<Value, CliError> {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes);
        self.finish(req).await
    }

    /// Downloads raw bytes (errors come as JSON).
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, CliError> {
        let req = self.http.get(format!("{}{path}", self.base));
        let resp = self.send_req(req).await?;
        if resp.status().is_success() {
            return resp
                .bytes()
                .await
                .map(|b| b.to_vec())
                .map_err(|e| CliError {
                    exit: 2,
                    code: "node_unreachable".into(),
                    message: format!("reading the node's answer: {e}"),
                });
        }
        Err(Self::error(resp).await)
    }

    async fn send_req(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, CliError> {
        req.bearer_auth(&self.token).send().await.map_err(|e| {
            if e.is_connect() {
                CliError::unreachable(&self.dir, "connection refused")
            } else {
                CliError {
                    exit: 2,
                    code: "node_unreachable".into(),
                    message: format!("talking to the node: {e}"),
                }
            }
        })
    }

    async fn error(resp: reqwest::Response) -> CliError {
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let code = body["error"]["code"].as_str().unwrap_or("error").to_owned();
        let message = body["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("node answered {status}"));
        let exit = if status == reqwest::StatusCode::UNAUTHORIZED
            || status.is_server_error() && code == "network"
        {
            2
        } else {
            1
        };
        CliError {
            exit,
            code,
            message,
        }
    }

    async fn finish(&self, req: reqwest::RequestBuilder) -> Result<Value, CliError> {
        let resp = self.send_req(req).await?;
        if !resp.status().is_success() {
            return Err(Self::error(resp).await);
        }
        Ok(resp.json().await.unwrap_or(Value::Null))
    }
}
