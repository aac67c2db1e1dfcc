//! Deterministic CBOR (RFC 8949 §4.2.1, core deterministic encoding) for object bodies.
//!
//! This module owns the byte-level rules every body must follow: definite lengths, shortest
//! integer forms, map keys sorted by the bytewise order of their encodings, no floats, no tags,
//! no duplicate keys. Encoding builds a canonical map; decoding accepts only bytes that
//! re-encode to exactly themselves. It knows nothing about listings or signatures.

use ciborium::value::{Integer, Value};

use crate::error::DecodeError;
use crate::ids::PublicKey;

/// Deepest nesting a body may have, in levels (see [`crate::limits::CBOR_MAX_LEVELS`]).
pub use crate::limits::CBOR_MAX_LEVELS as MAX_DEPTH;
use crate::limits::CBOR_MAX_LEVELS;

/// Encodes a CBOR value to bytes. Values built by this crate never fail to encode.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    // Writing into a Vec cannot fail, and our values contain no floats or tags.
    if ciborium::into_writer(value, &mut out).is_err() {
        out.clear();
    }
    out
}

/// Builds a map whose entries are in canonical order (shorter keys first, then bytewise),
/// which is the RFC 8949 deterministic order for text keys.
pub fn canonical_map(mut entries: Vec<(&'static str, Value)>) -> Value {
    entries.sort_by(|a, b| key_order(a.0, b.0));
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::Text(k.to_owned()), v))
            .collect(),
    )
}

fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// Decodes `bytes` as one deterministic CBOR value and checks that it re-encodes to exactly
/// the same bytes, with map keys in canonical order and no floats or tags.
pub fn from_slice_canonical(bytes: &[u8]) -> Result<Value, DecodeError> {
    let value: Value =
        ciborium::from_reader(bytes).map_err(|e| DecodeError::Cbor(e.to_string()))?;
    check_value(&value, 1)?;
    if to_vec(&value) != bytes {
        return Err(DecodeError::NotCanonical);
    }
    Ok(value)
}

/// Checks the value at nesting `level` (the top-level item is level 1; whatever an array or
/// a map holds is one level deeper) and everything inside it.
fn check_value(value: &Value, level: usize) -> Result<(), DecodeError> {
    if level > CBOR_MAX_LEVELS {
        return Err(DecodeError::TooDeep);
    }
    match value {
        Value::Float(_) => Err(DecodeError::Forbidden("float")),
        Value::Tag(..) => Err(DecodeError::Forbidden("tag")),
        Value::Array(items) => items.iter().try_for_each(|v| check_value(v, level + 1)),
        Value::Map(entries) => {
            let mut prev: Option<&str> = None;
            for (k, v) in entries {
                let Value::Text(k) = k else {
                    return Err(DecodeError::Forbidden("non-text map key"));
                };
                if let Some(p) = prev
                    && key_order(p, k) != std::cmp::Ordering::Less
                {
                    return Err(DecodeError::NotCanonical);
                }
                prev = Some(k);
                check_value(v, level + 1)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A decoded map whose fields are taken out one by one; anything left over is an error.
#[derive(Debug)]
pub struct Fields {
    entries: Vec<(String, Value)>,
}

impl Fields {
    /// Takes a map value apart.
    pub fn from_value(value: Value) -> Result<Self, DecodeError> {
        match value {
            Value::Map(entries) => {
                let mut out = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    match k {
                        Value::Text(k) => out.push((k, v)),
                        _ => return Err(DecodeError::Forbidden("non-text map key")),
                    }
                }
                Ok(Self { entries: out })
            }
            _ => Err(DecodeError::WrongType {
                field: "body",
                expected: "map",
            }),
        }
    }

    fn take(&mut self, name: &'static str) -> Option<Value> {
        let pos = self.entries.iter().position(|(k, _)| k == name)?;
        Some(self.entries.swap_remove(pos).1)
    }

    /// A required unsigned integer.
    pub fn u64(&mut self, name: &'static str) -> Result<u64, DecodeError> {
        let v = self.take(name).ok_or(DecodeError::Missing(name))?;
        as_u64(v, name)
    }

    /// An optional unsigned integer.
    pub fn opt_u64(&mut self, name: &'static str) -> Result<Option<u64>, DecodeError> {
        self.take(name).map(|v| as_u64(v, name)).transpose()
    }

    /// A required text string.
    pub fn text(&mut self, name: &'static str) -> Result<String, DecodeError> {
        match self.take(name).ok_or(DecodeError::Missing(name))? {
            Value::Text(s) => Ok(s),
            _ => Err(DecodeError::WrongType {
                field: name,
                expected: "text",
            }),
        }
    }

    /// An optional text string; present means non-empty (an empty one is left out).
    pub fn opt_text(&mut self, name: &'static str) -> Result<Option<String>, DecodeError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Text(s)) if s.is_empty() => Err(DecodeError::EmptyOptional(name)),
            Some(Value::Text(s)) => Ok(Some(s)),
            Some(_) => Err(DecodeError::WrongType {
                field: name,
                expected: "text",
            }),
        }
    }

    /// A required byte string.
    pub fn bytes(&mut self, name: &'static str) -> Result<Vec<u8>, DecodeError> {
        match self.take(name).ok_or(DecodeError::Missing(name))? {
            Value::Bytes(b) => Ok(b),
            _ => Err(DecodeError::WrongType {
                field: name,
                expected: "bytes",
            }),
        }
    }

    /// An optional byte string.
    pub fn opt_bytes(&mut self, name: &'static str) -> Result<Option<Vec<u8>>, DecodeError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Bytes(b)) => Ok(Some(b)),
            Some(_) => Err(DecodeError::WrongType {
                field: name,
                expected: "bytes",
            }),
        }
    }

    /// A required array (it may be empty).
    pub fn array(&mut self, name: &'static str) -> Result<Vec<Value>, DecodeError> {
        match self.take(name).ok_or(DecodeError::Missing(name))? {
            Value::Array(a) => Ok(a),
            _ => Err(DecodeError::WrongType {
                field: name,
                expected: "array",
            }),
        }
    }

    /// An optional array; present means non-empty (an empty one is left out).
    pub fn opt_array(&mut self, name: &'static str) -> Result<Option<Vec<Value>>, DecodeError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Array(a)) if a.is_empty() => Err(DecodeError::EmptyOptional(name)),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(DecodeError::WrongType {
                field: name,
                expected: "array",
            }),
        }
    }

    /// An optional array of at most `max` ed25519 keys (32-byte strings).
    pub fn opt_keys(
        &mut self,
        name: &'static str,
        max: usize,
    ) -> Result<Vec<PublicKey>, DecodeError> {
        let Some(items) = self.opt_array(name)? else {
            return Ok(Vec::new());
        };
        if items.len() > max {
            return Err(DecodeError::WrongType {
                field: name,
                expected: "fewer keys",
            });
        }
        items
            .into_iter()
            .map(|v| match v {
                Value::Bytes(b) => {
                    <[u8; 32]>::try_from(b)
                        .map(PublicKey)
                        .map_err(|_| DecodeError::WrongType {
                            field: name,
                            expected: "32-byte keys",
                        })
                }
                _ => Err(DecodeError::WrongType {
                    field: name,
                    expected: "bytes",
                }),
            })
            .collect()
    }

    /// Fails when the map had fields this version does not know.
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.entries.into_iter().next() {
            None => Ok(()),
            Some((k, _)) => Err(DecodeError::UnknownField(k)),
        }
    }
}

