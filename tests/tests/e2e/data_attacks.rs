//! Data snapshots against a hostile app: its dyno (the app's own uid) keeps swapping a dir of
//! its data with a link to robokud's data dir, plants `-wal`/`-shm` links to a root-owned file
//! beside its databases, a fifo and links to devices, and grows a file while it is copied.
//! A deploy (which snapshots the data) must go on, change no root-owned file outside the data
//! dir, take only the app's own files, and never write past `data_snapshot_max_bytes`.

use roboku_tests::{app_dir, wait_for, Agent, AgentOpts};
use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Sets its data up once (`ready` when done), then swaps `sub` (a real dir holding a 16-byte SQLite
/// header `roboku.db` and a `roboku.db-wal` link to the victim) with a link to robokud's data
/// dir, as fast as it can.
const HOSTILE: &str = r#"
import os, sqlite3, sys
d = os.environ['ROBOKU_DATA']
robokud = os.path.dirname(os.path.dirname(d))
victim = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'victim.txt')).read().strip()
def link(target, name):
    try: os.unlink(name)
    except OSError: pass
    os.symlink(target, name)
if not os.path.exists(d + '/ready'):
    db = sqlite3.connect(d + '/app.db')
    db.execute('PRAGMA journal_mode=WAL')
    db.execute('CREATE TABLE IF NOT EXISTS t (x)')
    db.execute("INSERT INTO t VALUES ('mine')")
    db.commit()
    db.close()
    for x in ['-wal', '-shm', '-journal']:
        link(victim, d + '/app.db' + x)
    os.makedirs(d + '/sub', exist_ok=True)
    with open(d + '/sub/roboku.db', 'wb') as f: f.write(b'SQLite format 3\0')
    for x in ['-wal', '-shm']:
        link(victim, d + '/sub/roboku.db' + x)
    if not os.path.exists(d + '/pipe'): os.mkfifo(d + '/pipe')
    link('/dev/zero', d + '/zero')
    link('/dev', d + '/devs')
    link(robokud + '/roboku.db', d + '/store')
    with open(d + '/counter', 'w') as f: f.write('1')
    with open(d + '/ready', 'w') as f: f.write('1')
while True:
    try:
        if os.path.islink(d + '/sub'):
            os.unlink(d + '/sub'); os.rename(d + '/sub.d', d + '/sub')
        else:
            os.rename(d + '/sub', d + '/sub.d'); os.symlink(robokud, d + '/sub')
    except OSError:
        pass
"#;

/// Keeps `big` flipping between empty and 1 TiB (sparse: free for the app, not for a copy).
const GROWER: &str = r#"
import os
d = os.environ['ROBOKU_DATA']
with open(d + '/small', 'w') as f: f.write('kept')
f = open(d + '/big', 'wb')
open(d + '/ready', 'w').write('1')
while True:
    f.truncate(0)
    f.truncate(1 << 40)
"#;

/// uid, gid, mode and (for files) content of each entry of `dir` (not recursive).
fn owners(dir: &Path, content: bool) -> BTreeMap<PathBuf, (u32, u32, u32, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter_map(|e| {
            let m = std::fs::symlink_metadata(e.path()).ok()?;
            let bytes = if content && m.is_file() {
                std::fs::read(e.path()).unwrap_or_default()
            } else {
                Vec::new()
            };
            Some((e.path(), (m.uid(), m.gid(), m.mode(), bytes)))
        })
        .collect()
}

/// Every entry under `dir`, lstat'ed.
fn walk(dir: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(m) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if m.is_dir() {
            walk(&e.path(), out);
        }
        out.push((e.path(), m));
    }
}

fn deploy_hostile(agent: &Agent, app: &str, script: &str, extra: &[(&str, &str)]) -> PathBuf {
    let mut files = vec![
        ("Procfile", "web: exec python3 app.py\n"),
        ("app.py", script),
    ];
    files.extend_from_slice(extra);
    let src = app_dir(&files);
    agent.create_and_deploy(app, src.path());
    let ready = agent.data_dir().join("data").join(app).join("ready");
    wait_for(
        "the app's data to be set up",
        Duration::from_secs(20),
        || ready.exists(),
    );
    agent.data_dir().join("data").join(app)
}

