//! Tests for directory sources: copy, hash, read-only slugs, reuse, removal.

use super::*;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use tempfile::TempDir;

pub(super) fn write(path: &Path, data: &str, mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

pub(super) fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

pub(super) fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A small app: Procfile, an executable, a nested file, a relative link, a `.git` dir.
fn sample_app(dir: &Path) {
    write(
        &dir.join("Procfile"),
        "web: ./bin/run --port 5000\nworker: python worker.py\n",
        0o644,
    );
    write(&dir.join("bin/run"), "#!/bin/sh\necho hi\n", 0o755);
    write(&dir.join("lib/deep/data.txt"), "data", 0o644);
    symlink("../../bin/run", dir.join("lib/deep/run-link")).unwrap();
    write(&dir.join(".git/HEAD"), "ref: refs/heads/main\n", 0o644);
}

fn copy_and_hash(src: &Path, base: &Path, name: &str) -> String {
    let dst = base.join(name);
    fs::create_dir(&dst).unwrap();
    copy_dir(src, &dst).unwrap();
    hash_tree(&dst).unwrap()
}

#[test]
fn copy_keeps_files_exec_bits_and_links_and_skips_git() {
    let t = TempDir::new().unwrap();
    let src = t.path().join("src");
    sample_app(&src);
    write(&src.join("suid"), "x", 0o4755);
    let dst = t.path().join("dst");
    fs::create_dir(&dst).unwrap();
    copy_dir(&src, &dst).unwrap();
    assert_eq!(list(&dst), ["Procfile", "bin", "lib", "suid"]);
    assert_eq!(
        fs::read_to_string(dst.join("lib/deep/data.txt")).unwrap(),
        "data"
    );
    assert_eq!(mode(&dst.join("bin/run")), 0o755);
    assert_eq!(mode(&dst.join("Procfile")), 0o644);
    assert_eq!(
        mode(&dst.join("suid")),
        0o755,
        "setuid bit must be stripped"
    );
    assert_eq!(
        fs::read_link(dst.join("lib/deep/run-link")).unwrap(),
        Path::new("../../bin/run")
    );
}

#[test]
fn hash_is_stable_and_sees_content_and_exec_bit() {
    let t = TempDir::new().unwrap();
    let src = t.path().join("src");
    sample_app(&src);
    let a = copy_and_hash(&src, t.path(), "a");
    let b = copy_and_hash(&src, t.path(), "b");
    assert_eq!(a, b);
    assert_eq!(a.len(), 64);

    write(&src.join("lib/deep/data.txt"), "dato", 0o644);
    let c = copy_and_hash(&src, t.path(), "c");
    assert_ne!(a, c, "one changed byte");

    write(&src.join("lib/deep/data.txt"), "data", 0o755);
    let d = copy_and_hash(&src, t.path(), "d");
    assert_ne!(a, d, "exec bit");
    assert_ne!(c, d);

    write(&src.join("lib/deep/data.txt"), "data", 0o644);
    fs::remove_file(src.join("lib/deep/run-link")).unwrap();
    symlink("../../Procfile", src.join("lib/deep/run-link")).unwrap();
    assert_ne!(a, copy_and_hash(&src, t.path(), "e"), "link target");
}

#[test]
fn copy_refuses_escaping_links_and_special_files_naming_them() {
    type Make = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Make, &str)> = vec![
        (
            "abs",
            Box::new(|d| symlink("/etc/passwd", d.join("abs")).unwrap()),
            "absolute",
        ),
        (
            "up",
            Box::new(|d| symlink("../outside", d.join("up")).unwrap()),
            "outside",
        ),
        (
            "sub/up2",
            Box::new(|d| symlink("../../x", d.join("sub/up2")).unwrap()),
            "outside",
        ),
        (
            "sub/mid",
            Box::new(|d| symlink("x/../..", d.join("sub/mid")).unwrap()),
            "after a name",
        ),
        (
            "fifo",
            Box::new(|d| {
                nix::unistd::mkfifo(&d.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap()
            }),
            "fifo",
        ),
        (
            "sock",
            Box::new(|d| {
                std::os::unix::net::UnixListener::bind(d.join("sock")).unwrap();
            }),
            "socket",
        ),
    ];
    for (entry, make, reason) in cases {
        let t = TempDir::new().unwrap();
        let src = t.path().join("src");
        write(&src.join("sub/ok"), "ok", 0o644);
        make(&src);
        let dst = t.path().join("dst");
        fs::create_dir(&dst).unwrap();
        match copy_dir(&src, &dst) {
            Err(BuildError::UnsafeEntry {
                entry: e,
                reason: r,
                ..
            }) => {
                assert_eq!(e, entry);
                assert!(r.contains(reason), "{entry}: {r}");
            }
            other => panic!("{entry}: expected UnsafeEntry, got {other:?}"),
        }
    }
}

#[test]
fn links_inside_the_tree_are_kept() {
    let t = TempDir::new().unwrap();
    let src = t.path().join("src");
    write(&src.join("a/b/f"), "f", 0o644);
    symlink("..", src.join("a/b/up")).unwrap();
    symlink("./b/f", src.join("a/same")).unwrap();
    symlink("dangling", src.join("d")).unwrap();
    let dst = t.path().join("dst");
    fs::create_dir(&dst).unwrap();
    copy_dir(&src, &dst).unwrap();
    assert_eq!(fs::read_to_string(dst.join("a/same")).unwrap(), "f");
    assert_eq!(fs::read_link(dst.join("d")).unwrap(), Path::new("dangling"));
}

pub(super) struct Dirs {
    _t: TempDir,
    pub src: PathBuf,
    pub tmp: PathBuf,
    pub slugs: PathBuf,
}

pub(super) fn dirs() -> Dirs {
    let t = TempDir::new().unwrap();
    let base = t.path().to_path_buf();
    Dirs {
        src: base.join("src"),
        tmp: base.join("data/tmp"),
        slugs: base.join("data/slugs"),
        _t: t,
    }
}

#[test]
fn directory_deploys_read_only_to_slugs_sha() {
    let d = dirs();
    sample_app(&d.src);
    let slug = prepare_slug(&d.src, &d.tmp, &d.slugs, ArchiveLimits::default()).unwrap();
    assert_eq!(slug.path, d.slugs.join(&slug.sha256));
    assert_eq!(hash_tree(&slug.path).unwrap(), slug.sha256);
    assert_eq!(
        slug.process_types,
        [
            ("web".to_string(), "./bin/run --port 5000".to_string()),
            ("worker".into(), "python worker.py".into())
        ]
    );
    assert_eq!(list(&slug.path), ["Procfile", "bin", "lib"]);
    assert_eq!(mode(&slug.path), 0o555);
    assert_eq!(mode(&slug.path.join("lib/deep")), 0o555);
    assert_eq!(mode(&slug.path.join("Procfile")), 0o444);
    assert_eq!(mode(&slug.path.join("bin/run")), 0o555);
    assert_eq!(mode(&d.slugs), 0o755);
    assert!(list(&d.tmp).is_empty(), "tmp dir must be cleaned");
}

#[test]
fn same_content_reuses_the_existing_slug() {
    let d = dirs();
    sample_app(&d.src);
    let first = prepare_slug(&d.src, &d.tmp, &d.slugs, ArchiveLimits::default()).unwrap();
    let ino = fs::metadata(&first.path).unwrap().ino();
    let second = prepare_slug(&d.src, &d.tmp, &d.slugs, ArchiveLimits::default()).unwrap();
    assert_eq!(first, second);
    assert_eq!(
        fs::metadata(&second.path).unwrap().ino(),
        ino,
        "existing slug kept, not replaced"
    );
    assert_eq!(list(&d.slugs).len(), 1);
    assert!(list(&d.tmp).is_empty());

    write(&d.src.join("new.txt"), "new", 0o644);
    let third = prepare_slug(&d.src, &d.tmp, &d.slugs, ArchiveLimits::default()).unwrap();
    assert_ne!(third.sha256, first.sha256);
    assert_eq!(list(&d.slugs).len(), 2);
}

#[test]
fn missing_or_bad_procfile_is_reported_and_nothing_is_kept() {
    let d = dirs();
    write(&d.src.join("app.py"), "print(1)", 0o644);
    let err = prepare_slug(&d.src, &d.tmp, &d.slugs, ArchiveLimits::default()).unwrap_err();
    assert!(matches!(err, BuildError::NoProcfile { .. }), "{err:?}");

    write(
        &d.src.join("Procfile"),
        "web: ok\n\nthis is not a process line\n",
        0o644,
    );
    match prepare_slug(&d.src, &d.tmp, &d.slugs, ArchiveLimits::default()) {
        Err(BuildError::Procfile { err, .. }) => assert_eq!(err.line, 3),
        other => panic!("expected a Procfile error, got {other:?}"),
    }
    assert!(list(&d.tmp).is_empty());
    assert!(list(&d.slugs).is_empty());
}

#[test]
fn refuses_a_plain_file_and_a_source_holding_the_data_dir() {
    let d = dirs();
    write(&d.src.join("notes.txt"), "just text, not an archive", 0o644);
    let err = prepare_slug(
        &d.src.join("notes.txt"),
        &d.tmp,
        &d.slugs,
        ArchiveLimits::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("neither a directory nor"), "{err}");

    let parent = d.src.parent().unwrap();
    let err = prepare_slug(parent, &d.tmp, &d.slugs, ArchiveLimits::default()).unwrap_err();
    assert!(err.to_string().contains("data directory"), "{err}");
    assert!(list(&d.tmp).is_empty());
}

#[test]
fn remove_tree_removes_read_only_slugs_and_tolerates_missing_paths() {
    let d = dirs();
    sample_app(&d.src);
    let slug = prepare_slug(&d.src, &d.tmp, &d.slugs, ArchiveLimits::default()).unwrap();
    // Root ignores permissions, so check the directories are made writable before removal.
    let copy = d.tmp.join("check");
    fs::create_dir(&copy).unwrap();
    copy_dir(&slug.path, &copy).unwrap();
    make_read_only(&copy).unwrap();
    tree::make_writable(&copy).unwrap();
    assert_eq!(mode(&copy) & 0o700, 0o700);
    assert_eq!(mode(&copy.join("lib/deep")) & 0o700, 0o700);

    remove_tree(&slug.path).unwrap();
    assert!(!slug.path.exists());
    remove_tree(&slug.path).unwrap();
    remove_tree(&copy).unwrap();
    assert!(list(&d.tmp).is_empty());
}
