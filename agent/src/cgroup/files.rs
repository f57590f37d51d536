//! cgroupfs file helpers shared by the v1 and v2 drivers: read/write one value, parse
//! `key value` files and `cgroup.procs`, kill-and-wait loops. Every error names its path.

use super::CgroupError;
use crate::util::{IoContext, PathError};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the kill loop re-reads `cgroup.procs`; bounded by the caller's deadline.
const POLL: Duration = Duration::from_millis(10);

/// A cgroup path must stay inside roboku's subtree: relative, no `..`, no empty parts.
pub(crate) fn check_rel(rel: &str) -> Result<(), CgroupError> {
    let bad = rel.is_empty()
        || rel.split('/').any(|part| part.is_empty())
        || Path::new(rel)
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        || rel.contains('\n');
    if bad {
        return Err(CgroupError::Invalid(format!(
            "cgroup path {rel:?} is not a plain relative path"
        )));
    }
    Ok(())
}

/// `base`, then `base/a`, `base/a/b` for `rel = "a/b"`: every level from the subtree root down.
pub(crate) fn levels(base: &Path, rel: &str) -> Vec<PathBuf> {
    let mut out = vec![base.to_path_buf()];
    let mut dir = base.to_path_buf();
    for part in rel.split('/') {
        dir.push(part);
        out.push(dir.clone());
    }
    out
}

/// Names of the subdirectories of `dir` (none if it is missing or unreadable).
pub(crate) fn child_dirs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

pub(crate) fn mkdir(dir: &Path) -> Result<(), PathError> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        other => other.at("create cgroup dir", dir),
    }
}

/// Removes an empty cgroup dir; missing is fine. EBUSY (processes or children left) is an error.
pub(crate) fn rmdir(dir: &Path) -> Result<(), PathError> {
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other.at("remove cgroup dir", dir),
    }
}

/// Reads a whole cgroupfs file in one go: open, read, close. cgroupfs (like /proc's
/// single-record files) makes a file's whole text at once, so a read shorter than the buffer
/// is the end; `std::fs::read_to_string` adds an fstat, a 32-byte probe and a read of the end,
/// five or six calls instead of three, for every file of every dyno the sampler reads.
pub(crate) fn read(path: &Path) -> Result<String, PathError> {
    read_whole(path).at("read", path)
}

fn read_whole(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        let n = match f.read(&mut buf[len..]) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => other?,
        };
        len += n;
        if n == 0 || len < buf.len() {
            break;
        }
        buf.resize(buf.len() * 2, 0);
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))
}

/// Reads a file that may legitimately be missing (an optional controller, a removed cgroup).
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, PathError> {
    match read_whole(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        other => other.map(Some).at("read", path),
    }
}

/// Writes one value. The file must exist (cgroupfs creates interface files itself; a missing one
/// means the controller is not there). An empty value is sent as a newline so that it reaches
/// the kernel at all (v2 `cpuset.cpus` = "" means "inherit").
pub(crate) fn write(path: &Path, value: &str) -> Result<(), PathError> {
    let value = if value.is_empty() { "\n" } else { value };
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .at("open", path)?;
    file.write_all(value.as_bytes()).at("write", path)
}

/// Writes `value` unless it only restores the default (`unlimited`) and the file is missing:
/// resetting a limit of an absent controller is a no-op, setting one is an error.
pub(crate) fn set(path: &Path, value: &str, unlimited: bool) -> Result<(), PathError> {
    if unlimited && !path.exists() {
        return Ok(());
    }
    write(path, value)
}

pub(crate) fn read_u64(path: &Path) -> Result<u64, CgroupError> {
    let text = read(path)?;
    text.trim().parse().map_err(|_| CgroupError::Malformed {
        path: path.into(),
        text,
    })
}

/// The value of `key` in a flat-keyed file (`memory.stat`, `cpu.stat`, `memory.events`).
pub(crate) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// Reads `key` from a flat-keyed file; a missing key counts as 0 (older kernels lack some).
pub(crate) fn read_keyed(path: &Path, key: &str) -> Result<u64, CgroupError> {
    Ok(keyed(&read(path)?, key).unwrap_or(0))
}

/// Pids listed in a `cgroup.procs`; a missing file (cgroup already gone) is an empty list.
pub(crate) fn read_pids(path: &Path) -> Result<Vec<i32>, CgroupError> {
    let Some(text) = read_optional(path)? else {
        return Ok(Vec::new());
    };
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            line.trim().parse().map_err(|_| CgroupError::Malformed {
                path: path.into(),
                text: text.clone(),
            })
        })
        .collect()
}

