//! The watched directory (`bundle_inbox`, default `<data>/bundles/inbox`; a USB automount
//! path works too): `*.rkb` files dropped there are taken in, one at a time, and end up in
//! `<data>/bundles/done/` or `<data>/bundles/rejected/` with a `.reason` file.
//!
//! The directory may be writable by people robokud must not trust, so nothing in it is
//! believed: a file is taken once it stayed the same (size, mtime) for one scan (a copy in
//! progress is not read half-written); it is opened without following a symlink and without
//! blocking on a FIFO, must be a regular file with one link and at most [`MAX_BUNDLE`] bytes,
//! and is *copied* into `<data>/bundles/work/` (root's, 0700) before anything reads it, so the
//! dropper cannot change it between verification and use. The original is then removed (on a
//! read-only stick it stays, and is skipped until it changes). done/ and rejected/ live in the
//! data dir, never in the watched one: a link planted there cannot redirect what robokud writes.
//! What the bundle may do is decided by its signature alone, in the intake.

use super::{BundleDoor, MAX_BUNDLE};
use crate::settings::Settings;
use crate::util::{now_ms, IoContext, PathError};
use roboku_wire::bundle::outcome;
use roboku_wire::fleet::Ack;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;

/// A file as one scan saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

/// Creates the bundle directories: work, done and rejected (root's), and the inbox when it is
/// the default one (root's too; a configured one is the operator's and only created if absent).
pub fn prepare(settings: &Settings) -> Result<(), PathError> {
    use std::os::unix::fs::PermissionsExt;
    let mut dirs = vec![
        settings.bundles_dir(),
        settings.bundle_work_dir(),
        settings.bundles_dir().join("done"),
        settings.bundles_dir().join("rejected"),
    ];
    if settings.bundle_inbox.as_os_str().is_empty() {
        dirs.push(settings.bundle_inbox_dir());
    }
    for dir in dirs {
        std::fs::create_dir_all(&dir).at("create dir", &dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).at("chmod", &dir)?;
    }
    let inbox = settings.bundle_inbox_dir();
    std::fs::create_dir_all(&inbox).at("create bundle inbox", &inbox)?;
    // Leftovers of a robokud that stopped mid-bundle: their originals are gone from the inbox,
    // and the replay guard knows whether they were applied. Set them aside, never re-apply.
    let work = settings.bundle_work_dir();
    if let Ok(entries) = std::fs::read_dir(&work) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let reason = "robokud stopped while this bundle was being applied; see `roboku \
                          releases` for what it did (applying it again is refused as a replay \
                          if it was recorded)";
            settle(settings, &e.path(), &name, Err(reason.to_string()), &[]);
        }
    }
    Ok(())
}

/// Scans the inbox when it may have changed (see [`super::doorbell`]), every `bundle_scan_ms`
/// while a file in it is new or changing, until `shutdown`.
pub async fn run(settings: Settings, door: BundleDoor, mut shutdown: watch::Receiver<bool>) {
    let every = Duration::from_millis(settings.bundle_scan_ms.max(100));
    let inbox = settings.bundle_inbox_dir();
    tracing::info!(inbox = %inbox.display(), "watching for offline bundles");
    let mut last: BTreeMap<String, Seen> = BTreeMap::new();
    // Files taken in that could not be removed (a read-only stick): skipped while unchanged.
    let mut done: BTreeSet<(String, Seen)> = BTreeSet::new();
    let mut bell = super::doorbell::Doorbell::new(&inbox);
    // Busy: a file was seen for the first time or changed, so the next scan comes after
    // `every` whatever the doorbell says (a file is taken once it stayed the same for a scan).
    // At start, to find what was dropped while robokud was down.
    let mut busy = true;
    loop {
        tokio::select! {
            _ = bell.ring(busy, every) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let dir = inbox.clone();
        let now = match tokio::task::spawn_blocking(move || scan(&dir)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot scan the bundle inbox");
                continue;
            }
            Err(_) => continue,
        };
        done.retain(|(name, seen)| now.get(name) == Some(seen));
        busy = false;
        for (name, seen) in &now {
            if done.contains(&(name.clone(), *seen)) {
                continue;
            }
            if last.get(name) != Some(seen) {
                busy = true;
                continue;
            }
            if !take(&settings, &door, name).await {
                done.insert((name.clone(), *seen));
            }
        }
        last = now;
    }
}

/// The `*.rkb` files in the inbox (hidden ones and anything else ignored), as lstat sees them.
fn scan(dir: &Path) -> Result<BTreeMap<String, Seen>, PathError> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).at("read dir", dir)? {
        let Ok(e) = e else { continue };
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".rkb") {
            continue;
        }
        let Ok(m) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        out.insert(
            name,
            Seen {
                dev: m.dev(),
                ino: m.ino(),
                len: m.len(),
                mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            },
        );
    }
    Ok(out)
}

