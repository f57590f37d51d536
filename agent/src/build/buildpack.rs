//! Running Heroku *classic* buildpacks over an extracted app: `bin/detect BUILD_DIR`,
//! `bin/compile BUILD_DIR CACHE_DIR ENV_DIR`, `bin/release BUILD_DIR`, exactly as Heroku calls
//! them, so third-party classic buildpacks work unchanged.
//!
//! This module owns one build from "source in a writable dir" to "compiled dir + default
//! process types". It does not make the slug (hashing, freezing, storing: see `prepare_slug`)
//! and it blocks: call it from a blocking thread.
//!
//! Choices worth knowing:
//! - Every buildpack is copied into a private scratch dir (beside `app_dir`, so on the agent's
//!   data filesystem rather than a possibly `noexec` /tmp) before it runs. Its `export` file and
//!   anything else it writes into its own dir stay with this build, and it can write there even
//!   when it runs as the unprivileged build user. The scratch dir also holds `ENV_DIR` (0700,
//!   config vars may be secrets) and the build's `HOME`; it is removed when the build ends.
//! - Multi-buildpack `export`: the compile of each buildpack runs under
//!   `/bin/sh -c '. export_1; ...; exec bin/compile "$@"'`, sourcing the `export` files of all
//!   buildpacks before it, in order (as Heroku's multi-buildpack does). Sourcing with the shell
//!   rather than parsing `export K=V` lines keeps `export PATH=$BUILD_DIR/x/bin:$PATH` working.
//! - Builds see a clean environment: `PATH` = [`BUILD_PATH`], `HOME`, `LANG`; config vars
//!   only through `ENV_DIR` (Heroku's contract) and never the agent's own environment.
//! - `opts.timeout` is the budget of the whole build (all phases of all buildpacks). On expiry
//!   the running phase's process group is killed and the error names buildpack and phase.
//! - With `run_as`, the app dir, cache dir and scratch dir are handed to that user first, and
//!   the app dir is handed back to the agent's own user after a successful build, so the slug
//!   made from it is not owned by the (dyno-sharing) build user.

mod exec;
pub mod git_cache;
mod git_cmd;
pub mod git_prune;
pub mod git_spec;
mod owner;
mod release_yaml;
pub mod short_name;
pub mod sources;

pub use release_yaml::default_process_types as parse_release_yaml;

use super::{copy_dir, remove_tree, BuildError};
use crate::util::{IoContext, PathError};
use exec::{ExecError, Finished};
use rand::RngCore;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Built-ins tried, in this order, when no buildpack is named: the first that detects wins.
/// The compiled languages come after nodejs and python, so apps that built as those before still
/// do; colcon before cmake (a workspace's packages have CMakeLists.txt, the top has none).
pub const BUILTIN_ORDER: [&str; 7] = [
    "nodejs", "python", "go", "rust", "colcon", "cmake", "procfile",
];

/// `PATH` of every build phase: system tools only (root's pyenv shims and the like are not
/// usable by the build user, and a build must not depend on the agent's environment).
pub const BUILD_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Sources the `export` files given as arguments (count first), then execs the rest.
const SOURCE_EXPORTS: &str = r#"_roboku_n=$1; shift
while [ "$_roboku_n" -gt 0 ]; do . "$1" || exit 1; shift; _roboku_n=$((_roboku_n - 1)); done
unset _roboku_n; exec "$@""#;

/// A phase of the classic buildpack API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Detect,
    Compile,
    Release,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Detect => "detect",
            Phase::Compile => "compile",
            Phase::Release => "release",
        })
    }
}

pub struct BuildOpts<'a> {
    /// Budget for the whole build.
    pub timeout: Duration,
    /// Run every phase as this uid/gid (the agent must be root then).
    pub run_as: Option<(u32, u32)>,
    /// Receives each line of build output (buildpack stdout+stderr and our `----->` notes)
    /// while the build runs.
    pub output: &'a mut dyn FnMut(&str),
    /// `cgroup.procs` files of the build's cgroup: every phase joins it between fork and exec,
    /// so nothing a buildpack starts (even with `setsid`) escapes the kill at the end.
    pub join: &'a [std::fs::File],
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct BuildOutcome {
    /// The names the buildpacks printed from `bin/detect`, in run order.
    pub buildpacks_used: Vec<String>,
    /// Merged `default_process_types` of every `bin/release` (a later buildpack wins).
    pub default_process_types: BTreeMap<String, String>,
}

