//! Safe extraction of an uploaded `.tar.gz` (or plain `.tar`) into a fresh directory.
//!
//! Every entry is validated here and written through paths we build ourselves; the tar crate's
//! own `unpack` is never used. Only regular files and directories are accepted: no absolute
//! paths, no `..`, no links of any kind, no device nodes or fifos, no setuid/setgid. Sizes are
//! checked before anything is written so a hostile archive cannot fill the disk, and the bytes
//! coming out of the decompressor are metered so that extension headers (long names, PAX
//! records, which the tar crate reads into memory) cannot exhaust memory either.
//!
//! The other direction lives here too: [`slug_archive`] writes a slug as a deterministic
//! `.tar.gz` (what a site gateway serves to its robots).

use super::tree::{create_work_dir, write_file};
use super::{ArchiveLimits, BuildError};
use crate::util::{IoContext, PathError};
use std::cell::Cell;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use tar::EntryType;

/// Most bytes of headers, long names and PAX records allowed between two entries' data.
const MAX_METADATA_BYTES: u64 = 1 << 20;

/// What kind of archive a file is, judged by its first bytes rather than its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    TarGz,
    TarZst,
    Tar,
}

impl ArchiveKind {
    /// How people call it: `tar.gz`, `tar.zst`, `tar`.
    pub fn name(self) -> &'static str {
        match self {
            ArchiveKind::TarGz => "tar.gz",
            ArchiveKind::TarZst => "tar.zst",
            ArchiveKind::Tar => "tar",
        }
    }
}

/// Sniffs gzip magic (`1f 8b`) or the ustar magic at offset 257. `None`: not an archive.
pub fn sniff(path: &Path) -> Result<Option<ArchiveKind>, PathError> {
    let mut head = Vec::with_capacity(512);
    File::open(path)
        .at("open", path)?
        .take(512)
        .read_to_end(&mut head)
        .at("read", path)?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Some(ArchiveKind::TarGz))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Some(ArchiveKind::TarZst))
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Ok(Some(ArchiveKind::Tar))
    } else {
        Ok(None)
    }
}

/// Counts bytes coming out of the (decompressed) stream and fails once they pass `limit`,
/// which the extraction loop moves forward as each entry is accepted.
struct Meter<R> {
    inner: R,
    state: Rc<MeterState>,
}

#[derive(Default)]
struct MeterState {
    read: Cell<u64>,
    limit: Cell<u64>,
    tripped: Cell<bool>,
}

impl<R: Read> Read for Meter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let s = &self.state;
        let room = s.limit.get().saturating_sub(s.read.get());
        if room == 0 && !buf.is_empty() {
            s.tripped.set(true);
            return Err(io::Error::other("archive metadata too large"));
        }
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        s.read.set(s.read.get() + n as u64);
        Ok(n)
    }
}

/// Extracts `archive` into the existing empty directory `dst`.
pub fn extract(
    archive: &Path,
    kind: ArchiveKind,
    dst: &Path,
    limits: ArchiveLimits,
) -> Result<(), BuildError> {
    let file = File::open(archive).at("open", archive)?;
    let stream: Box<dyn Read> = match kind {
        ArchiveKind::TarGz => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file))),
        ArchiveKind::TarZst => match super::zstd::Frames::new(BufReader::new(file)) {
            Ok(d) => Box::new(d),
            Err(e) => {
                let msg = format!("{}: not a valid zstd stream: {e}", archive.display());
                return Err(BuildError::Other(msg));
            }
        },
        ArchiveKind::Tar => Box::new(BufReader::new(file)),
    };
    let state = Rc::new(MeterState::default());
    state.limit.set(MAX_METADATA_BYTES);
    let ar = tar::Archive::new(Meter {
        inner: stream,
        state: state.clone(),
    });
    let mut x = Extractor {
        archive,
        kind,
        dst,
        limits,
        state,
        total: 0,
        count: 0,
        last: String::new(),
    };
    let result = x.run(ar);
    result.map_err(|e| x.explain(e))
}

/// Remembers whether reading failed, to tell a broken archive from a failed disk write.
struct ReadTracker<R> {
    inner: R,
    failed: bool,
}

impl<R: Read> Read for ReadTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf);
        self.failed |= r.is_err();
        r
    }
}

