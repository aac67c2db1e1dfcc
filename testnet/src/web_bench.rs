//! `web-bench`: the web page of a real `jangteo node` process with a market in its store.
//!
//! The market is made as a user's node would get it: generated, signed listings (the
//! generator of [`crate::search_bench`]) written as a CBOR sequence and given to
//! `jangteo import`, which sends them through the node's API (`POST /v1/objects`: decode,
//! verify, validate, store, index). Some listings name a photo: a few distinct photo-like
//! JPEGs (1600 × 1200, gradients, shapes, texture and sensor-like noise) added first with
//! `POST /v1/blobs`. The node is caught up when its search indexer has reported every
//! imported listing (`GET /v1/events?kinds=indexed`) and its status counts them all.
//!
//! Then a browser's path: a one-time login code (`POST /v1/ui/login-code`, with the API
//! token), `GET /login?code=…` for the session cookie, and the pages with that cookie and
//! the `Host` the node is bound to. Each page is fetched `requests` times after a warm-up,
//! one request at a time over one keep-alive connection on loopback; the time is from
//! sending the request to the last byte of the answer, as the client sees it (on loopback
//! this is the server's time plus well under a millisecond). Page weight is the HTML, the
//! CSS and the script as served (the node does not compress), photos left out. Every
//! distinct thumbnail on those pages is fetched once (the node makes it: uncached) and
//! then again from the node's thumbnail cache. Last, the node's RSS: after the run, and
//! once more after it was started again on the same data folder and served every page.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use image::codecs::jpeg::JpegEncoder;
use image::{ImageEncoder, RgbImage};
use jangteo_node::ingest::now_ms;
use jangteo_protocol::blob::Manifest;
use jangteo_protocol::{Kind, SignedObject};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::percentile;
use crate::procs::{Api, ProcNet, proc_status_kb};
use crate::search_bench;

/// Issue 13's targets.
pub mod targets {
    /// p95 of a page's server time, ms.
    pub const P95_MS: f64 = 50.0;
    /// Page weight without photos (HTML + CSS + JS), bytes.
    pub const WEIGHT_BYTES: u64 = 150 * 1024;
    /// One thumbnail, bytes.
    pub const THUMB_BYTES: u64 = 30 * 1024;
}

/// Width of the generated photos.
pub const PHOTO_WIDTH: u32 = 1600;
/// Height of the generated photos.
pub const PHOTO_HEIGHT: u32 = 1200;
/// JPEG quality of the generated photos (a phone's is about 85–95).
pub const PHOTO_QUALITY: u8 = 88;
/// How long the import and the indexing of the market may take.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(1800);

/// What to measure.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listings in the store.
    pub listings: usize,
    /// Timed requests of each page.
    pub requests: usize,
    /// Untimed requests of each page before.
    pub warmup: usize,
    /// Distinct photos.
    pub photos: usize,
    /// One listing in this many names a photo (0: none does).
    pub photo_every: usize,
    /// Seed of the generator.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listings: 100_000,
            requests: 200,
            warmup: 10,
            photos: 8,
            photo_every: 3,
            seed: 1,
        }
    }
}

