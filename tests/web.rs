//! The web page's security rules, against real `jangteo node` processes, with plain HTTP
//! requests written by hand (so the Host, Origin and Cookie headers are exactly what a
//! hostile page or a DNS-rebinding attack would send):
//! no session → the login page; a one-time code works once and becomes an HttpOnly,
//! SameSite=Strict cookie; a foreign Host is refused; a POST from another origin or without
//! the CSRF token is refused; a blob that is SVG or HTML is never served as such; a hostile
//! title from another node renders as text; a bad post form shows errors next to its fields
//! and posts nothing; chats (ask, inbox counts, a thread marked read, statuses, refusals
//! with their reason, blocks), alerts and notifications through the page.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::{json_as, start_node, tcp_addr, wait_for};
use jangteo_node::api::types::{
    ApiAddrFile, BlobView, ExportReport, ListingRef, ListingView, MessageSent, StatusView,
    ThreadView, UiUrl,
};

/// One HTTP/1.1 answer.
struct Answer {
    status: u16,
    /// Header lines, as received.
    headers: Vec<(String, String)>,
    body: String,
    /// The body's bytes, as received.
    bytes: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn bytes_body(&self) -> &[u8] {
        &self.bytes
    }
}

/// Sends `head` (request line and headers, without the final blank line) and `body`, and
/// reads the whole answer (the connection is closed by the server).
fn http(addr: &str, head: &str, body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut req = format!(
        "{head}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    s.write_all(&req).expect("write");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete answer");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let body = String::from_utf8_lossy(&raw[split + 4..]).to_string();
    Answer {
        status,
        headers,
        body,
        bytes: raw[split + 4..].to_vec(),
    }
}

fn api_addr(dir: &Path) -> String {
    let raw = std::fs::read_to_string(dir.join("api.json")).expect("api.json");
    serde_json::from_str::<ApiAddrFile>(&raw)
        .expect("api.json")
        .addr
}

/// A browser's session on a node: its cookie and CSRF token.
struct Browser {
    addr: String,
    cookie: String,
    csrf: String,
}

impl Browser {
    fn get(&self, path: &str) -> Answer {
        http(
            &self.addr,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nCookie: {}",
                self.addr, self.cookie
            ),
            b"",
        )
    }

    fn post_form(&self, path: &str, origin: Option<&str>, form: &str) -> Answer {
        let origin = origin.map_or(String::new(), |o| format!("\r\nOrigin: {o}"));
        http(
            &self.addr,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: {}\r\nCookie: {}{origin}\r\nContent-Type: application/x-www-form-urlencoded",
                self.addr, self.cookie
            ),
            form.as_bytes(),
        )
    }

    fn own_origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// POSTs `body`, a multipart form split by [`BOUNDARY`], as this page would.
    fn post_multipart(&self, path: &str, body: &[u8]) -> Answer {
        http(
            &self.addr,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\nOrigin: {}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}",
                self.addr,
                self.cookie,
                self.own_origin()
            ),
            body,
        )
    }

    /// POSTs a multipart form of `fields` (after this session's token) and photo `files`.
    fn post_form_data(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        files: &[(&str, Vec<u8>)],
    ) -> Answer {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_multipart(path, &multipart(BOUNDARY, &all, files))
    }
}

fn csrf_of(page: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let at = page.find(marker).expect("a form with a CSRF token") + marker.len();
    page[at..].chars().take_while(|c| *c != '"').collect()
}

/// Logs in the way a person does: `jangteo ui --no-open --json`, then opens its URL.
fn login(dir: &Path) -> Browser {
    let ui: UiUrl = json_as(dir, &["ui", "--no-open"]);
    let addr = api_addr(dir);
    let path = ui
        .url
        .strip_prefix(&format!("http://{addr}"))
        .expect("the URL is on the API's address");
    let a = http(&addr, &format!("GET {path} HTTP/1.1\r\nHost: {addr}"), b"");
    assert_eq!(a.status, 303, "the code logs in and redirects: {}", a.body);
    assert_eq!(a.header("location"), Some("/"));
    let set = a.header("set-cookie").expect("a session cookie").to_owned();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    let cookie = set.split(';').next().expect("name=value").to_owned();
    let mut b = Browser {
        addr,
        cookie,
        csrf: String::new(),
    };
    let home = b.get("/");
    assert_eq!(home.status, 200, "{}", home.body);
    b.csrf = csrf_of(&home.body);
    b
}