/// Why a step failed, before it is turned into a [`BuildError`] naming the archive.
enum Fail {
    /// Reading the archive stream failed (corrupt gzip, truncated, bad header).
    Read(io::Error),
    /// An entry is refused: (entry name, reason).
    Entry(String, String),
    Build(BuildError),
}

impl From<PathError> for Fail {
    fn from(e: PathError) -> Self {
        Fail::Build(e.into())
    }
}

struct Extractor<'a> {
    archive: &'a Path,
    kind: ArchiveKind,
    dst: &'a Path,
    limits: ArchiveLimits,
    state: Rc<MeterState>,
    total: u64,
    count: u64,
    /// Name of the last entry seen, to place stream errors.
    last: String,
}

impl Extractor<'_> {
    fn run<R: Read>(&mut self, mut ar: tar::Archive<R>) -> Result<(), Fail> {
        for entry in ar.entries().map_err(Fail::Read)? {
            let mut entry = entry.map_err(Fail::Read)?;
            self.entry(&mut entry)?;
        }
        // Read to the end of the compressed stream: tar stops at its end marker, but only the
        // gzip trailer (CRC and length) tells a complete upload from a truncated one.
        io::copy(&mut ar.into_inner(), &mut io::sink()).map_err(Fail::Read)?;
        Ok(())
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Fail> {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        self.last = name.clone();
        let refuse = |reason: &str| Fail::Entry(name.clone(), reason.to_string());
        let size = entry.size();

        self.count += 1;
        if self.count > self.limits.max_entries {
            return Err(refuse(&format!(
                "archive has more than {} entries",
                self.limits.max_entries
            )));
        }
        self.total = self.total.saturating_add(size);
        if self.total > self.limits.max_total_bytes {
            return Err(refuse(&format!(
                "archive unpacks to more than {} bytes (the limit, or the free space on the data \
                 disk less its margin)",
                self.limits.max_total_bytes
            )));
        }
        // This entry's data, its padding and the next entry's headers may be read now.
        let mark = self
            .state
            .read
            .get()
            .saturating_add(size)
            .saturating_add(511 + MAX_METADATA_BYTES);
        self.state.limit.set(mark);

        let header = entry.header();
        let kind = header.entry_type();
        match kind {
            // PAX global header (`git archive` writes one with the commit id): no file.
            EntryType::XGlobalHeader => return Ok(()),
            EntryType::Regular | EntryType::Directory => {}
            EntryType::Symlink => return Err(refuse("symlinks are not allowed in archives (yet)")),
            EntryType::Link => return Err(refuse("hard links are not allowed in archives")),
            EntryType::Char | EntryType::Block => {
                return Err(refuse("device nodes are not allowed"))
            }
            EntryType::Fifo => return Err(refuse("fifos are not allowed")),
            other => {
                return Err(refuse(&format!(
                    "unsupported entry type {:?}",
                    other.as_byte() as char
                )))
            }
        }
        let mode = header.mode().map_err(|_| refuse("unreadable mode field"))?;
        if mode & 0o4000 != 0 {
            return Err(refuse("entry has setuid bit"));
        }
        if mode & 0o2000 != 0 {
            return Err(refuse("entry has setgid bit"));
        }
        let rel = checked_path(&raw).map_err(|r| refuse(&r))?;

        if kind == EntryType::Directory {
            if rel.as_os_str().is_empty() {
                return Ok(()); // `./`: the root itself
            }
            return self.ensure_dirs(&rel, &name);
        }
        if rel.as_os_str().is_empty() {
            return Err(refuse("empty path"));
        }
        if let Some(parent) = rel.parent() {
            self.ensure_dirs(parent, &name)?;
        }
        let path = self.dst.join(&rel);
        if fs::symlink_metadata(&path)
            .map(|m| m.is_dir())
            .unwrap_or(false)
        {
            return Err(refuse("file would replace a directory"));
        }
        let mut data = ReadTracker {
            inner: entry,
            failed: false,
        };
        let written = match write_file(&path, &mut data, mode & 0o111 != 0) {
            Ok(n) => n,
            Err(e) if data.failed => return Err(Fail::Read(e.source)),
            Err(e) => return Err(e.into()),
        };
        if written != size {
            let msg = format!("archive ends inside entry {name:?} ({written} of {size} bytes)");
            return Err(Fail::Read(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                msg,
            )));
        }
        Ok(())
    }

    /// Creates each directory along `rel` that does not exist yet, refusing when a component
    /// is already something other than a directory.
    fn ensure_dirs(&self, rel: &Path, name: &str) -> Result<(), Fail> {
        let mut path = self.dst.to_path_buf();
        for c in rel.components() {
            path.push(c);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    let reason = format!(
                        "{} is a file in this archive but used as a directory",
                        c.as_os_str().to_string_lossy()
                    );
                    return Err(Fail::Entry(name.to_string(), reason));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => create_work_dir(&path)?,
                Err(source) => {
                    return Err(PathError {
                        op: "stat",
                        path,
                        source,
                    }
                    .into())
                }
            }
        }
        Ok(())
    }

    fn explain(&self, fail: Fail) -> BuildError {
        let archive = self.archive.display().to_string();
        match fail {
            Fail::Entry(entry, reason) => BuildError::UnsafeEntry {
                archive,
                entry,
                reason,
            },
            Fail::Read(_) if self.state.tripped.get() => BuildError::UnsafeEntry {
                archive,
                entry: format!("(after {:?})", self.last),
                reason: format!("more than {MAX_METADATA_BYTES} bytes of headers or trailing data"),
            },
            Fail::Read(e) => BuildError::Other(format!(
                "{archive}: not a valid {} archive: {e}",
                self.kind.name()
            )),
            Fail::Build(e) => e,
        }
    }
}

