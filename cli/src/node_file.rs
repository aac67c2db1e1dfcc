//! The node's config file: `node.toml` in the data directory (or `node --config FILE`), which
//! holds any `node` flag, so a relay's settings live in one reviewed place.
//!
//! Keys are the flags' long names without the dashes in front (`mailbox-cap-mib = 1024`).
//! A flag on the command line wins over the file; a list flag given on the command line
//! replaces the file's list. An unknown key, a value of the wrong type or a file over 64 KiB
//! is refused with the file's name and the key, before the node starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The default config file's name, in the data directory.
pub(crate) const NODE_FILE: &str = "node.toml";
/// Largest config file read.
const NODE_FILE_MAX_BYTES: u64 = 64 * 1024;

/// What `node.toml` may set: every `node` flag.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct NodeFile {
    pub listen: Option<Vec<String>>,
    pub api: Option<SocketAddr>,
    pub bootstrap: Option<Vec<String>>,
    pub no_mdns: Option<bool>,
    pub relay: Option<bool>,
    pub mailbox_cap_mib: Option<u64>,
    pub mirror_cap_mib: Option<u64>,
    pub external_address: Option<Vec<String>>,
    pub no_listen: Option<bool>,
    pub follow: Option<Vec<String>>,
    pub metrics: Option<SocketAddr>,
    pub listing_stamp_bits: Option<u32>,
}

impl NodeFile {
    /// Parses a config file's text; `path` names it in errors.
    pub(crate) fn parse(path: &Path, text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| {
            // toml's message names the key and the line; keep it on one line.
            let msg = e.message().trim().to_owned();
            match e.span().map(|s| {
                1 + text.as_bytes()[..s.start.min(text.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
            }) {
                Some(line) => format!("{}: line {line}: {msg}", path.display()),
                None => format!("{}: {msg}", path.display()),
            }
        })
    }

    /// Reads the config file: `explicit` must exist; otherwise `DATA_DIR/node.toml` is read
    /// when it exists and an empty config used when it does not.
    pub(crate) fn load(data_dir: &Path, explicit: Option<&Path>) -> Result<Self, String> {
        let path: PathBuf = match explicit {
            Some(p) => p.to_owned(),
            None => {
                let p = data_dir.join(NODE_FILE);
                if !p.exists() {
                    return Ok(Self::default());
                }
                p
            }
        };
        let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.len() > NODE_FILE_MAX_BYTES {
            return Err(format!(
                "{}: {} bytes; a config file holds at most {NODE_FILE_MAX_BYTES}",
                path.display(),
                meta.len()
            ));
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_parses_by_its_long_name() {
        let text = r#"
listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
api = "127.0.0.1:8321"
bootstrap = ["/ip4/203.0.113.9/tcp/4001/p2p/12D3KooWexample"]
no-mdns = true
relay = true
mailbox-cap-mib = 2048
mirror-cap-mib = 8192
external-address = ["/ip4/203.0.113.7/tcp/4001"]
no-listen = false
follow = ["bikes", "books"]
metrics = "127.0.0.1:9464"
"#;
        let f = NodeFile::parse(Path::new("node.toml"), text).expect("parses");
        assert_eq!(f.relay, Some(true));
        assert_eq!(f.mailbox_cap_mib, Some(2048));
        assert_eq!(f.metrics, Some("127.0.0.1:9464".parse().expect("addr")));
        assert_eq!(f.follow.as_deref().map(<[String]>::len), Some(2));
    }

    #[test]
    fn the_shipped_relay_config_parses() {
        let f = NodeFile::parse(
            Path::new("deploy/node.toml"),
            include_str!("../../deploy/node.toml"),
        )
        .expect("deploy/node.toml parses");
        assert_eq!(f.relay, Some(true));
        assert!(f.metrics.is_some_and(|m| m.ip().is_loopback()));
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_refused_with_the_line() {
        let e = NodeFile::parse(Path::new("/d/node.toml"), "relay = true\nmailbox-cap = 5\n")
            .expect_err("unknown key");
        assert!(
            e.contains("/d/node.toml: line 2") && e.contains("mailbox-cap"),
            "{e}"
        );
        let e = NodeFile::parse(Path::new("n.toml"), "relay = \"yes\"\n").expect_err("type");
        assert!(e.contains("line 1"), "{e}");
    }
}