#[test]
fn the_page_opens_only_with_a_one_time_code_at_its_own_address() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("n");
    let (_node, _) = start_node(&dir, None);
    let addr = api_addr(&dir);
    let token = std::fs::read_to_string(dir.join("api.token")).expect("token");

    // No session: the login page, which explains `jangteo ui`, with the security headers.
    let a = http(&addr, &format!("GET / HTTP/1.1\r\nHost: {addr}"), b"");
    assert_eq!(a.status, 401);
    assert!(a.body.contains("jangteo ui"), "{}", a.body);
    let csp = a.header("content-security-policy").expect("CSP");
    for part in [
        "default-src 'self'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(a.header("referrer-policy"), Some("same-origin"));
    // Pages below `/` too, and a made-up session cookie changes nothing.
    let a = http(
        &addr,
        &format!("GET /search?q=x HTTP/1.1\r\nHost: {addr}\r\nCookie: jangteo_session_1=abc"),
        b"",
    );
    assert_eq!(a.status, 401);
    assert!(a.body.contains("jangteo ui"));

    // DNS rebinding: a page whose name resolves to 127.0.0.1 sends its own Host.
    for host in [
        "evil.example",
        &format!("evil.example:{}", addr.rsplit(':').next().unwrap_or("")),
    ] {
        let a = http(&addr, &format!("GET / HTTP/1.1\r\nHost: {host}"), b"");
        assert_eq!(a.status, 421, "Host {host}");
        assert!(
            !a.body.contains("<html"),
            "nothing of the page for Host {host}"
        );
    }

    // The one-time code: works once, then it is spent.
    let ui: UiUrl = json_as(&dir, &["ui", "--no-open"]);
    assert!(
        ui.url.starts_with(&format!("http://{addr}/login?code=")),
        "{}",
        ui.url
    );
    let path = ui.url.trim_start_matches(&format!("http://{addr}"));
    let first = http(&addr, &format!("GET {path} HTTP/1.1\r\nHost: {addr}"), b"");
    assert_eq!(first.status, 303);
    let again = http(&addr, &format!("GET {path} HTTP/1.1\r\nHost: {addr}"), b"");
    assert_eq!(again.status, 403, "a spent code logs nobody in");
    assert!(again.header("set-cookie").is_none());
    // A code someone guessed.
    let guess = http(
        &addr,
        &format!(
            "GET /login?code={} HTTP/1.1\r\nHost: {addr}",
            "0".repeat(64)
        ),
        b"",
    );
    assert_eq!(guess.status, 403);

    // Logged in: the page never holds the API token.
    let b = login(&dir);
    for path in ["/", "/post", "/search?q=bike", "/mine", "/trades"] {
        let a = b.get(path);
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        assert!(!a.body.contains(token.trim()), "{path} shows the API token");
        assert!(a.header("content-security-policy").is_some());
    }
    assert!(b.get("/").body.contains("Not connected") || b.get("/").body.contains("연결 안 됨"));
    // The API still answers JSON under /v1, and its unknown routes too.
    let a = http(
        &addr,
        &format!("GET /v1/nothing HTTP/1.1\r\nHost: {addr}"),
        b"",
    );
    assert_eq!(a.status, 404);
    assert!(a.body.contains("no_route"), "{}", a.body);

    // State-changing requests: only from this page's origin, only with the session's token.
    let form = format!("csrf={}&to=ko&next=/", b.csrf);
    let a = b.post_form("/lang", Some("http://evil.example"), &form);
    assert_eq!(a.status, 403, "foreign Origin");
    let a = b.post_form("/lang", Some("null"), &form);
    assert_eq!(a.status, 403, "opaque Origin");
    let a = b.post_form("/lang", None, &form);
    assert_eq!(a.status, 403, "no Origin");
    let a = b.post_form("/lang", Some(&b.own_origin()), "to=ko&next=/");
    assert_eq!(a.status, 403, "no CSRF token");
    let a = b.post_form("/lang", Some(&b.own_origin()), "csrf=0000&to=ko&next=/");
    assert_eq!(a.status, 403, "wrong CSRF token");
    let a = b.post_form("/lang", Some(&b.own_origin()), &form);
    assert_eq!(a.status, 303, "own origin and token: {}", a.body);
    assert!(
        a.header("set-cookie")
            .is_some_and(|c| c.contains("jangteo_lang=ko"))
    );

    // The header's language menu: a labelled select of the three languages, each named in
    // its own language, the page's own selected, sent with the session's token.
    let page = b.get("/network");
    assert!(page.body.contains(r#"<html lang="en">"#), "{}", page.body);
    for part in [
        r#"<label class="sr" for="lang-to">Language</label>"#,
        r#"<select id="lang-to" name="to">"#,
        r#"<option value="ko" lang="ko">한국어</option>"#,
        r#"<option value="en" lang="en" selected>English</option>"#,
        r#"<option value="ja" lang="ja">日本語</option>"#,
        r#"<button type="submit" class="link">Change</button>"#,
        r#"<input type="hidden" name="next" value="/network">"#,
    ] {
        assert!(page.body.contains(part), "{part} in {}", page.body);
    }
    assert!(
        page.body
            .contains(&format!(r#"name="csrf" value="{}""#, b.csrf))
    );
    let a = b.post_form(
        "/lang",
        Some(&b.own_origin()),
        &format!("csrf={}&to=ja&next=/network", b.csrf),
    );
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(a.header("location"), Some("/network"));
    let set = a
        .header("set-cookie")
        .expect("a language cookie")
        .to_owned();
    assert!(set.starts_with("jangteo_lang=ja;"), "{set}");
    let ja = Browser {
        addr: b.addr.clone(),
        cookie: format!("{}; jangteo_lang=ja", b.cookie),
        csrf: b.csrf.clone(),
    };
    let page = ja.get("/network");
    assert!(page.body.contains(r#"<html lang="ja">"#), "{}", page.body);
    assert!(page.body.contains("<h1>ネットワーク</h1>"), "{}", page.body);
    assert!(
        page.body
            .contains(r#"<option value="ja" lang="ja" selected>日本語</option>"#)
    );
    let settings = ja.get("/settings");
    for code in ["ko", "en", "ja"] {
        assert!(
            settings
                .body
                .contains(&format!(r#"name="to" value="{code}" lang="{code}""#)),
            "{code} in {}",
            settings.body
        );
    }
    // With no cookie, a browser asking for Japanese gets it.
    let page = http(
        &b.addr,
        &format!(
            "GET /network HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\nAccept-Language: ja-JP,ja;q=0.9,en;q=0.8",
            b.addr, b.cookie
        ),
        b"",
    );
    assert!(page.body.contains(r#"<html lang="ja">"#), "{}", page.body);
    // Offers are refused the same way.
    let a = b.post_form(
        &format!("/listing/{}/offer", "ab".repeat(32)),
        Some("http://evil.example"),
        &format!("csrf={}&price=1", b.csrf),
    );
    assert_eq!(a.status, 403);

    // Logging out ends the session.
    let a = b.post_form(
        "/logout",
        Some(&b.own_origin()),
        &format!("csrf={}", b.csrf),
    );
    assert_eq!(a.status, 303);
    assert_eq!(b.get("/").status, 401);
}

#[test]
fn blobs_are_served_only_as_sniffed_raster_images() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("n");
    let (_node, _) = start_node(&dir, None);
    let addr = api_addr(&dir);
    let token = std::fs::read_to_string(dir.join("api.token")).expect("token");
    let add = |bytes: &[u8]| -> String {
        let a = http(
            &addr,
            &format!(
                "POST /v1/blobs HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/octet-stream",
                token.trim()
            ),
            bytes,
        );
        assert_eq!(a.status, 201, "{}", a.body);
        let v: BlobView = serde_json::from_str(&a.body).expect("a blob view");
        v.id
    };
    let svg = add(b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"><script>alert(2)</script></svg>");
    let html = add(b"<!doctype html><html><script>alert(document.cookie)</script></html>");
    let png = add(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0");
    let b = login(&dir);
    for id in [&svg, &html] {
        let a = b.get(&format!("/photo/{id}"));
        assert_eq!(a.status, 200);
        assert_eq!(a.header("content-type"), Some("application/octet-stream"));
        assert!(
            a.header("content-disposition")
                .is_some_and(|d| d.starts_with("attachment")),
            "an attachment, never a document"
        );
        assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
        assert!(
            a.header("content-security-policy")
                .is_some_and(|c| c.contains("sandbox"))
        );
    }
    let a = b.get(&format!("/photo/{png}"));
    assert_eq!(a.header("content-type"), Some("image/png"));
    assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
    // Without a session, no blob at all.
    let a = http(
        &addr,
        &format!("GET /photo/{png} HTTP/1.1\r\nHost: {addr}"),
        b"",
    );
    assert_eq!(a.status, 401);
}

#[test]
fn a_hostile_title_from_another_node_renders_as_text() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (sdir, bdir) = (tmp.path().join("seller"), tmp.path().join("buyer"));
    let (_seller, sid) = start_node(&sdir, None);
    let (_buyer, _) = start_node(&bdir, Some(&tcp_addr(&sid)));
    let hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>";
    let posted: ListingRef = json_as(
        &sdir,
        &[
            "post",
            "--title",
            hostile,
            "--description",
            "\"><svg onload=alert(3)>",
            "--price",
            "1000",
            "--currency",
            "KRW",
        ],
    );
    // Held and indexed (the home page and search read the index).
    wait_for("the buyer to hold and index the hostile listing", || {
        let found: Vec<ListingView> = common::json_try_as(&bdir, &["search", "alert"])?;
        found.iter().any(|l| l.id == posted.id).then_some(())
    });
    let b = login(&bdir);
    for path in [
        format!("/listing/{}", posted.id),
        "/".to_owned(),
        "/search?q=alert".to_owned(),
        // Typed as people type, parentheses and all: not the query language, still found.
        "/search?q=alert(1)".to_owned(),
        "/search?q=%3Cscript%3Ealert(1)".to_owned(),
    ] {
        let a = b.get(&path);
        assert_eq!(a.status, 200, "{path}");
        assert!(
            a.body.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{path} shows the title as text:\n{}",
            a.body
        );
        assert!(!a.body.contains("<script>alert"), "{path}");
        assert!(!a.body.contains("<img src=x"), "{path}");
        assert!(!a.body.contains("<svg onload"), "{path}");
    }
}

/// What splits the multipart bodies the tests send.
const BOUNDARY: &str = "jangteoBoundary7MA4YWxkTrZu0gW";

/// A multipart/form-data body.
fn multipart(boundary: &str, fields: &[(&str, &str)], files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in fields {
        out.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    for (name, bytes) in files {
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"photos\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

#[test]
fn a_bad_post_form_names_the_field_and_posts_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("n");
    let (_node, _) = start_node(&dir, None);
    let b = login(&dir);
    let send = |fields: &[(&str, &str)], files: &[(&str, Vec<u8>)]| -> Answer {
        b.post_form_data("/post", fields, files)
    };
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0".to_vec();
    let good = [
        ("title", "Walnut desk"),
        ("price", "90000"),
        ("currency", "KRW"),
        ("quantity", "1"),
        ("category", "furniture"),
    ];
    let with = |k: &str, v: &'static str| -> Vec<(&'static str, &'static str)> {
        good.iter()
            .map(|(gk, gv)| if *gk == k { (*gk, v) } else { (*gk, *gv) })
            .collect()
    };
    // An empty title: the service's own rule, next to the title field.
    let a = send(&with("title", ""), &[("desk.png", png.clone())]);
    assert_eq!(a.status, 400);
    assert!(a.body.contains("id=\"title-err\""), "{}", a.body);
    // A price with letters.
    let a = send(&with("price", "12abc"), &[]);
    assert_eq!(a.status, 400);
    assert!(a.body.contains("id=\"price-err\""), "{}", a.body);
    // Nine photos.
    let nine: Vec<(&str, Vec<u8>)> = (0..9).map(|_| ("p.png", png.clone())).collect();
    let a = send(&good, &nine);
    assert_eq!(a.status, 400);
    assert!(a.body.contains("id=\"photos-err\""), "{}", a.body);
    // A photo over the blob limit (20 MB).
    let mut big = png.clone();
    big.resize(20 * 1024 * 1024, 0);
    let a = send(&good, &[("big.png", big)]);
    assert_eq!(a.status, 400);
    assert!(a.body.contains("id=\"photos-err\"") && a.body.contains("big.png"));
    // Not an image (an SVG).
    let a = send(&good, &[("x.svg", b"<svg onload=alert(1)>".to_vec())]);
    assert_eq!(a.status, 400);
    assert!(a.body.contains("id=\"photos-err\""));
    // Nothing was posted (the store holds no listing), and no photo was stored.
    let out = tmp.path().join("listings.cborseq");
    let out = out.to_str().expect("utf-8 path");
    let held: ExportReport = json_as(&dir, &["export", "--kind", "listing", "--out", out]);
    assert_eq!(held.objects, 0, "nothing half-posted");
    let status: StatusView = json_as(&dir, &["status"]);
    assert_eq!(status.blobs, 0, "no photo stored: {status:?}");
    // And the good form posts, photo included.
    let a = send(&good, &[("desk.png", png)]);
    assert_eq!(a.status, 303, "{}", a.body);
    let at = a.header("location").expect("to the listing").to_owned();
    let page = b.get(&at);
    assert!(page.body.contains("Walnut desk"));
    assert!(page.body.contains("₩90,000"), "{}", page.body);
    let id = at.trim_start_matches("/listing/");
    let held: ListingView = json_as(&dir, &["show", id]);
    assert_eq!(held.images.len(), 1);
    assert_eq!(held.price, 90_000);
}

/// The pages that change what this node is (its key, whom it trusts, its listings) refuse a
/// forged request, ask for a ticked confirmation where an act is final or dangerous, and
/// change nothing when they refuse.
#[test]
fn settings_trust_edit_and_withdraw_refuse_forged_or_unconfirmed_requests() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("n");
    let (_node, me) = start_node(&dir, None);
    let b = login(&dir);
    let own = b.own_origin();
    let key = std::fs::read(dir.join("identity.key")).expect("key file");

    // The key backup: never to another origin, never without the token, never unticked.
    let csrf = format!("csrf={}", b.csrf);
    let a = b.post_form(
        "/settings/key",
        Some("http://evil.example"),
        &format!("{csrf}&understood=yes"),
    );
    assert_eq!(a.status, 403);
    assert!(
        a.bytes_body()
            .windows(key.len())
            .all(|w| w != key.as_slice())
    );
    let a = b.post_form("/settings/key", Some(&own), "csrf=wrong&understood=yes");
    assert_eq!(a.status, 403);
    let a = b.post_form("/settings/key", Some(&own), &csrf);
    assert_eq!(a.status, 400, "unticked: the warning again");
    assert!(a.body.contains("id=\"key-err\""), "{}", a.body);
    let a = b.post_form(
        "/settings/key",
        Some(&own),
        &format!("{csrf}&understood=yes"),
    );
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("application/octet-stream"));
    assert!(
        a.header("content-disposition")
            .is_some_and(|d| d.contains("attachment"))
    );
    assert_eq!(a.bytes_body(), key, "the key file itself");

    // Trust seeds: a forged request changes nothing.
    let friend = "12D3KooWEWZoEy45jUBNpYMzzevYrkDjPEEJ2DVhPpNEwVFUG8jC";
    let a = b.post_form(
        "/trust",
        Some("http://evil.example"),
        &format!("{csrf}&peer={friend}&next=/settings"),
    );
    assert_eq!(a.status, 403);
    let a = b.post_form(
        "/trust",
        Some(&own),
        &format!("csrf=nope&peer={friend}&next=/settings"),
    );
    assert_eq!(a.status, 403);
    assert!(!b.get("/settings").body.contains(friend), "nothing trusted");
    let a = b.post_form(
        "/trust",
        Some(&own),
        &format!("{csrf}&peer={friend}&next=//evil.example/"),
    );
    assert_eq!(a.status, 303);
    assert_eq!(
        a.header("location"),
        Some("/"),
        "never redirected off the page"
    );
    assert!(b.get("/settings").body.contains(friend), "trusted now");
    let a = b.post_form(
        "/trust",
        Some(&own),
        &format!("{csrf}&peer=not-a-peer-id&next=/settings"),
    );
    assert_eq!(a.status, 400);

    // My location: a bad one is named next to the field, a good one is kept in a cookie.
    let a = b.post_form(
        "/settings/location",
        Some(&own),
        &format!("{csrf}&location=north"),
    );
    assert_eq!(a.status, 400);
    assert!(a.body.contains("id=\"location-err\""));
    let a = b.post_form(
        "/settings/location",
        Some(&own),
        &format!("{csrf}&location=37.5563,126.922"),
    );
    assert_eq!(a.status, 303);
    assert!(a.header("set-cookie").is_some_and(
        |c| c.starts_with("jangteo_near=37.55630,126.92200") && c.contains("SameSite=Strict")
    ));

    // Edit and withdraw: a listing of mine.
    let l: ListingRef = json_as(
        &dir,
        &[
            "post",
            "--title",
            "Walnut desk",
            "--price",
            "90000",
            "--currency",
            "KRW",
        ],
    );
    let edit = b.get(&format!("/listing/{}/edit", l.id));
    assert_eq!(edit.status, 200);
    assert!(edit.body.contains("value=\"Walnut desk\""));
    let path = format!("/listing/{}/edit", l.id);
    let form = |title: &str, price: &str| {
        format!(
            "{csrf}&title={title}&description=&category=furniture&condition=good&price={price}&quantity=1"
        )
    };
    let a = b.post_form(&path, Some("http://evil.example"), &form("Forged", "1"));
    assert_eq!(a.status, 403);
    let a = b.post_form(&path, Some(&own), &form("Walnut+desk", "9O000"));
    assert_eq!(a.status, 400, "a price with a letter O");
    assert!(a.body.contains("id=\"price-err\""), "{}", a.body);
    let a = b.post_form(&path, Some(&own), &form("", "90000"));
    assert_eq!(a.status, 400, "an empty title");
    assert!(a.body.contains("id=\"title-err\""), "{}", a.body);
    let held: ListingView = json_as(&dir, &["show", &l.id]);
    assert_eq!(
        (held.title.as_str(), held.seq),
        ("Walnut desk", 1),
        "nothing changed"
    );
    let a = b.post_form(&path, Some(&own), &form("Walnut+desk%2C+oiled", "85%2C000"));
    assert_eq!(a.status, 303, "{}", a.body);
    let held: ListingView = json_as(&dir, &["show", &l.id]);
    assert_eq!(
        (held.title.as_str(), held.price, held.seq),
        ("Walnut desk, oiled", 85_000, 2)
    );

    let path = format!("/listing/{}/retract", l.id);
    let a = b.post_form(&path, Some(&own), &csrf);
    assert_eq!(a.status, 400, "not ticked");
    let held: ListingView = json_as(&dir, &["show", &l.id]);
    assert_eq!(held.status.as_str(), "active", "still on sale");
    let a = b.post_form(&path, Some(&own), &format!("{csrf}&confirm=yes"));
    assert_eq!(a.status, 303);
    let held: ListingView = json_as(&dir, &["show", &l.id]);
    assert_eq!(held.status.as_str(), "retracted");

    // Someone else's listing cannot be edited from here; an unknown one is not found.
    assert_eq!(
        b.get(&format!("/listing/{}/edit", "ab".repeat(32))).status,
        404
    );
    assert!(!me.peer_id.is_empty());
}

/// The part of `page` from `start` to the next `end` (empty when `start` is not there).
fn section<'a>(page: &'a str, start: &str, end: &str) -> &'a str {
    let Some(at) = page.find(start) else {
        return "";
    };
    let rest = &page[at..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

/// Home: without a saved location, a hint to save one; with one, the newest listings within
/// 10 km of it (each with its distance), and never one farther away; the categories, each a
/// link to its search.
#[test]
fn home_shows_the_newest_listings_near_my_saved_location_and_the_categories() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("n");
    let (_node, _) = start_node(&dir, None);
    let b = login(&dir);
    let post = |title: &str, location: Option<&str>| -> ListingRef {
        let mut args = vec![
            "post",
            "--title",
            title,
            "--price",
            "50000",
            "--currency",
            "KRW",
            "--category",
            "bikes",
        ];
        if let Some(l) = location {
            args.extend(["--location", l]);
        }
        json_as(&dir, &args)
    };
    // Mangwon (my place), Hapjeong (about 1.3 km), Busan (about 325 km), and nowhere.
    let near = post("Mangwon road bike", Some("37.5563,126.9220"));
    let close = post("Hapjeong city bike", Some("37.5495,126.9137"));
    let far = post("Busan beach cruiser", Some("35.1587,129.1604"));
    let nowhere = post("Bike with no place", None);
    wait_for("the four listings to be searchable", || {
        let hits: Vec<ListingView> = common::json_try_as(&dir, &["search", "bike"])?;
        (hits.len() == 4).then_some(())
    });

    let en = jangteo_node::web::i18n::EN;
    let page = b.get("/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains(en.home_no_location), "{}", page.body);
    assert!(!page.body.contains("class=\"near\""));
    for cat in ["bikes", "digital", "furniture"] {
        assert!(
            page.body
                .contains(&format!("href=\"/search?category={cat}&amp;sort=recent\"")),
            "{cat}"
        );
    }

    let with_place = Browser {
        addr: b.addr.clone(),
        cookie: format!("{}; jangteo_near=37.55630,126.92200", b.cookie),
        csrf: b.csrf.clone(),
    };
    let page = with_place.get("/");
    assert_eq!(page.status, 200);
    let near_part = section(&page.body, "<section class=\"near\"", "</section>");
    assert!(
        near_part.contains("Newest within 10 km of you"),
        "{}",
        page.body
    );
    assert!(
        near_part.contains(&format!("/listing/{}", near.id)),
        "{near_part}"
    );
    assert!(
        near_part.contains(&format!("/listing/{}", close.id)),
        "{near_part}"
    );
    assert!(
        !near_part.contains(&far.id),
        "325 km is not near: {near_part}"
    );
    assert!(
        !near_part.contains(&nowhere.id),
        "no place is not near: {near_part}"
    );
    // Newest first, each with its distance.
    let (at_close, at_near) = (
        near_part.find(&close.id).expect("close"),
        near_part.find(&near.id).expect("near"),
    );
    assert!(at_close < at_near, "the newer one first");
    assert!(
        near_part.contains("0.0 km") && near_part.contains("1.1 km"),
        "{near_part}"
    );
    // Everything, near or not, below.
    let rest = &page.body[page.body.find("</section>").expect("end of near")..];
    assert!(rest.contains(&far.id) && rest.contains(&nowhere.id));
    // The category link is a working search.
    let cat = b.get("/search?category=bikes&sort=recent");
    assert_eq!(cat.status, 200);
    assert!(cat.body.contains("Busan beach cruiser"));
}

/// Editing a listing changes its photos (remove, reorder, add), location and currency as a
/// new version; a refused edit stores no photo and changes nothing; its errors are in the
/// page's language.
#[test]
fn an_edit_changes_photos_location_and_currency_and_errors_are_in_the_page_language() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("n");
    let (_node, _) = start_node(&dir, None);
    let b = login(&dir);
    let png = |tag: u8| {
        let mut p = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0".to_vec();
        p.push(tag);
        p
    };
    let files: Vec<_> = (1..=2u8)
        .map(|i| {
            let path = tmp.path().join(format!("p{i}.png"));
            std::fs::write(&path, png(i)).expect("photo");
            path
        })
        .collect();
    let l: ListingRef = json_as(
        &dir,
        &[
            "post",
            "--title",
            "Walnut desk",
            "--price",
            "90000",
            "--currency",
            "KRW",
            "--location",
            "37.5563,126.9220",
            "--image",
            files[0].to_str().expect("path"),
            "--image",
            files[1].to_str().expect("path"),
        ],
    );
    let before: ListingView = json_as(&dir, &["show", &l.id]);
    let (first, second) = (before.images[0].clone(), before.images[1].clone());
    let form = b.get(&format!("/listing/{}/edit", l.id));
    assert_eq!(form.status, 200);
    assert!(form.body.contains("enctype=\"multipart/form-data\""));
    assert!(
        form.body
            .contains(&format!("name=\"keep\" value=\"{first}\""))
    );
    assert!(
        form.body
            .contains(&format!("name=\"pos-{second}\" value=\"2\""))
    );
    assert!(
        form.body.contains("value=\"37.55630,126.92200\""),
        "{}",
        form.body
    );

    let send = |b: &Browser, fields: &[(&str, &str)], photos: &[(&str, Vec<u8>)]| -> Answer {
        b.post_form_data(&format!("/listing/{}/edit", l.id), fields, photos)
    };
    let pos_first = format!("pos-{first}");
    let pos_second = format!("pos-{second}");
    let text = [
        ("title", "Walnut desk"),
        ("description", ""),
        ("category", "furniture"),
        ("condition", "good"),
        ("quantity", "1"),
    ];
    let blobs = |dir: &Path| json_as::<StatusView>(dir, &["status"]).blobs;
    let blobs_before = blobs(&dir);

    // Nine photos in all (two kept, seven new): refused next to the photos, nothing stored.
    let mut fields = text.to_vec();
    fields.extend([
        ("price", "12.50"),
        ("currency", "USD"),
        ("location", ""),
        ("keep", first.as_str()),
        ("keep", second.as_str()),
    ]);
    let seven: Vec<(&str, Vec<u8>)> = (10..17u8).map(|i| ("n.png", png(i))).collect();
    let a = send(&b, &fields, &seven);
    assert_eq!(a.status, 400);
    assert!(a.body.contains("id=\"photos-err\""), "{}", a.body);
    assert_eq!(blobs(&dir), blobs_before, "no photo stored");
    let held: ListingView = json_as(&dir, &["show", &l.id]);
    assert_eq!(held.seq, 1, "nothing changed");

    // The second photo first, the first removed, a new one added; dollars; Busan.
    let mut fields = text.to_vec();
    fields.extend([
        ("price", "12.50"),
        ("currency", "USD"),
        ("location", "35.1587,129.1604"),
        ("keep", second.as_str()),
        (pos_second.as_str(), "1"),
        (pos_first.as_str(), "2"),
    ]);
    let a = send(&b, &fields, &[("new.png", png(3))]);
    assert_eq!(a.status, 303, "{}", a.body);
    let held: ListingView = json_as(&dir, &["show", &l.id]);
    assert_eq!(held.seq, 2, "a new version");
    assert_eq!((held.price, held.currency.as_str()), (1250, "USD"));
    assert_eq!(held.images.len(), 2, "{held:?}");
    assert_eq!(held.images[0], second, "the kept one first");
    assert_ne!(held.images[1], first, "the new one after it");
    let at = held.location.expect("a place");
    assert!((at.lat - 35.1587).abs() < 1e-4 && (at.lon - 129.1604).abs() < 1e-4);

    // Reordered by position, and the place removed.
    let new = held.images[1].clone();
    let pos_new = format!("pos-{new}");
    let mut fields = text.to_vec();
    fields.extend([
        ("price", "12.50"),
        ("currency", "USD"),
        ("location", ""),
        ("keep", second.as_str()),
        ("keep", new.as_str()),
        (pos_second.as_str(), "2"),
        (pos_new.as_str(), "1"),
    ]);
    let a = send(&b, &fields, &[]);
    assert_eq!(a.status, 303, "{}", a.body);
    let held: ListingView = json_as(&dir, &["show", &l.id]);
    assert_eq!(
        (held.seq, held.images.clone()),
        (3, vec![new, second.clone()])
    );
    assert!(held.location.is_none());

    // In Korean, the service's refusal of an empty title is said in Korean.
    let ko = Browser {
        addr: b.addr.clone(),
        cookie: format!("{}; jangteo_lang=ko", b.cookie),
        csrf: b.csrf.clone(),
    };
    let mut fields = vec![
        ("title", ""),
        ("description", ""),
        ("category", "furniture"),
        ("condition", "good"),
        ("quantity", "1"),
    ];
    fields.extend([
        ("price", "12.50"),
        ("currency", "USD"),
        ("keep", second.as_str()),
    ]);
    let a = send(&ko, &fields, &[]);
    assert_eq!(a.status, 400);
    let err = section(&a.body, "id=\"title-err\"", "</p>");
    assert!(
        err.contains(jangteo_node::web::i18n::KO.err_field_title),
        "{}",
        a.body
    );
    assert!(!a.body.contains("must not be empty"), "no English reason");
    assert_eq!(json_as::<ListingView>(&dir, &["show", &l.id]).seq, 3);
}

/// A trade message that could not reach an offline seller shows, on the buyer's pages in
/// Korean, the relay that holds it (trade page: its history; network page: my messages held
/// per relay) and the API names that relay; the network page shows sync per category.
#[test]
fn a_message_held_by_a_relay_names_the_relay_and_the_network_page_shows_sync_per_category() {
    use jangteo_node::api::types::{DeliveryStatus, OfferMade, SyncStatusName, TradeView};
    use jangteo_node::web::i18n::{KO, fill};
    use jangteo_node::web::pages::short_peer;
    let tmp = tempfile::tempdir().expect("tempdir");
    let (r_dir, s_dir, b_dir) = (
        tmp.path().join("relay"),
        tmp.path().join("seller"),
        tmp.path().join("buyer"),
    );
    let (_relay, rid) = common::start_node_with(&r_dir, None, &["--relay"]);
    let relay = tcp_addr(&rid);
    let (seller, _) = start_node(&s_dir, Some(&relay));
    let (_buyer, _) = start_node(&b_dir, Some(&relay));
    let l: ListingRef = json_as(
        &s_dir,
        &[
            "post",
            "--title",
            "책상",
            "--price",
            "30000",
            "--currency",
            "KRW",
            "--category",
            "furniture",
        ],
    );
    wait_for("the listing at the buyer", || {
        common::json_try_as::<ListingView>(&b_dir, &["show", &l.id])
    });
    drop(seller);
    let made: OfferMade = json_as(&b_dir, &["offer", &l.id]);
    let v: TradeView = json_as(&b_dir, &["trade", &made.id]);
    let d = &v.history.first().expect("the offer").delivery;
    assert_eq!(d.status, DeliveryStatus::Queued, "{v:?}");
    assert_eq!(d.relays, vec![rid.peer_id.clone()], "{v:?}");

    let b = login(&b_dir);
    let b = Browser {
        cookie: format!("{}; jangteo_lang=ko", b.cookie),
        ..b
    };
    let held_by = fill(KO.delivery_held_by, &[("relay", &short_peer(&rid.peer_id))]);
    let trade = b.get(&format!("/trade/{}", made.id));
    assert_eq!(trade.status, 200);
    assert!(trade.body.contains(&held_by), "{}", trade.body);
    let network = b.get("/network");
    assert_eq!(network.status, 200);
    let held = section(&network.body, "class=\"plain held\"", "</ul>");
    assert!(held.contains(&short_peer(&rid.peer_id)), "{}", network.body);
    assert!(
        held.contains(&fill(KO.network_held_line, &[("n", "1")])),
        "{held}"
    );
    // Sync per category: the buyer compared its categories with the relay.
    let s: StatusView = json_as(&b_dir, &["status"]);
    assert!(
        s.sync.categories.iter().any(|c| c.category == "furniture"),
        "{s:?}"
    );
    let caught_up = wait_for("a category caught up with the relay", || {
        let s: StatusView = common::json_try_as(&b_dir, &["status"])?;
        s.sync
            .categories
            .iter()
            .find(|c| c.category == "furniture" && c.status == SyncStatusName::CaughtUp)
            .cloned()
    });
    assert!(caught_up.peers >= 1);
    let network = b.get("/network");
    let shards = section(&network.body, "class=\"plain shards\"", "</ul>");
    assert!(network.body.contains(KO.network_categories));
    assert!(shards.contains(&KO.category("furniture")), "{shards}");
    assert!(shards.contains(KO.shard_caught_up), "{shards}");
}

/// The number in the header's badge `id`, or None when it is hidden (nothing unread).
fn badge(page: &str, id: &str) -> Option<u64> {
    let at = page.find(&format!("id=\"{id}\""))?;
    let tag_end = at + page[at..].find('>')?;
    if page[at..tag_end].contains("hidden") {
        return None;
    }
    let rest = &page[tag_end + 1..];
    rest[..rest.find('<')?].trim().parse().ok()
}

/// The header's counts as `GET /counts` answers them: (messages, notifications).
fn counts(b: &Browser) -> (u64, u64) {
    let a = b.get("/counts");
    assert_eq!(a.status, 200, "{}", a.body);
    let v: serde_json::Value = serde_json::from_str(&a.body).expect("counts are JSON");
    (
        v["messages"].as_u64().expect("messages"),
        v["notifications"].as_u64().expect("notifications"),
    )
}

/// A form body: each value percent-encoded.
fn form_body(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The value of the first field `name` in `page` after the text `after`.
fn form_value(page: &str, after: &str, name: &str) -> String {
    let from = page
        .find(after)
        .unwrap_or_else(|| panic!("{after} in\n{page}"));
    let marker = format!("name=\"{name}\" value=\"");
    let at = from + page[from..].find(&marker).expect("the field") + marker.len();
    page[at..].chars().take_while(|c| *c != '"').collect()
}

#[test]
fn chats_inbox_statuses_blocks_alerts_and_notifications_in_the_page() {
    use jangteo_node::web::i18n::{EN, fill};
    use jangteo_node::web::pages::short_peer;
    let tmp = tempfile::tempdir().expect("tempdir");
    let (sdir, bdir) = (tmp.path().join("seller"), tmp.path().join("buyer"));
    let (_seller, sid) = start_node(&sdir, None);
    let (_buyer, bid) = start_node(&bdir, Some(&tcp_addr(&sid)));
    let posted: ListingRef = json_as(
        &sdir,
        &[
            "post",
            "--title",
            "원목 식탁",
            "--price",
            "90000",
            "--currency",
            "KRW",
        ],
    );
    let id = posted.id;
    wait_for("the buyer to hold the listing", || {
        common::json_try_as::<ListingView>(&bdir, &["show", &id])
    });
    let b = login(&bdir);
    let s = login(&sdir);

    // The buyer's listing page: "Ask the seller", empty, posting to the listing's ask.
    let page = b.get(&format!("/listing/{id}"));
    assert_eq!(page.status, 200);
    assert!(page.body.contains(EN.chat_ask_title), "{}", page.body);
    assert!(page.body.contains(&format!("action=\"/listing/{id}/ask\"")));
    assert!(page.body.contains(EN.chat_empty));
    let ask = format!("/listing/{id}/ask");

    // Refused: another origin, a missing token, empty text, too long a text.
    let a = b.post_form(
        &ask,
        Some("http://evil.example"),
        &format!("csrf={}&text=hi", b.csrf),
    );
    assert_eq!(a.status, 403, "{}", a.body);
    let a = b.post_form(&ask, Some(&b.own_origin()), "text=hi");
    assert_eq!(a.status, 403, "{}", a.body);
    let a = b.post_form(
        &ask,
        Some(&b.own_origin()),
        &format!("csrf={}&text=+%0D%0A+", b.csrf),
    );
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains(EN.err_chat_text), "{}", a.body);
    let long = "가".repeat(2001);
    let a = b.post_form(
        &ask,
        Some(&b.own_origin()),
        &form_body(&[("csrf", &b.csrf), ("text", &long)]),
    );
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains(EN.err_chat_text), "{}", a.body);
    assert!(a.body.contains(&long), "what was typed stays in the box");
    let (m, _) = counts(&s);
    assert_eq!(m, 0, "nothing was sent");

    // A hostile text: script, a long unbroken string, right-to-left text; sent and shown
    // as text on both sides.
    let unbroken = "W".repeat(300);
    let hostile = format!("<script>alert(1)</script> {unbroken} مرحبا بالعالم");
    let form = form_body(&[("csrf", &b.csrf), ("text", &hostile)]);
    let a = b.post_form(&ask, Some(&b.own_origin()), &form);
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(
        a.header("location"),
        Some(format!("/listing/{id}#chat").as_str())
    );
    let page = b.get(&format!("/listing/{id}"));
    assert!(
        page.body
            .contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<script>alert"));
    assert!(page.body.contains(&unbroken) && page.body.contains("مرحبا بالعالم"));
    let thread = {
        let marker = "data-thread=\"";
        let at = page.body.find(marker).expect("the chat panel") + marker.len();
        page.body[at..at + 64].to_owned()
    };

    // The seller: a badge on every page, the inbox with the unread count, the threads on
    // its own listing's page.
    let home = wait_for("the question at the seller", || {
        let home = s.get("/");
        (badge(&home.body, "badge-messages") == Some(1)).then_some(home)
    });
    assert_eq!(home.status, 200);
    let inbox = s.get("/inbox");
    assert!(
        inbox.body.contains(&format!("href=\"/inbox/{thread}\"")),
        "{}",
        inbox.body
    );
    assert!(
        inbox.body.contains(&fill(EN.badge_unread, &[("n", "1")])),
        "{}",
        inbox.body
    );
    assert!(inbox.body.contains("원목 식탁"));
    let own = s.get(&format!("/listing/{id}"));
    assert!(own.body.contains(EN.chat_threads_about));
    assert!(
        own.body.contains(&format!("href=\"/inbox/{thread}\"")),
        "{}",
        own.body
    );

    // Opening the thread marks it read; the buyer's page then says "Read".
    let opened = s.get(&format!("/inbox/{thread}"));
    assert_eq!(opened.status, 200);
    assert!(opened.body.contains("&#60;script&#62;alert(1)"));
    assert!(!opened.body.contains("<script>alert"));
    assert_eq!(
        counts(&s),
        (0, 0),
        "the message and its notification are read"
    );
    assert_eq!(badge(&s.get("/inbox").body, "badge-messages"), None);
    wait_for("the buyer to see its question read", || {
        let v = b.get(&format!("/inbox/{thread}"));
        v.body
            .contains(&format!("status badge read\">{}", EN.msg_read))
            .then_some(())
    });

    // The seller answers in the thread; the buyer's count goes up.
    let say = format!("/inbox/{thread}");
    let a = s.post_form(
        &say,
        Some(&s.own_origin()),
        &format!("csrf={}&text=Saturday+3pm%3F", s.csrf),
    );
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(a.header("location"), Some(format!("{say}#chat").as_str()));
    wait_for("the answer at the buyer", || {
        (counts(&b).0 == 1).then_some(())
    });
    // A photo sent with a message (`say --image`) shows in the other side's page as a
    // thumbnail, made from the blob its node fetches from the sender's.
    let img = image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    });
    let png = common::png_of(&img);
    let file = tmp.path().join("station-exit.png");
    std::fs::write(&file, &png).expect("write");
    json_as::<MessageSent>(
        &sdir,
        &[
            "say",
            &thread,
            "2번 출구 앞이에요",
            "--image",
            file.to_str().expect("path"),
        ],
    );
    let photo = json_as::<ThreadView>(&sdir, &["chat", &thread])
        .messages
        .last()
        .and_then(|m| m.photos.first().cloned())
        .expect("the message names its photo");
    let page = wait_for("the photo in the buyer's page", || {
        let v = b.get(&format!("/inbox/{thread}"));
        v.body.contains("2번 출구 앞이에요").then_some(v.body)
    });
    assert!(
        page.contains(&format!(
            "<a href=\"/photo/{photo}\"><img src=\"/thumb/{photo}?size=320\" alt=\"{}\"",
            fill(EN.msg_photo, &[("n", "1")])
        )),
        "{page}"
    );
    let thumb = b.get(&format!("/thumb/{photo}?size=320"));
    assert_eq!(thumb.status, 200);
    assert_eq!(thumb.header("content-type"), Some("image/jpeg"));
    // The page's send box takes photos too (multipart). What is not an image, more than a
    // message carries, or a form that cannot be read is refused in the panel, the text kept,
    // and nothing is sent; a good one arrives with its photo.
    let send = |fields: &[(&str, &str)], files: &[(&str, Vec<u8>)]| -> Answer {
        b.post_form_data(&format!("/inbox/{thread}"), fields, files)
    };
    let messages_at_seller = || {
        json_as::<ThreadView>(&sdir, &["chat", &thread])
            .messages
            .len()
    };
    let before = messages_at_seller();
    let a = send(
        &[("text", "a page")],
        &[("page.html", b"<html>hi</html>".to_vec())],
    );
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        a.body
            .contains(&fill(EN.err_photo_type, &[("name", "page.html")])),
        "{}",
        a.body
    );
    assert!(a.body.contains(">a page</textarea>"), "the text is kept");
    let five: Vec<(&str, Vec<u8>)> = (0..5).map(|_| ("p.png", png.clone())).collect();
    let a = send(&[("text", "five")], &five);
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        a.body.contains(&fill(EN.err_photo_count, &[("n", "4")])),
        "{}",
        a.body
    );
    let a = b.post_multipart(
        &format!("/inbox/{thread}"),
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\ncut off")
            .as_bytes(),
    );
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains(EN.err_form), "{}", a.body);
    let a = send(&[("text", "here is mine")], &[("me.png", png.clone())]);
    assert_eq!(a.status, 303, "{}", a.body);
    let got = wait_for("the buyer's photo at the seller", || {
        let v = json_as::<ThreadView>(&sdir, &["chat", &thread]);
        (v.messages.len() == before + 1).then_some(v)
    });
    let last = got.messages.last().expect("a message");
    assert_eq!(last.text, "here is mine");
    assert_eq!(last.photos.len(), 1);
    let page = s.get(&format!("/inbox/{thread}"));
    assert!(
        page.body
            .contains(&format!("/thumb/{}?size=320", last.photos[0])),
        "{}",
        page.body
    );
    assert_eq!(
        messages_at_seller(),
        before + 1,
        "the refused sends sent nothing"
    );
    let a = s.post_form(
        &say,
        Some("http://evil.example"),
        &format!("csrf={}&text=x", s.csrf),
    );
    assert_eq!(a.status, 403);

    // Blocks: the box must be ticked; blocked, writing is refused with the reason; the
    // settings list them; unblocking lifts it.
    let block = format!("csrf={}&peer={}&next=/inbox/{thread}", s.csrf, bid.peer_id);
    let a = s.post_form("/block", Some(&s.own_origin()), &block);
    assert_eq!(a.status, 400);
    assert!(a.body.contains(EN.block_must_confirm));
    let a = s.post_form(
        "/block",
        Some("http://evil.example"),
        &format!("{block}&confirm=yes"),
    );
    assert_eq!(a.status, 403);
    let a = s.post_form(
        "/block",
        Some(&s.own_origin()),
        &format!("{block}&confirm=yes"),
    );
    assert_eq!(a.status, 303, "{}", a.body);
    let settings = s.get("/settings");
    assert!(
        settings.body.contains(&short_peer(&bid.peer_id)),
        "{}",
        settings.body
    );
    let a = s.post_form(
        &say,
        Some(&s.own_origin()),
        &format!("csrf={}&text=hello", s.csrf),
    );
    assert_eq!(a.status, 409, "{}", a.body);
    assert!(a.body.contains(EN.err_chat_blocked), "{}", a.body);
    assert!(
        a.body.contains(">hello</textarea>"),
        "the text stays in the box"
    );
    let a = s.post_form(
        "/unblock",
        Some(&s.own_origin()),
        &format!("csrf={}&peer={}&next=/settings", s.csrf, bid.peer_id),
    );
    assert_eq!(a.status, 303);
    assert!(s.get("/settings").body.contains(EN.blocked_none));

    // The trade page's chat is the same thread.
    let offer: jangteo_node::api::types::OfferMade = json_as(&bdir, &["offer", &id]);
    let trade = b.get(&format!("/trade/{}", offer.id));
    assert!(
        trade.body.contains(&format!("data-thread=\"{thread}\"")),
        "{}",
        trade.body
    );
    assert!(trade.body.contains("Saturday 3pm?"));
    let a = b.post_form(
        &format!("/trade/{}/say", offer.id),
        Some(&b.own_origin()),
        &format!("csrf={}&text=OK%2C+see+you", b.csrf),
    );
    assert_eq!(a.status, 303, "{}", a.body);

    // Alerts: refused empty or forged; saved from the search page's button; a matching
    // listing raises a notification, which is marked read.
    let a = b.post_form(
        "/alerts",
        Some(&b.own_origin()),
        &format!("csrf={}", b.csrf),
    );
    assert_eq!(a.status, 400);
    assert!(a.body.contains(EN.err_alert_empty));
    let search = b.get("/search?q=%EC%9E%90%EC%A0%84%EA%B1%B0");
    assert!(
        search.body.contains(EN.alerts_save_search),
        "{}",
        search.body
    );
    let alert = format!("csrf={}&q=%EC%9E%90%EC%A0%84%EA%B1%B0", b.csrf);
    let a = b.post_form("/alerts", Some("http://evil.example"), &alert);
    assert_eq!(a.status, 403);
    let a = b.post_form("/alerts", Some(&b.own_origin()), &alert);
    assert_eq!(a.status, 303, "{}", a.body);
    let alerts = b.get("/alerts?saved=1");
    assert!(alerts.body.contains("“자전거”"), "{}", alerts.body);
    assert!(alerts.body.contains(EN.alerts_saved));
    let before = counts(&b).1;
    let _bike: ListingRef = json_as(
        &sdir,
        &[
            "post",
            "--title",
            "삼천리 자전거",
            "--price",
            "150000",
            "--currency",
            "KRW",
        ],
    );
    wait_for("the alert's notification", || {
        (counts(&b).1 > before).then_some(())
    });
    let list = b.get("/notifications");
    let line = fill(
        EN.notif_saved_search,
        &[("title", "삼천리 자전거"), ("price", "₩150,000")],
    );
    assert!(list.body.contains(&line), "{}", list.body);
    let item = &list.body[list.body[..list.body.find(&line).expect("the line")]
        .rfind("<li")
        .expect("its item")..];
    let nid = form_value(item, "", "id");
    let next = form_value(item, "", "next");
    assert!(next.starts_with("/listing/"), "{next}");
    let a = b.post_form(
        "/notifications/read",
        Some(&b.own_origin()),
        &format!("csrf={}&id={nid}&next={next}", b.csrf),
    );
    assert_eq!(a.status, 303);
    assert_eq!(a.header("location"), Some(next.as_str()));
    let a = b.post_form(
        "/notifications/read",
        Some(&b.own_origin()),
        &format!("csrf={}&all=1", b.csrf),
    );
    assert_eq!(a.status, 303);
    assert_eq!(counts(&b).1, 0);
    let alert_id: String = {
        let at = alerts
            .body
            .find("action=\"/alerts/")
            .expect("a saved alert")
            + 16;
        alerts.body[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect()
    };
    let a = b.post_form(
        &format!("/alerts/{alert_id}/remove"),
        Some(&b.own_origin()),
        &format!("csrf={}", b.csrf),
    );
    assert_eq!(a.status, 303);
    assert!(b.get("/alerts").body.contains(EN.alerts_empty));
}