/// Turns an entry path into a relative path of plain names: `./` prefixes are dropped;
/// absolute paths and `..` anywhere are refused. May return an empty path (the root).
fn checked_path(raw: &[u8]) -> Result<PathBuf, String> {
    let path = Path::new(std::ffi::OsStr::from_bytes(raw));
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err("path contains `..`".to_string()),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path".to_string()),
        }
    }
    Ok(out)
}

/// The cached `.tar.gz` of `slug` in `cache` and its sha256, built first if needed (into a
/// temporary file in `tmp`, renamed into place, so concurrent first requests never see half an
/// archive). Deterministic (entries sorted, owner 0, mtime 0, gzip without a timestamp): every
/// machine holding the slug makes the same bytes, so a fleet command can name their sha256.
pub fn slug_archive(
    slug: &Path,
    sha: &str,
    cache: &Path,
    tmp: &Path,
) -> Result<(PathBuf, String), PathError> {
    let out = cache.join(format!("{sha}.tar.gz"));
    let sum = cache.join(format!("{sha}.tar.gz.sha256"));
    if let (true, Ok(d)) = (out.exists(), std::fs::read_to_string(&sum)) {
        return Ok((out, d.trim().to_string()));
    }
    std::fs::create_dir_all(cache).at("create dir", cache)?;
    std::fs::create_dir_all(tmp).at("create dir", tmp)?;
    let part = tmp.join(format!("slug-archive-{sha}-{}", std::process::id()));
    let f = std::fs::File::create(&part).at("create", &part)?;
    let gz = flate2::GzBuilder::new().write(f, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    // Plain entries only: extraction refuses GNU sparse ones (see `write_tar` in slugfile.rs).
    tar.sparse(false);
    let result = add_sorted(&mut tar, slug, Path::new("."))
        .and_then(|_| tar.into_inner().at("write", &part))
        .and_then(|gz| gz.finish().at("write", &part))
        .and_then(|f| f.sync_all().at("fsync", &part));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    let digest = crate::mqtt::artifact::sha256_file(&part)?;
    std::fs::rename(&part, &out).at("rename to", &out)?;
    std::fs::write(&sum, format!("{digest}\n")).at("write", &sum)?;
    Ok((out, digest))
}

fn add_sorted<W: std::io::Write>(
    tar: &mut tar::Builder<W>,
    dir: &Path,
    name: &Path,
) -> Result<(), PathError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .at("read dir", dir)?
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    entries.sort();
    for e in entries {
        let path = dir.join(&e);
        let rel = name.join(&e);
        let meta = std::fs::symlink_metadata(&path).at("stat", &path)?;
        tar.append_path_with_name(&path, &rel)
            .at("archive", &path)?;
        if meta.is_dir() {
            add_sorted(tar, &path, &rel)?;
        }
    }
    Ok(())
}