/// A photo-like JPEG: a sky-to-ground gradient, soft shapes, a fine texture and per-pixel
/// noise, so it compresses about as a phone photo does (not as a flat test card would).
pub fn photo(seed: u64, width: u32, height: u32) -> Result<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let top: [f32; 3] = [
        rng.gen_range(80.0..200.0),
        rng.gen_range(100.0..220.0),
        rng.gen_range(150.0..255.0),
    ];
    let bottom: [f32; 3] = [
        rng.gen_range(40.0..160.0),
        rng.gen_range(30.0..140.0),
        rng.gen_range(20.0..120.0),
    ];
    // Soft discs: (x, y, radius, colour).
    let discs: Vec<(f32, f32, f32, [f32; 3])> = (0..12)
        .map(|_| {
            (
                rng.gen_range(0.0..width as f32),
                rng.gen_range(0.0..height as f32),
                rng.gen_range(40.0..(width as f32 / 4.0)),
                [
                    rng.gen_range(0.0..255.0),
                    rng.gen_range(0.0..255.0),
                    rng.gen_range(0.0..255.0),
                ],
            )
        })
        .collect();
    let (fx, fy) = (rng.gen_range(0.02..0.08f32), rng.gen_range(0.02..0.08f32));
    let mut img = RgbImage::new(width, height);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let (xf, yf) = (x as f32, y as f32);
        let t = yf / height as f32;
        let mut c = [0f32; 3];
        for k in 0..3 {
            c[k] = top[k] * (1.0 - t) + bottom[k] * t;
        }
        for (dx, dy, r, col) in &discs {
            let d = ((xf - dx).powi(2) + (yf - dy).powi(2)).sqrt();
            if d < *r {
                let a = (1.0 - d / r).min(0.35 + 0.65 * (1.0 - d / r)) * 0.8;
                for k in 0..3 {
                    c[k] = c[k] * (1.0 - a) + col[k] * a;
                }
            }
        }
        let texture = 10.0 * (xf * fx).sin() * (yf * fy).cos() + 6.0 * ((xf + yf) * 0.31).sin();
        for v in &mut c {
            let noise: f32 = rng.gen_range(-7.0..7.0);
            *v = (*v + texture + noise).clamp(0.0, 255.0);
        }
        *px = image::Rgb([c[0] as u8, c[1] as u8, c[2] as u8]);
    }
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, PHOTO_QUALITY).write_image(
        img.as_raw(),
        width,
        height,
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(out)
}

/// The blob id of `data`, as the node computes it.
pub fn blob_id(data: &[u8]) -> Result<[u8; 32]> {
    Ok(Manifest::of(data)?.id().0)
}

/// `count` signed listings as one CBOR sequence (the format of `jangteo export` and
/// `jangteo import`); listing `i` names `photos[(i / photo_every) % photos.len()]` when
/// `i` is a multiple of `photo_every`.
pub fn market(count: usize, seed: u64, photos: &[[u8; 32]], photo_every: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let keys = search_bench::sellers(1000);
    let now = now_ms();
    let mut out = Vec::with_capacity(count * 400);
    for i in 0..count {
        let mut l = search_bench::generate(&mut rng, i, now);
        if photo_every > 0 && !photos.is_empty() && i % photo_every == 0 {
            l.images = vec![photos[(i / photo_every) % photos.len()]];
        }
        let obj = SignedObject::sign(Kind::Listing, l.encode(), &keys[i % keys.len()]);
        out.extend_from_slice(obj.bytes());
    }
    out
}

/// The pages timed: a name and the path with its query.
pub fn pages() -> Vec<(&'static str, String)> {
    let search = |params: &[(&str, &str)]| {
        let query = reqwest::Url::parse_with_params("http://page/search", params)
            .ok()
            .and_then(|u| u.query().map(str::to_owned))
            .unwrap_or_default();
        format!("/search?{query}")
    };
    vec![
        ("home", "/".to_owned()),
        ("search ko", search(&[("q", "자전거")])),
        ("search ja", search(&[("q", "自転車")])),
        ("search en", search(&[("q", "bike")])),
        (
            "search ko, price filter, sort by price",
            search(&[
                ("q", "냉장고"),
                ("currency", "KRW"),
                ("min", "10000"),
                ("max", "1500000"),
                ("sort", "price"),
            ]),
        ),
        (
            "search en, category + condition",
            search(&[
                ("q", "camera"),
                ("category", "electronics"),
                ("condition", "good"),
            ]),
        ),
        ("search en, page 2", search(&[("q", "used"), ("page", "2")])),
        (
            "search all, recent, page 2",
            search(&[("sort", "recent"), ("page", "2")]),
        ),
    ]
}

/// A browser with the node's session cookie.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

