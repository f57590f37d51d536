//! What differs between two slug trees (`deploy --plan`): by path, what is new, gone, or
//! different (a file's contents or mode, a link's target, a kind changed). Links are never
//! followed; contents are compared byte for byte only when the sizes agree. Blocking: run it
//! off the engine.

use roboku_wire::FilesDiff;
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// One entry of a tree, as compared.
#[derive(Debug, PartialEq)]
enum Entry {
    Dir,
    File { mode: u32, size: u64 },
    Link(PathBuf),
    Other(u32),
}

/// `new` against `old`. An unreadable tree counts as empty (the plan then shows everything
/// as added or removed, never fails for it).
pub fn diff(old: &Path, new: &Path) -> FilesDiff {
    let (a, b) = (walk(old), walk(new));
    let mut out = FilesDiff::default();
    let note = |sign: char, path: &str, out: &mut FilesDiff| {
        if out.sample.len() < FilesDiff::SAMPLE {
            out.sample.push(format!("{sign} {path}"));
        }
    };
    for (path, entry) in &b {
        match a.get(path) {
            None => {
                out.added += 1;
                note('+', path, &mut out);
            }
            Some(before) if !same(before, entry, &old.join(path), &new.join(path)) => {
                out.changed += 1;
                note('~', path, &mut out);
            }
            Some(_) => {}
        }
    }
    for path in a.keys().filter(|p| !b.contains_key(*p)) {
        out.removed += 1;
        note('-', path, &mut out);
    }
    out
}

fn same(a: &Entry, b: &Entry, pa: &Path, pb: &Path) -> bool {
    match (a, b) {
        (Entry::File { .. }, Entry::File { .. }) => a == b && same_bytes(pa, pb),
        _ => a == b,
    }
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    let (Ok(mut fa), Ok(mut fb)) = (fs::File::open(a), fs::File::open(b)) else {
        return false;
    };
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let (Ok(na), Ok(nb)) = (read_full(&mut fa, &mut ba), read_full(&mut fb, &mut bb)) else {
            return false;
        };
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
}

/// Reads until `buf` is full or the file ends.
fn read_full(f: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Every entry under `root` by its path relative to it.
fn walk(root: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let Ok(entries) = fs::read_dir(root.join(&rel)) else {
            continue;
        };
        for e in entries.flatten() {
            let path = rel.join(e.file_name());
            let Ok(meta) = fs::symlink_metadata(e.path()) else {
                continue;
            };
            let kind = meta.file_type();
            let entry = if kind.is_dir() {
                todo.push(path.clone());
                Entry::Dir
            } else if kind.is_symlink() {
                Entry::Link(fs::read_link(e.path()).unwrap_or_default())
            } else if kind.is_file() {
                Entry::File {
                    mode: meta.permissions().mode() & 0o7777,
                    size: meta.size(),
                }
            } else {
                Entry::Other(meta.mode())
            };
            out.insert(path.to_string_lossy().into_owned(), entry);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_gone_and_changed_paths_are_told_apart() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        for d in [&a, &b] {
            fs::create_dir_all(d.join("bin")).unwrap();
            fs::write(d.join("bin/same"), "x").unwrap();
            fs::write(d.join("Procfile"), "web: x\n").unwrap();
        }
        fs::write(a.join("old.py"), "gone").unwrap();
        fs::write(b.join("new.py"), "here").unwrap();
        fs::write(b.join("Procfile"), "web: y\n").unwrap(); // same size, other bytes
        fs::set_permissions(b.join("bin/same"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("same", a.join("bin/link")).unwrap();
        std::os::unix::fs::symlink("other", b.join("bin/link")).unwrap();
        let d = diff(&a, &b);
        assert_eq!((d.added, d.removed, d.changed), (1, 1, 3), "{d:?}");
        assert!(d.sample.contains(&"+ new.py".to_string()), "{d:?}");
        assert!(d.sample.contains(&"- old.py".to_string()), "{d:?}");
        for p in ["~ Procfile", "~ bin/same", "~ bin/link"] {
            assert!(d.sample.contains(&p.to_string()), "{p}: {d:?}");
        }
        assert_eq!(diff(&a, &a), FilesDiff::default());
    }

    #[test]
    fn the_sample_is_capped_and_the_counts_are_not() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        for i in 0..50 {
            fs::write(b.join(format!("f{i}")), "x").unwrap();
        }
        let d = diff(&a, &b);
        assert_eq!(d.added, 50);
        assert_eq!(d.sample.len(), FilesDiff::SAMPLE);
    }
}
