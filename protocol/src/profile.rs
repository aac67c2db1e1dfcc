//! The `profile` kind: a node's public name and short bio, newest `updated_at` wins.
//!
//! Owns the body's fields, encoding and limits; nothing about storage.

use crate::cbor::{self, Fields, canonical_map, uint};
use crate::error::{DecodeError, FieldError};
use crate::limits::MAX_CLOCK_SKEW_MS;
use ciborium::value::Value;

pub use crate::limits::{BIO_MAX_BYTES, NAME_MAX_CHARS};

/// A node's public profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Display name.
    pub name: String,
    /// Short free text.
    pub bio: String,
    /// When this version was made (unix ms); the newest wins.
    pub updated_at: u64,
}

impl Profile {
    /// The deterministic CBOR body.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = vec![
            ("name", Value::Text(self.name.clone())),
            ("updated", uint(self.updated_at)),
        ];
        if !self.bio.is_empty() {
            e.push(("bio", Value::Text(self.bio.clone())));
        }
        cbor::to_vec(&canonical_map(e))
    }

    /// Decodes a body.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut f = Fields::from_value(cbor::from_slice_canonical(body)?)?;
        let p = Profile {
            name: f.text("name")?,
            bio: f.opt_text("bio")?.unwrap_or_default(),
            updated_at: f.u64("updated")?,
        };
        f.finish()?;
        Ok(p)
    }

    /// Checks limits.
    pub fn validate(&self, now_ms: u64) -> Result<(), FieldError> {
        crate::text::check_line("name", &self.name, NAME_MAX_CHARS)?;
        crate::text::check_free_text("bio", &self.bio, BIO_MAX_BYTES, &['\n'])?;
        if self.updated_at > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
            return Err(FieldError::dated_in_future("updated_at"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_limits() {
        let p = Profile {
            name: "장터 할머니".into(),
            bio: String::new(),
            updated_at: 1_760_000_000_000,
        };
        assert_eq!(Profile::decode(&p.encode()).expect("decodes"), p);
        p.validate(1_760_000_000_000).expect("valid");
        let long = Profile {
            name: "x".repeat(NAME_MAX_CHARS + 1),
            ..p.clone()
        };
        assert_eq!(
            long.validate(1_760_000_000_000).expect_err("long").field,
            "name"
        );
        for (name, bio, field) in [
            ("장터\u{3000}", "", "name"),
            ("\u{3164}", "", "name"),
            ("\u{202E}name", "", "name"),
            ("장터", "line\ttab", "bio"),
            ("장터", "\u{2066}isolate", "bio"),
        ] {
            let p = Profile {
                name: name.into(),
                bio: bio.into(),
                ..p.clone()
            };
            assert_eq!(p.validate(1_760_000_000_000).expect_err(name).field, field);
        }
        // An explicit empty bio is refused on decode: leave it out.
        let mut v = cbor::from_slice_canonical(&p.encode()).expect("canonical");
        if let Value::Map(m) = &mut v {
            m.insert(0, (Value::Text("bio".into()), Value::Text(String::new())));
        }
        assert!(matches!(
            Profile::decode(&cbor::to_vec(&v)),
            Err(DecodeError::EmptyOptional("bio"))
        ));
    }
}
