//! The node's data directory kept private: it holds the identity key, the API token and a
//! store whose trade notes carry payment references in clear text, so nobody but the node's
//! user may read it.
//!
//! It owns permissions only: the directory and its folders are created 0700, one found open
//! to group or others is tightened (with a warning, since its files may have been read), and
//! the process umask gains 077 so every file the node, RocksDB or tantivy creates later is
//! private too. What lives in the directory belongs to the store, the keys and the API.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use crate::error::NodeError;
use crate::{INDEX_DIR, STORE_DIR};

/// Mode of the data directory and its folders.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Permission bits of group and others: none is set on anything in the data directory.
pub const SHARED_BITS: u32 = 0o077;
/// Most entries of one folder looked at when tightening an existing store or index (a
/// RocksDB store or a tantivy index holds far fewer files).
pub const TIGHTEN_MAX_ENTRIES: usize = 100_000;

/// Makes `dir` the node's private data directory: sets the process umask so new files are
/// private, creates `dir` and its folders with mode 0700, and tightens what an earlier
/// version left open to group or others. Returns one warning per thing it had to tighten,
/// for the caller to show.
pub fn prepare(dir: &Path) -> Result<Vec<String>, NodeError> {
    restrict_umask();
    let mut warnings = Vec::new();
    for d in [dir.to_path_buf(), dir.join(STORE_DIR), dir.join(INDEX_DIR)] {
        make_private_dir(&d, &mut warnings)?;
    }
    for d in [dir.join(STORE_DIR), dir.join(INDEX_DIR)] {
        tighten_files(&d, &mut warnings)?;
    }
    Ok(warnings)
}

/// Adds group and others to the process umask (keeping any stricter bits already set).
fn restrict_umask() {
    use nix::sys::stat::{Mode, umask};
    let old = umask(Mode::from_bits_truncate(SHARED_BITS));
    umask(old | Mode::from_bits_truncate(SHARED_BITS));
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Creates `dir` (and missing parents) with mode 0700, or tightens an existing one.
fn make_private_dir(dir: &Path, warnings: &mut Vec<String>) -> Result<(), NodeError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
        .map_err(io_err(dir))?;
    let mode = std::fs::metadata(dir)
        .map_err(io_err(dir))?
        .permissions()
        .mode();
    if mode & SHARED_BITS != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))
            .map_err(io_err(dir))?;
        warnings.push(format!(
            "{} was open to group or others (mode {:o}); it holds private data (keys, \
             payment references), so its mode is now 700",
            dir.display(),
            mode & 0o777
        ));
    }
    Ok(())
}

/// Removes group and others' bits from the files directly in `dir` (a store or an index
/// made before the umask was set).
fn tighten_files(dir: &Path, warnings: &mut Vec<String>) -> Result<(), NodeError> {
    let mut tightened = 0usize;
    for entry in std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .take(TIGHTEN_MAX_ENTRIES)
    {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let meta = entry.metadata().map_err(io_err(&path))?;
        let mode = meta.permissions().mode();
        if meta.is_file() && mode & SHARED_BITS != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & !SHARED_BITS))
                .map_err(io_err(&path))?;
            tightened += 1;
        }
    }
    if tightened > 0 {
        warnings.push(format!(
            "{tightened} files in {} were readable by group or others; they are private now",
            dir.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn a_new_data_dir_and_its_folders_are_private() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("node");
        let warnings = prepare(&dir).expect("prepare");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(STORE_DIR)), 0o700);
        assert_eq!(mode(&dir.join(INDEX_DIR)), 0o700);
    }

    #[test]
    fn the_store_files_are_readable_by_nobody_else() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("node");
        prepare(&dir).expect("prepare");
        let store = crate::Store::open(&dir.join(STORE_DIR)).expect("open");
        drop(store);
        let mut files = 0;
        for e in std::fs::read_dir(dir.join(STORE_DIR)).expect("read store") {
            let p = e.expect("entry").path();
            assert_eq!(
                mode(&p) & SHARED_BITS,
                0,
                "{} is mode {:o}",
                p.display(),
                mode(&p)
            );
            files += 1;
        }
        assert!(files > 3, "RocksDB wrote its files");
    }

    #[test]
    fn an_open_data_dir_is_tightened_with_a_warning() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("node");
        std::fs::create_dir_all(dir.join(STORE_DIR)).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let old = dir.join(STORE_DIR).join("000001.sst");
        std::fs::write(&old, b"x").expect("write");
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let warnings = prepare(&dir).expect("prepare");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&old), 0o600);
        assert!(
            warnings.iter().any(|w| w.contains("mode 755")),
            "{warnings:?}"
        );
        assert!(
            warnings.iter().any(|w| w.contains("1 files in")),
            "{warnings:?}"
        );
    }
}
