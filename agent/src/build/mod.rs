//! Turning a deploy source into a slug: a read-only app tree under `slugs/<sha256>/`,
//! content-addressed and shared between releases. Sources: a directory or a `.tar.gz`.
//! Archives are extracted safely (regular files and directories only, no absolute paths, no
//! `..`, no links, no device nodes, no setuid/setgid, size capped) into a fresh directory that
//! is renamed into place.
//!
//! Files: `archive.rs` (safe extraction), `tree.rs` (copy, hash, freeze, remove). This module
//! only sequences them; nothing half-built ever appears under `slugs/`: a failed build leaves
//! no trace but its error, and the temporary tree is removed on every error path.

mod archive;
pub mod buildpack;
pub mod builtin;
pub mod elf;
pub mod slugfile;
mod tree;
pub mod tree_diff;
mod zstd;

/// For [`crate::checks::archive`]: the extraction an upload goes through.
pub(crate) use archive::extract;
pub use archive::{slug_archive, sniff, ArchiveKind};
pub use tree::{copy_dir, hash_tree, make_read_only, remove_tree};

use crate::util::{IoContext, PathError};
use rand::RngCore;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Io(#[from] crate::util::PathError),
    #[error("{source_path}: no Procfile at the top of the app")]
    NoProcfile { source_path: String },
    #[error("{source_path}: Procfile {err}")]
    Procfile {
        source_path: String,
        err: crate::procfile::ParseError,
    },
    #[error("{archive}: entry {entry:?}: {reason}")]
    UnsafeEntry {
        archive: String,
        entry: String,
        reason: String,
    },
    /// A buildpack phase failed or timed out; `message` has the exit status and output tail.
    #[error("buildpack {name}: {phase} {message}")]
    Buildpack {
        name: String,
        phase: buildpack::Phase,
        message: String,
    },
    #[error("no buildpack detected this app (tried {}); add a Procfile, package.json or requirements.txt, or name a buildpack", tried.join(", "))]
    NoBuildpack { tried: Vec<String> },
    /// A native executable or library in the slug is for another CPU.
    #[error("{file} is built for {built_for} but this robot is {host}{}", match more {
        0 => String::new(),
        1 => " (and 1 more file)".to_string(),
        n => format!(" (and {n} more files)"),
    })]
    Arch {
        file: String,
        built_for: String,
        host: String,
        more: usize,
    },
    /// A git buildpack could not be fetched or is not usable.
    #[error(transparent)]
    GitPack(#[from] buildpack::git_cache::GitPackError),
    #[error("{0}")]
    Other(String),
}

/// Every build process (and whatever it starts) carries this variable, set to its app dir under
/// the agent's tmp dir, so an agent that died mid-build can find and kill what is left.
pub const BUILD_TAG: &str = "ROBOKU_BUILD";

/// Kills processes left by builds of an earlier agent (found by [`BUILD_TAG`] pointing under
/// `tmp_dir`), then empties `tmp_dir`. Called at start, before anything new is built.
/// Returns how many processes were killed.
pub fn clean_after_crash(tmp_dir: &Path) -> usize {
    let prefix = format!("{BUILD_TAG}={}", tmp_dir.display());
    let mut killed = 0;
    let me = std::process::id().to_string();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()) && *n != me)
        else {
            continue;
        };
        let Ok(environ) = fs::read(entry.path().join("environ")) else {
            continue;
        };
        let tagged = environ
            .split(|&b| b == 0)
            .any(|var| var.starts_with(prefix.as_bytes()));
        if tagged {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill has no memory-safety preconditions.
                if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                    killed += 1;
                }
            }
        }
    }
    if let Ok(entries) = fs::read_dir(tmp_dir) {
        for e in entries.flatten() {
            let p = e.path();
            let gone = if p.is_dir() {
                remove_tree(&p).map_err(|e| e.to_string())
            } else {
                fs::remove_file(&p).map_err(|e| e.to_string())
            };
            if let Err(e) = gone {
                tracing::warn!(path = %p.display(), error = %e, "cannot clean a leftover temp entry");
            }
        }
    }
    killed
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
        ArchiveLimits {
            max_total_bytes: 2 << 30,
            max_entries: 200_000,
        }
    }
}

/// Makes a slug from `source` (directory or `.tar.gz`/`.tgz`): copies or safely extracts it into
/// a fresh dir under `tmp_dir`, checks the Procfile, hashes the tree, and renames it to
/// `slugs_dir/<sha256>` (reusing an existing slug with the same hash). Files end up read-only
/// for everybody but readable by all (dynos run as an unprivileged user).
pub fn prepare_slug(
    source: &Path,
    tmp_dir: &Path,
    slugs_dir: &Path,
    limits: ArchiveLimits,
) -> Result<Slug, BuildError> {
    prepare_slug_with(source, tmp_dir, slugs_dir, limits, &mut |_| Ok(Vec::new()))
}

