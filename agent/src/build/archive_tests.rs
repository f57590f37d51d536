//! Tests for archive sources: a hostile corpus built byte by byte, and valid tarballs.

use super::tests::{dirs, list, mode, write};
use super::*;
use flate2::write::GzEncoder;
use std::io::Write;
use tar::{EntryType, Header};

/// One raw tar entry; names and link targets are written as bytes, bypassing the checks
/// `Header::set_path` would make, so we can build what an attacker would.
struct Raw<'a> {
    name: &'a [u8],
    kind: EntryType,
    mode: u32,
    data: Vec<u8>,
    link: &'a [u8],
}

fn file<'a>(name: &'a str, data: &str) -> Raw<'a> {
    Raw {
        name: name.as_bytes(),
        kind: EntryType::Regular,
        mode: 0o644,
        data: data.as_bytes().to_vec(),
        link: b"",
    }
}

fn special<'a>(name: &'a str, kind: EntryType, link: &'static str) -> Raw<'a> {
    Raw {
        name: name.as_bytes(),
        kind,
        mode: 0o644,
        data: Vec::new(),
        link: link.as_bytes(),
    }
}

fn tar_bytes(entries: &[Raw]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..e.name.len()].copy_from_slice(e.name);
        h.as_old_mut().linkname[..e.link.len()].copy_from_slice(e.link);
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_size(e.data.len() as u64);
        h.set_cksum();
        b.append(&h, e.data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn tgz(entries: &[Raw]) -> Vec<u8> {
    gzip(&tar_bytes(entries))
}

struct Case {
    what: &'static str,
    bytes: Vec<u8>,
    limits: ArchiveLimits,
    entry: &'static str,
    reason: &'static str,
}

fn case(what: &'static str, entries: &[Raw], entry: &'static str, reason: &'static str) -> Case {
    let mut all = vec![file("Procfile", "web: run\n")];
    all.extend(entries.iter().map(|e| Raw {
        data: e.data.clone(),
        ..*e
    }));
    Case {
        what,
        bytes: tgz(&all),
        limits: ArchiveLimits::default(),
        entry,
        reason,
    }
}

fn limited(mut c: Case, max_total_bytes: u64, max_entries: u64) -> Case {
    c.limits = ArchiveLimits {
        max_total_bytes,
        max_entries,
    };
    c
}

/// Runs prepare_slug on `bytes` with `tmp` under a sentinel dir whose only child is `tmp`.
fn deploy(bytes: &[u8], limits: ArchiveLimits) -> (Result<Slug, BuildError>, impl Fn()) {
    let d = dirs();
    let sentinel = d.tmp.parent().unwrap().join("sentinel");
    let tmp = sentinel.join("tmp");
    let upload = d.src.with_extension("tgz");
    fs::write(&upload, bytes).unwrap();
    let result = prepare_slug(&upload, &tmp, &d.slugs, limits);
    let check = move || {
        let d = &d; // keep the whole temp dir alive, not just the fields used below
        assert_eq!(
            list(&sentinel),
            ["tmp"],
            "nothing may be written next to tmp_dir"
        );
        assert!(list(&tmp).is_empty(), "tmp dir must be cleaned");
        assert!(list(&d.slugs).is_empty(), "no slug for a refused archive");
        assert!(!Path::new("/etc/evil").exists());
    };
    (result, check)
}

#[test]
fn hostile_archives_are_refused_naming_the_entry() {
    let suid = Raw {
        mode: 0o4755,
        ..file("suid", "x")
    };
    let sgid = Raw {
        mode: 0o2755,
        ..file("sgid", "x")
    };
    let many: Vec<Raw> = ["f1", "f2", "f3", "f4", "f5", "f6"]
        .iter()
        .map(|n| file(n, "x"))
        .collect();
    let zeros = Raw {
        data: vec![0; 8 << 20],
        ..file("zeros", "")
    };
    let cases = vec![
        case("dotdot", &[file("../evil", "x")], "../evil", "`..`"),
        case("two up", &[file("../../evil", "x")], "../../evil", "`..`"),
        case(
            "absolute",
            &[file("/etc/evil", "x")],
            "/etc/evil",
            "absolute",
        ),
        case(
            "inner dotdot",
            &[file("a/../../evil", "x")],
            "a/../../evil",
            "`..`",
        ),
        case(
            "symlink",
            &[special("pw", EntryType::Symlink, "/etc/passwd")],
            "pw",
            "symlinks are not allowed",
        ),
        case(
            "hardlink",
            &[special("hl", EntryType::Link, "Procfile")],
            "hl",
            "hard links",
        ),
        case(
            "char device",
            &[special("null", EntryType::Char, "")],
            "null",
            "device nodes",
        ),
        case(
            "block device",
            &[special("sda", EntryType::Block, "")],
            "sda",
            "device nodes",
        ),
        case(
            "fifo",
            &[special("fifo", EntryType::Fifo, "")],
            "fifo",
            "fifos",
        ),
        case("setuid", &[suid], "suid", "entry has setuid bit"),
        case("setgid", &[sgid], "sgid", "setgid"),
        case("empty name", &[file("./", "x")], "./", "empty path"),
        case(
            "file as dir",
            &[file("a", "x"), file("a/b", "y")],
            "a/b",
            "used as a directory",
        ),
        limited(
            case(
                "too big",
                &[file("big", &"x".repeat(2000))],
                "big",
                "more than 1000 bytes",
            ),
            1000,
            100,
        ),
        limited(
            case("too many", &many, "f5", "more than 5 entries"),
            1 << 20,
            5,
        ),
        limited(
            case("gzip bomb", &[zeros], "zeros", "more than 1048576 bytes"),
            1 << 20,
            100,
        ),
    ];
    for c in cases {
        let (result, check) = deploy(&c.bytes, c.limits);
        match result {
            Err(BuildError::UnsafeEntry {
                archive,
                entry,
                reason,
            }) => {
                assert_eq!(entry, c.entry, "{}", c.what);
                assert!(reason.contains(c.reason), "{}: {reason}", c.what);
                assert!(archive.ends_with("src.tgz"), "{}: {archive}", c.what);
            }
            other => panic!("{}: expected UnsafeEntry, got {other:?}", c.what),
        }
        check();
    }
}

#[test]
fn oversized_extension_headers_are_refused_before_filling_memory() {
    // A GNU long-name record of 4 MiB: the tar crate would read it all into memory.
    let long = Raw {
        data: vec![b'a'; 4 << 20],
        ..special("././@LongLink", EntryType::GNULongName, "")
    };
    let bytes = tgz(&[file("Procfile", "web: run\n"), long, file("x", "x")]);
    let (result, check) = deploy(&bytes, ArchiveLimits::default());
    match result {
        Err(BuildError::UnsafeEntry { entry, reason, .. }) => {
            assert_eq!(entry, "(after \"Procfile\")");
            assert!(reason.contains("headers"), "{reason}");
        }
        other => panic!("expected UnsafeEntry, got {other:?}"),
    }
    check();
}

#[test]
fn truncated_or_corrupt_gzip_is_a_clear_error_naming_the_archive() {
    let good = tgz(&[
        file("Procfile", "web: run\n"),
        file("data", &"payload ".repeat(4000)),
    ]);
    let mut corrupt = good.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid..mid + 16].copy_from_slice(&[0xff; 16]);
    let cases = [
        ("cut in half", good[..good.len() / 2].to_vec()),
        ("trailer missing", good[..good.len() - 8].to_vec()),
        ("corrupt", corrupt),
        ("gzip header only", good[..10].to_vec()),
    ];
    for (what, bytes) in cases {
        let (result, check) = deploy(&bytes, ArchiveLimits::default());
        match result {
            Err(BuildError::Other(msg)) => {
                assert!(msg.contains("src.tgz: not a valid tar.gz"), "{what}: {msg}")
            }
            other => panic!("{what}: expected a read error, got {other:?}"),
        }
        check();
    }
}