#[test]
fn a_hostile_app_cannot_make_a_snapshot_touch_what_is_not_its_own() {
    let agent = Agent::start(AgentOpts::default());
    let outside = tempfile::tempdir().expect("tempdir");
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "root's").expect("write victim");
    let victim_txt = victim.display().to_string();
    let data = deploy_hostile(&agent, "evil", HOSTILE, &[("victim.txt", &victim_txt)]);
    let app_uid = std::fs::metadata(&data).expect("data dir").uid();
    assert_ne!(app_uid, 0, "the app runs as its own uid");
    let before_outside = owners(outside.path(), true);
    let before_store = owners(agent.data_dir(), false);

    // The second deploy snapshots v1's data while the swap loop runs.
    let src = app_dir(&[
        ("Procfile", "web: exec python3 app.py\n"),
        ("app.py", HOSTILE),
        ("victim.txt", &victim_txt),
    ]);
    let release = agent.deploy("evil", src.path());
    assert_eq!(release["version"], 2, "the release went on: {release}");

    assert_eq!(
        owners(outside.path(), true),
        before_outside,
        "a root-owned file outside the data dir changed"
    );
    for (path, (uid, gid, mode, _)) in &before_store {
        if let Ok(m) = std::fs::symlink_metadata(path) {
            assert_eq!(
                (m.uid(), m.gid(), m.mode()),
                (*uid, *gid, *mode),
                "{} changed owner or mode",
                path.display()
            );
        }
    }
    let logs = agent.ok(&["logs", "-a", "evil"]);
    assert!(logs.contains("Data snapshot of v1 taken"), "{logs}");
    let snap = agent.data_dir().join("snapshots/evil/v1");
    let mut all = Vec::new();
    walk(&snap, &mut all);
    assert!(!all.is_empty(), "{logs}");
    for (path, m) in &all {
        let ft = m.file_type();
        assert_eq!(m.uid(), app_uid, "{} is not the app's", path.display());
        assert!(
            !(ft.is_fifo() || ft.is_char_device() || ft.is_block_device() || ft.is_socket()),
            "{} is not a file, dir or link",
            path.display()
        );
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert!(
            !["slugs", "robokud.sock", "snapshots"].contains(&name),
            "{}: robokud's own data was copied",
            path.display()
        );
        if m.is_file() {
            let bytes = std::fs::read(path).unwrap_or_default();
            assert_ne!(
                bytes,
                b"root's",
                "{}: the victim was copied",
                path.display()
            );
        }
    }
    assert_eq!(
        std::fs::read_to_string(snap.join("counter"))
            .ok()
            .as_deref(),
        Some("1")
    );
    assert!(
        snap.join("app.db").is_file() && !snap.join("app.db-wal").exists(),
        "the app's database is copied, its planted -wal link left out"
    );
}

#[test]
fn a_file_grown_during_the_copy_does_not_fill_the_disk() {
    let conf = tempfile::tempdir().expect("tempdir");
    let config = conf.path().join("robokud.toml");
    std::fs::write(&config, "data_snapshot_max_bytes = 8388608\n").expect("write config");
    let agent = Agent::start(AgentOpts {
        tmpfs: Some("64M"),
        extra: vec!["--config".into(), config.display().to_string()],
        ..AgentOpts::default()
    });
    deploy_hostile(&agent, "grow", GROWER, &[]);
    let src = app_dir(&[
        ("Procfile", "web: exec python3 app.py\n"),
        ("app.py", GROWER),
    ]);
    let release = agent.deploy("grow", src.path());
    assert_eq!(release["version"], 2, "the release went on: {release}");
    let logs = agent.ok(&["logs", "-a", "grow"]);
    let snaps = agent.data_dir().join("snapshots/grow");
    let mut all = Vec::new();
    walk(&snaps, &mut all);
    let written: u64 = all
        .iter()
        .filter(|(_, m)| m.is_file())
        .map(|(_, m)| m.len())
        .sum();
    assert!(
        written <= 8 << 20,
        "{written} bytes in the snapshots, over the 8 MiB cap: {logs}"
    );
    assert!(
        logs.contains("is over data_snapshot_max_bytes")
            || logs.contains("Data snapshot of v1 taken"),
        "{logs}"
    );
    assert!(
        all.iter()
            .all(|(p, _)| !p.to_string_lossy().contains(".tmp")),
        "a half copy is left: {all:?}"
    );
}