/// Reads an unsigned integer out of a value.
pub fn as_u64(v: Value, name: &'static str) -> Result<u64, DecodeError> {
    match v {
        Value::Integer(i) => u64::try_from(i).map_err(|_| DecodeError::WrongType {
            field: name,
            expected: "uint",
        }),
        _ => Err(DecodeError::WrongType {
            field: name,
            expected: "uint",
        }),
    }
}

/// Reads a signed integer out of a value.
pub fn as_i64(v: Value, name: &'static str) -> Result<i64, DecodeError> {
    match v {
        Value::Integer(i) => i64::try_from(i).map_err(|_| DecodeError::WrongType {
            field: name,
            expected: "int",
        }),
        _ => Err(DecodeError::WrongType {
            field: name,
            expected: "int",
        }),
    }
}

/// Pushes `name` as an array of keys, unless `keys` is empty (the counterpart of
/// [`Fields::opt_keys`]).
pub fn push_keys(e: &mut Vec<(&'static str, Value)>, name: &'static str, keys: &[PublicKey]) {
    if !keys.is_empty() {
        e.push((
            name,
            Value::Array(keys.iter().map(|k| Value::Bytes(k.0.to_vec())).collect()),
        ));
    }
}

/// An unsigned integer value.
pub fn uint(n: u64) -> Value {
    Value::Integer(Integer::from(n))
}

/// A signed integer value.
pub fn int(n: i64) -> Value {
    Value::Integer(Integer::from(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sorted_by_length_then_bytes() {
        let v = canonical_map(vec![("title", uint(1)), ("seq", uint(2)), ("abc", uint(3))]);
        let bytes = to_vec(&v);
        let back = from_slice_canonical(&bytes).expect("canonical");
        assert_eq!(back, v);
        let Value::Map(m) = back else { panic!("map") };
        let keys: Vec<_> = m
            .iter()
            .map(|(k, _)| k.as_text().unwrap_or("").to_owned())
            .collect();
        assert_eq!(keys, ["abc", "seq", "title"]);
    }

    #[test]
    fn rejects_unsorted_keys_and_long_ints() {
        // {"b": 1, "a": 2}: keys out of order.
        let unsorted = [0xa2, 0x61, b'b', 0x01, 0x61, b'a', 0x02];
        assert!(matches!(
            from_slice_canonical(&unsorted),
            Err(DecodeError::NotCanonical)
        ));
        // {"a": 1} with the integer in a 2-byte form.
        let long_int = [0xa1, 0x61, b'a', 0x19, 0x00, 0x01];
        assert!(matches!(
            from_slice_canonical(&long_int),
            Err(DecodeError::NotCanonical)
        ));
        // Indefinite-length map.
        let indefinite = [0xbf, 0x61, b'a', 0x01, 0xff];
        assert!(matches!(
            from_slice_canonical(&indefinite),
            Err(DecodeError::NotCanonical)
        ));
        // A float.
        let float = [0xa1, 0x61, b'a', 0xf9, 0x3c, 0x00];
        assert!(from_slice_canonical(&float).is_err());
        // Trailing bytes.
        let trailing = [0xa1, 0x61, b'a', 0x01, 0x00];
        assert!(from_slice_canonical(&trailing).is_err());
    }
}
