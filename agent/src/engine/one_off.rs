//! One-off dynos (`roboku run`, `run:detached`), as on Heroku: started by robokud as the app's
//! user, in a cgroup of their own with the app's limits (those of its `web` type, else its first
//! type), on the current release's slug, shown in `ps` as `run.N`, logged, never restarted, and
//! forgotten once they exit.
//!
//! Attached ones get pipes instead of a spool: the API door pumps them over the upgraded
//! connection ([`crate::api`]'s attach module) and learns the exit from [`Attached::exit`].
//! One-offs do not outlive the agent: the next one finds `run.N` outside the formation and
//! stops it.

use super::command::{Door, EngineError, Reply};
use super::dyno::{Dyno, DynoKey, Proc};
use super::Engine;
use crate::supervisor::spawn::{self, SpawnSpec};
use crate::util::now_ms;
use roboku_wire::{self as wire, DynoState};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::time::Instant;
use tokio::sync::oneshot;

/// An attached one-off dyno, for the door that pumps it.
#[derive(Debug)]
pub struct Attached {
    pub name: String,
    /// The dyno's stdin (write end).
    pub stdin: File,
    /// Its stdout and stderr (read end).
    pub output: File,
    /// How it ended.
    pub exit: oneshot::Receiver<wire::ExitInfo>,
    /// `stdin` and `output` are a pty master (not pipes): resize it, read and write as a file.
    pub tty: bool,
}

type Result<T> = std::result::Result<T, EngineError>;

impl Engine {
    pub(super) fn one_off(
        &mut self,
        door: Door,
        app: &str,
        command: Vec<String>,
        detached: bool,
        tty: Option<(u16, u16)>,
    ) -> Result<Reply> {
        let cache = self.cache(app)?.clone();
        let (Some(release), Some(slug_dir)) = (cache.release.clone(), cache.slug_dir.clone())
        else {
            return Err(EngineError::Conflict(format!(
                "app {app:?} has no release yet; deploy first"
            )));
        };
        if command.is_empty() {
            return Err(EngineError::BadRequest("roboku run needs a command".into()));
        }
        if release.process_types.contains_key("run") {
            return Err(EngineError::Conflict(format!(
                "app {app:?} has a process type named `run` in its Procfile, and one-off dynos \
                 are named run.N: rename that process type to use roboku run"
            )));
        }
        let run_as = cache.run_as.clone().map_err(EngineError::Conflict)?;
        let index = (1..)
            .find(|i| {
                !self
                    .dynos
                    .contains_key(&(app.to_string(), format!("run.{i}")))
            })
            .unwrap_or(1);
        let name = format!("run.{index}");
        let key: DynoKey = (app.to_string(), name.clone());
        let port =
            self.store
                .port_for(app, "run", self.settings.port_min, self.settings.port_max)?;
        let limits = app_limits(&cache.formation);
        self.next_instance += 1;
        let instance = self.next_instance;
        let rel = format!("{app}/{name}@{instance}");
        let confined = self
            .confine(&rel, &limits)
            .map_err(|e| EngineError::Conflict(format!("one-off dyno {name}: {e}")))?;
        let (cgroup, join, groups) = (confined.cgroup, confined.join, confined.groups);
        let shown = command.join(" ");
        let script = command
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ");
        let mut env = super::dyno::dyno_env(
            &cache.dotenv,
            &cache.own_env,
            &release,
            &slug_dir,
            app,
            &name,
            port,
        );
        // Tagged like every dyno; forked before its row is saved, so an agent killed in between
        // leaves a tagged, unrecorded process that the next start kills (one-offs never outlive
        // their agent anyway).
        crate::supervisor::orphans::tag(&mut env, &self.settings.data_dir, &rel);
        // ((our output end, its output end), (its stdin end, our stdin end)).
        let pipes = match (detached, tty) {
            (true, _) => None,
            (false, None) => Some((pipe()?, pipe()?)),
            (false, Some((rows, cols))) => {
                let (master, slave) = crate::supervisor::pty::open(rows, cols)
                    .map_err(|e| EngineError::Internal(format!("cannot open a pty: {e}")))?;
                let (m2, s2) = (dup(&master)?, dup(&slave)?);
                Some(((master, slave), (s2, m2)))
            }
        };
        let (spool, stdin) = match &pipes {
            Some(((_, out_w), (in_r, _))) => (clone_file(out_w)?, Some(clone_file(in_r)?)),
            None => (
                crate::logs::open_spool(&self.settings.logs_dir(), app, &name)
                    .map_err(|e| EngineError::Internal(e.to_string()))?,
                None,
            ),
        };
        let spawned = spawn::spawn(SpawnSpec {
            command: format!("exec {script}"),
            cwd: slug_dir,
            env,
            run_as,
            spool,
            stdin,
            controlling_tty: tty.is_some() && !detached,
            join,
            nice: limits.nice,
            groups,
            rt: None, // an interactive one-off must not hog the CPU at real-time priority
        });
        let spawned = match spawned {
            Ok(s) => s,
            Err(e) => {
                if let Some(rel) = cgroup {
                    self.cleanup_cgroup(rel);
                }
                return Err(EngineError::Internal(format!(
                    "cannot start one-off dyno {name} (`{shown}`): {e}"
                )));
            }
        };
        let mut d = Dyno::new(app, "run", index, port, release.version, now_ms());
        d.one_off = true;
        d.user = cache.user_name.clone();
        d.state = DynoState::Up;
        d.proc = Some(Proc {
            pid: spawned.pid,
            start_time: spawned.start_time,
            cgroup,
            instance,
            tag: Some(rel.clone()),
            started: Instant::now(),
            adopted: false,
            health: None,
        });
        self.dynos.insert(key.clone(), d);
        self.dirty.insert(key.clone());
        if detached {
            self.logs.watch(app, &name);
        }
        self.logs.system(
            app,
            &name,
            format!(
                "Starting process with command `{shown}` (pid {}, {})",
                spawned.pid,
                if detached { "detached" } else { "attached" }
            ),
        );
        self.event(door, Some(app), &format!("run {shown}"), &name);
        self.watch_exit(key.clone(), instance, spawned.pid, spawned.pidfd);
        let message = format!("Running `{shown}` on {app}... up, {name}");
        match pipes {
            None => Ok(Reply::Done(wire::Done { message })),
            Some(((out_r, _), (_, in_w))) => {
                let (tx, exit) = oneshot::channel();
                self.one_off_exits.insert(key, tx);
                Ok(Reply::Attached(Attached {
                    name,
                    stdin: File::from(in_w),
                    output: File::from(out_r),
                    exit,
                    tty: tty.is_some(),
                }))
            }
        }
    }

