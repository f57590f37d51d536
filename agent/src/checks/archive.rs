//! Archive extraction ([`crate::build::extract`], what a deploy upload and a fleet artifact go
//! through) on a tar built from the fuzz bytes: entries of every type with raw names, link
//! targets, modes and sizes, GNU long names and PAX records, gzip around it or not, truncated or
//! not. Or, with the raw flag, the bytes themselves are the archive.
//!
//! Whatever the archive, nothing lands outside the extraction root (which sits three directories
//! deep in a scratch directory, so an escape by `..` shows), the root holds only directories and
//! plain files (no links, devices, fifos, setuid or setgid bits) within the size limit, and a
//! refusal names the archive or the path. For archives of plain entries the outcome is also
//! predicted independently: refused when the rules say so, and when accepted the tree is exactly
//! the last version of every file and directory the archive holds.

use super::Carver;
use crate::build::{extract, sniff, ArchiveLimits};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const LIMITS: ArchiveLimits = ArchiveLimits {
    max_total_bytes: 64 * 1024,
    max_entries: 32,
};
const BLOCK: usize = 512;
/// The root's place under the scratch dir.
const NEST: [&str; 4] = ["a", "b", "c", "root"];

/// One generated entry, as the extractor should see it.
struct Spec {
    kind: u8,
    mode: u32,
    /// The name the tar reader reports (long name or PAX path applied, NUL-truncated).
    name: Vec<u8>,
    size: u64,
    data: Vec<u8>,
    /// Its outcome can be predicted (plain file or directory, no raw PAX records).
    plain: bool,
    /// It may move where the reader finds the next header (a PAX `size`, GNU sparse blocks), so
    /// the headers read need not be the ones written.
    reframes: bool,
}

pub fn check(data: &[u8]) {
    let mut c = Carver::new(data);
    let flags = c.u8();
    let (tar, specs) = if flags & 2 != 0 {
        (c.rest().to_vec(), None)
    } else {
        let (tar, specs) = build_tar(&mut c, flags & 4 != 0);
        (tar, Some(specs))
    };
    let bytes = if flags & 1 != 0 { gzip(&tar) } else { tar };
    let scratch = Scratch::new();
    let archive = scratch.path.join("upload");
    fs::write(&archive, &bytes).expect("write the archive");
    let root = NEST.iter().fold(scratch.path.clone(), |p, n| p.join(n));
    fs::create_dir_all(&root).expect("create the root");
    let Some(kind) = sniff(&archive).expect("sniff") else {
        return; // refused before extraction: not an archive
    };
    let result = extract(&archive, kind, &root, LIMITS);
    stays_inside(&scratch.path, &archive);
    let tree = safe_tree(&root, result.is_ok());
    let prediction = specs.as_deref().and_then(predict);
    match (&result, prediction) {
        (Err(e), _) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&scratch.path.display().to_string()),
                "the refusal names neither the archive nor a path: {msg}"
            );
        }
        (Ok(()), Some(Err(rule))) => panic!("accepted an archive the rules refuse: {rule}"),
        (Ok(()), Some(Ok(want))) => assert_eq!(tree, want, "extracted tree"),
        (Ok(()), None) => {}
    }
    if let (Ok(()), Some(specs)) = (&result, &specs) {
        if specs.iter().any(|s| s.reframes) {
            return;
        }
        for s in specs {
            assert!(
                !matches!(s.kind, b'1' | b'2' | b'3' | b'4' | b'6'),
                "accepted an archive holding a link, device or fifo ({:?})",
                s.kind as char
            );
        }
    }
}

/// A scratch directory of its own per run, removed afterwards.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("roboku-check-archive-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create the scratch dir");
        Scratch { path }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<std::ffi::OsString> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read dir {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").file_name())
        .collect();
    v.sort();
    v
}

fn names(dir: &Path) -> Vec<String> {
    entries(dir)
        .iter()
        .map(|n| n.to_string_lossy().into_owned())
        .collect()
}

/// Outside the root the scratch dir holds exactly what the check put there.
fn stays_inside(scratch: &Path, archive: &Path) {
    assert_eq!(
        names(scratch),
        ["a", "upload"],
        "written beside the root's parents"
    );
    assert!(fs::symlink_metadata(archive).is_ok_and(|m| m.is_file()));
    let mut dir = scratch.to_path_buf();
    for (i, n) in NEST.iter().enumerate().take(NEST.len() - 1) {
        dir.push(n);
        assert_eq!(
            names(&dir),
            [NEST[i + 1]],
            "written outside the root, in {}",
            dir.display()
        );
    }
}

