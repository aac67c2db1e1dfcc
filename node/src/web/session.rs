//! Who may use the web page: one-time login codes (minted through the token-protected API
//! for `jangteo ui`) that become sessions held in an HttpOnly, SameSite=Strict cookie, each
//! with its own CSRF token for forms.
//!
//! Owns the code and session tables (in memory, bounded; a node restart logs every browser
//! out) and the cookie's name and attributes. Must not render pages or check requests'
//! origins (that is [`super::guard`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header;
use rand::RngCore;

/// How long a login code may wait to be used.
pub const CODE_TTL: Duration = Duration::from_secs(120);
/// Most login codes waiting at once (the oldest is dropped for a new one).
pub const CODES_MAX: usize = 16;
/// How long a session lasts from login.
pub const SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most sessions at once (the oldest is dropped for a new one).
pub const SESSIONS_MAX: usize = 32;
/// Longest cookie header read.
const COOKIE_HEADER_MAX: usize = 8192;

/// A browser's session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The session id (the cookie's value).
    pub id: String,
    /// The token every form of this session carries.
    pub csrf: String,
    created: Instant,
}

#[derive(Debug, Default)]
struct Tables {
    codes: HashMap<String, Instant>,
    sessions: HashMap<String, Session>,
}

/// The node's login codes and sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    tables: Mutex<Tables>,
}

fn random_hex() -> String {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    hex::encode(raw)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Sessions {
    /// Empty tables.
    pub fn new() -> Self {
        Self::default()
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding the lock leaves consistent maps: keep using them.
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new one-time login code, valid for [`CODE_TTL`].
    pub fn mint_code(&self) -> String {
        let code = random_hex();
        let now = Instant::now();
        let mut t = self.tables();
        t.codes.retain(|_, at| now.duration_since(*at) < CODE_TTL);
        while t.codes.len() >= CODES_MAX {
            let oldest = t
                .codes
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => t.codes.remove(&k),
                None => break,
            };
        }
        t.codes.insert(code.clone(), now);
        code
    }

    /// Spends a login code: a new session if the code was waiting and fresh, else `None`.
    /// A code works once.
    pub fn redeem(&self, code: &str) -> Option<Session> {
        let now = Instant::now();
        let mut t = self.tables();
        let minted = t.codes.remove(code)?;
        if now.duration_since(minted) >= CODE_TTL {
            return None;
        }
        t.sessions
            .retain(|_, s| now.duration_since(s.created) < SESSION_TTL);
        while t.sessions.len() >= SESSIONS_MAX {
            let oldest = t
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => t.sessions.remove(&k),
                None => break,
            };
        }
        let s = Session {
            id: random_hex(),
            csrf: random_hex(),
            created: now,
        };
        t.sessions.insert(s.id.clone(), s.clone());
        Some(s)
    }

    /// The live session with this id.
    pub fn get(&self, id: &str) -> Option<Session> {
        let t = self.tables();
        let s = t.sessions.get(id)?;
        (s.created.elapsed() < SESSION_TTL).then(|| s.clone())
    }

    /// Ends a session.
    pub fn end(&self, id: &str) {
        self.tables().sessions.remove(id);
    }
}

impl Session {
    /// Whether a form's token is this session's.
    pub fn csrf_ok(&self, presented: &str) -> bool {
        constant_time_eq(presented.as_bytes(), self.csrf.as_bytes())
    }
}

/// The session cookie's name: one per port, so two nodes on one machine keep their own.
pub fn cookie_name(port: u16) -> String {
    format!("jangteo_session_{port}")
}

/// `Set-Cookie` value for a new session.
pub fn set_cookie(port: u16, session: &Session) -> String {
    format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        cookie_name(port),
        session.id,
        SESSION_TTL.as_secs()
    )
}

/// `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(port: u16) -> String {
    format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        cookie_name(port)
    )
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| v.len() <= COOKIE_HEADER_MAX)
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_code_makes_one_session_once() {
        let s = Sessions::new();
        let code = s.mint_code();
        let session = s.redeem(&code).expect("fresh code");
        assert!(s.redeem(&code).is_none(), "spent");
        assert!(s.redeem("not a code").is_none());
        let again = s.get(&session.id).expect("live");
        assert!(again.csrf_ok(&session.csrf));
        assert!(!again.csrf_ok("wrong"));
        assert!(!again.csrf_ok(""));
        s.end(&session.id);
        assert!(s.get(&session.id).is_none());
    }

    #[test]
    fn tables_stay_bounded() {
        let s = Sessions::new();
        let codes: Vec<String> = (0..CODES_MAX + 5).map(|_| s.mint_code()).collect();
        assert!(s.tables().codes.len() <= CODES_MAX);
        assert!(s.redeem(codes.last().expect("one")).is_some());
        for _ in 0..SESSIONS_MAX + 5 {
            let c = s.mint_code();
            s.redeem(&c);
        }
        assert!(s.tables().sessions.len() <= SESSIONS_MAX);
    }

    #[test]
    fn cookies_are_read_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; jangteo_session_80=abc; jangteo_lang=ko"),
        );
        assert_eq!(cookie(&h, &cookie_name(80)), Some("abc"));
        assert_eq!(cookie(&h, "jangteo_lang"), Some("ko"));
        assert_eq!(cookie(&h, "b"), None);
        let set = set_cookie(
            80,
            &Session {
                id: "x".into(),
                csrf: "y".into(),
                created: Instant::now(),
            },
        );
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
    }
}