/// A step run on the writable app tree before it is hashed (buildpacks, architecture checks).
/// It returns default process types, used for types the Procfile does not define.
pub type BuildStep<'a> = dyn FnMut(&Path) -> Result<Vec<(String, String)>, BuildError> + 'a;

/// [`prepare_slug`] with a build step between extraction and hashing.
pub fn prepare_slug_with(
    source: &Path,
    tmp_dir: &Path,
    slugs_dir: &Path,
    limits: ArchiveLimits,
    step: &mut BuildStep<'_>,
) -> Result<Slug, BuildError> {
    for dir in [tmp_dir, slugs_dir] {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .at("create dir", dir)?;
    }
    let work = TmpTree(tmp_dir.join(format!("slug-{:016x}", rand::rngs::OsRng.next_u64())));
    tree::create_work_dir(&work.0)?;
    // Not listable: the app tree inside is made the build user's alone by the build step.
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&work.0, fs::Permissions::from_mode(0o711)).at("chmod", &work.0)?;
    }

    let meta = fs::metadata(source).at("stat", source)?;
    let root = if meta.is_dir() {
        let src = fs::canonicalize(source).at("resolve", source)?;
        if fs::canonicalize(tmp_dir)
            .at("resolve", tmp_dir)?
            .starts_with(&src)
        {
            return Err(BuildError::Other(format!(
                "{}: contains the agent's own data directory",
                source.display()
            )));
        }
        copy_dir(source, &work.0)?;
        work.0.clone()
    } else {
        let kind = sniff(source)?.ok_or_else(|| {
            BuildError::Other(format!(
                "{}: neither a directory nor a .tar.gz archive",
                source.display()
            ))
        })?;
        archive::extract(source, kind, &work.0, limits)?;
        unwrap_single_dir(&work.0)?
    };

    let defaults = step(&root)?;
    let process_types = match read_procfile(source, &root) {
        Ok(mut types) => {
            for (name, cmd) in defaults {
                if !types.iter().any(|(n, _)| *n == name) {
                    types.push((name, cmd));
                }
            }
            types
        }
        Err(BuildError::NoProcfile { .. }) if !defaults.is_empty() => defaults,
        Err(e) => return Err(e),
    };
    let sha256 = hash_tree(&root)?;
    let path = slugs_dir.join(&sha256);
    if fs::symlink_metadata(&path).is_err() {
        make_read_only(&root)?;
        tree::sync_filesystem(&root)?;
        match fs::rename(&root, &path) {
            Ok(()) => tree::sync_dir(slugs_dir)?,
            // Somebody else put the same slug in place meanwhile: theirs is as good as ours.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) => {}
            Err(e) => return Err(e).at("rename to", &path).map_err(BuildError::from),
        }
    }
    drop(work);
    Ok(Slug {
        sha256,
        path,
        process_types,
    })
}

/// A work tree under `tmp_dir`, removed when dropped: on every error path, and after success
/// (by then it is gone or an empty wrapper, or a duplicate of a slug we already had).
struct TmpTree(PathBuf);

impl Drop for TmpTree {
    fn drop(&mut self) {
        if let Err(e) = remove_tree(&self.0) {
            tracing::warn!(error = %e, "could not remove a temporary slug tree");
        }
    }
}

/// GitHub-style tarballs wrap the app in one top directory (`repo-main/`): if the top has no
/// Procfile but is exactly one directory that has one, that directory is the app.
fn unwrap_single_dir(root: &Path) -> Result<PathBuf, PathError> {
    if exists(&root.join("Procfile"))? {
        return Ok(root.to_path_buf());
    }
    let mut entries = fs::read_dir(root).at("read dir", root)?;
    let (Some(first), None) = (entries.next(), entries.next()) else {
        return Ok(root.to_path_buf());
    };
    let inner = first.at("read dir", root)?.path();
    let is_dir = fs::symlink_metadata(&inner).at("stat", &inner)?.is_dir();
    if is_dir && exists(&inner.join("Procfile"))? {
        Ok(inner)
    } else {
        Ok(root.to_path_buf())
    }
}

fn exists(path: &Path) -> Result<bool, PathError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).at("stat", path),
    }
}

/// Reads and parses `root/Procfile` into (name, command) pairs in file order.
fn read_procfile(source: &Path, root: &Path) -> Result<Vec<(String, String)>, BuildError> {
    let source_path = source.display().to_string();
    let path = root.join("Procfile");
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(BuildError::NoProcfile { source_path })
        }
        Err(e) => return Err(e).at("read", &path).map_err(BuildError::from),
    };
    let text = String::from_utf8(bytes)
        .map_err(|_| BuildError::Other(format!("{source_path}: Procfile is not UTF-8")))?;
    let procfile = crate::procfile::parse_procfile(&text)
        .map_err(|err| BuildError::Procfile { source_path, err })?;
    Ok(procfile
        .entries
        .into_iter()
        .map(|p| (p.name, p.command))
        .collect())
}

#[cfg(test)]
mod archive_tests;
#[cfg(test)]
mod tests;