/// Nodes of an extracted tree: directory, or file (content, executable).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File(Vec<u8>, bool),
}

/// The tree under `root`, asserting it holds only safe things within the size limit, and (once
/// `accepted`) files with their final modes. A refused archive may leave a partly written file
/// (mode 0600); the caller removes the whole work dir.
fn safe_tree(root: &Path, accepted: bool) -> BTreeMap<Vec<String>, Node> {
    let mut out = BTreeMap::new();
    let mut total = 0u64;
    let mut todo = vec![(root.to_path_buf(), Vec::<String>::new())];
    while let Some((dir, rel)) = todo.pop() {
        for name in entries(&dir) {
            let path = dir.join(&name);
            let meta = fs::symlink_metadata(&path).expect("stat");
            let mut r = rel.clone();
            r.push(name.to_string_lossy().into_owned());
            let mode = meta.permissions().mode();
            assert_eq!(mode & 0o6000, 0, "{} has mode {mode:o}", path.display());
            if meta.is_dir() {
                out.insert(r.clone(), Node::Dir);
                todo.push((path, r));
            } else if meta.is_file() {
                assert_eq!(meta.nlink(), 1, "{} is hard-linked", path.display());
                assert!(
                    !accepted || matches!(mode & 0o7777, 0o644 | 0o755),
                    "{} has mode {mode:o}",
                    path.display()
                );
                total += meta.len();
                let content = fs::read(&path).expect("read an extracted file");
                out.insert(r, Node::File(content, mode & 0o111 != 0));
            } else {
                panic!(
                    "{} is neither a file nor a directory: {meta:?}",
                    path.display()
                );
            }
        }
    }
    assert!(total <= LIMITS.max_total_bytes, "{total} bytes extracted");
    out
}

/// What extraction of plain entries must give: the tree, or the rule that refuses the archive.
/// `None` when an entry is not plain (its outcome depends on the tar reader's details).
fn predict(specs: &[Spec]) -> Option<Result<BTreeMap<Vec<String>, Node>, String>> {
    if specs.iter().any(|s| !s.plain) {
        return None;
    }
    let mut tree: BTreeMap<Vec<String>, Node> = BTreeMap::new();
    let (mut count, mut total) = (0u64, 0u64);
    for s in specs {
        count += 1;
        total += s.size;
        if count > LIMITS.max_entries || total > LIMITS.max_total_bytes {
            return Some(Err("over the limits".into()));
        }
        if s.mode & 0o6000 != 0 {
            return Some(Err("setuid or setgid".into()));
        }
        if s.name.first() == Some(&b'/') {
            return Some(Err("absolute path".into()));
        }
        let parts: Vec<String> = s
            .name
            .split(|&b| b == b'/')
            .filter(|p| !p.is_empty() && *p != b".")
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        if parts.iter().any(|p| p == "..") {
            return Some(Err("`..`".into()));
        }
        if s.name.contains(&0) || parts.iter().any(|p| p.contains('\u{fffd}')) {
            return None; // not a name a file system takes as it is
        }
        let is_dir = s.kind == b'5';
        let dirs = if is_dir {
            parts.len()
        } else {
            parts.len().saturating_sub(1)
        };
        for i in 1..=dirs {
            match tree.get(&parts[..i]) {
                Some(Node::File(..)) => return Some(Err("a file used as a directory".into())),
                Some(Node::Dir) => {}
                None => {
                    tree.insert(parts[..i].to_vec(), Node::Dir);
                }
            }
        }
        if is_dir {
            continue;
        }
        if parts.is_empty() {
            return Some(Err("empty path".into()));
        }
        if tree.get(&parts) == Some(&Node::Dir) {
            return Some(Err("a file replacing a directory".into()));
        }
        tree.insert(parts, Node::File(s.data.clone(), s.mode & 0o111 != 0));
    }
    Some(Ok(tree))
}

