//! The node's identity: one ed25519 key that signs objects and is also the libp2p identity.
//!
//! Owns the key file (`identity.key`, 32 secret bytes, mode 0600) and the writing of the
//! other secret files (mode 0600); a key file found readable by others is reported loudly,
//! not silently fixed. It must not decide anything about the rest of the data directory (`data_dir`).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use rand::RngCore;

use crate::error::NodeError;

/// File name of the identity key inside the data directory.
pub const KEY_FILE: &str = "identity.key";

/// A key file that group or others could read: the key may have leaked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExposedKey {
    /// The key file.
    pub path: PathBuf,
    /// Its permission bits as found.
    pub mode: u32,
}

impl std::fmt::Display for ExposedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "identity key {} was readable by group or others (mode {:o}): it may have leaked. \
             Its mode is now 600. If anyone else could read this machine's files, move the data \
             directory away and start with a new identity",
            self.path.display(),
            self.mode
        )
    }
}

/// The identity key as loaded.
#[derive(Debug)]
pub struct LoadedKey {
    /// The key.
    pub key: SigningKey,
    /// Whether it was created now.
    pub created: bool,
    /// Set when the key file was open to group or others (its mode is fixed by now).
    pub exposed: Option<ExposedKey>,
}

/// Loads the identity key from `dir`, creating it (mode 0600) if missing. A key file found
/// readable by group or others is made 0600 and reported in [`LoadedKey::exposed`].
pub fn open_key(dir: &Path) -> Result<LoadedKey, NodeError> {
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
            let mode = std::fs::metadata(&path).map_err(io)?.permissions().mode() & 0o777;
            let mut exposed = None;
            if mode & 0o077 != 0 {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(io)?;
                exposed = Some(ExposedKey {
                    path: path.clone(),
                    mode,
                });
            }
            Ok(LoadedKey {
                key: SigningKey::from_bytes(&secret),
                created: false,
                exposed,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| NodeError::Io {
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
            Ok(LoadedKey {
                key: SigningKey::from_bytes(&secret),
                created: true,
                exposed: None,
            })
        }
        Err(e) => Err(io(e)),
    }
}

/// [`open_key`], warning loudly (in the log and on stderr) when the key file was readable
/// by others. Returns the key and whether it was created now.
pub fn load_or_create(dir: &Path) -> Result<(SigningKey, bool), NodeError> {
    let loaded = open_key(dir)?;
    if let Some(exposed) = &loaded.exposed {
        tracing::warn!(path = %exposed.path.display(), mode = format!("{:o}", exposed.mode), "{exposed}");
        eprintln!("WARNING: {exposed}");
    }
    Ok((loaded.key, loaded.created))
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

    #[test]
    fn a_key_readable_by_others_is_reported_then_made_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = open_key(dir.path()).expect("create");
        assert_eq!(first.exposed, None);
        let path = dir.path().join(KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let again = open_key(dir.path()).expect("load");
        assert_eq!(again.key.to_bytes(), first.key.to_bytes());
        let exposed = again.exposed.expect("the exposure is reported");
        assert_eq!(exposed.mode, 0o644);
        assert!(exposed.to_string().contains("may have leaked"), "{exposed}");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(open_key(dir.path()).expect("load").exposed, None);
    }
}
