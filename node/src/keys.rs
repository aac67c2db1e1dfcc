//! The node's identity: one ed25519 key that signs objects and is also the libp2p identity.
//!
//! Owns the key file (`identity.key`, 32 secret bytes, mode 0600) and nothing else.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use ed25519_dalek::SigningKey;
use rand::RngCore;

use crate::error::NodeError;

/// File name of the identity key inside the data directory.
pub const KEY_FILE: &str = "identity.key";

/// Loads the identity key from `dir`, creating it (mode 0600) if missing.
/// Returns the key and whether it was created now.
pub fn load_or_create(dir: &Path) -> Result<(SigningKey, bool), NodeError> {
    let path = dir.join(KEY_FILE);
    let io = |source| NodeError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            let secret: [u8; 32] = bytes
                .try_into()
                .map_err(|_| NodeError::BadKey(path.display().to_string()))?;
            let mode = std::fs::metadata(&path).map_err(io)?.permissions().mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(io)?;
            }
            Ok((SigningKey::from_bytes(&secret), false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|source| NodeError::Io {
                path: dir.display().to_string(),
                source,
            })?;
            let mut secret = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut secret);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(io)?;
            f.write_all(&secret).map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok((SigningKey::from_bytes(&secret), true))
        }
        Err(e) => Err(io(e)),
    }
}

/// The libp2p keypair of the same key.
pub fn libp2p_keypair(key: &SigningKey) -> Result<libp2p::identity::Keypair, NodeError> {
    libp2p::identity::Keypair::ed25519_from_bytes(key.to_bytes())
        .map_err(|e| NodeError::Network(format!("identity key: {e}")))
}

/// Writes a secret file (the API token) with mode 0600, replacing any old one.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> Result<(), NodeError> {
    let io = |source| NodeError::Io {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(contents).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_with_mode_0600_and_matches_peer_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (k1, created) = load_or_create(dir.path()).expect("create");
        assert!(created);
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (k2, created) = load_or_create(dir.path()).expect("load");
        assert!(!created);
        assert_eq!(k1.to_bytes(), k2.to_bytes());
        let peer = libp2p_keypair(&k1)
            .expect("keypair")
            .public()
            .to_peer_id()
            .to_string();
        assert_eq!(
            peer,
            jangteo_protocol::peer_id_string(&k1.verifying_key().to_bytes())
        );
    }
}
