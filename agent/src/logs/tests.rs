//! End-to-end tests of the log task: real files, real inotify, real child processes.

use super::*;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

fn all() -> LogFilter {
    LogFilter::default()
}

fn texts(lines: &[LogLine]) -> Vec<String> {
    lines.iter().map(|l| l.line.clone()).collect()
}

fn numbered(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|i| format!("line {i}")).collect()
}

/// Polls `recent` until the newest stored line of `app` is `last`; returns up to `n` lines.
async fn wait_last(h: &LogHandle, app: &str, n: usize, last: &str) -> Vec<LogLine> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let lines = h.recent(app, n, all()).await;
        if lines.last().is_some_and(|l| l.line == last) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {last:?}; have {:?}",
            lines.last()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls the offset file until it says `want`.
async fn wait_offset(path: &std::path::Path, want: u64) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = std::fs::read_to_string(path).ok();
        if got.as_deref().and_then(|s| s.trim().parse().ok()) == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for offset {want} in {}; have {got:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn filters_match_a_dyno_or_its_type() {
    let line = |dyno: &str, source| LogLine {
        ts: 0,
        app: "a".into(),
        dyno: dyno.into(),
        source,
        line: String::new(),
    };
    let web = LogFilter {
        dyno: Some("web".into()),
        ..all()
    };
    assert!(web.matches(&line("web.1", LogSource::App)));
    assert!(web.matches(&line("web.12", LogSource::Roboku)));
    assert!(!web.matches(&line("webhook.1", LogSource::App)));
    assert!(!web.matches(&line("worker.1", LogSource::App)));
    let one = LogFilter {
        dyno: Some("web.1".into()),
        source: Some(LogSource::App),
        ..all()
    };
    assert!(one.matches(&line("web.1", LogSource::App)));
    assert!(!one.matches(&line("web.12", LogSource::App)));
    assert!(!one.matches(&line("web.1", LogSource::Roboku)));
}

#[tokio::test]
async fn a_child_process_output_arrives_in_order_in_recent_and_followers() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path().into(), 16 << 20);
    let mut follower = h.subscribe();
    let out = open_spool(dir.path(), "app", "web.1").unwrap();
    let mode = out.metadata().unwrap().mode() & 0o777;
    assert_eq!(mode & !0o640, 0, "spool mode {mode:o}");
    h.watch("app", "web.1");
    // The child writes while this (single-threaded) runtime is blocked: it never waits on us.
    let status = Command::new("sh")
        .args([
            "-c",
            "for i in $(seq 1 1000); do echo line $i; done; echo oops >&2",
        ])
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .status()
        .unwrap();
    assert!(status.success());
    let mut want = numbered(1..=1000);
    want.push("oops".into());

    let got = wait_last(&h, "app", 2000, "oops").await;
    assert_eq!(texts(&got), want);
    assert!(got
        .iter()
        .all(|l| l.app == "app" && l.dyno == "web.1" && l.source == LogSource::App));

    let mut followed = Vec::new();
    while followed.len() < want.len() {
        let line = tokio::time::timeout(DEADLINE, follower.recv())
            .await
            .unwrap()
            .unwrap();
        followed.push(line.line);
    }
    assert_eq!(followed, want);
}

#[tokio::test]
async fn followers_are_woken_by_writes_alone() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path().into(), 16 << 20);
    let mut follower = h.subscribe();
    let mut f = open_spool(dir.path(), "app", "web.1").unwrap();
    h.watch("app", "web.1");
    // No `recent` calls here (they read spools too): only inotify can deliver these.
    for i in 1..=20 {
        writeln!(f, "line {i}").unwrap();
        let line = tokio::time::timeout(DEADLINE, follower.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(line.line, format!("line {i}"));
    }
}

#[tokio::test]
async fn partial_and_overlong_lines() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path().into(), 16 << 20);
    let mut f = open_spool(dir.path(), "app", "web.1").unwrap();
    h.watch("app", "web.1");
    f.write_all(b"first\nhel").unwrap();
    wait_last(&h, "app", 10, "first").await; // "hel" has been read and held back
    f.write_all(b"lo\r\nwor").unwrap();
    wait_last(&h, "app", 10, "hello").await;
    f.write_all(b"ld\n").unwrap();
    let got = wait_last(&h, "app", 10, "world").await;
    assert_eq!(texts(&got), ["first", "hello", "world"]);

    // 40000 bytes in two writes, then a line that never ends but passes 16 KiB.
    f.write_all(&[b'x'; 30_000]).unwrap();
    f.write_all(&[b'x'; 10_000]).unwrap();
    f.write_all(b"\nshort\n").unwrap();
    f.write_all(&[b'y'; 20_000]).unwrap();
    let y = "y".repeat(16 * 1024);
    let got = wait_last(&h, "app", 10, &y).await;
    let lens: Vec<usize> = got[3..].iter().map(|l| l.line.len()).collect();
    assert_eq!(lens, [16384, 16384, 40_000 - 2 * 16384, 5, 16384]);
    assert!(got[3].line.bytes().all(|b| b == b'x'));
}

