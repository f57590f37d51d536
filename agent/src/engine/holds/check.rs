//! Running the gates that need a process (a command, a file test) off the engine loop: each as
//! the app's own user, in its own process group, with a time limit after which the whole group
//! is killed. The engine hears the outcome as an internal event; supervision never waits on it.

use roboku_wire::gates::GateKind;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// One check to run.
#[derive(Debug, Clone)]
pub struct Probe {
    pub name: String,
    pub kind: GateKind,
    pub timeout: Duration,
}

/// Where and as whom probes run.
#[derive(Debug, Clone)]
pub struct ProbeEnv {
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    /// `(uid, gid)`; `None`: robokud's own user (robokud not root, or a named shared user).
    pub run_as: Option<(u32, u32)>,
}

/// Whether `kind` needs a process (the others are judged in the engine, from what it knows).
pub fn needs_process(kind: &GateKind) -> bool {
    matches!(kind, GateKind::Command(_) | GateKind::File(_))
}

/// Runs every probe at once; each answer is `Ok(detail)` (passed) or `Err(why)`.
pub async fn run_all(
    probes: Vec<Probe>,
    env: ProbeEnv,
) -> BTreeMap<String, Result<String, String>> {
    let runs = probes.into_iter().map(|p| {
        let env = env.clone();
        async move {
            let out = run(&p, &env).await;
            (p.name, out)
        }
    });
    futures_join_all(runs).await.into_iter().collect()
}

/// A tiny join_all (the workspace has no futures crate): spawn each, await in order.
async fn futures_join_all<F, T>(futs: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

async fn run(probe: &Probe, env: &ProbeEnv) -> Result<String, String> {
    let argv: Vec<String> = match &probe.kind {
        GateKind::Command(c) => vec!["/bin/sh".into(), "-c".into(), c.clone()],
        GateKind::File(p) => vec![
            "/bin/sh".into(),
            "-c".into(),
            "test -e \"$1\"".into(),
            "gate".into(),
            p.clone(),
        ],
        other => return Err(format!("{} gates are not run as a process", other.label())),
    };
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(&env.env)
        .current_dir(&env.cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some((uid, gid)) = env.run_as {
        // std drops root's supplementary groups when it sets the uid.
        cmd.uid(uid).gid(gid);
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {:?}: {e}", argv[0]))?;
    let pid = child.id();
    match tokio::time::timeout(probe.timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => {
            let said = last_line(&out.stderr).or_else(|| last_line(&out.stdout));
            let how = match (out.status.code(), out.status.success()) {
                (_, true) => "exit 0".to_string(),
                (Some(c), false) => format!("exit {c}"),
                (None, false) => format!("{}", out.status),
            };
            let detail = match (&probe.kind, said) {
                (GateKind::File(p), _) if out.status.success() => format!("{p} exists"),
                (GateKind::File(p), _) if out.status.code() == Some(1) => {
                    format!("{p} does not exist")
                }
                (_, Some(s)) => format!("{how}: {s}"),
                (_, None) => how,
            };
            match out.status.success() {
                true => Ok(detail),
                false => Err(detail),
            }
        }
        Ok(Err(e)) => Err(format!("cannot wait for the check: {e}")),
        Err(_) => {
            if let Some(pid) = pid {
                // The shell's children too (a `sleep` it started).
                crate::supervisor::spawn::signal_group(pid as i32, libc::SIGKILL);
            }
            Err(format!(
                "no answer within {} (killed)",
                super::rules::human_secs(probe.timeout.as_secs().max(1))
            ))
        }
    }
}

/// The last non-empty line of a check's output, cut to 200 characters.
fn last_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?.trim();
    Some(line.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> ProbeEnv {
        ProbeEnv {
            cwd: PathBuf::from("/"),
            env: [("PATH".to_string(), "/usr/bin:/bin".to_string())].into(),
            run_as: None,
        }
    }

    fn probe(name: &str, kind: GateKind, ms: u64) -> Probe {
        Probe {
            name: name.into(),
            kind,
            timeout: Duration::from_millis(ms),
        }
    }

    #[tokio::test]
    async fn commands_files_and_timeouts() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("idle");
        let f = file.display().to_string();
        let out = run_all(
            vec![
                probe("ok", GateKind::Command("echo fine".into()), 5000),
                probe(
                    "no",
                    GateKind::Command("echo busy >&2; exit 3".into()),
                    5000,
                ),
                probe("slow", GateKind::Command("sleep 30".into()), 200),
                probe("file", GateKind::File(f.clone()), 5000),
            ],
            env(),
        )
        .await;
        assert_eq!(out["ok"], Ok("exit 0: fine".into()));
        assert_eq!(out["no"], Err("exit 3: busy".into()));
        assert_eq!(out["slow"], Err("no answer within 1s (killed)".into()));
        assert_eq!(out["file"], Err(format!("{f} does not exist")));
        std::fs::write(&file, b"").unwrap();
        let again = run_all(vec![probe("file", GateKind::File(f.clone()), 5000)], env()).await;
        assert_eq!(again["file"], Ok(format!("{f} exists")));
    }

    #[tokio::test]
    async fn a_check_runs_as_the_apps_user() {
        assert!(nix::unistd::geteuid().is_root(), "needs root, as CI has");
        let out = run_all(
            vec![probe(
                "who",
                GateKind::Command("id -u; exit 1".into()),
                5000,
            )],
            ProbeEnv {
                run_as: Some((61999, 61999)),
                ..env()
            },
        )
        .await;
        assert_eq!(out["who"], Err("exit 1: 61999".into()));
    }
}
