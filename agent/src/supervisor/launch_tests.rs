use super::*;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

fn null() -> OwnedFd {
    std::fs::File::open("/dev/null").unwrap().into()
}

fn wait(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "status {status:#x}");
    libc::WEXITSTATUS(status)
}

/// Runs `script` under `/bin/sh -c` in `cwd` with `env`; returns (exit status, stdout+stderr).
fn run(
    script: &str,
    cwd: &Path,
    env: &BTreeMap<String, String>,
    join: Vec<RawFd>,
) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out");
    let out = std::fs::File::create(&out_path).unwrap();
    let p = Prepared::new(Plan {
        path: "/bin/sh",
        argv: &["/bin/sh", "-c", script],
        env,
        cwd,
        stdin: null(),
        stdout: out.try_clone().unwrap().into(),
        stderr: out.into(),
        join,
        ctty: false,
        nice: None,
        rt: None,
        ids: None,
        try_first: &[],
    })
    .unwrap();
    let pid = launch(&p).expect("launch");
    let code = wait(pid);
    (code, std::fs::read_to_string(out_path).unwrap())
}

#[test]
fn runs_the_command_with_its_env_dir_and_output() {
    let cwd = tempfile::tempdir().unwrap();
    let env = BTreeMap::from([
        ("GREETING".to_string(), "hi there".to_string()),
        ("PATH".to_string(), "/usr/bin:/bin".to_string()),
    ]);
    let (code, out) = run(
        "echo \"$GREETING\"; pwd; echo err >&2; exit 3",
        cwd.path(),
        &env,
        vec![],
    );
    assert_eq!(code, 3);
    let cwd = cwd.path().canonicalize().unwrap();
    assert_eq!(out, format!("hi there\n{}\nerr\n", cwd.display()));
}

#[test]
fn the_child_starts_with_no_blocked_signals_and_sigpipe_at_default() {
    let env = BTreeMap::from([("PATH".to_string(), "/usr/bin:/bin".to_string())]);
    // The test harness (Rust) ignores SIGPIPE; a dyno must not inherit that.
    let (code, out) = run(
        "grep -E '^Sig(Blk|Ign)' /proc/self/status",
        Path::new("/"),
        &env,
        vec![],
    );
    assert_eq!(code, 0, "{out}");
    let field = |name: &str| {
        let line = out.lines().find(|l| l.starts_with(name)).unwrap();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    assert_eq!(field("SigBlk:"), 0, "{out}");
    assert_eq!(
        field("SigIgn:") & (1 << (libc::SIGPIPE - 1)),
        0,
        "SIGPIPE ignored: {out}"
    );
}

#[test]
fn the_callers_signal_mask_is_restored() {
    let before = mask();
    run("true", Path::new("/"), &BTreeMap::new(), vec![]);
    assert_eq!(mask(), before);
}

fn mask() -> Vec<bool> {
    // SAFETY: reads the calling thread's mask.
    let mut cur: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut cur) };
    (1..32)
        .map(|s| unsafe { libc::sigismember(&cur, s) } == 1)
        .collect()
}

#[test]
fn the_joins_are_written_before_the_command_runs() {
    let (r, w) = pipe();
    let (code, out) = run(
        "true",
        Path::new("/"),
        &BTreeMap::new(),
        vec![w.as_raw_fd()],
    );
    drop(w);
    assert_eq!(code, 0, "{out}");
    let mut got = String::new();
    std::fs::File::from(r).read_to_string(&mut got).unwrap();
    assert_eq!(got, "0", "one `0` per join file");
}

#[test]
fn a_failed_step_is_named_and_the_child_reaped() {
    let env = BTreeMap::new();
    let p = Prepared::new(Plan {
        path: "/bin/sh",
        argv: &["/bin/sh", "-c", "true"],
        env: &env,
        cwd: Path::new("/nonexistent/roboku-launch-test"),
        stdin: null(),
        stdout: null(),
        stderr: null(),
        join: vec![],
        ctty: false,
        nice: None,
        rt: None,
        ids: None,
        try_first: &[],
    })
    .unwrap();
    let e = launch(&p).expect_err("no such directory");
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
    assert!(
        e.to_string().starts_with("changing into its directory"),
        "{e}"
    );

    let p = Prepared::new(Plan {
        path: "/nonexistent/roboku-sh",
        argv: &["sh"],
        env: &env,
        cwd: Path::new("/"),
        stdin: null(),
        stdout: null(),
        stderr: null(),
        join: vec![-1],
        ctty: false,
        nice: None,
        rt: None,
        ids: None,
        try_first: &[],
    })
    .unwrap();
    let e = launch(&p).expect_err("bad join fd");
    assert!(e.to_string().starts_with("joining its cgroup"), "{e}");
}

#[test]
fn a_missing_program_fails_at_exec() {
    let env = BTreeMap::new();
    let p = Prepared::new(Plan {
        path: "/nonexistent/roboku-sh",
        argv: &["sh"],
        env: &env,
        cwd: Path::new("/"),
        stdin: null(),
        stdout: null(),
        stderr: null(),
        join: vec![],
        ctty: false,
        nice: None,
        rt: None,
        ids: None,
        try_first: &[],
    })
    .unwrap();
    let e = launch(&p).expect_err("no program");
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
    assert!(e.to_string().starts_with("exec"), "{e}");
}

#[test]
fn nul_bytes_and_bad_names_are_refused_before_any_clone() {
    let bad_env = BTreeMap::from([("A=B".to_string(), "x".to_string())]);
    let nul_env = BTreeMap::from([("A".to_string(), "x\0y".to_string())]);
    for env in [&bad_env, &nul_env] {
        let r = Prepared::new(Plan {
            path: "/bin/sh",
            argv: &["sh"],
            env,
            cwd: Path::new("/"),
            stdin: null(),
            stdout: null(),
            stderr: null(),
            join: vec![],
            ctty: false,
            nice: None,
            rt: None,
            ids: None,
            try_first: &[],
        });
        let e = r.err().expect("refused");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh fds nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

#[test]
fn the_programs_to_try_first_run_in_order_and_the_program_itself_when_all_fail() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out");
    let env = BTreeMap::from([("PATH".to_string(), "/usr/bin:/bin".to_string())]);
    let start = |try_first: &[(&str, &[&str])]| {
        let out = std::fs::File::create(&out_path).unwrap();
        let p = Prepared::new(Plan {
            path: "/bin/sh",
            argv: &["/bin/sh", "-c", "echo fallback"],
            env: &env,
            cwd: dir.path(),
            stdin: null(),
            stdout: out.try_clone().unwrap().into(),
            stderr: out.into(),
            join: vec![],
            ctty: false,
            nice: None,
            rt: None,
            ids: None,
            try_first,
        })
        .unwrap();
        let code = wait(launch(&p).expect("launch"));
        (code, std::fs::read_to_string(&out_path).unwrap())
    };
    let missing: &[&str] = &["missing"];
    let echo: &[&str] = &["echo", "first"];
    let echo2: &[&str] = &["echo", "second"];
    assert_eq!(
        start(&[
            ("/nonexistent/echo", missing),
            ("/bin/echo", echo),
            ("/bin/echo", echo2)
        ]),
        (0, "first\n".to_string())
    );
    // Not executable (a directory): skipped like a missing one.
    assert_eq!(
        start(&[("/tmp", missing), ("/nonexistent/x", missing)]),
        (0, "fallback\n".to_string())
    );
}