#[tokio::test]
async fn the_store_stays_within_quota_keeping_the_newest_lines() {
    let dir = tempfile::tempdir().unwrap();
    let quota = 256 * 1024;
    let h = start(dir.path().into(), quota);
    let mut f = open_spool(dir.path(), "app", "web.1").unwrap();
    h.watch("app", "web.1");
    let total = 20_000;
    let mut data = String::new();
    for i in 1..=total {
        data.push_str(&format!("line {i}\n"));
    }
    f.write_all(data.as_bytes()).unwrap();
    let last = format!("line {total}");
    let got = wait_last(&h, "app", 5, &last).await;
    assert_eq!(texts(&got), numbered(total - 4..=total));

    let stored = store::stored_bytes(&dir.path().join("app"));
    assert!(stored <= quota, "{stored} bytes stored, quota {quota}");
    assert!(
        stored > quota / 2,
        "{stored} bytes stored: rotation threw away too much"
    );
    // More than the ring holds: read back from the files, a contiguous run up to the newest.
    let kept = h.recent("app", total, all()).await;
    assert!(
        kept.len() > store::RING && kept.len() < total,
        "{} lines kept",
        kept.len()
    );
    assert_eq!(texts(&kept), numbered(total - kept.len() + 1..=total));
}

#[tokio::test]
async fn consumed_spool_space_is_punched_out_and_offsets_survive_loss() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path().into(), 64 << 20);
    let mut f = open_spool(dir.path(), "app", "web.1").unwrap();
    h.watch("app", "web.1");
    let pad = "p".repeat(90);
    let total = 50_000; // about 5 MiB
    let mut data = String::new();
    for i in 1..=total {
        data.push_str(&format!("line {i} {pad}\n"));
    }
    f.write_all(data.as_bytes()).unwrap();
    wait_last(&h, "app", 1, &format!("line {total} {pad}")).await;

    // The offset is persisted in batches (at most 100 ms after the lines are stored), and the
    // punch follows it.
    let spool = spool_path(dir.path(), "app", "web.1");
    wait_offset(&spool.with_extension("offset"), data.len() as u64).await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let meta = std::fs::metadata(&spool).unwrap();
        assert_eq!(meta.len(), data.len() as u64);
        let allocated = meta.blocks() * 512;
        if allocated <= (1 << 20) + (64 << 10) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{allocated} bytes still allocated of {}",
            meta.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The dyno keeps appending to the same fd after the punch.
    f.write_all(b"after punch\n").unwrap();
    wait_last(&h, "app", 1, "after punch").await;
    h.shutdown().await;

    // Offset lost: a new reader starts at the first data, past the holes, reading no NULs.
    std::fs::remove_file(spool.with_extension("offset")).unwrap();
    let h = start(dir.path().into(), 64 << 20);
    h.watch("app", "web.1");
    f.write_all(b"after restart\n").unwrap();
    let got = wait_last(&h, "app", 200_000, "after restart").await;
    let reread: Vec<&LogLine> = got.iter().skip(total + 1).collect();
    assert!(
        reread.len() > 2 && reread.len() < 20_000,
        "{} lines re-read",
        reread.len()
    );
    assert!(reread.iter().all(|l| !l.line.contains('\0')));
    assert!(reread[1].line.starts_with("line "), "{:?}", reread[1].line);
}

