use super::*;

fn me() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// Takes a snapshot with no cap, `owner`'s files only (in this process: unit tests have no
/// robokud binary to run the copy in).
fn take(data: &Path, snaps: &Path, version: u32, owner: Option<u32>) -> Result<Copied, PathError> {
    let run_as = owner.map(|u| (u, nix::unistd::getgid().as_raw()));
    match super::take(data, snaps, version, run_as, u64::MAX, u64::MAX)? {
        Outcome::Copied(c) => Ok(c),
        other => panic!("not copied: {other:?}"),
    }
}

fn stage(snaps: &Path, version: u32) -> Result<Copied, PathError> {
    super::stage(snaps, version, None)
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| format!("<{e}>"))
}

/// A data dir with a plain file, a nested one, a link and a WAL-mode database with a row.
fn data_dir(root: &Path) -> PathBuf {
    let data = root.join("data/nav");
    fs::create_dir_all(data.join("deep")).unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).unwrap();
    write(&data.join("counter"), "1");
    write(&data.join("deep/notes"), "kept");
    fs::set_permissions(data.join("deep/notes"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("counter", data.join("link")).unwrap();
    data
}

fn rows(db: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c.prepare("SELECT t FROM notes ORDER BY rowid").unwrap();
    let v = st
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    v
}

#[test]
fn a_snapshot_is_a_copy_not_a_link_and_takes_databases_through_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let snaps = tmp.path().join("snapshots/nav");
    // The app holds its WAL database open with an uncheckpointed write while the snapshot runs.
    let live = rusqlite::Connection::open(data.join("db.sqlite3")).unwrap();
    live.pragma_update(None, "journal_mode", "WAL").unwrap();
    live.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    live.execute_batch("CREATE TABLE notes (t TEXT); INSERT INTO notes VALUES ('v1');")
        .unwrap();
    assert!(data.join("db.sqlite3-wal").exists());

    let copied = take(&data, &snaps, 1, Some(me())).unwrap();
    assert_eq!(copied.databases, 1, "{copied:?}");
    assert!(copied.skipped.is_empty(), "{copied:?}");
    let v1 = snaps.join("v1");
    assert_eq!(fs::metadata(&snaps).unwrap().mode() & 0o7777, 0o700);
    assert_eq!(
        rows(&v1.join("db.sqlite3")),
        ["v1"],
        "the write in the WAL is in the copy"
    );
    assert!(!v1.join("db.sqlite3-wal").exists() && !v1.join("db.sqlite3-shm").exists());
    assert_eq!(read(&v1.join("deep/notes")), "kept");
    assert_eq!(
        fs::metadata(v1.join("deep/notes")).unwrap().mode() & 0o777,
        0o640
    );
    assert_eq!(
        fs::read_link(v1.join("link")).unwrap(),
        Path::new("counter")
    );
    assert_eq!(versions(&snaps), [1]);

    // Writes in place after the snapshot (same inode) leave it alone.
    use std::io::{Seek, Write};
    let mut f = File::options()
        .write(true)
        .open(data.join("counter"))
        .unwrap();
    f.seek(std::io::SeekFrom::Start(0)).unwrap();
    f.write_all(b"2").unwrap();
    live.execute("INSERT INTO notes VALUES ('v2')", []).unwrap();
    assert_eq!(read(&v1.join("counter")), "1");
    assert_eq!(rows(&v1.join("db.sqlite3")), ["v1"]);
    assert!(
        copied.describe().contains("1 SQLite databases"),
        "{}",
        copied.describe()
    );
}

#[test]
fn files_the_app_does_not_own_and_sockets_are_left_out() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let _sock = std::os::unix::net::UnixListener::bind(data.join("sock")).unwrap();
    // Pretend the app is another uid: then nothing of ours may be copied.
    let copied = take(&data, &tmp.path().join("s"), 3, Some(me() + 1)).unwrap();
    assert_eq!(copied.files, 0, "{copied:?}");
    assert!(
        copied.skipped.iter().any(|s| s.contains("counter")),
        "{copied:?}"
    );
    let copied = take(&data, &tmp.path().join("s"), 3, Some(me())).unwrap();
    assert!(
        copied
            .skipped
            .iter()
            .any(|s| s.contains("sock") && s.contains("not a file")),
        "{copied:?}"
    );
    assert!(!tmp.path().join("s/v3/sock").exists());
    assert!(
        tmp.path().join("s/v3/counter").exists(),
        "taken again over the first one"
    );
}

