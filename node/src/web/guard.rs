//! The checks every web request passes before a page handler sees it, and the headers every
//! web answer carries.
//!
//! - **Host** must name the address the node is bound to (an IP literal with its port, or
//!   `localhost` with its port): a DNS-rebinding page whose name resolves to 127.0.0.1 is
//!   refused with 421 before it can read anything.
//! - **Origin** of every state-changing request (anything but GET and HEAD) must be this
//!   node's own origin; with the SameSite=Strict cookie and the per-session CSRF token
//!   ([`super::session`]) that closes cross-site requests.
//! - **Headers**: a Content-Security-Policy with no inline script and no other origin,
//!   `nosniff`, a referrer only to this origin (`same-origin`: with `no-referrer` Chromium
//!   sends `Origin: null` on the page's own form posts, which the Origin
//!   check refuses), no framing, and no caching of pages.
//!
//! Owns no state beyond the bound address; must not look at sessions or render pages.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::WebState;

/// The page's Content-Security-Policy.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// Whether `host` (a Host header) names the bound address `addr`.
pub fn host_allowed(host: &str, addr: SocketAddr) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let Some((name, port)) = host.rsplit_once(':') else {
        return false;
    };
    if port.parse::<u16>().ok() != Some(addr.port()) {
        return false;
    }
    let bound = addr.ip();
    if name == "localhost" {
        return bound.is_loopback() || bound.is_unspecified();
    }
    let literal = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    match literal.parse::<IpAddr>() {
        // Bound to every interface: any address of this machine may be used, but only as
        // a literal, never a name that someone else's DNS decides.
        Ok(ip) if bound.is_unspecified() => ip.is_ipv4() == bound.is_ipv4() || ip.is_loopback(),
        Ok(ip) => ip == bound,
        Err(_) => false,
    }
}

fn refuse(status: StatusCode, text: &'static str) -> Response {
    let mut r = (status, text).into_response();
    set_security_headers(&mut r);
    r
}

/// Refuses requests whose Host is not the bound address (421), and state-changing requests
/// whose Origin is not this node's (403).
pub async fn check_request(State(w): State<WebState>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if host.is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "missing Host header\n");
    }
    if !host_allowed(&host, w.addr) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "this node's web page answers only at its own address (open it with `jangteo ui`)\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .unwrap_or("");
        let own = format!("http://{host}");
        if !origin.eq_ignore_ascii_case(&own) {
            return super::pages::forbidden(&req);
        }
    }
    let mut response = next.run(req).await;
    set_security_headers(&mut response);
    response
}

/// The headers every web answer carries (those a handler set itself are kept).
pub fn set_security_headers(r: &mut Response) {
    let h = r.headers_mut();
    let defaults: [(header::HeaderName, &'static str); 6] = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in defaults {
        h.entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_bound_address_is_a_host() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        assert!(host_allowed("127.0.0.1:8080", lo));
        assert!(host_allowed("localhost:8080", lo));
        assert!(host_allowed("LOCALHOST:8080", lo));
        assert!(!host_allowed("127.0.0.1:8081", lo));
        assert!(!host_allowed("127.0.0.1", lo));
        assert!(!host_allowed("evil.example:8080", lo));
        assert!(!host_allowed("evil.example", lo));
        assert!(!host_allowed("127.0.0.2:8080", lo));
        assert!(!host_allowed("", lo));
        let v6: SocketAddr = "[::1]:9000".parse().expect("addr");
        assert!(host_allowed("[::1]:9000", v6));
        assert!(!host_allowed("[::2]:9000", v6));
        let any: SocketAddr = "0.0.0.0:7000".parse().expect("addr");
        assert!(host_allowed("192.168.1.5:7000", any));
        assert!(!host_allowed("attacker.example:7000", any));
        let lan: SocketAddr = "192.168.1.5:7000".parse().expect("addr");
        assert!(!host_allowed("localhost:7000", lan));
    }
}
