//! Turning a deploy source into a slug: a read-only app tree under `slugs/<sha256>/`,
//! content-addressed and shared between releases. Sources: a directory or a `.tar.gz`.
//! Archives are extracted safely (regular files and directories only, no absolute paths, no
//! `..`, no links, no device nodes, no setuid/setgid, size capped) into a fresh directory that
//! is renamed into place.
//! (Stub: the contract below is fixed; the implementation lands with its tests.)

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Io(#[from] crate::util::PathError),
    #[error("{source_path}: no Procfile at the top of the app")]
    NoProcfile { source_path: String },
    #[error("{source_path}: Procfile {err}")]
    Procfile { source_path: String, err: crate::procfile::ParseError },
    #[error("{archive}: entry {entry:?}: {reason}")]
    UnsafeEntry { archive: String, entry: String, reason: String },
    #[error("{0}")]
    Other(String),
}

/// A built slug.
#[derive(Debug, Clone, PartialEq)]
pub struct Slug {
    /// Lowercase hex sha256 over the tree (paths, modes, contents), stable across copies.
    pub sha256: String,
    pub path: PathBuf,
    /// Process types from the Procfile, in file order.
    pub process_types: Vec<(String, String)>,
}

/// Limits for extracting one archive.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveLimits {
    pub max_total_bytes: u64,
    pub max_entries: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        ArchiveLimits { max_total_bytes: 2 << 30, max_entries: 200_000 }
    }
}

/// Makes a slug from `source` (directory or `.tar.gz`/`.tgz`): copies or safely extracts it into
/// a fresh dir under `tmp_dir`, checks the Procfile, hashes the tree, and renames it to
/// `slugs_dir/<sha256>` (reusing an existing slug with the same hash). Files end up read-only
/// for everybody but readable by all (dynos run as an unprivileged user).
pub fn prepare_slug(source: &Path, tmp_dir: &Path, slugs_dir: &Path, limits: ArchiveLimits) -> Result<Slug, BuildError> {
    let _ = (source, tmp_dir, slugs_dir, limits);
    todo!()
}