#[test]
fn prune_keeps_what_it_is_told() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let snaps = tmp.path().join("snapshots/nav");
    for v in [1, 2, 3] {
        take(&data, &snaps, v, None).unwrap();
    }
    assert_eq!(versions(&snaps), [3, 2, 1]);
    assert_eq!(prune(&snaps, &BTreeSet::from([2, 3])), [1]);
    assert_eq!(versions(&snaps), [3, 2]);
}

/// v1's snapshot holds "1"; the live data says "2"; v2 is current.
fn restore_bed() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let snaps = tmp.path().join("snapshots/nav");
    take(&data, &snaps, 1, None).unwrap();
    write(&data.join("counter"), "2");
    write(&data.join("new-in-v2"), "x");
    (tmp, data, snaps)
}

fn never(_: &Journal) -> bool {
    false
}

#[test]
fn a_restore_swaps_whole_and_keeps_the_live_data_as_a_snapshot() {
    let (_tmp, data, snaps) = restore_bed();
    let staged = stage(&snaps, 1).unwrap();
    assert_eq!(staged.files, 2);
    assert_eq!(
        read(&data.join("counter")),
        "2",
        "staging leaves the live data"
    );
    swap(&data, &snaps, 1, 2).unwrap();
    assert_eq!(read(&data.join("counter")), "1");
    assert!(!data.join("new-in-v2").exists());
    assert_eq!(
        read(&snaps.join("v2/counter")),
        "2",
        "the restore can be undone"
    );
    assert_eq!(read(&snaps.join("v1/counter")), "1", "v1's snapshot stays");
    finish(&snaps).unwrap();
    assert_eq!(recover(&data, &snaps, &never).unwrap(), None);
    assert_eq!(read(&data.join("counter")), "1");
}

#[test]
fn recovery_before_the_swap_keeps_the_live_data() {
    let (_tmp, data, snaps) = restore_bed();
    stage(&snaps, 1).unwrap();
    let ino = fs::metadata(snaps.join(STAGE)).unwrap().ino();
    let j = Journal {
        target: 1,
        current: 2,
        staged_ino: ino,
    };
    write_journal(&snaps, &j).unwrap();
    fs::create_dir(snaps.join(".v9.tmp")).unwrap();
    let what = recover(&data, &snaps, &|_| true).unwrap().unwrap();
    assert!(what.contains("before its swap"), "{what}");
    assert_eq!(read(&data.join("counter")), "2");
    assert!(!snaps.join(STAGE).exists() && !snaps.join(JOURNAL).exists());
    assert!(
        !snaps.join(".v9.tmp").exists(),
        "a half snapshot is dropped"
    );
}

#[test]
fn recovery_after_the_swap_undoes_it_unless_the_release_was_made() {
    // Killed right after the exchange (the old data still at .restore), no release made.
    let (_tmp, data, snaps) = restore_bed();
    stage(&snaps, 1).unwrap();
    let ino = fs::metadata(snaps.join(STAGE)).unwrap().ino();
    write_journal(
        &snaps,
        &Journal {
            target: 1,
            current: 2,
            staged_ino: ino,
        },
    )
    .unwrap();
    exchange(&snaps.join(STAGE), &data).unwrap();
    assert_eq!(read(&data.join("counter")), "1");
    let what = recover(&data, &snaps, &never).unwrap().unwrap();
    assert!(what.contains("undid"), "{what}");
    assert_eq!(read(&data.join("counter")), "2");
    assert!(data.join("new-in-v2").exists());
    assert!(!snaps.join(STAGE).exists() && !snaps.join(JOURNAL).exists());

    // Killed after the whole swap, no release made: undone too (v2's aside copy goes back).
    stage(&snaps, 1).unwrap();
    swap(&data, &snaps, 1, 2).unwrap();
    recover(&data, &snaps, &never).unwrap().unwrap();
    assert_eq!(read(&data.join("counter")), "2");
    assert!(!snaps.join("v2").exists());
    assert_eq!(read(&snaps.join("v1/counter")), "1");

    // The release was made: the restored data stays.
    stage(&snaps, 1).unwrap();
    swap(&data, &snaps, 1, 2).unwrap();
    let what = recover(&data, &snaps, &|j| j.current == 2)
        .unwrap()
        .unwrap();
    assert!(what.contains("finished"), "{what}");
    assert_eq!(read(&data.join("counter")), "1");
    assert_eq!(read(&snaps.join("v2/counter")), "2");
}

