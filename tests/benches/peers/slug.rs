//! Deploy of a prebuilt slug until the new release's dyno runs. robokud: `roboku slug:build`
//! once per release (untimed), then `roboku deploy --slug FILE` timed from the command's start
//! until it answered (robokud answers once the new dyno is up and its health checks passed) and
//! `ps` shows the web dyno up with a new pid. The peers have no slugs; their closest step is
//! piku's on a push once the build is done: unpack the release (`tar xzf` of the same slug into
//! a new release dir), then restart the manager on it (SIGTERM, every old dyno gone, start
//! again) until its dyno runs. A warm-up deploy comes first for everyone.

use crate::agent::Agent;
use crate::managers::{self, Kind, Running, Tools};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The contenders of the deploy workload: the floors, supervisord and piku's uwsgi (foreman and
/// honcho restart the same way as supervisord, with nothing more to show).
pub const DEPLOYERS: [Kind; 5] = [
    Kind::Floor,
    Kind::FloorCg,
    Kind::Supervisord,
    Kind::Uwsgi,
    Kind::Robokud,
];

/// The robokud app the workload deploys.
const APP: &str = "slugs";

pub struct Slugs<'a> {
    tools: &'a Tools,
    agent: &'a Agent,
    dir: tempfile::TempDir,
    /// One slug per deploy (a `VERSION` file makes each release's slug differ).
    slugs: Vec<PathBuf>,
    /// Each peer as the last deploy left it.
    running: Vec<Running>,
    /// Deploys done so far per contender (the index of the next slug).
    done: Vec<(Kind, usize)>,
}

impl<'a> Slugs<'a> {
    /// Builds `deploys` slugs (the warm-up's included) with `roboku slug:build`.
    pub fn prepare(
        tools: &'a Tools,
        agent: &'a Agent,
        deploys: usize,
    ) -> Result<Slugs<'a>, String> {
        let dir = tempfile::Builder::new()
            .prefix("roboku-bench-slug-")
            .tempdir_in(agent.dir.path())
            .map_err(|e| format!("temp dir in {}: {e}", agent.dir.path().display()))?;
        let mut slugs = Vec::new();
        for v in 0..deploys {
            let src = dir.path().join(format!("src-v{v}"));
            std::fs::create_dir(&src).map_err(|e| format!("mkdir {}: {e}", src.display()))?;
            for (name, text) in [
                ("Procfile", format!("web: exec {}\n", managers::DYNO)),
                ("VERSION", format!("{v}\n")),
            ] {
                let p = src.join(name);
                std::fs::write(&p, text).map_err(|e| format!("write {}: {e}", p.display()))?;
            }
            let slug = dir.path().join(format!("v{v}.slug"));
            agent.cli(&[
                "slug:build",
                &src.display().to_string(),
                "-o",
                &slug.display().to_string(),
            ]);
            slugs.push(slug);
        }
        agent.cli(&["apps:create", APP]);
        Ok(Slugs {
            tools,
            agent,
            dir,
            slugs,
            running: Vec::new(),
            done: Vec::new(),
        })
    }

    /// One deploy by `kind` of its next slug; the time to its new dyno running.
    pub fn deploy(&mut self, kind: Kind) -> Result<Duration, String> {
        let next = match self.done.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => n,
            None => {
                self.done.push((kind, 0));
                &mut self.done.last_mut().ok_or("no deploy count")?.1
            }
        };
        let v = *next;
        *next += 1;
        let slug = self
            .slugs
            .get(v)
            .ok_or_else(|| format!("no slug v{v} built for {}", kind.name()))?
            .clone();
        if kind == Kind::Robokud {
            return self.robokud(&slug);
        }
        let t = Instant::now();
        let release = self
            .dir
            .path()
            .join(format!("{}-releases/v{v}", file_name(kind)));
        std::fs::create_dir_all(&release)
            .map_err(|e| format!("mkdir {}: {e}", release.display()))?;
        let out = Command::new("tar")
            .arg("xzf")
            .arg(&slug)
            .arg("-C")
            .arg(&release)
            .output()
            .map_err(|e| format!("run tar xzf {}: {e}", slug.display()))?;
        if !out.status.success() {
            return Err(format!(
                "tar xzf {} -C {}: {}",
                slug.display(),
                release.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        if let Some(i) = self.running.iter().position(|r| r.kind == kind) {
            let mut old = self.running.swap_remove(i);
            old.stop(self.agent)
                .map_err(|e| format!("stop the old release: {e}"))?;
        }
        let mut run = managers::start(kind, 1, self.tools, self.agent)?;
        run.wait_dynos(1, Duration::from_secs(60))?;
        let took = t.elapsed();
        self.running.push(run);
        Ok(took)
    }

    fn robokud(&self, slug: &Path) -> Result<Duration, String> {
        let old = self
            .agent
            .ps(APP)
            .iter()
            .find_map(|d| d.pid)
            .unwrap_or_default();
        let t = Instant::now();
        self.agent
            .cli(&["deploy", "-a", APP, "--slug", &slug.display().to_string()]);
        let deadline = t + Duration::from_secs(60);
        loop {
            let ps = self.agent.ps(APP);
            let new_up = ps
                .iter()
                .any(|d| d.state == roboku_wire::DynoState::Up && d.pid.is_some_and(|p| p != old));
            if new_up {
                return Ok(t.elapsed());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "robokud: no new web dyno up 60 s after deploying {}",
                    slug.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn file_name(kind: Kind) -> String {
    kind.name()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

impl Drop for Slugs<'_> {
    fn drop(&mut self) {
        // robokud's app stops with the agent (`--on-exit stop`).
        for mut r in self.running.drain(..) {
            let _ = r.stop(self.agent);
        }
    }
}