    /// Passes a signal from an attached one-off's terminal to its process group.
    pub(super) fn signal_one_off(
        &mut self,
        app: &str,
        dyno: &str,
        signal: i32,
    ) -> Result<wire::Done> {
        let key = (app.to_string(), dyno.to_string());
        let Some(pid) = self
            .dynos
            .get(&key)
            .filter(|d| d.one_off)
            .and_then(|d| d.proc.as_ref())
            .map(|p| p.pid)
        else {
            return Err(EngineError::NotFound(format!(
                "no running one-off dyno {dyno} in app {app}"
            )));
        };
        if !matches!(
            signal,
            libc::SIGINT | libc::SIGTERM | libc::SIGHUP | libc::SIGQUIT | libc::SIGKILL
        ) {
            return Err(EngineError::BadRequest(format!(
                "signal {signal} cannot be sent to a one-off dyno"
            )));
        }
        spawn::signal_group(pid, signal);
        Ok(wire::Done {
            message: format!("sent signal {signal} to {dyno}"),
        })
    }

    /// A one-off dyno exited: forget it (never restarted) and tell whoever is attached.
    pub(super) fn one_off_exited(&mut self, key: &DynoKey, exit: wire::ExitInfo) {
        self.dynos.remove(key);
        self.dirty.remove(key);
        self.gone.push(key.clone());
        if let Some(tx) = self.one_off_exits.remove(key) {
            let _ = tx.send(exit);
        }
    }
}

/// The limits of an app's one-off and release-phase dynos: its `web` type's, else its first's.
pub(super) fn app_limits(formation: &[crate::store::FormationRow]) -> wire::Limits {
    formation
        .iter()
        .find(|f| f.ptype == "web")
        .or(formation.first())
        .map(|f| f.limits.clone())
        .unwrap_or_default()
}

/// `'it'\''s'`: one argument for `/bin/sh`, whatever it holds.
fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) =
        std::io::pipe().map_err(|e| EngineError::Internal(format!("cannot create a pipe: {e}")))?;
    Ok((OwnedFd::from(r), OwnedFd::from(w)))
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd> {
    fd.try_clone()
        .map_err(|e| EngineError::Internal(format!("cannot duplicate a pty: {e}")))
}

fn clone_file(fd: &OwnedFd) -> Result<File> {
    fd.try_clone()
        .map(File::from)
        .map_err(|e| EngineError::Internal(format!("cannot duplicate a pipe: {e}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn arguments_are_quoted_for_the_shell() {
        assert_eq!(super::shell_quote("a b"), "'a b'");
        assert_eq!(super::shell_quote("it's"), r"'it'\''s'");
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "printf '%s|' {}",
                ["$HOME", "it's", "a b", ""]
                    .map(super::shell_quote)
                    .join(" ")
            ))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "$HOME|it's|a b||");
    }
}