#[tokio::test]
async fn a_restarted_task_neither_duplicates_nor_loses_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = open_spool(dir.path(), "app", "web.1").unwrap();
    let write = |f: &mut File, range: std::ops::RangeInclusive<usize>| {
        for i in range {
            writeln!(f, "line {i}").unwrap();
        }
    };
    let h = start(dir.path().into(), 16 << 20);
    h.watch("app", "web.1");
    write(&mut f, 1..=300);
    wait_last(&h, "app", 1, "line 300").await;
    // Stop while the dyno is mid-stream and mid-line; it carries on writing meanwhile.
    write(&mut f, 301..=450);
    f.write_all(b"line 45").unwrap();
    h.shutdown().await;
    f.write_all(b"1\n").unwrap();
    write(&mut f, 452..=600);

    let h = start(dir.path().into(), 16 << 20);
    h.watch("app", "web.1");
    write(&mut f, 601..=700);
    let got = wait_last(&h, "app", 10_000, "line 700").await;
    assert_eq!(texts(&got), numbered(1..=700));
}

/// Lines a dyno wrote while no robokud was reading are stamped with the spool's last write
/// (never before they were written, never as late as the re-read), and a roboku line says so
/// with the interval; a line written once the spool is tailed again is stamped as it is read.
#[tokio::test]
async fn lines_written_while_nobody_read_carry_the_last_write_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = open_spool(dir.path(), "app", "web.1").unwrap();
    let h = start(dir.path().into(), 16 << 20);
    h.watch("app", "web.1");
    writeln!(f, "before").unwrap();
    wait_last(&h, "app", 1, "before").await;
    h.shutdown().await;
    for i in 1..=3 {
        writeln!(f, "down {i}").unwrap();
    }
    // As if the agent had last read 8 s ago and the dyno last wrote 5 s ago.
    let now = crate::util::now_ms();
    let at = |ms: u64| std::time::UNIX_EPOCH + Duration::from_millis(ms);
    f.set_modified(at(now - 5000)).unwrap();
    let offset = dir.path().join("app/spool/web.1.offset");
    File::options()
        .write(true)
        .open(&offset)
        .unwrap()
        .set_modified(at(now - 8000))
        .unwrap();

    let h = start(dir.path().into(), 16 << 20);
    h.watch("app", "web.1");
    let deadline = Instant::now() + DEADLINE;
    let note = loop {
        let sys = LogFilter {
            source: Some(LogSource::Roboku),
            ..all()
        };
        if let Some(l) = h.recent("app", 10, sys).await.pop() {
            break l;
        }
        assert!(Instant::now() < deadline, "no note about the backlog");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let read_again = crate::util::now_ms();
    writeln!(f, "after").unwrap();
    let got = wait_last(&h, "app", 10, "after").await;
    let app: Vec<&LogLine> = got.iter().filter(|l| l.source == LogSource::App).collect();
    assert_eq!(
        app.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(),
        ["before", "down 1", "down 2", "down 3", "after"]
    );
    for l in &app[1..4] {
        assert_eq!(l.ts, now - 5000, "{l:?}");
    }
    assert!(app[4].ts >= read_again, "{:?}", app[4]);
    assert!(
        note.line
            .starts_with("3 lines written while robokud was not reading")
            && note.line.contains("last write (5.")
            && note.line.contains("last read this spool (8."),
        "{}",
        note.line
    );
    assert_eq!(note.dyno, "web.1");
}

#[tokio::test]
async fn recent_filters_by_dyno_type_and_source() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path().into(), 16 << 20);
    for dyno in ["web.1", "web.2", "webhook.1", "worker.1"] {
        let mut f = open_spool(dir.path(), "app", dyno).unwrap();
        h.watch("app", dyno);
        writeln!(f, "hello from {dyno}").unwrap();
        wait_last(&h, "app", 1, &format!("hello from {dyno}")).await;
    }
    h.system("app", "web.1", "State changed from up to crashed".into());
    let get = |dyno: Option<&str>, source| {
        let filter = LogFilter {
            dyno: dyno.map(Into::into),
            source,
            ..all()
        };
        let h = h.clone();
        async move { texts(&h.recent("app", 100, filter).await) }
    };
    assert_eq!(
        get(Some("web"), None).await,
        [
            "hello from web.1",
            "hello from web.2",
            "State changed from up to crashed"
        ]
    );
    assert_eq!(
        get(Some("web.1"), Some(LogSource::App)).await,
        ["hello from web.1"]
    );
    assert_eq!(
        get(None, Some(LogSource::Roboku)).await,
        ["State changed from up to crashed"]
    );
    assert_eq!(get(Some("worker"), None).await, ["hello from worker.1"]);
    assert_eq!(get(Some("web.1"), None).await.len(), 2);
}

