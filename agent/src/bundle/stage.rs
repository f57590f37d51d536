//! Reading a bundle file, blocking (run it on the blocking pool): the sealed manifest, then,
//! once the caller verified it, the slugs into a fresh directory, each checked against the
//! manifest's size and sha256 as it is written. Member names never become paths: a slug is
//! written to `<dir>/<sha256>.tar.gz`, the digest being 64 hex digits the manifest check
//! already required, with `create_new` (nothing there is followed or overwritten).

use roboku_wire::bundle::{BundleError, BundleReader, Manifest};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

fn open(file: &Path) -> Result<BundleReader<BufReader<File>>, BundleError> {
    let f =
        File::open(file).map_err(|e| BundleError::Io(format!("open {}: {e}", file.display())))?;
    Ok(BundleReader::new(BufReader::with_capacity(64 * 1024, f)))
}

/// The sealed manifest's bytes (not verified).
pub fn read_manifest(file: &Path) -> Result<Vec<u8>, BundleError> {
    open(file)?.manifest()
}

/// A bundle's slugs on disk, removed with it.
#[derive(Debug)]
pub struct Staged {
    dir: Option<PathBuf>,
    slugs: BTreeMap<String, PathBuf>,
}

impl Staged {
    /// The file of the slug with this sha256.
    pub fn slug(&self, sha256: &str) -> Option<&Path> {
        self.slugs.get(sha256).map(PathBuf::as_path)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a bundle's staged slugs");
                }
            }
        }
    }
}

/// Reads the whole bundle again: the manifest must be the `sealed` bytes that were verified,
/// then every slug `manifest` names, then the end. With `into` the slugs are written there (a
/// directory this creates; removed again on any error); without, only checked.
pub fn extract(
    file: &Path,
    sealed: &[u8],
    manifest: &Manifest,
    into: Option<PathBuf>,
) -> Result<Staged, BundleError> {
    let mut staged = Staged {
        dir: None,
        slugs: BTreeMap::new(),
    };
    if let Some(dir) = &into {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(|e| BundleError::Io(format!("create dir {}: {e}", dir.display())))?;
        staged.dir = Some(dir.clone());
    }
    let mut r = open(file)?;
    if r.manifest()? != sealed {
        return Err(BundleError::Io(format!(
            "{} changed while it was read",
            file.display()
        )));
    }
    for slug in manifest.slugs() {
        match &staged.dir {
            None => r.slug(&slug, &mut std::io::sink())?,
            Some(dir) => {
                let path = dir.join(format!("{}.tar.gz", slug.sha256));
                let io = |op: &str, e: std::io::Error| {
                    BundleError::Io(format!("{op} {}: {e}", path.display()))
                };
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| io("create", e))?;
                let mut w = BufWriter::with_capacity(64 * 1024, f);
                r.slug(&slug, &mut w)?;
                w.flush().map_err(|e| io("write", e))?;
                staged.slugs.insert(slug.sha256.clone(), path);
            }
        }
    }
    r.end()?;
    Ok(staged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use roboku_wire::bundle::{hex, BundleApp, BundleWriter, SlugRef, FORMAT};
    use sha2::Digest;

    fn bundle_file(dir: &Path, slug: &[u8]) -> (PathBuf, Manifest) {
        let s = SlugRef {
            sha256: hex(&sha2::Sha256::digest(slug)),
            size: slug.len() as u64,
        };
        let m = Manifest {
            bundle: FORMAT,
            id: "x".into(),
            ts: 0,
            expires: 1,
            to: "d/r1".into(),
            apps: [(
                "nav".to_string(),
                BundleApp {
                    version: 1,
                    slug: Some(s.clone()),
                    ..BundleApp::default()
                },
            )]
            .into(),
        };
        let mut w = BundleWriter::new(Vec::new(), b"SEALED").unwrap();
        w.slug(&s, &mut &slug[..]).unwrap();
        let path = dir.join("b.rkb");
        std::fs::write(&path, w.finish().unwrap()).unwrap();
        (path, m)
    }

    #[test]
    fn slugs_land_under_their_digest_and_go_with_the_staging() {
        let tmp = tempfile::tempdir().unwrap();
        let (file, m) = bundle_file(tmp.path(), b"slug bytes");
        assert_eq!(read_manifest(&file).unwrap(), b"SEALED");
        let into = tmp.path().join("stage");
        let staged = extract(&file, b"SEALED", &m, Some(into.clone())).unwrap();
        let sha = &m.slugs()[0].sha256;
        assert_eq!(
            std::fs::read(staged.slug(sha).unwrap()).unwrap(),
            b"slug bytes"
        );
        drop(staged);
        assert!(!into.exists());
        // Checked only: nothing written.
        extract(&file, b"SEALED", &m, None).unwrap();
    }

    #[test]
    fn a_bad_member_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let (file, m) = bundle_file(tmp.path(), b"slug bytes");
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[1536] ^= 1;
        std::fs::write(&file, bytes).unwrap();
        let into = tmp.path().join("stage");
        let err = extract(&file, b"SEALED", &m, Some(into.clone())).unwrap_err();
        assert_eq!(err.code(), "tampered");
        assert!(!into.exists());
        let err = extract(&file, b"OTHER", &m, None).unwrap_err();
        assert!(err.to_string().contains("changed"), "{err}");
    }
}