impl Browser {
    /// Logs in as the page does: a one-time code minted with the API token, spent at
    /// `/login` for the session cookie.
    async fn login(api: &Api) -> Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(60))
            .build()?;
        let code: jangteo_node::api::types::UiLoginCode =
            api.post("/v1/ui/login-code", &json!({})).await?;
        let resp = http
            .get(format!("{}{}", api.base(), code.path))
            .send()
            .await?;
        if !resp.status().is_redirection() {
            bail!("GET /login answered {}, not a redirect", resp.status());
        }
        let cookie = resp
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("jangteo_session_"))
            .and_then(|v| v.split(';').next())
            .context("no session cookie after /login")?
            .to_owned();
        Ok(Self {
            http,
            base: api.base().to_owned(),
            cookie,
        })
    }

    /// GET `path` with the cookie: (status, body, ms from sending to the last byte).
    async fn get(&self, path: &str) -> Result<(u16, Vec<u8>, f64)> {
        let t = Instant::now();
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, &self.cookie)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        Ok((status, body.to_vec(), ms))
    }

    /// GET `path`, failing unless 200.
    async fn get_ok(&self, path: &str) -> Result<(Vec<u8>, f64)> {
        let (status, body, ms) = self.get(path).await?;
        if status != 200 {
            bail!(
                "GET {path}: {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
        Ok((body, ms))
    }
}

/// The thumbnail ids a page shows (`/thumb/<64 hex>`), in order.
pub fn thumbs_in(html: &str) -> Vec<String> {
    html.match_indices("/thumb/")
        .filter_map(|(i, m)| html.get(i + m.len()..i + m.len() + 64))
        .filter(|id| id.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
        .collect()
}

fn stats(mut v: Vec<f64>) -> Value {
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    json!({
        "n": v.len(),
        "p50_ms": percentile(&v, 0.50),
        "p95_ms": percentile(&v, 0.95),
        "p99_ms": percentile(&v, 0.99),
        "max_ms": v.last().copied().unwrap_or(f64::NAN),
        "mean_ms": mean,
    })
}

/// Imports `file` into the node of data folder `dir` with `jangteo import`; returns the
/// listings stored.
fn import(bin: &Path, dir: &Path, file: &Path) -> Result<u64> {
    let out = std::process::Command::new(bin)
        .arg("--data-dir")
        .arg(dir)
        .args(["--json", "import"])
        .arg(file)
        .stdin(std::process::Stdio::null())
        .output()
        .context("running jangteo import")?;
    if !out.status.success() {
        bail!(
            "jangteo import failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let r: Value = serde_json::from_slice(&out.stdout).context("jangteo import's JSON")?;
    if r["refused"].as_u64() != Some(0) {
        bail!("jangteo import refused some: {r}");
    }
    r["stored"].as_u64().context("no `stored` in the report")
}

/// Follows `GET /v1/events?kinds=indexed` and adds up the listings the indexer reports;
/// the sum is published on the returned channel once the stream said `subscribed`.
async fn follow_indexing(api: &Api) -> Result<tokio::sync::watch::Receiver<u64>> {
    let mut resp = api
        .http()
        .get(format!("{}/v1/events?kinds=indexed", api.base()))
        .bearer_auth(api.token())
        .timeout(CATCH_UP_TIMEOUT)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("GET /v1/events: {}", resp.status());
    }
    let (tx, rx) = tokio::sync::watch::channel(0u64);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        let mut buf = String::new();
        let mut sum = 0u64;
        while let Ok(Some(chunk)) = resp.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find('\n') {
                let line: String = buf.drain(..=end).collect();
                let Some(data) = line.trim_end().strip_prefix("data:") else {
                    continue;
                };
                let Ok(ev) = serde_json::from_str::<Value>(data.trim()) else {
                    continue;
                };
                match ev["kind"].as_str() {
                    Some("subscribed") => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Some("indexed") => {
                        sum += ev["count"].as_u64().unwrap_or(0);
                        let _ = tx.send(sum);
                    }
                    // A lagged stream may have missed counts: make the wait fail loudly.
                    Some("lagged") => {
                        let _ = tx.send(u64::MAX);
                    }
                    _ => {}
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(30), ready_rx)
        .await
        .context("the event stream did not say `subscribed`")?
        .context("the event stream ended")?;
    Ok(rx)
}

/// Runs the benchmark against a node process of `bin`.
pub async fn run(bin: PathBuf, cfg: &Config) -> Result<Value> {
    if cfg.listings == 0 || cfg.requests == 0 {
        bail!("--listings and --requests must be at least 1");
    }
    let mut net = ProcNet::new(bin.clone())?;
    net.add(&[]).await?;
    let dir = net.nodes[0].dir.clone();
    let api = net.nodes[0].api()?.clone();

    // The market: photos, then signed listings naming some of them.
    let t = Instant::now();
    let (n_photos, seed) = (cfg.photos, cfg.seed);
    let photo_bytes = tokio::task::spawn_blocking(move || {
        (0..n_photos)
            .map(|i| photo(seed * 1000 + i as u64, PHOTO_WIDTH, PHOTO_HEIGHT))
            .collect::<Result<Vec<_>>>()
    })
    .await??;
    let mut photo_ids = Vec::with_capacity(photo_bytes.len());
    for p in &photo_bytes {
        let id = blob_id(p)?;
        let added: jangteo_node::api::types::BlobView = api.post_bytes("/v1/blobs", p).await?;
        if added.id != hex_of(&id) {
            bail!(
                "the node named a photo {} where {} was expected",
                added.id,
                hex_of(&id)
            );
        }
        photo_ids.push(id);
    }
    let (count, every, ids) = (cfg.listings, cfg.photo_every, photo_ids.clone());
    let seq = tokio::task::spawn_blocking(move || market(count, seed, &ids, every)).await?;
    let file = net.root().join("market.cborseq");
    std::fs::write(&file, &seq)?;
    let generate_s = t.elapsed().as_secs_f64();
    let with_photo = if cfg.photo_every == 0 || photo_ids.is_empty() {
        0
    } else {
        cfg.listings.div_ceil(cfg.photo_every)
    };

    // Import through the node's API, then wait for the indexer.
    let mut indexed = follow_indexing(&api).await?;
    let t = Instant::now();
    let (b, d, f) = (bin.clone(), dir.clone(), file.clone());
    let stored = tokio::task::spawn_blocking(move || import(&b, &d, &f)).await??;
    let import_s = t.elapsed().as_secs_f64();
    if stored != cfg.listings as u64 {
        bail!("jangteo import stored {stored} of {}", cfg.listings);
    }
    let want = cfg.listings as u64;
    tokio::time::timeout(CATCH_UP_TIMEOUT, indexed.wait_for(|&n| n >= want))
        .await
        .context("the index did not catch up in time")?
        .context("the event stream ended before the index caught up")?;
    if *indexed.borrow() == u64::MAX {
        bail!("the event stream lagged: indexed count unknown");
    }
    let indexed_s = t.elapsed().as_secs_f64();
    let status = api.status().await?;
    if status.listings != want {
        bail!(
            "the node counts {} open listings, expected {want}",
            status.listings
        );
    }
    drop(seq);

    // A browser.
    let browser = Browser::login(&api).await?;
    let (css, _) = browser.get_ok("/assets/app.css").await?;
    let (js, _) = browser.get_ok("/assets/app.js").await?;
    let (css_bytes, js_bytes) = (css.len() as u64, js.len() as u64);
    let mut page_reports = Vec::new();
    let mut thumbs: Vec<String> = Vec::new();
    for (name, path) in pages() {
        for _ in 0..cfg.warmup {
            browser.get_ok(&path).await?;
        }
        let mut ms = Vec::with_capacity(cfg.requests);
        let mut html = Vec::new();
        for _ in 0..cfg.requests {
            let (body, t) = browser.get_ok(&path).await?;
            ms.push(t);
            html = body;
        }
        let text = String::from_utf8_lossy(&html);
        let on_page = thumbs_in(&text);
        let cards = text.matches("<li class=\"card\">").count();
        for id in &on_page {
            if !thumbs.contains(id) {
                thumbs.push(id.clone());
            }
        }
        let html_bytes = html.len() as u64;
        let weight = html_bytes + css_bytes + js_bytes;
        let mut r = stats(ms);
        let m = r.as_object_mut().context("stats")?;
        m.insert("page".into(), name.into());
        m.insert("path".into(), path.into());
        m.insert("cards".into(), cards.into());
        m.insert("thumbs".into(), on_page.len().into());
        m.insert("html_bytes".into(), html_bytes.into());
        m.insert("weight_bytes".into(), weight.into());
        page_reports.push(r);
    }

    // The thumbnails on those pages: made once (uncached), then from the node's cache.
    let mut sizes = Vec::new();
    let (mut first, mut cached) = (Vec::new(), Vec::new());
    for id in &thumbs {
        let path = format!("/thumb/{id}");
        let (body, ms) = browser.get_ok(&path).await?;
        if !body.starts_with(&[0xFF, 0xD8, 0xFF]) {
            bail!("{path} is not a JPEG");
        }
        sizes.push(body.len() as u64);
        first.push(ms);
        for _ in 0..10 {
            cached.push(browser.get_ok(&path).await?.1);
        }
    }
    sizes.sort_unstable();
    let distinct: BTreeSet<&String> = thumbs.iter().collect();
    let pid = net.nodes[0].pid().context("the node stopped")?;
    let rss = proc_status_kb(pid, "VmRSS:").unwrap_or(0) * 1024;
    let hwm = proc_status_kb(pid, "VmHWM:").unwrap_or(0) * 1024;

    // The same node started again on its data folder (as after a reboot, not after a bulk
    // import), every page and thumbnail fetched once more: its RSS then.
    net.nodes[0].stop().await?;
    net.launch(0, &[], &[]).await?;
    let browser = Browser::login(net.nodes[0].api()?).await?;
    for (_, path) in pages() {
        for _ in 0..cfg.warmup.max(1) {
            browser.get_ok(&path).await?;
        }
    }
    for id in &thumbs {
        browser.get_ok(&format!("/thumb/{id}")).await?;
    }
    let pid = net.nodes[0].pid().context("the node stopped")?;
    let rss_restarted = proc_status_kb(pid, "VmRSS:").unwrap_or(0) * 1024;
    net.shutdown().await?;

    let p95_worst = page_reports
        .iter()
        .filter_map(|r| r["p95_ms"].as_f64())
        .fold(0.0, f64::max);
    let weight_worst = page_reports
        .iter()
        .filter_map(|r| r["weight_bytes"].as_u64())
        .max()
        .unwrap_or(0);
    let thumb_max = sizes.last().copied().unwrap_or(0);
    let mib = |b: u64| b as f64 / 1048576.0;
    Ok(json!({
        "listings": cfg.listings,
        "listings_with_photo": with_photo,
        "photos": photo_ids.len(),
        "photo_bytes": photo_bytes.iter().map(Vec::len).collect::<Vec<_>>(),
        "requests": cfg.requests,
        "warmup": cfg.warmup,
        "timing": "client-observed, request sent to last byte, one keep-alive connection on loopback, one request at a time",
        "generate_s": generate_s,
        "import_s": import_s,
        "import_per_s": cfg.listings as f64 / import_s,
        "import_and_index_s": indexed_s,
        "css_bytes": css_bytes,
        "js_bytes": js_bytes,
        "pages": page_reports,
        "thumbs": {
            "distinct": distinct.len(),
            "max_bytes": thumb_max,
            "median_bytes": sizes.get(sizes.len() / 2).copied().unwrap_or(0),
            "min_bytes": sizes.first().copied().unwrap_or(0),
            "first": stats(first),
            "cached": stats(cached),
        },
        "node_rss_mib": mib(rss),
        "node_peak_rss_mib": mib(hwm),
        "node_rss_restarted_mib": mib(rss_restarted),
        "targets": {
            "p95_ms": targets::P95_MS,
            "weight_bytes": targets::WEIGHT_BYTES,
            "thumb_bytes": targets::THUMB_BYTES,
            "p95_met": p95_worst < targets::P95_MS,
            "weight_met": weight_worst < targets::WEIGHT_BYTES,
            "thumb_met": thumb_max < targets::THUMB_BYTES,
        },
    }))
}

fn hex_of(b: &[u8; 32]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The report as a table for people.
pub fn human(r: &Value) -> String {
    use std::fmt::Write;
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "web page: {} listings ({} with a photo, {} distinct photos); import {:.1} s ({:.0}/s), indexed after {:.1} s; {} requests per page after {} warm-up",
        r["listings"],
        r["listings_with_photo"],
        r["photos"],
        f(&r["import_s"]),
        f(&r["import_per_s"]),
        f(&r["import_and_index_s"]),
        r["requests"],
        r["warmup"]
    );
    let _ = writeln!(s, "time: {}", r["timing"].as_str().unwrap_or(""));
    let _ = writeln!(
        s,
        "{:<40} {:>8} {:>8} {:>8} {:>8} {:>6} {:>10} {:>10}",
        "page", "p50 ms", "p95 ms", "p99 ms", "max ms", "cards", "HTML B", "weight B"
    );
    for p in r["pages"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "{:<40} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>6} {:>10} {:>10}",
            p["page"].as_str().unwrap_or(""),
            f(&p["p50_ms"]),
            f(&p["p95_ms"]),
            f(&p["p99_ms"]),
            f(&p["max_ms"]),
            p["cards"].as_u64().unwrap_or(0),
            p["html_bytes"].as_u64().unwrap_or(0),
            p["weight_bytes"].as_u64().unwrap_or(0)
        );
    }
    let th = &r["thumbs"];
    let _ = writeln!(
        s,
        "CSS {} B, JS {} B; thumbnails: {} distinct, max {} B, median {} B; first (made) p50 {:.1} ms max {:.1} ms; cached p50 {:.2} ms p95 {:.2} ms",
        r["css_bytes"],
        r["js_bytes"],
        th["distinct"],
        th["max_bytes"],
        th["median_bytes"],
        f(&th["first"]["p50_ms"]),
        f(&th["first"]["max_ms"]),
        f(&th["cached"]["p50_ms"]),
        f(&th["cached"]["p95_ms"])
    );
    let _ = writeln!(
        s,
        "node RSS after the run {:.1} MiB (peak {:.1} MiB), started again and every page fetched {:.1} MiB; targets met: p95 {}, weight {}, thumbnails {}",
        f(&r["node_rss_mib"]),
        f(&r["node_peak_rss_mib"]),
        f(&r["node_rss_restarted_mib"]),
        r["targets"]["p95_met"],
        r["targets"]["weight_met"],
        r["targets"]["thumb_met"]
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnail_ids_are_read_from_a_page() {
        let id = "ab".repeat(32);
        let html = format!(
            "<img src=\"/thumb/{id}\" alt=\"\"><img src=\"/thumb/short\"><a href=\"/thumb/\">"
        );
        assert_eq!(thumbs_in(&html), vec![id]);
    }

    #[test]
    fn the_market_is_a_cbor_sequence_of_signed_listings_some_with_a_photo() {
        let photo = [9u8; 32];
        let seq = market(10, 1, &[photo], 3);
        let (items, tail) = jangteo_node::api::objects::split_sequence(&seq);
        assert!(tail.is_none());
        assert_eq!(items.len(), 10);
        let with_photo = items
            .iter()
            .filter(|(_, b)| {
                let e = jangteo_protocol::Envelope::decode(b).expect("envelope");
                let l = jangteo_protocol::Listing::decode(&e.body).expect("listing");
                l.images == vec![photo]
            })
            .count();
        assert_eq!(with_photo, 4);
    }
}
