//! Refusing slugs with native code for another CPU: a slug built on an x86-64 workstation and
//! shipped to an aarch64 robot would deploy fine and then fail at the first exec with a
//! confusing "Exec format error". This walks a tree and reads the `e_machine` field of every
//! ELF executable or shared object, so the deploy fails early with the file named.
//!
//! Only files the loader would run are checked: ELF type EXEC or DYN that are executable or
//! look like libraries (`*.so`, `*.so.N`, Node's `*.node`). A robot app may well carry firmware
//! images for a microcontroller (ELF, ARM, not executable here); those are data.

use super::BuildError;
use crate::util::{IoContext, PathError};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The CPU names a slug can be built for (`slug:build --arch`), as [`elf_arch`] names them.
pub const KNOWN_ARCHES: [&str; 9] = [
    "x86_64",
    "aarch64",
    "arm",
    "x86",
    "riscv64",
    "riscv32",
    "mips",
    "powerpc",
    "powerpc64",
];

const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;

/// Checks every native executable and library under `slug_dir` against `host` (a
/// `std::env::consts::ARCH` name). Symlinks are not followed.
pub fn check_arch(slug_dir: &Path, host: &str) -> Result<(), BuildError> {
    let mut wrong = Vec::new();
    walk(slug_dir, Path::new(""), host, &mut wrong)?;
    let mut wrong = wrong.into_iter();
    match wrong.next() {
        None => Ok(()),
        Some((file, built_for)) => Err(BuildError::Arch {
            file,
            built_for,
            host: host.to_string(),
            more: wrong.len(),
        }),
    }
}

fn walk(
    dir: &Path,
    rel: &Path,
    host: &str,
    wrong: &mut Vec<(String, String)>,
) -> Result<(), PathError> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).at("read dir", dir)? {
        entries.push(entry.at("read dir", dir)?);
    }
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let rel = rel.join(entry.file_name());
        let meta = fs::symlink_metadata(&path).at("stat", &path)?;
        if meta.is_dir() {
            walk(&path, &rel, host, wrong)?;
        } else if meta.is_file() && meta.len() >= 20 {
            let name = entry.file_name().to_string_lossy().into_owned();
            let loadable = meta.permissions().mode() & 0o111 != 0
                || name.ends_with(".so")
                || name.contains(".so.")
                || name.ends_with(".node");
            if !loadable {
                continue;
            }
            let mut head = [0u8; 20];
            let n = read_head(&path, &mut head)?;
            if let Some(arch) = elf_arch(&head[..n]) {
                if arch != host {
                    wrong.push((rel.display().to_string(), arch));
                }
            }
        }
    }
    Ok(())
}

fn read_head(path: &Path, head: &mut [u8]) -> Result<usize, PathError> {
    let mut file = File::open(path).at("open", path)?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).at("read", path),
        }
    }
    Ok(n)
}