#[tokio::test]
async fn system_lines_unwatch_and_remove_app() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path().into(), 16 << 20);
    let mut follower = h.subscribe();
    h.system(
        "app",
        "web.1",
        "Starting process with command `./run`".into(),
    );
    // Requests are handled in order, so no waiting is needed for system lines.
    let got = h.recent("app", 10, all()).await;
    assert_eq!(texts(&got), ["Starting process with command `./run`"]);
    assert_eq!(
        (got[0].source, got[0].dyno.as_str()),
        (LogSource::Roboku, "web.1")
    );
    assert_eq!(follower.recv().await.unwrap(), got[0]);

    // Unwatch drains the spool, an unfinished last line included.
    let mut f = open_spool(dir.path(), "app", "web.1").unwrap();
    h.watch("app", "web.1");
    f.write_all(b"a\nb").unwrap();
    h.unwatch("app", "web.1");
    h.system("app", "web.1", "Process exited with status 137".into());
    let got = h
        .recent(
            "app",
            10,
            LogFilter {
                source: Some(LogSource::App),
                ..all()
            },
        )
        .await;
    assert_eq!(texts(&got), ["a", "b"]);

    // The same dyno name again: it resumes after what was drained.
    h.watch("app", "web.1");
    f.write_all(b"c\n").unwrap();
    let got = wait_last(&h, "app", 10, "c").await;
    assert_eq!(
        texts(&got)[1..],
        ["a", "b", "Process exited with status 137", "c"]
    );

    h.remove_app("app");
    assert!(h.recent("app", 10, all()).await.is_empty());
    assert!(!dir.path().join("app").exists());
    // Names that would leave the logs dir are refused.
    h.system("..", "web.1", "escape".into());
    h.remove_app("..");
    assert!(h.recent("..", 10, all()).await.is_empty());
    assert!(dir.path().exists());
}

/// A log task that can be killed: aborted at its next await, it neither saves offsets nor
/// flushes anything, as with a kill -9 of robokud.
fn start_killable(logs_dir: PathBuf, quota: u64) -> (LogHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (lines, _) = broadcast::channel(FOLLOW_CAPACITY);
    let task = tokio::spawn(task::Task::new(logs_dir, quota, lines.clone()).run(rx));
    (LogHandle { tx, lines }, task)
}

/// Killed while the offset is behind the stored lines (it is persisted in batches), the next
/// task re-delivers from the persisted offset: every line is stored at least once, in order,
/// and nothing after the persisted offset was punched out (no NUL, no line missing).
#[tokio::test]
async fn a_killed_task_loses_no_line_and_redelivers_a_bounded_window() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = open_spool(dir.path(), "app", "web.1").unwrap();
    let pad = "p".repeat(90);
    let (h, task) = start_killable(dir.path().into(), 256 << 20);
    h.watch("app", "web.1");
    let (first, total) = (60_000, 80_000); // about 6 and 8 MiB
    let mut data = String::new();
    for i in 1..=first {
        data.push_str(&format!("line {i} {pad}\n"));
    }
    f.write_all(data.as_bytes()).unwrap();
    wait_last(&h, "app", 1, &format!("line {first} {pad}")).await;
    let mut more = String::new();
    for i in first + 1..=total {
        more.push_str(&format!("line {i} {pad}\n"));
    }
    f.write_all(more.as_bytes()).unwrap();
    wait_last(&h, "app", 1, &format!("line {total} {pad}")).await;
    task.abort();
    let _ = task.await;
    // Usually behind (the kill came within 100 ms of the last lines); on a slow machine the
    // timer may have saved it all. Either way what follows must hold (the spool tests pin
    // the behind case down without timers).
    let offset: u64 = std::fs::read_to_string(dir.path().join("app/spool/web.1.offset"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let written = (data.len() + more.len()) as u64;

    let (h, _task) = start_killable(dir.path().into(), 256 << 20);
    h.watch("app", "web.1");
    f.write_all(b"after kill\n").unwrap();
    let got = wait_last(&h, "app", 1_000_000, "after kill").await;
    let mut next = 1;
    let mut again = 0;
    for l in &got[..got.len() - 1] {
        let n: usize = l
            .line
            .strip_prefix("line ")
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a written line: {:?}", l.line));
        assert!(n <= next, "line {next} lost (then came {n})");
        if n == next {
            next += 1;
        } else {
            again += 1;
        }
    }
    assert_eq!(next, total + 1, "every line stored");
    let after_offset = format!("{data}{more}").as_bytes()[offset as usize..]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    assert_eq!(
        again, after_offset,
        "exactly the lines after the persisted offset ({offset} of {written}) came again"
    );
}