#[test]
fn a_tree_over_the_cap_or_the_room_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    write(&data.join("big"), &"x".repeat(10_000));
    let snaps = tmp.path().join("snapshots/nav");
    let out = super::take(&data, &snaps, 1, None, 5_000, u64::MAX).unwrap();
    assert!(
        matches!(out, Outcome::TooBig { bytes } if bytes > 10_000),
        "{out:?}"
    );
    let out = super::take(&data, &snaps, 1, None, u64::MAX, 5_000).unwrap();
    assert!(matches!(out, Outcome::NoRoom { .. }), "{out:?}");
    assert_eq!(fs::read_dir(&snaps).unwrap().count(), 0, "nothing left");
}

#[test]
fn the_cap_counts_bytes_written_not_bytes_measured() {
    // Measured under the cap, the walk still stops at it: what a file grown after the
    // measurement would do (the budget is what is counted while copying).
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    write(&data.join("big"), &"x".repeat(10_000));
    let dst = tmp.path().join("dst");
    fs::create_dir(&dst).unwrap();
    let job = snapshot_copy::Job {
        src: Some(data.clone()),
        max_bytes: 20_000,
        room: u64::MAX,
        owner: None,
        consistent: true,
        only: None,
    };
    let mut walk_job = job.clone();
    walk_job.max_bytes = 20_000;
    assert!(matches!(
        snapshot_copy::run(&walk_job, &data, &dst).unwrap(),
        Outcome::Copied(_)
    ));
    // Grown between the measurement and the copy: the counted bytes go past the cap.
    let dst2 = tmp.path().join("dst2");
    fs::create_dir(&dst2).unwrap();
    let out = snapshot_copy::run_measured(&job, &data, &dst2, 0).unwrap();
    assert!(matches!(out, Outcome::Copied(_)), "{out:?}");
    let small = snapshot_copy::Job {
        max_bytes: 5_000,
        ..job
    };
    let dst3 = tmp.path().join("dst3");
    fs::create_dir(&dst3).unwrap();
    let out = snapshot_copy::run_measured(&small, &data, &dst3, 0).unwrap();
    assert!(matches!(out, Outcome::TooBig { .. }), "{out:?}");
    let written: u64 = fs::read_dir(&dst3)
        .unwrap()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    assert!(
        written <= 5_000,
        "{written} bytes written past a 5000-byte cap"
    );
}

#[test]
fn a_kill_between_the_renames_of_a_replacement_loses_no_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let snaps = tmp.path().join("snapshots/nav");
    take(&data, &snaps, 1, None).unwrap();
    write(&data.join("counter"), "2");
    take(&data, &snaps, 2, None).unwrap();
    // v1 replaced: killed after `v1 -> v1.old`, before `.v1.tmp -> v1` (the copy synced).
    take(&data, &snaps, 9, None).unwrap();
    fs::rename(snaps.join("v1"), snaps.join("v1.old")).unwrap();
    fs::rename(snaps.join("v9"), snaps.join(".v1.tmp")).unwrap();
    // v2 replaced: killed after both renames, before `v2.old` was removed.
    fs::create_dir(snaps.join("v2.old")).unwrap();
    assert_eq!(recover(&data, &snaps, &never).unwrap(), None);
    assert_eq!(
        read(&snaps.join("v1/counter")),
        "2",
        "the fresh copy is in place"
    );
    assert_eq!(read(&snaps.join("v2/counter")), "2");
    let mut left: Vec<String> = fs::read_dir(&snaps)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["v1", "v2"]);

    // Killed after `v1 -> v1.old` with the copy not finished: the old one comes back.
    fs::rename(snaps.join("v1"), snaps.join("v1.old")).unwrap();
    recover(&data, &snaps, &never).unwrap();
    assert_eq!(read(&snaps.join("v1/counter")), "2");
    assert!(!snaps.join("v1.old").exists());
}

#[test]
fn a_fifo_beside_a_database_does_not_hang_the_snapshot() {
    // SQLite blocks for good opening a fifo `-journal`: the database is copied as a file.
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let c = rusqlite::Connection::open(data.join("app.db")).unwrap();
    c.execute_batch("CREATE TABLE notes (t TEXT); INSERT INTO notes VALUES ('kept');")
        .unwrap();
    drop(c);
    nix::unistd::mkfifo(&data.join("app.db-journal"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let snaps = tmp.path().join("snapshots/nav");
    let copied = take(&data, &snaps, 1, None).unwrap();
    assert_eq!(copied.databases, 0, "not through SQLite: {copied:?}");
    assert_eq!(rows(&snaps.join("v1/app.db")), ["kept"]);
    assert!(!snaps.join("v1/app.db-journal").exists(), "{copied:?}");
}