/// The architecture of an ELF executable or shared object from its first 20 bytes, as a
/// `std::env::consts::ARCH` name (or `e_machine N` when we have no name for it). `None` for
/// anything else: not ELF, truncated, or a relocatable object or core dump.
pub fn elf_arch(head: &[u8]) -> Option<String> {
    if head.len() < 20 || head[..4] != *b"\x7fELF" {
        return None;
    }
    let class = head[4]; // 1 = 32-bit, 2 = 64-bit
    let read16 = |at: usize| -> Option<u16> {
        let b = [head[at], head[at + 1]];
        match head[5] {
            1 => Some(u16::from_le_bytes(b)),
            2 => Some(u16::from_be_bytes(b)),
            _ => None,
        }
    };
    // e_type and e_machine sit at the same offsets (16, 18) in both classes.
    let e_type = read16(16)?;
    if e_type != ET_EXEC && e_type != ET_DYN {
        return None;
    }
    let name = match (read16(18)?, class) {
        (3, _) => "x86",
        (62, _) => "x86_64",
        (40, _) => "arm",
        (183, _) => "aarch64",
        (243, 2) => "riscv64",
        (243, 1) => "riscv32",
        (8, _) => "mips",
        (20, _) => "powerpc",
        (21, _) => "powerpc64",
        (m, _) => return Some(format!("e_machine {m}")),
    };
    Some(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A minimal ELF header: magic, class, data (endianness), e_type, e_machine.
    fn header(class: u8, big_endian: bool, e_type: u16, machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = class;
        h[5] = if big_endian { 2 } else { 1 };
        h[6] = 1;
        let (t, m) = if big_endian {
            (e_type.to_be_bytes(), machine.to_be_bytes())
        } else {
            (e_type.to_le_bytes(), machine.to_le_bytes())
        };
        h[16..18].copy_from_slice(&t);
        h[18..20].copy_from_slice(&m);
        h
    }

    #[test]
    fn reads_machine_in_both_classes_and_endiannesses() {
        assert_eq!(
            elf_arch(&header(2, false, 2, 62)).as_deref(),
            Some("x86_64")
        );
        assert_eq!(
            elf_arch(&header(2, false, 3, 183)).as_deref(),
            Some("aarch64")
        );
        assert_eq!(elf_arch(&header(1, false, 2, 40)).as_deref(), Some("arm"));
        assert_eq!(elf_arch(&header(1, false, 3, 3)).as_deref(), Some("x86"));
        assert_eq!(
            elf_arch(&header(2, false, 2, 243)).as_deref(),
            Some("riscv64")
        );
        // Big endian: 62 read little-endian would be 15872.
        assert_eq!(elf_arch(&header(2, true, 2, 62)).as_deref(), Some("x86_64"));
        assert_eq!(elf_arch(&header(1, true, 2, 8)).as_deref(), Some("mips"));
        assert_eq!(
            elf_arch(&header(2, false, 2, 999)).as_deref(),
            Some("e_machine 999")
        );
    }

    #[test]
    fn ignores_non_elf_objects_cores_and_truncated_headers() {
        assert_eq!(elf_arch(b"#!/bin/sh\necho hello world\n"), None);
        assert_eq!(elf_arch(&header(2, false, 1, 62)), None); // ET_REL (.o)
        assert_eq!(elf_arch(&header(2, false, 4, 62)), None); // ET_CORE
        assert_eq!(elf_arch(&header(2, false, 2, 62)[..19]), None);
        let mut unknown_encoding = header(2, false, 2, 62);
        unknown_encoding[5] = 7;
        assert_eq!(elf_arch(&unknown_encoding), None);
    }

    fn write(root: &Path, rel: &str, data: &[u8], mode: u32) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, data).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn tree_with_a_foreign_binary_names_the_file_and_both_arches() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "bin/nav", &header(2, false, 2, 62), 0o755);
        write(root, "bin/run.sh", b"#!/bin/sh\nexec ./nav\n", 0o755);
        write(root, "lib/libfoo.so.1", &header(2, false, 3, 62), 0o644);
        write(root, "empty", b"", 0o755);
        let err = check_arch(root, "aarch64").unwrap_err();
        assert_eq!(
            err.to_string(),
            "bin/nav is built for x86_64 but this robot is aarch64 (and 1 more file)"
        );
        check_arch(root, "x86_64").unwrap();
    }

    #[test]
    fn firmware_data_and_matching_binaries_pass() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "firmware/motor.elf", &header(1, false, 2, 40), 0o644);
        write(root, "bin/nav", &header(2, false, 2, 183), 0o755);
        write(root, "native/addon.node", &header(2, false, 3, 183), 0o644);
        std::os::unix::fs::symlink("/bin/ls", root.join("bin/ls")).unwrap();
        check_arch(root, "aarch64").unwrap();
        let err = check_arch(root, "x86_64").unwrap_err().to_string();
        assert!(err.starts_with("bin/nav is built for aarch64"), "{err}");
        assert!(err.ends_with("(and 1 more file)"), "{err}");
    }
}
