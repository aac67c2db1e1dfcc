//! Real `jangteo node` processes on loopback (or each in a network namespace,
//! [`crate::netns`]): each with its own data directory (in one temporary folder) and
//! OS-chosen ports, bootstrapped into one network, driven through its local HTTP API
//! (address and token read from the data directory, as the CLI does).
//!
//! Every process is killed and reaped when its [`ProcNode`] is dropped, so a scenario that
//! fails or panics leaves no node behind. This module starts and stops processes and talks
//! HTTP; it measures nothing itself.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use jangteo_node::api::types::{
    ApiAddrFile, ErrorBody, IdView, ListingView, NewListing, NewOffer, PeerView, SearchQuery,
    StatusView, TradeAction, TradeActionName, TradeSummary, TradeView,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::netns::{Netem, Netns};

/// Set by `jangteo-testnet --netns`: every [`ProcNet::new`] then puts its nodes in network
/// namespaces with this delay and loss.
static DEFAULT_NETNS: OnceLock<Netem> = OnceLock::new();

/// The settings of [`use_netns_by_default`], if it was called.
pub fn default_netns() -> Option<Netem> {
    DEFAULT_NETNS.get().copied()
}

/// Makes every [`ProcNet`] created from now on in this process use network namespaces
/// ([`crate::netns`]); fails unless this machine can (root, iproute2).
pub fn use_netns_by_default(netem: Netem) -> Result<()> {
    crate::netns::available().map_err(|e| {
        anyhow::anyhow!("--netns needs root and iproute2 (`ip netns add` failed): {e}")
    })?;
    let _ = DEFAULT_NETNS.set(netem);
    Ok(())
}

/// How long a node process may take to answer its API after start.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Timeout of one API request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The `jangteo` binary: `$JANGTEO_BIN`, else next to the running executable (or one folder
/// up, for test executables in `target/*/deps`).
pub fn jangteo_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("JANGTEO_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating the running executable")?;
    let mut dir = exe.parent();
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let candidate = d.join(format!("jangteo{}", std::env::consts::EXE_SUFFIX));
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent();
    }
    bail!(
        "no `jangteo` binary next to {}; build it first with `cargo build --release -p jangteo-cli` \
         (same profile as the testnet), or set JANGTEO_BIN",
        exe.display()
    )
}

/// A client of one node's local API, speaking the contract's types
/// ([`jangteo_node::api::types`]).
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// An error answer as one line: the contract's `{"error": {"code", "message"}}` when the body
/// is one, else the body as text.
fn error_line(body: &str) -> String {
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(e) => format!("{}: {}", e.error.code.as_str(), e.error.message),
        Err(_) => body.chars().take(500).collect(),
    }
}

impl Api {
    /// Reads `api.json` and `api.token` of `dir`; `None` until the process with `pid` wrote
    /// them (a killed node leaves its old `api.json` behind).
    fn open(dir: &Path, pid: u32, http: &reqwest::Client) -> Option<Self> {
        let raw = std::fs::read_to_string(dir.join(jangteo_node::API_ADDR_FILE)).ok()?;
        let file: ApiAddrFile = serde_json::from_str(&raw).ok()?;
        if file.pid != pid {
            return None;
        }
        let token = std::fs::read_to_string(dir.join(jangteo_node::API_TOKEN_FILE)).ok()?;
        Some(Self {
            base: format!("http://{}", file.addr),
            token: token.trim().to_owned(),
            http: http.clone(),
        })
    }