#[test]
fn wrapped_tarball_is_unwrapped_and_hashes_like_the_same_directory() {
    let pax = b"15 comment=abc\n".to_vec();
    let long_name = format!("repo-main/{}/file.txt", "n".repeat(120));
    let entries = [
        Raw {
            data: pax,
            ..special("pax_global_header", EntryType::XGlobalHeader, "")
        },
        special("./", EntryType::Directory, ""),
        special("./repo-main/", EntryType::Directory, ""),
        file("./repo-main/Procfile", "web: old\n"),
        Raw {
            mode: 0o755,
            ..file("repo-main/bin/run", "#!/bin/sh\n")
        },
        file("repo-main/Procfile", "web: ./bin/run\n"),
    ];
    let mut b = tar::Builder::new(Vec::new());
    let plain = tar_bytes(&entries);
    let mut h = Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    b.append_data(&mut h, &long_name, "long".as_bytes())
        .unwrap(); // GNU long name
    let mut bytes = b.into_inner().unwrap();
    bytes.truncate(bytes.len() - 1024); // drop the end marker, then append the raw entries
    bytes.extend_from_slice(&plain);

    let d = dirs();
    let upload = d.src.with_file_name("upload-without-extension");
    fs::write(&upload, gzip(&bytes)).unwrap();
    let slug = prepare_slug(&upload, &d.tmp, &d.slugs, ArchiveLimits::default()).unwrap();
    assert_eq!(
        slug.process_types,
        [("web".to_string(), "./bin/run".to_string())]
    );
    assert_eq!(list(&slug.path), ["Procfile", "bin", &"n".repeat(120)]);
    assert_eq!(mode(&slug.path.join("bin/run")), 0o555);
    assert!(list(&d.tmp).is_empty());

    // The same tree as a directory hashes the same, so a slug built either way is shared.
    write(&d.src.join("Procfile"), "web: ./bin/run\n", 0o644);
    write(&d.src.join("bin/run"), "#!/bin/sh\n", 0o755);
    write(&d.src.join("n".repeat(120)).join("file.txt"), "long", 0o644);
    let from_dir = prepare_slug(&d.src, &d.tmp, &d.slugs, ArchiveLimits::default()).unwrap();
    assert_eq!(from_dir.sha256, slug.sha256);

    // A plain (uncompressed) tar is recognised by its magic too.
    let tar_upload = d.src.with_file_name("plain.tar");
    fs::write(&tar_upload, &bytes).unwrap();
    assert_eq!(
        prepare_slug(&tar_upload, &d.tmp, &d.slugs, ArchiveLimits::default()).unwrap(),
        slug
    );
}