/// Builds `app_dir` in place. `buildpacks` empty: the first of [`BUILTIN_ORDER`] under
/// `builtin_dir` that detects the app. Otherwise every listed buildpack, in order; each must
/// detect the app. `cache_dir` is created if missing and kept for the next build.
pub fn run_buildpacks(
    app_dir: &Path,
    cache_dir: &Path,
    env: &BTreeMap<String, String>,
    buildpacks: &[PathBuf],
    builtin_dir: &Path,
    opts: &mut BuildOpts<'_>,
) -> Result<BuildOutcome, BuildError> {
    let deadline = Instant::now() + opts.timeout;
    let app_dir = fs::canonicalize(app_dir).at("resolve", app_dir)?;
    create_cache_dir(cache_dir)?;
    let cache_dir = fs::canonicalize(cache_dir).at("resolve", cache_dir)?;
    let parent = app_dir.parent().ok_or_else(|| {
        BuildError::Other(format!("{}: cannot build at the root", app_dir.display()))
    })?;

    let scratch =
        Scratch(parent.join(format!(".buildpacks-{:016x}", rand::rngs::OsRng.next_u64())));
    create_private_dir(&scratch.0)?;
    let env_dir = scratch.0.join("env");
    let home = scratch.0.join("home");
    create_private_dir(&env_dir)?;
    create_private_dir(&home)?;
    write_env_dir(&env_dir, env)?;

    let sources: Vec<PathBuf> = if buildpacks.is_empty() {
        BUILTIN_ORDER.iter().map(|n| builtin_dir.join(n)).collect()
    } else {
        buildpacks.to_vec()
    };
    let mut candidates = Vec::new();
    for (i, src) in sources.iter().enumerate() {
        let label = src
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| src.display().to_string());
        let dir = scratch.0.join(format!("bp-{i}"));
        create_private_dir(&dir)?;
        copy_dir(src, &dir)?;
        candidates.push(Candidate { dir, label });
    }

    if let Some((uid, gid)) = opts.run_as {
        // Other apps' users must neither read nor write the tree while it builds.
        fs::set_permissions(
            &app_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .at("chmod", &app_dir)?;
        for dir in [&app_dir, &cache_dir, &scratch.0] {
            owner::chown_tree(dir, uid, gid)?;
            if let Some(b) = crate::supervisor::reach::first_blocked(dir, uid, gid) {
                return Err(BuildError::Other(
                    b.explain(&format!("the build user (uid {uid})"), dir),
                ));
            }
        }
    }

    let mut run = Runner {
        app_dir: &app_dir,
        cache_dir: &cache_dir,
        env_dir: &env_dir,
        home: &home,
        timeout: opts.timeout,
        deadline,
        run_as: opts.run_as,
        output: &mut *opts.output,
        join: opts.join,
    };

    let mut chosen = Vec::new();
    if buildpacks.is_empty() {
        for c in &candidates {
            if let Detected::Yes(name) = run.detect(c)? {
                chosen.push((c, name));
                break;
            }
        }
        if chosen.is_empty() {
            let tried = candidates.iter().map(|c| c.label.clone()).collect();
            return Err(BuildError::NoBuildpack { tried });
        }
    } else {
        for c in &candidates {
            match run.detect(c)? {
                Detected::Yes(name) => chosen.push((c, name)),
                Detected::No(why) => {
                    return Err(c.error(Phase::Detect, format!("does not support this app: {why}")))
                }
            }
        }
    }
    for (_, name) in &chosen {
        (run.output)(&format!("-----> {name} app detected"));
    }

    let mut exports: Vec<PathBuf> = Vec::new();
    for (c, _) in &chosen {
        run.compile(c, &exports)?;
        let export = c.dir.join("export");
        if fs::symlink_metadata(&export).is_ok_and(|m| m.is_file()) {
            exports.push(export);
        }
    }

    let mut outcome = BuildOutcome::default();
    for (c, name) in chosen {
        outcome.default_process_types.extend(run.release(c)?);
        outcome.buildpacks_used.push(name);
    }

    if opts.run_as.is_some() {
        let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
        owner::chown_tree(&app_dir, uid.as_raw(), gid.as_raw())?;
    }
    drop(scratch);
    Ok(outcome)
}

/// A buildpack copied into the scratch dir.
struct Candidate {
    dir: PathBuf,
    /// Its directory name, for messages until detect has named it.
    label: String,
}

impl Candidate {
    fn error(&self, phase: Phase, message: String) -> BuildError {
        BuildError::Buildpack {
            name: self.label.clone(),
            phase,
            message,
        }
    }

    fn bin(&self, script: &str) -> PathBuf {
        self.dir.join("bin").join(script)
    }
}

enum Detected {
    Yes(String),
    /// Why not (exit status and output), for an explicitly named buildpack's error.
    No(String),
}

struct Runner<'r> {
    app_dir: &'r Path,
    cache_dir: &'r Path,
    env_dir: &'r Path,
    home: &'r Path,
    timeout: Duration,
    deadline: Instant,
    run_as: Option<(u32, u32)>,
    output: &'r mut dyn FnMut(&str),
    join: &'r [std::fs::File],
}