    /// Sends `req` and decodes a 2xx answer as `T`; `None` when the node answers 404.
    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<Option<T>> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| what.to_owned())?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            bail!("{what}: {status}: {}", error_line(&body));
        }
        let v = resp
            .json::<T>()
            .await
            .with_context(|| format!("{what}: the answer is not the contract's shape"))?;
        Ok(Some(v))
    }

    /// GET `path` decoded as `T`; `None` when the node answers 404.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req, &format!("GET {path}")).await
    }

    /// POST `body` as JSON to `path`, the answer decoded as `T`; fails unless the node
    /// answers 2xx.
    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let what = format!("POST {path}");
        let req = self.http.post(format!("{}{path}", self.base)).json(body);
        self.send(req, &what)
            .await?
            .with_context(|| format!("{what}: 404"))
    }

    /// POST raw `bytes` (`application/octet-stream`) to `path`, the answer decoded as `T`;
    /// fails unless the node answers 2xx.
    pub async fn post_bytes<T: DeserializeOwned>(&self, path: &str, bytes: &[u8]) -> Result<T> {
        let what = format!("POST {path}");
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes.to_vec());
        self.send(req, &what)
            .await?
            .with_context(|| format!("{what}: 404"))
    }

    /// `http://ADDR` of the node's API and web page.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The API token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The HTTP client (no proxy, [`REQUEST_TIMEOUT`] per request).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// GET `path`, with 404 an error too.
    async fn get_found<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.get(path)
            .await?
            .with_context(|| format!("the node has no {path}"))
    }

    /// `GET /v1/id`.
    pub async fn id(&self) -> Result<IdView> {
        self.get_found("/v1/id").await
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<StatusView> {
        self.get_found("/v1/status").await
    }

    /// `GET /v1/peers`.
    pub async fn peers(&self) -> Result<Vec<PeerView>> {
        self.get_found("/v1/peers").await
    }

    /// `GET /v1/listings/{id}`; `None` while the node does not hold it.
    pub async fn listing(&self, id: &str) -> Result<Option<ListingView>> {
        self.get(&format!("/v1/listings/{id}")).await
    }

    /// Whether the node holds listing `id`.
    pub async fn has_listing(&self, id: &str) -> Result<bool> {
        Ok(self.listing(id).await?.is_some())
    }

    /// `GET /v1/listings?…`.
    pub async fn search(&self, q: &SearchQuery) -> Result<Vec<ListingView>> {
        let req = self.http.get(format!("{}/v1/listings", self.base)).query(q);
        self.send(req, "GET /v1/listings")
            .await?
            .context("the node has no /v1/listings")
    }

    /// Posts a listing in KRW; returns its id.
    pub async fn post_listing(&self, title: &str, price: u64, quantity: u64) -> Result<String> {
        let new = NewListing {
            title: title.to_owned(),
            price,
            currency: "KRW".into(),
            quantity: Some(quantity),
            ..NewListing::default()
        };
        let v: ListingView = self.post("/v1/listings", &new).await?;
        Ok(v.id)
    }

    /// `GET /v1/trades`.
    pub async fn trades(&self) -> Result<Vec<TradeSummary>> {
        self.get_found("/v1/trades").await
    }

    /// `GET /v1/trades/{id}`; `None` while the node does not hold it.
    pub async fn trade(&self, id: &str) -> Result<Option<TradeView>> {
        self.get(&format!("/v1/trades/{id}")).await
    }

    /// `POST /v1/trades`: make an offer.
    pub async fn offer(&self, offer: &NewOffer) -> Result<TradeView> {
        self.post("/v1/trades", offer).await
    }

    /// `POST /v1/trades/{id}/{action}`.
    pub async fn act(
        &self,
        id: &str,
        action: TradeActionName,
        body: &TradeAction,
    ) -> Result<TradeView> {
        self.post(&format!("/v1/trades/{id}/{}", action.as_str()), body)
            .await
    }
}

/// One node process and its data directory.
#[derive(Debug)]
pub struct ProcNode {
    /// Data directory.
    pub dir: PathBuf,
    /// Base58 peer id (stable across restarts: the key is in the data directory).
    pub peer_id: String,
    /// Its TCP multiaddr (loopback or its namespace's address) with `/p2p/`, as of the last
    /// start.
    pub addr: String,
    child: Option<Child>,
    api: Option<Api>,
}

impl ProcNode {
    /// The API client; fails when the node is down.
    pub fn api(&self) -> Result<&Api> {
        self.api
            .as_ref()
            .with_context(|| format!("node {} is not running", self.dir.display()))
    }

    /// Whether the process runs.
    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    /// Process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory of the process, from /proc.
    pub fn rss_bytes(&self) -> Option<u64> {
        proc_status_kb(self.pid()?, "VmRSS:").map(|kb| kb * 1024)
    }