/// Takes one file in and sees it through; false when the original could not be removed.
async fn take(settings: &Settings, door: &BundleDoor, name: &str) -> bool {
    let work = settings
        .bundle_work_dir()
        .join(format!("{}-{name}", now_ms()));
    let (src, dst) = (settings.bundle_inbox_dir().join(name), work.clone());
    let copied = tokio::task::spawn_blocking(move || copy_in(&src, &dst))
        .await
        .unwrap_or_else(|e| Err(format!("copy task failed: {e}")));
    let original = settings.bundle_inbox_dir().join(name);
    let removed = match std::fs::remove_file(&original) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(file = %original.display(), error = %e, "cannot remove a bundle from the inbox (read-only?); it is skipped until it changes");
            false
        }
    };
    if let Err(reason) = copied {
        tracing::warn!(bundle = name, reason, "bundle REJECTED");
        let _ = std::fs::remove_file(&work);
        settle(settings, Path::new(""), name, Err(reason), &[]);
        return removed;
    }
    tracing::info!(bundle = name, "bundle taken from the inbox");
    let mut acks = Vec::new();
    match door.submit(work.clone(), name.to_string(), false).await {
        Ok(mut rx) => {
            while let Some(ack) = rx.recv().await {
                acks.push(ack);
            }
        }
        Err(e) => {
            let _ = std::fs::remove_file(&work);
            tracing::warn!(bundle = name, error = %e, "bundle not taken");
            return removed;
        }
    }
    let result = outcome(&acks, false);
    match &result {
        Ok(()) => tracing::info!(bundle = name, "bundle applied"),
        Err(reason) => tracing::warn!(bundle = name, reason, "bundle not applied"),
    }
    settle(settings, &work, name, result, &acks);
    removed
}

/// Copies a dropped file into robokud's own `dst`, refusing what is not a plain file.
fn copy_in(src: &Path, dst: &Path) -> Result<(), String> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(src)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "a symbolic link, not a bundle file".to_string(),
            _ => format!("open {}: {e}", src.display()),
        })?;
    let m = f
        .metadata()
        .map_err(|e| format!("stat {}: {e}", src.display()))?;
    if !m.file_type().is_file() {
        return Err("not a regular file".into());
    }
    if m.nlink() > 1 {
        return Err(format!(
            "has {} hard links; a bundle file must have one",
            m.nlink()
        ));
    }
    if m.len() > MAX_BUNDLE {
        return Err(format!(
            "{} bytes, more than the {MAX_BUNDLE} a bundle may have",
            m.len()
        ));
    }
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)
        .map_err(|e| format!("create {}: {e}", dst.display()))?;
    // At most one byte more than allowed: a file that grows past the cap is refused too.
    let n = std::io::copy(&mut (&mut f).take(MAX_BUNDLE + 1), &mut out)
        .map_err(|e| format!("copy {} to {}: {e}", src.display(), dst.display()))?;
    if n > MAX_BUNDLE {
        let _ = std::fs::remove_file(dst);
        return Err(format!(
            "more than the {MAX_BUNDLE} bytes a bundle may have"
        ));
    }
    out.sync_all()
        .map_err(|e| format!("write {}: {e}", dst.display()))?;
    Ok(())
}

/// Moves the work copy to done/ or rejected/ (under a name not taken yet) with its reason.
fn settle(settings: &Settings, work: &Path, name: &str, result: Result<(), String>, acks: &[Ack]) {
    let (sub, text) = match &result {
        Ok(()) => ("done", "applied\n".to_string()),
        Err(reason) => ("rejected", format!("{reason}\n")),
    };
    let dir = settings.bundles_dir().join(sub);
    let reason_of = |t: &Path| PathBuf::from(format!("{}.reason", t.display()));
    let mut target = dir.join(name);
    if target.exists() || reason_of(&target).exists() {
        target = dir.join(format!("{name}.{}", now_ms()));
    }
    if work.as_os_str().is_empty() || std::fs::rename(work, &target).is_err() {
        let _ = std::fs::remove_file(work);
        // The reason alone still says what happened to that name.
    }
    let mut reason = text;
    for a in acks {
        reason.push_str(&serde_json::to_string(a).unwrap_or_default());
        reason.push('\n');
    }
    let file = reason_of(&target);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .and_then(|mut f| f.write_all(reason.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(file = %file.display(), error = %e, "cannot write a bundle's reason file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_single_link_files_are_copied_in() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let out = |n: &str| dir.join(format!("out-{n}"));
        std::fs::write(dir.join("good.rkb"), b"bytes").unwrap();
        copy_in(&dir.join("good.rkb"), &out("good")).unwrap();
        assert_eq!(std::fs::read(out("good")).unwrap(), b"bytes");
        std::fs::write(dir.join("secret"), b"secret").unwrap();
        std::os::unix::fs::symlink(dir.join("secret"), dir.join("link.rkb")).unwrap();
        let err = copy_in(&dir.join("link.rkb"), &out("link")).unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        std::fs::hard_link(dir.join("secret"), dir.join("hard.rkb")).unwrap();
        let err = copy_in(&dir.join("hard.rkb"), &out("hard")).unwrap_err();
        assert!(err.contains("hard links"), "{err}");
        nix::unistd::mkfifo(&dir.join("fifo.rkb"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = copy_in(&dir.join("fifo.rkb"), &out("fifo")).unwrap_err();
        assert!(err.contains("not a regular file"), "{err}");
        std::fs::create_dir(dir.join("dir.rkb")).unwrap();
        assert!(copy_in(&dir.join("dir.rkb"), &out("dir")).is_err());
        for n in ["link", "hard", "fifo", "dir"] {
            assert!(!out(n).exists(), "nothing written for {n}");
        }
        // An existing destination is never overwritten (or followed).
        let err = copy_in(&dir.join("good.rkb"), &out("good")).unwrap_err();
        assert!(err.contains("create"), "{err}");
    }

    #[test]
    fn scans_see_only_visible_rkb_files() {
        let tmp = tempfile::tempdir().unwrap();
        for n in ["a.rkb", ".hidden.rkb", "b.rkb.part", "notes.txt"] {
            std::fs::write(tmp.path().join(n), b"x").unwrap();
        }
        let seen = scan(tmp.path()).unwrap();
        assert_eq!(seen.keys().collect::<Vec<_>>(), vec!["a.rkb"]);
    }
}