#[test]
fn top_dir_is_kept_when_the_procfile_is_at_the_top() {
    let bytes = tgz(&[
        file("Procfile", "web: run\n"),
        file("only/Procfile", "web: inner\n"),
    ]);
    let d = dirs();
    let upload = d.src.with_extension("tgz");
    fs::write(&upload, bytes).unwrap();
    let slug = prepare_slug(&upload, &d.tmp, &d.slugs, ArchiveLimits::default()).unwrap();
    assert_eq!(slug.process_types, [("web".to_string(), "run".to_string())]);
    assert_eq!(list(&slug.path), ["Procfile", "only"]);
}

#[test]
fn tar_zst_deploys_and_hostile_zst_is_refused() {
    let good = tar_bytes(&[
        file("Procfile", "web: exec sleep 1\n"),
        file("app.sh", "echo hi\n"),
    ]);
    let zst =
        ruzstd::encoding::compress_to_vec(&good[..], ruzstd::encoding::CompressionLevel::Fastest);
    let (result, _check) = deploy(&zst, ArchiveLimits::default());
    let slug = result.expect("a valid .tar.zst deploys");
    assert_eq!(
        slug.process_types,
        [("web".to_string(), "exec sleep 1".to_string())]
    );
    assert_eq!(
        fs::read_to_string(slug.path.join("app.sh")).unwrap(),
        "echo hi\n"
    );

    let evil = tar_bytes(&[file("Procfile", "web: x\n"), file("../evil", "x")]);
    let zst =
        ruzstd::encoding::compress_to_vec(&evil[..], ruzstd::encoding::CompressionLevel::Fastest);
    let (result, check) = deploy(&zst, ArchiveLimits::default());
    let err = result.unwrap_err().to_string();
    assert!(err.contains("../evil"), "{err}");
    check();

    let mut corrupt =
        ruzstd::encoding::compress_to_vec(&good[..], ruzstd::encoding::CompressionLevel::Fastest);
    corrupt.truncate(corrupt.len() / 2);
    let (result, check) = deploy(&corrupt, ArchiveLimits::default());
    assert!(result.is_err());
    check();
}

/// Found by the archive fuzz target: only the first zstd frame was read and what followed it
/// ignored, so a stream of several frames lost files and bytes after a frame went unnoticed.
#[test]
fn every_zstd_frame_is_extracted_and_trailing_bytes_are_refused() {
    let zst = |b: &[u8]| {
        ruzstd::encoding::compress_to_vec(b, ruzstd::encoding::CompressionLevel::Fastest)
    };
    let tar = tar_bytes(&[
        file("Procfile", "web: exec sleep 1\n"),
        file("second-half", "in the second frame\n"),
    ]);
    // Split inside the tar stream, as `pzstd` would: two frames.
    let (a, b) = tar.split_at(512 + 512);
    let mut two = zst(a);
    two.extend_from_slice(&zst(b));
    let (result, _check) = deploy(&two, ArchiveLimits::default());
    let slug = result.expect("a two-frame .tar.zst deploys");
    assert_eq!(
        fs::read_to_string(slug.path.join("second-half")).unwrap(),
        "in the second frame\n"
    );

    let mut trailing = zst(&tar);
    trailing.extend_from_slice(b"garbage after the frame");
    let (result, check) = deploy(&trailing, ArchiveLimits::default());
    match result {
        Err(BuildError::Other(msg)) => assert!(
            msg.contains("not a valid tar.zst archive") && msg.contains("not a zstd frame"),
            "{msg}"
        ),
        other => panic!("expected a read error, got {other:?}"),
    }
    check();
}

#[test]
fn a_slug_archive_of_a_file_with_holes_extracts() {
    // A file with a hole, as linkers and `cp` leave them: written as a plain entry, not as a
    // GNU sparse one, which extraction refuses.
    let d = tempfile::tempdir().unwrap();
    let slug = d.path().join("slug");
    std::fs::create_dir(&slug).unwrap();
    let path = slug.join("holey");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(1 << 20).unwrap();
    drop(f);
    let (archive, _) =
        slug_archive(&slug, "abc", &d.path().join("c"), &d.path().join("t")).unwrap();
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    extract(&archive, ArchiveKind::TarGz, &out, ArchiveLimits::default()).unwrap();
    assert_eq!(
        std::fs::read(out.join("holey")).unwrap(),
        vec![0u8; 1 << 20]
    );
}