impl Runner<'_> {
    fn detect(&mut self, c: &Candidate) -> Result<Detected, BuildError> {
        let mut cmd = self.command(Command::new(c.bin("detect")));
        cmd.arg(self.app_dir);
        let done = self.run(c, Phase::Detect, cmd, true)?;
        if !done.status.success() {
            return Ok(Detected::No(format!(
                "bin/detect ended with {}{}",
                done.status,
                render_tail(&done.tail)
            )));
        }
        let stdout = String::from_utf8_lossy(&done.stdout);
        let name = stdout.lines().map(str::trim).find(|l| !l.is_empty());
        Ok(Detected::Yes(name.unwrap_or(&c.label).to_string()))
    }

    fn compile(&mut self, c: &Candidate, exports: &[PathBuf]) -> Result<(), BuildError> {
        let mut cmd = if exports.is_empty() {
            self.command(Command::new(c.bin("compile")))
        } else {
            let mut sh = self.command(Command::new("/bin/sh"));
            sh.arg("-c")
                .arg(SOURCE_EXPORTS)
                .arg("sh")
                .arg(exports.len().to_string())
                .args(exports)
                .arg(c.bin("compile"));
            sh
        };
        cmd.arg(self.app_dir).arg(self.cache_dir).arg(self.env_dir);
        let done = self.run(c, Phase::Compile, cmd, false)?;
        check_status(c, Phase::Compile, &done)
    }

    fn release(&mut self, c: &Candidate) -> Result<BTreeMap<String, String>, BuildError> {
        let mut cmd = self.command(Command::new(c.bin("release")));
        cmd.arg(self.app_dir);
        let done = self.run(c, Phase::Release, cmd, true)?;
        check_status(c, Phase::Release, &done)?;
        let yaml = String::from_utf8_lossy(&done.stdout);
        parse_release_yaml(&yaml).map_err(|e| c.error(Phase::Release, e))
    }

    /// The common setup: clean environment, working directory = the app.
    fn command(&self, mut cmd: Command) -> Command {
        cmd.env_clear()
            .env("PATH", BUILD_PATH)
            .env("HOME", self.home)
            .env("LANG", "C.UTF-8")
            .env(super::BUILD_TAG, self.app_dir)
            .current_dir(self.app_dir);
        cmd
    }

    fn run(
        &mut self,
        c: &Candidate,
        phase: Phase,
        cmd: Command,
        capture_stdout: bool,
    ) -> Result<Finished, BuildError> {
        exec::run(
            cmd,
            self.run_as,
            self.join,
            capture_stdout,
            self.deadline,
            &mut *self.output,
        )
        .map_err(|e| match e {
            ExecError::TimedOut { tail } => c.error(
                phase,
                format!(
                    "timed out (the build may take {:?} in all); its processes were killed{}",
                    self.timeout,
                    render_tail(&tail)
                ),
            ),
            other => c.error(phase, other.to_string()),
        })
    }
}

fn check_status(c: &Candidate, phase: Phase, done: &Finished) -> Result<(), BuildError> {
    if done.status.success() {
        return Ok(());
    }
    Err(c.error(
        phase,
        format!("failed with {}{}", done.status, render_tail(&done.tail)),
    ))
}

fn render_tail(tail: &VecDeque<String>) -> String {
    if tail.is_empty() {
        return String::new();
    }
    let mut s = String::from("; last output:");
    for line in tail {
        s.push_str("\n    ");
        s.push_str(line);
    }
    s
}

/// One file per config var, named by the key, holding the value (no newline added).
fn write_env_dir(dir: &Path, env: &BTreeMap<String, String>) -> Result<(), BuildError> {
    for (key, value) in env {
        if key.is_empty() || key.contains('/') || key == "." || key == ".." || key.contains('\0') {
            return Err(BuildError::Other(format!(
                "config var name {key:?} cannot be a file name in ENV_DIR"
            )));
        }
        let path = dir.join(key);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .at("create file", &path)?;
        file.write_all(value.as_bytes()).at("write file", &path)?;
    }
    Ok(())
}

/// The app's `CACHE_DIR`: private to the build user (0700, handed over with the app dir), in a
/// parent the build user can pass through but not list (0711), created so if missing.
fn create_cache_dir(cache_dir: &Path) -> Result<(), PathError> {
    if let Some(parent) = cache_dir.parent() {
        if fs::symlink_metadata(parent).is_err() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o711)
                .create(parent)
                .at("create dir", parent)?;
        }
    }
    create_private_dir(cache_dir).or_else(|e| {
        if e.source.kind() == std::io::ErrorKind::AlreadyExists {
            Ok(())
        } else {
            Err(e)
        }
    })
}

fn create_private_dir(path: &Path) -> Result<(), PathError> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .at("create dir", path)
}

/// The build's scratch dir, removed on every path out of `run_buildpacks`.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = remove_tree(&self.0) {
            tracing::warn!(error = %e, "could not remove a buildpack scratch dir");
        }
    }
}

#[cfg(test)]
mod builtin_langs_tests;
#[cfg(test)]
mod builtin_node_tests;
#[cfg(test)]
mod builtin_python_hooks_tests;
#[cfg(test)]
mod builtin_python_tests;
#[cfg(test)]
mod builtin_tests;
#[cfg(test)]
mod tests;