/// Opens a `cgroup.procs` for a child to write `0` into. std opens with O_CLOEXEC, so the fd
/// does not leak into the dyno after exec.
pub(crate) fn open_join(path: &Path) -> Result<File, PathError> {
    OpenOptions::new().write(true).open(path).at("open", path)
}

pub(crate) fn sigkill_all(pids: &[i32]) {
    for &pid in pids {
        if pid > 0 {
            // ESRCH (already gone) is the goal; EPERM cannot happen as root.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// SIGKILLs whatever is listed in `procs` until all of them are empty or `timeout` passes.
/// Re-reading catches children forked between reading the list and killing their parent.
pub(crate) fn kill_until_empty(procs: &[PathBuf], timeout: Duration) -> Result<(), CgroupError> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut left = None;
        for path in procs {
            let pids = read_pids(path)?;
            if !pids.is_empty() {
                sigkill_all(&pids);
                left.get_or_insert((path.clone(), pids));
            }
        }
        let Some((path, pids)) = left else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(CgroupError::NotEmpty { path, pids });
        }
        std::thread::sleep(POLL);
    }
}

/// Waits (bounded) until `procs` lists nothing, without signalling (v2 after `cgroup.kill`).
pub(crate) fn wait_empty(procs: &Path, timeout: Duration) -> Result<(), CgroupError> {
    let deadline = Instant::now() + timeout;
    loop {
        let pids = read_pids(procs)?;
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CgroupError::NotEmpty {
                path: procs.into(),
                pids,
            });
        }
        std::thread::sleep(POLL);
    }
}

/// Polls `path` until its trimmed contents equal `want` or `timeout` passes.
pub(crate) fn wait_for_value(path: &Path, want: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match read(path) {
            Ok(text) if text.trim() == want => return true,
            Err(_) => return false,
            Ok(_) if Instant::now() >= deadline => return false,
            Ok(_) => std::thread::sleep(POLL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel_paths_must_stay_inside_the_subtree() {
        for ok in ["demo", "demo/web.1", "a-b/c_d.2"] {
            assert!(check_rel(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/demo",
            "demo/",
            "../x",
            "demo/../x",
            "demo//web",
            "./demo",
            "a\nb",
        ] {
            assert!(
                matches!(check_rel(bad), Err(CgroupError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn levels_walk_from_the_base_down() {
        let l = levels(Path::new("/cg/roboku"), "demo/web.1");
        assert_eq!(
            l,
            vec![
                PathBuf::from("/cg/roboku"),
                "/cg/roboku/demo".into(),
                "/cg/roboku/demo/web.1".into()
            ]
        );
    }

    #[test]
    fn whole_files_are_read_whatever_their_size() {
        let dir = tempfile::tempdir().unwrap();
        for n in [0usize, 1, 4095, 4096, 4097, 9000] {
            let p = dir.path().join(format!("f{n}"));
            let text: String = (0..n).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            std::fs::write(&p, &text).unwrap();
            assert_eq!(read(&p).unwrap(), text, "{n} bytes");
        }
        let err = read(&dir.path().join("missing")).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn keyed_files_parse_by_exact_key() {
        let text = "inactive_file 10\ntotal_inactive_file 30\noom_kill 2\n";
        assert_eq!(keyed(text, "inactive_file"), Some(10));
        assert_eq!(keyed(text, "total_inactive_file"), Some(30));
        assert_eq!(keyed(text, "oom_kill"), Some(2));
        assert_eq!(keyed(text, "missing"), None);
    }

    #[test]
    fn pids_parse_and_bad_contents_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cgroup.procs");
        assert_eq!(
            read_pids(&p).unwrap(),
            Vec::<i32>::new(),
            "missing file = empty cgroup"
        );
        std::fs::write(&p, "12\n34\n").unwrap();
        assert_eq!(read_pids(&p).unwrap(), vec![12, 34]);
        std::fs::write(&p, "12\nx\n").unwrap();
        let err = read_pids(&p).unwrap_err().to_string();
        assert!(err.contains("cgroup.procs"), "{err}");
    }

    #[test]
    fn write_needs_an_existing_file_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("memory.max");
        let err = write(&p, "5").unwrap_err().to_string();
        assert!(err.contains("memory.max"), "{err}");
        assert!(
            set(&p, "max", true).is_ok(),
            "resetting an absent controller is a no-op"
        );
        assert!(
            set(&p, "5", false).is_err(),
            "setting a limit on an absent controller fails"
        );
        std::fs::write(&p, "123456789").unwrap();
        write(&p, "5").unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "5",
            "truncated, not overlaid"
        );
        write(&p, "").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "\n");
    }
}
