//! Delta bases: the fleet artifact of every kept slug, kept as `<data>/bases/<sha256>` (root's,
//! 0600, in a 0700 directory) after its deploy succeeded, so a later deploy can ship a delta
//! against it (`roboku fleet deploy --delta`). Their sha256s are in the reported state; slug GC
//! removes a base when no kept release names its artifact.
//!
//! A rebuilt slug (from a delta) is kept as its decoded tar, under the sha256 of the artifact the
//! command named, so the fleet can name it the same way whichever way it arrived.
//!
//! Everything here is blocking file IO: callers run it off the engine (`spawn_blocking`).

use crate::util::{IoContext, PathError};
use roboku_wire::fleet::Delta;
use sha2::Digest;
use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The most a decoded base or a rebuilt tar may be.
pub const MAX_TAR: u64 = 4 << 30;

fn is_sha(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The kept base with artifact `sha`, if there is one.
pub fn find(dir: &Path, sha: &str) -> Option<PathBuf> {
    let p = dir.join(sha);
    (is_sha(sha) && p.is_file()).then_some(p)
}

/// Artifact sha256s of every kept base, sorted.
pub fn list(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| is_sha(n))
        .collect();
    v.sort();
    v
}

/// Moves a verified artifact (or rebuilt tar) into the bases as `sha`.
pub fn keep(dir: &Path, sha: &str, file: &Path) -> Result<(), PathError> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)
        .at("create", dir)?;
    let dst = dir.join(sha);
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).at("chmod", file)?;
    std::fs::rename(file, &dst).at("rename to", &dst)?;
    crate::util::sync_parent(&dst)
}

/// Removes every base whose sha256 is not in `keep` (and leftovers of other names).
pub fn prune(dir: &Path, keep: &BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if name.to_str().is_some_and(|n| keep.contains(n)) {
            continue;
        }
        if let Err(err) = std::fs::remove_file(e.path()) {
            tracing::warn!(path = %e.path().display(), error = %err, "cannot remove a delta base");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("base {path}: decoded base is larger than {MAX_TAR} bytes")]
    BaseTooBig { path: String },
    #[error("decoding base {path}: {err}")]
    Base { path: String, err: std::io::Error },
    #[error(transparent)]
    Delta(#[from] roboku_wire::delta::DeltaError),
    #[error("rebuilt slug sha256 mismatch: signed {want}, rebuilt {got}")]
    Sha { want: String, got: String },
    #[error(transparent)]
    Io(#[from] PathError),
}

/// Rebuilds the slug tar from `base` (a kept base file) and `delta` (a verified delta file) into
/// a fresh file in `tmp`, checked against the signed `tar_sha256` and `tar_size`; returns it.
pub fn rebuild(
    base: &Path,
    delta_file: &Path,
    d: &Delta,
    tmp: &Path,
) -> Result<PathBuf, RebuildError> {
    if d.tar_size > MAX_TAR {
        return Err(roboku_wire::delta::DeltaError::TargetLen {
            got: d.tar_size,
            want: MAX_TAR,
        }
        .into());
    }
    let decoded = tmp.join(format!("delta-base-{}.tar", d.base));
    let out = tmp.join(format!("delta-{}.tar", d.tar_sha256));
    let result = (|| {
        let base_err = |err| RebuildError::Base {
            path: base.display().to_string(),
            err,
        };
        let f = std::fs::File::open(base).at("open", base)?;
        let mut r = roboku_wire::delta::decoded(f).map_err(base_err)?;
        let mut w = create_new(&decoded)?;
        let n = std::io::copy(&mut std::io::Read::take(&mut r, MAX_TAR + 1), &mut w)
            .map_err(base_err)?;
        if n > MAX_TAR {
            return Err(RebuildError::BaseTooBig {
                path: base.display().to_string(),
            });
        }
        drop(w);
        let base_file = std::fs::File::open(&decoded).at("open", &decoded)?;
        let delta = std::fs::File::open(delta_file).at("open", delta_file)?;
        let mut sink = Hashing {
            file: std::io::BufWriter::new(create_new(&out)?),
            hash: sha2::Sha256::new(),
        };
        roboku_wire::delta::apply(
            &base_file,
            std::io::BufReader::new(delta),
            d.tar_size,
            &mut sink,
        )?;
        let file = sink
            .file
            .into_inner()
            .map_err(|e| e.into_error())
            .at("write", &out)?;
        file.sync_all().at("fsync", &out)?;
        let got: String = sink
            .hash
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if got != d.tar_sha256 {
            return Err(RebuildError::Sha {
                want: d.tar_sha256.clone(),
                got,
            });
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&decoded);
    match result {
        Ok(()) => Ok(out),
        Err(e) => {
            let _ = std::fs::remove_file(&out);
            Err(e)
        }
    }
}

/// A new file of robokud's own (never through an existing name or link), 0600.
fn create_new(path: &Path) -> Result<std::fs::File, PathError> {
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .at("create", path)
}

/// Writes through to a file and hashes what passes.
struct Hashing<W> {
    file: W,
    hash: sha2::Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(dir: &Path, name: &str, body: &str) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, body.as_bytes()).unwrap();
        let _ = dir;
        b.into_inner().unwrap()
    }

    fn sha(b: &[u8]) -> String {
        sha2::Sha256::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    }

    #[test]
    fn rebuild_checks_the_signed_digest_and_keep_list_prune_work() {
        let d = tempfile::tempdir().unwrap();
        let old = tar_of(d.path(), "Procfile", &"web: sleep 1\n".repeat(200));
        let new = tar_of(d.path(), "Procfile", &"web: sleep 2\n".repeat(200));
        // The base as the robot keeps it: a gzip artifact.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&old).unwrap();
        let gz = gz.finish().unwrap();
        let base_sha = sha(&gz);
        let art = d.path().join("download");
        std::fs::write(&art, &gz).unwrap();
        let bases = d.path().join("bases");
        keep(&bases, &base_sha, &art).unwrap();
        assert_eq!(list(&bases), vec![base_sha.clone()]);
        let base = find(&bases, &base_sha).unwrap();
        let mode = std::fs::metadata(&base).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let delta_bytes = roboku_wire::delta::encode(&old, &new);
        let delta_file = d.path().join("delta");
        std::fs::write(&delta_file, &delta_bytes).unwrap();
        let mut spec = Delta {
            url: String::new(),
            sha256: sha(&delta_bytes),
            size: delta_bytes.len() as u64,
            base: base_sha.clone(),
            tar_sha256: sha(&new),
            tar_size: new.len() as u64,
        };
        let out = rebuild(&base, &delta_file, &spec, d.path()).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), new);
        // A digest that does not match: refused, nothing left behind.
        spec.tar_sha256 = sha(b"other");
        let e = rebuild(&base, &delta_file, &spec, d.path()).unwrap_err();
        assert!(e.to_string().contains("sha256 mismatch"), "{e}");
        assert!(!d
            .path()
            .join(format!("delta-{}.tar", spec.tar_sha256))
            .exists());
        prune(&bases, &BTreeSet::new());
        assert!(list(&bases).is_empty());
        assert!(find(&bases, "../etc").is_none());
    }
}