/// Builds a tar from the bytes: per entry a type byte, mode, name, link target, size and data.
fn build_tar(c: &mut Carver, truncate: bool) -> (Vec<u8>, Vec<Spec>) {
    let cut = usize::from(c.u16());
    let mut tar = Vec::new();
    let mut specs = Vec::new();
    while !c.is_empty() && specs.len() < 64 {
        let t = c.u8();
        let kind = match t & 0x0f {
            0 | 14 => b'0',
            1 => 0,
            2 => b'5',
            3 => b'2',
            4 => b'1',
            5 => b'3',
            6 => b'4',
            7 => b'6',
            8 => b'7',
            9 => b'g',
            10 => b'x',
            11 => b'L',
            12 => b'K',
            13 => b'S',
            _ => c.u8(),
        };
        let mode = u32::from(c.u16()) & 0o7777;
        let name = c.chunk(255).to_vec();
        let link = c.chunk(100).to_vec();
        let size = u64::from(c.u16() % 4096);
        let mut data = c.take(size as usize).to_vec();
        data.resize(size as usize, 0);
        let raw_pax = if t & 0x40 != 0 && t >> 4 & 3 == 2 {
            c.chunk(64).to_vec()
        } else {
            Vec::new()
        };
        // The name the reader will report for the entry.
        let seen = match t >> 4 & 3 {
            1 => {
                let mut long = name.clone();
                long.push(0);
                append(&mut tar, b'L', 0o644, b"././@LongLink", b"", &long);
                name.clone() // the reader drops the one trailing NUL
            }
            2 => {
                let mut pax = pax_record(b"path", &name);
                pax.extend_from_slice(&raw_pax);
                append(&mut tar, b'x', 0o644, b"PaxHeader", b"", &pax);
                pax_path(&pax).unwrap_or_else(|| header_name(&name))
            }
            _ => header_name(&name),
        };
        append(&mut tar, kind, mode, &name, &link, &data);
        let plain = matches!(kind, b'0' | 0 | b'5') && raw_pax.is_empty();
        let reframes = matches!(kind, b'x' | b'S') || !raw_pax.is_empty();
        specs.push(Spec {
            kind,
            mode,
            name: seen,
            size,
            data,
            plain,
            reframes,
        });
    }
    tar.extend_from_slice(&[0; 2 * BLOCK]);
    if truncate {
        tar.truncate(cut % (tar.len() + 1));
        specs.clear();
        specs.push(Spec {
            kind: b'?',
            mode: 0,
            name: Vec::new(),
            size: 0,
            data: Vec::new(),
            plain: false,
            reframes: true,
        });
    }
    (tar, specs)
}

/// The name a header's 100-byte field holds (up to its first NUL).
fn header_name(name: &[u8]) -> Vec<u8> {
    let field = &name[..name.len().min(100)];
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    field[..end].to_vec()
}

/// The `path` the tar reader takes from PAX records, by its rules: records are lines (so a
/// value holding a newline is malformed and skipped, and the header's name is used instead), an
/// empty line ends them, the first well-formed `path` wins.
fn pax_path(pax: &[u8]) -> Option<Vec<u8>> {
    for line in pax.split(|&b| b == b'\n') {
        if line.is_empty() {
            return None;
        }
        let Some(space) = line.iter().position(|&b| b == b' ') else {
            continue;
        };
        let len = std::str::from_utf8(&line[..space])
            .ok()
            .and_then(|l| l.parse::<usize>().ok());
        if len != Some(line.len() + 1) {
            continue;
        }
        let kv = &line[space + 1..];
        let Some(eq) = kv.iter().position(|&b| b == b'=') else {
            continue;
        };
        if &kv[..eq] == b"path" {
            return Some(kv[eq + 1..].to_vec());
        }
    }
    None
}

/// `<len> <key>=<value>\n`, the length counting itself.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut out = format!("{len} ").into_bytes();
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// One header (GNU format, raw name and link bytes, a valid checksum) and its padded data.
fn append(tar: &mut Vec<u8>, kind: u8, mode: u32, name: &[u8], link: &[u8], data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    let old = h.as_old_mut();
    let n = name.len().min(old.name.len());
    old.name[..n].copy_from_slice(&name[..n]);
    let l = link.len().min(old.linkname.len());
    old.linkname[..l].copy_from_slice(&link[..l]);
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_mode(mode);
    h.set_size(data.len() as u64);
    h.set_mtime(0);
    h.set_cksum();
    tar.extend_from_slice(h.as_bytes());
    tar.extend_from_slice(data);
    tar.resize(tar.len().div_ceil(BLOCK) * BLOCK, 0);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).expect("gzip into memory");
    gz.finish().expect("gzip into memory")
}