    /// `kill -9`: the process gets no chance to clean up.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill().context("kill -9")?;
            c.wait().context("reaping a killed node")?;
        }
        self.api = None;
        Ok(())
    }

    /// SIGTERM, then wait for the exit (kill -9 after [`STOP_TIMEOUT`]).
    pub async fn stop(&mut self) -> Result<()> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        self.api = None;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .stdin(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if c.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                c.kill()?;
                c.wait()?;
                bail!("node {} ignored SIGTERM; killed", self.dir.display());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ProcNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A field in kB of /proc/PID/status.
pub fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// N node processes in one temporary folder.
#[derive(Debug)]
pub struct ProcNet {
    /// The nodes, in start order (a stopped node keeps its place). Declared first: dropped
    /// (killed) before the namespaces are deleted.
    pub nodes: Vec<ProcNode>,
    bin: PathBuf,
    http: reqwest::Client,
    root: tempfile::TempDir,
    netns: Option<Netns>,
    /// Nodes started behind their own NAT router ([`Self::add_behind_nat`]).
    behind_nat: std::collections::HashSet<usize>,
    /// Environment variables set on every node process started from now on.
    env: Vec<(String, String)>,
}

impl ProcNet {
    /// No nodes yet; processes will run `bin`, in network namespaces if
    /// [`use_netns_by_default`] was called.
    pub fn new(bin: PathBuf) -> Result<Self> {
        Self::with_netns(bin, DEFAULT_NETNS.get().copied())
    }

    /// No nodes yet; with `Some`, each node runs in its own network namespace with this
    /// delay and loss ([`crate::netns`]).
    pub fn with_netns(bin: PathBuf, netem: Option<Netem>) -> Result<Self> {
        let netns = netem.map(Netns::new).transpose()?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .no_proxy()
            .pool_max_idle_per_host(8)
            .build()?;
        Ok(Self {
            nodes: Vec::new(),
            bin,
            http,
            root: tempfile::Builder::new()
                .prefix("jangteo-testnet")
                .tempdir()?,
            netns,
            behind_nat: Default::default(),
            env: Vec::new(),
        })
    }

    /// Sets `key` to `value` in the environment of every node process started from now on
    /// (such as `JANGTEO_LOG`).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// The log file (the process's stderr) of node `i`.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.nodes[i].dir.with_extension("log")
    }

    /// Starts `n` nodes, each dialing node 0 (kad finds the rest), and waits until each
    /// has a gossip peer.
    pub async fn start(bin: PathBuf, n: usize) -> Result<Self> {
        Self::new(bin)?.start_nodes(n).await
    }

    /// [`Self::start`] with the nodes in network namespaces (`Some`) or not.
    pub async fn start_with_netns(bin: PathBuf, n: usize, netem: Option<Netem>) -> Result<Self> {
        Self::with_netns(bin, netem)?.start_nodes(n).await
    }

    /// The namespace settings, when the nodes run in namespaces.
    pub fn netem(&self) -> Option<Netem> {
        self.netns.as_ref().map(Netns::netem)
    }

    /// The network namespace of node `i`, when the nodes run in namespaces.
    pub fn netns_name(&self, i: usize) -> Option<&str> {
        self.netns.as_ref()?.name(i)
    }

    async fn start_nodes(mut self, n: usize) -> Result<Self> {
        let net = &mut self;
        for i in 0..n {
            let boot = if i == 0 {
                vec![]
            } else {
                vec![net.nodes[0].addr.clone()]
            };
            net.add(&boot).await?;
        }
        if n > 1 {
            for i in 0..n {
                net.wait_gossip(i, 1).await?;
            }
        }
        Ok(self)
    }

    /// The folder holding every data directory.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Starts one more node dialing `bootstrap`, with `extra` arguments to `jangteo node`
    /// (`--relay`, `--no-listen`, ...); returns its index.
    pub async fn add_with(&mut self, bootstrap: &[String], extra: &[&str]) -> Result<usize> {
        let dir = self.next_dir();
        self.add_at(dir, bootstrap, extra).await
    }

    /// Starts one more node in its own namespace behind its own NAT router
    /// ([`Netns::home`]), dialing `bootstrap`, with `extra` arguments to `jangteo node`;
    /// returns its index. Needs a network made with namespaces.
    pub async fn add_behind_nat(&mut self, bootstrap: &[String], extra: &[&str]) -> Result<usize> {
        if self.netns.is_none() {
            bail!("a node behind NAT needs a network with namespaces (--nat)");
        }
        self.behind_nat.insert(self.nodes.len());
        self.add_with(bootstrap, extra).await
    }

    /// Starts one more node on the data directory `dir` (kept when the network is
    /// dropped: a prepared market reused across runs), dialing `bootstrap`, with `extra`
    /// arguments; returns its index.
    pub async fn add_at(
        &mut self,
        dir: PathBuf,
        bootstrap: &[String],
        extra: &[&str],
    ) -> Result<usize> {
        let i = self.nodes.len();
        self.nodes.push(ProcNode {
            dir,
            peer_id: String::new(),
            addr: String::new(),
            child: None,
            api: None,
        });
        self.launch(i, bootstrap, extra).await?;
        Ok(i)
    }

    /// The data directory of the next node added, in this network's folder.
    fn next_dir(&self) -> PathBuf {
        self.root
            .path()
            .join(format!("node{:02}", self.nodes.len()))
    }

    /// The router namespace of node `i` when it runs behind NAT.
    pub fn router_name(&self, i: usize) -> Option<String> {
        self.netns.as_ref()?.router_name(i)
    }

    /// Starts one more node dialing `bootstrap`; returns its index.
    pub async fn add(&mut self, bootstrap: &[String]) -> Result<usize> {
        self.add_with(bootstrap, &[]).await
    }

    /// Starts the process of node `i` (on its data directory) and waits for its API.
    pub async fn launch(&mut self, i: usize, bootstrap: &[String], extra: &[&str]) -> Result<()> {
        let node = &mut self.nodes[i];
        if node.child.is_some() {
            bail!("node {i} is already running");
        }
        std::fs::create_dir_all(&node.dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.with_extension("log"))?;
        let (mut cmd, ip) = match self.netns.as_mut() {
            Some(ns) => {
                let (name, ip) = if self.behind_nat.contains(&i) {
                    ns.home(i)?
                } else {
                    ns.node(i)?
                };
                // `ip netns exec` execs the program: the child's pid is the node's.
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", &name]).arg(&self.bin);
                (cmd, ip)
            }
            None => (Command::new(&self.bin), std::net::Ipv4Addr::LOCALHOST),
        };
        let prefix = format!("/ip4/{ip}/tcp/");
        // A node started with `--no-listen` is reachable only through relays (like one
        // behind NAT): it has no address of its own to wait for.
        let listens = !extra.contains(&"--no-listen");
        cmd.arg("--data-dir").arg(&node.dir).arg("node");
        if listens {
            cmd.args(["--listen", &format!("{prefix}0")]);
        }
        cmd.args(["--no-mdns"])
            .args(["--api", &format!("{ip}:0")])
            .args(extra);
        // The test network's stamp difficulty (SPEC §3.1), unless the caller sets one.
        if !extra.contains(&"--listing-stamp-bits") {
            cmd.args([
                "--listing-stamp-bits",
                &jangteo_node::TEST_NETWORK_STAMP_BITS.to_string(),
            ]);
        }
        for b in bootstrap {
            cmd.args(["--bootstrap", b]);
        }
        let child = cmd
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        let pid = child.id();
        node.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(c) = node.child.as_mut()
                && let Some(code) = c.try_wait()?
            {
                node.child = None;
                let log =
                    std::fs::read_to_string(node.dir.with_extension("log")).unwrap_or_default();
                let tail: String = log.lines().rev().take(10).collect::<Vec<_>>().join("\n");
                bail!("node {i} exited at start ({code}); log tail:\n{tail}");
            }
            if node.api.is_none() {
                node.api = Api::open(&node.dir, pid, &self.http);
            }
            if let Some(api) = &node.api
                && let Ok(id) = api.id().await
                && let Some(addr) = id
                    .addrs
                    .iter()
                    .find(|s| s.starts_with(&prefix))
                    .cloned()
                    .or_else(|| (!listens).then(String::new))
            {
                node.addr = addr;
                node.peer_id = id.peer_id;
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("node {i} did not serve its API within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until node `i` has at least `min` peers on the listings topic.
    pub async fn wait_gossip(&self, i: usize, min: u64) -> Result<()> {
        let api = self.nodes[i].api()?;
        crate::wait_for(
            Duration::from_secs(30),
            &format!("node {i} to have {min} gossip peer(s)"),
            || async { (api.status().await.ok()?.gossip_peers >= min).then_some(()) },
        )
        .await
    }

    /// Listen addresses (loopback, or the namespace's) of the running nodes among `which`.
    pub fn addrs(&self, which: impl IntoIterator<Item = usize>) -> Vec<String> {
        which
            .into_iter()
            .filter(|&i| self.nodes[i].is_up())
            .map(|i| self.nodes[i].addr.clone())
            .collect()
    }

    /// Indexes of the running nodes.
    pub fn up(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_up())
            .collect()
    }

    /// Stops every node with SIGTERM, waiting for each.
    pub async fn shutdown(mut self) -> Result<()> {
        let mut first_err = None;
        for n in &mut self.nodes {
            if let Err(e) = n.stop().await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
