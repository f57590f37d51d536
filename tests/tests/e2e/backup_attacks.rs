//! `addons:backup` of a sqlite add-on against a hostile app: beside its database (in its own
//! data dir) the app plants `-wal`, `-shm` and `-journal` symlinks to a root-only file and to
//! paths in a root-only dir where a new file would appear, hard links to the root-only file (what
//! an app can do where fs.protected_hardlinks is 0; planted by the test here) and a fifo as
//! `-journal`. SQLite opens those by name: as root (robokud before the backup went through its
//! `snapshot:copy` child) the hard-linked `-shm` was truncated and rewritten as a wal-index, and
//! a fifo blocks it for good. The backup must leave the root-only file as it was (contents, size,
//! mtime), create nothing, and either hold the database's rows or fail at once naming the file.
//! A normal backup, copied out with `-o` and put back by hand, still brings the rows back.

use super::addons::{mode_uid, run_ok};
use roboku_tests::{app_dir, Agent, AgentOpts};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const SLEEPER: &str = "web: exec sleep 100000\n";

const WRITE_WAL: &str = r#"python3 -c "
import os, sqlite3
db = sqlite3.connect(os.environ['DATABASE_URL'][len('sqlite:///'):])
db.execute('PRAGMA journal_mode=WAL')
db.execute('CREATE TABLE notes (text TEXT)')
db.execute(\"INSERT INTO notes VALUES ('first')\")
db.execute(\"INSERT INTO notes VALUES ('second')\")
db.commit()
db.close()
""#;

const READ: &str = r#"python3 -c "
import os, sqlite3
db = sqlite3.connect(os.environ['DATABASE_URL'][len('sqlite:///'):])
print(','.join(r[0] for r in db.execute('SELECT text FROM notes ORDER BY text')))
""#;

/// Size, mtime (to the nanosecond) and a digest of the contents of a file (printed on a
/// mismatch instead of the bytes).
fn fingerprint(path: &Path) -> (u64, i64, i64, u64) {
    use std::hash::{Hash, Hasher};
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    (m.len(), m.mtime(), m.mtime_nsec(), h.finish())
}

/// What `addons:backup` did: Ok(the path it printed) or Err(what it said).
fn backup(agent: &Agent, extra: &[&str]) -> Result<PathBuf, String> {
    let mut args = vec!["addons:backup", "nav-sqlite", "-a", "nav"];
    args.extend_from_slice(extra);
    let out = agent.roboku(&args);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "roboku {}: {:?}: {}",
        args.join(" "),
        out.status,
        said.trim()
    );
    if !out.status.success() {
        return Err(said);
    }
    said.split_whitespace()
        .find(|w| w.starts_with('/'))
        .map(PathBuf::from)
        .ok_or_else(|| format!("no path in: {said}"))
}

/// The rows of `notes` in a backup, opened read-only as root.
fn rows(path: &Path) -> String {
    let db =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut q = db
        .prepare("SELECT text FROM notes ORDER BY text")
        .expect("prepare");
    let got: Vec<String> = q
        .query_map([], |r| r.get(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    got.join(",")
}

/// Replaces the app's `db.sqlite3<suffix>` with a link to `target`, owned by the app (as the app
/// would plant it).
fn plant(data: &Path, suffix: &str, target: &Path, uid: u32, gid: u32) {
    let link = data.join(format!("db.sqlite3{suffix}"));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(target, &link)
        .unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
    std::os::unix::fs::lchown(&link, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("lchown {}: {e}", link.display()));
}

/// Entries of `dir` (empty when it does not exist).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn planted_sqlite_sidecar_links_are_never_followed_as_root_by_a_backup() {
    let agent = Agent::start(AgentOpts::default());
    agent.create_and_deploy("nav", app_dir(&[("Procfile", SLEEPER)]).path());
    agent.ok(&["addons:create", "sqlite", "-a", "nav"]);
    run_ok(&agent, "nav", WRITE_WAL);
    let data = agent.data_dir().join("data/nav");
    let db_meta = std::fs::metadata(data.join("db.sqlite3")).expect("the database");
    let (uid, gid) = (db_meta.uid(), db_meta.gid());
    assert_ne!(uid, 0, "the database is the app's own uid's");

    // Root's: a 0700 dir the app cannot enter, a 0600 file in it with known contents.
    // Beside the agent's data dir: one filesystem, for the hard links below.
    let beside = agent
        .data_dir()
        .parent()
        .expect("the data dir has a parent");
    let outside = tempfile::tempdir_in(beside).expect("tempdir");
    std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o700))
        .expect("chmod outside");
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "root's own, not a WAL\n".repeat(64)).expect("write victim");
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600))
        .expect("chmod victim");
    let before = fingerprint(&victim);
    let backups = agent.data_dir().join("backups/nav");

    // Each sidecar once at the victim, the others where a new file would appear.
    let rounds: [[(&str, PathBuf); 3]; 3] = [
        [
            ("-wal", victim.clone()),
            ("-shm", outside.path().join("new-shm")),
            ("-journal", outside.path().join("new-journal")),
        ],
        [
            ("-wal", outside.path().join("new-wal")),
            ("-shm", victim.clone()),
            ("-journal", outside.path().join("new-journal")),
        ],
        [
            ("-wal", outside.path().join("new-wal")),
            ("-shm", outside.path().join("new-shm")),
            ("-journal", victim.clone()),
        ],
    ];
    for round in &rounds {
        for (suffix, target) in round {
            plant(&data, suffix, target, uid, gid);
        }
        let kept = names(&backups);
        match backup(&agent, &[]) {
            Ok(path) => {
                assert_eq!(mode_uid(&path), (0o600, 0), "{}", path.display());
                assert_eq!(rows(&path), "first,second", "the backup has the db's rows");
            }
            Err(said) => {
                assert!(said.contains("db.sqlite3"), "names the file: {said}");
                assert_eq!(names(&backups), kept, "a failed backup leaves nothing");
            }
        }
        assert_eq!(fingerprint(&victim), before, "the root-only file changed");
        assert_eq!(
            names(outside.path()),
            ["victim"],
            "a file appeared where a planted link points"
        );
        for (suffix, target) in round {
            let link = data.join(format!("db.sqlite3{suffix}"));
            let m = std::fs::symlink_metadata(&link).expect("the planted link");
            assert!(m.file_type().is_symlink(), "{} replaced", link.display());
            assert_eq!(std::fs::read_link(&link).ok().as_ref(), Some(target));
        }
    }
    // Hard links to the victim as `-wal` and `-shm`: what an app can plant where
    // fs.protected_hardlinks is 0 (the kernel's default; the test plants them as root, on the
    // same filesystem). SQLite opens them for writing and truncates a `-shm` it is the first
    // to map: as root, that would be the victim.
    for suffix in ["-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(data.join(format!("db.sqlite3{suffix}")));
    }
    for suffix in ["-wal", "-shm"] {
        let link = data.join(format!("db.sqlite3{suffix}"));
        std::fs::hard_link(&victim, &link)
            .unwrap_or_else(|e| panic!("hard link {}: {e}", link.display()));
    }
    let kept = names(&backups);
    match backup(&agent, &[]) {
        Ok(path) => assert_eq!(rows(&path), "first,second", "the backup has the db's rows"),
        Err(said) => {
            assert!(said.contains("db.sqlite3"), "names the file: {said}");
            assert_eq!(names(&backups), kept, "a failed backup leaves nothing");
        }
    }
    assert_eq!(
        fingerprint(&victim),
        before,
        "the hard-linked root-only file changed"
    );
    let m = std::fs::symlink_metadata(&victim).expect("victim");
    assert_eq!(
        (m.uid(), m.mode() & 0o7777),
        (0, 0o600),
        "victim's owner and mode"
    );

    // A fifo as `-journal`: SQLite would block opening it, for good. Refused at once, named.
    for suffix in ["-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(data.join(format!("db.sqlite3{suffix}")));
    }
    let fifo = data.join("db.sqlite3-journal");
    let c = std::ffi::CString::new(fifo.display().to_string()).expect("no NUL in the path");
    // SAFETY: mkfifo reads a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    std::os::unix::fs::lchown(&fifo, Some(uid), Some(gid)).expect("chown the fifo");
    let started = std::time::Instant::now();
    let said = backup(&agent, &[]).expect_err("a fifo beside the database is refused");
    assert!(
        said.contains("db.sqlite3-journal"),
        "names the fifo: {said}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "refused, not hung: {:?}",
        started.elapsed()
    );

    // The links gone, a normal backup has the rows; copied out, it puts them back by hand.
    for suffix in ["-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(data.join(format!("db.sqlite3{suffix}")));
    }
    let copy = outside.path().join("copy.sqlite3");
    let path = backup(&agent, &["-o", &copy.display().to_string()]).expect("a normal backup");
    assert_eq!(mode_uid(&path), (0o600, 0));
    assert_eq!(rows(&path), "first,second");
    assert_eq!(rows(&copy), "first,second", "the -o copy");
    assert_eq!(
        names(&backups)
            .iter()
            .filter(|n| n.starts_with('.'))
            .count(),
        0,
        "no work dir or part file left: {:?}",
        names(&backups)
    );
    run_ok(
        &agent,
        "nav",
        r#"python3 -c "
import os, sqlite3
db = sqlite3.connect(os.environ['DATABASE_URL'][len('sqlite:///'):])
db.execute('DELETE FROM notes')
db.commit()
""#,
    );
    assert_eq!(run_ok(&agent, "nav", READ).trim(), "");
    // Restore: the backup put in place of the database, the app's again.
    let db = data.join("db.sqlite3");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(data.join(format!("db.sqlite3{suffix}")));
    }
    std::fs::copy(&copy, &db).expect("restore the copy");
    std::os::unix::fs::chown(&db, Some(uid), Some(gid)).expect("chown the restored db");
    assert_eq!(run_ok(&agent, "nav", READ).trim(), "first,second");
}
