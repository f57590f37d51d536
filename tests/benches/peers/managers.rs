//! The contenders: how each one is found, started on N copies of `sleep 100000`, and stopped.
//! Every peer runs in a temp dir of its own with its own config file, in a process group of its
//! own; [`Running`]'s drop kills whatever it left behind (also when the bench panics).
//! robokud is the exception: one agent runs for the whole bench and a cycle scales an app.

use crate::agent::Agent;
use crate::procs;
use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Kind {
    Floor,
    FloorCg,
    /// floor+cg while favordynmods is mounted (see `fdm.rs`): the join without a grace period.
    FloorCgFdm,
    Supervisord,
    Foreman,
    Honcho,
    Uwsgi,
    Robokud,
}

pub const ALL: [Kind; 8] = [
    Kind::Floor,
    Kind::FloorCg,
    Kind::FloorCgFdm,
    Kind::Supervisord,
    Kind::Foreman,
    Kind::Honcho,
    Kind::Uwsgi,
    Kind::Robokud,
];

/// The peers a user would pick instead of roboku (the floors are references, not choices).
pub const PEERS: [Kind; 4] = [Kind::Supervisord, Kind::Foreman, Kind::Honcho, Kind::Uwsgi];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Floor => "floor",
            Kind::FloorCg => "floor+cg",
            Kind::FloorCgFdm => "floor+cg+fdm",
            Kind::Supervisord => "supervisord",
            Kind::Foreman => "foreman",
            Kind::Honcho => "honcho",
            Kind::Uwsgi => "uwsgi (piku)",
            Kind::Robokud => "robokud",
        }
    }

    /// Whether the bench's favordynmods mount is up while this contender runs: only for robokud
    /// (started with `--no-favordynmods`, so the bench owns the switch) and floor+cg+fdm.
    pub fn wants_fdm(self) -> bool {
        matches!(self, Kind::Robokud | Kind::FloorCgFdm)
    }

    /// The floors that give each child fresh cgroups.
    pub fn floor_cg(self) -> bool {
        matches!(self, Kind::FloorCg | Kind::FloorCgFdm)
    }

    /// foreman and honcho stop every process when one exits: nothing to time on a kill.
    pub fn respawns(self) -> bool {
        !matches!(self, Kind::Foreman | Kind::Honcho)
    }
}

/// Where each peer's executable is.
pub struct Tools {
    pub floor: PathBuf,
    pub supervisord: PathBuf,
    pub foreman: PathBuf,
    pub honcho: PathBuf,
    pub uwsgi: PathBuf,
}

fn which(name: &str) -> Result<PathBuf, String> {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(format!(
        "{name} not found in /usr/bin, /usr/local/bin or /usr/sbin: run tests/benches/peers/run.sh \
         (it installs supervisor, ruby-foreman and uwsgi-core) or apt-get install them"
    ))
}

impl Tools {
    /// Finds the peers (honcho is pip-installed into `<target>/bench-venv` when missing) and
    /// compiles the C floor into `<target>/bench-floor`.
    /// `honcho`: install it when missing (it is pip-installed; not needed when the bench runs
    /// without it, see `ROBOKU_BENCH_ONLY`).
    pub fn locate(target: &Path, honcho: bool) -> Result<Tools, String> {
        let floor = target.join("bench-floor");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/floor.c");
        let out = Command::new("cc")
            .args(["-O2", "-Wall", "-o"])
            .arg(&floor)
            .arg(&src)
            .output()
            .map_err(|e| format!("cannot run cc to build {}: {e}", src.display()))?;
        if !out.status.success() {
            return Err(format!(
                "cc {}: {}",
                src.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(Tools {
            floor,
            supervisord: which("supervisord")?,
            foreman: which("foreman")?,
            honcho: if honcho {
                crate::honcho::install(target)?
            } else {
                PathBuf::new()
            },
            uwsgi: which("uwsgi").or_else(|_| which("uwsgi-core"))?,
        })
    }
}

/// One contender supervising N dynos.
pub struct Running {
    pub kind: Kind,
    /// The manager process whose tree is measured.
    pub root: i32,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
    /// Every dyno pid seen, killed on drop if still there.
    pub seen: HashSet<i32>,
}

pub const DYNO: &str = "sleep 100000";
/// The robokud app every cycle scales.
pub const APP: &str = "peers";

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

fn command(kind: Kind, n: usize, tools: &Tools, dir: &Path) -> Result<Command, String> {
    let procfile = dir.join("Procfile");
    write(&procfile, &format!("web: {DYNO}\n"))?;
    let mut c;
    match kind {
        Kind::Floor | Kind::FloorCg | Kind::FloorCgFdm => {
            c = Command::new(&tools.floor);
            if kind.floor_cg() {
                let name = format!("roboku-bench-floor-{}", std::process::id());
                c.args(["--cg", &name]);
            }
            c.arg(n.to_string()).args(DYNO.split(' '));
        }
        Kind::Supervisord => {
            let conf = dir.join("supervisord.conf");
            let d = dir.display();
            write(
                &conf,
                &format!(
                    "[supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\n\
                     pidfile={d}/supervisord.pid\nchildlogdir={d}\nminfds=4096\n\n\
                     [program:web]\ncommand={DYNO}\nnumprocs={n}\n\
                     process_name=%(program_name)s_%(process_num)d\nautorestart=true\n\
                     startsecs=0\nstartretries=1000\n"
                ),
            )?;
            c = Command::new(&tools.supervisord);
            c.arg("-c").arg(&conf);
        }
        Kind::Foreman => {
            c = Command::new(&tools.foreman);
            c.args(["start", "--no-timestamp", "-f"])
                .arg(&procfile)
                .arg("-d")
                .arg(dir)
                .arg("-m")
                .arg(format!("web={n}"));
        }
        Kind::Honcho => {
            c = Command::new(&tools.honcho);
            c.arg("start")
                .arg("-d")
                .arg(dir)
                .arg("-f")
                .arg(&procfile)
                .arg("-c")
                .arg(format!("web={n}"))
                .arg("--no-colour");
        }
        Kind::Uwsgi => {
            // piku's layout: one uwsgi master per app, each worker an `attach-daemon` (respawned
            // by the master); no socket, no request plugin.
            let ini = dir.join("app.ini");
            let mut text = String::from("[uwsgi]\nmaster = true\ndie-on-term = true\n");
            for _ in 0..n {
                text.push_str(&format!("attach-daemon = {DYNO}\n"));
            }
            write(&ini, &text)?;
            c = Command::new(&tools.uwsgi);
            c.arg("--ini").arg(&ini);
        }
        Kind::Robokud => unreachable!("robokud is started once, not per cycle"),
    }
    c.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    Ok(c)
}

/// Starts `kind` on `n` dynos (robokud: scales the app on the running agent). Returns at once;
/// the caller waits for the dynos.
pub fn start(kind: Kind, n: usize, tools: &Tools, agent: &Agent) -> Result<Running, String> {
    if kind == Kind::Robokud {
        agent.scale(APP, "web", n as u32);
        return Ok(Running {
            kind,
            root: agent.pid,
            child: None,
            _dir: None,
            seen: HashSet::new(),
        });
    }
    let dir = tempfile::Builder::new()
        .prefix("roboku-bench-peer-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let child = command(kind, n, tools, dir.path())?
        .spawn()
        .map_err(|e| format!("start {}: {e}", kind.name()))?;
    Ok(Running {
        kind,
        root: child.id() as i32,
        child: Some(child),
        _dir: Some(dir),
        seen: HashSet::new(),
    })
}

impl Running {
    /// A peer another workload started with a command and dir of its own (e.g. the chatty
    /// dyno's), stopped and cleaned up as the ones [`start`] makes.
    pub fn adopt(kind: Kind, child: Child, dir: tempfile::TempDir) -> Running {
        Running {
            kind,
            root: child.id() as i32,
            child: Some(child),
            _dir: Some(dir),
            seen: HashSet::new(),
        }
    }

    /// Whether the manager process itself is still there.
    pub fn manager_alive(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Waits until `n` dynos run (and no manager exited); the tree at that moment.
    pub fn wait_dynos(&mut self, n: usize, limit: Duration) -> Result<procs::Tree, String> {
        let deadline = Instant::now() + limit;
        loop {
            let t = procs::tree(self.root);
            self.seen.extend(&t.dynos);
            if t.dynos.len() >= n {
                return Ok(t);
            }
            if !self.manager_alive() {
                return Err(format!(
                    "{} exited with {}/{n} dynos running",
                    self.kind.name(),
                    t.dynos.len()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{}: {}/{n} dynos running after {} s",
                    self.kind.name(),
                    t.dynos.len(),
                    limit.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Stops everything: SIGTERM to the manager (robokud: scale to 0, cgroups gone); the time
    /// until the manager exited and every dyno is gone, or what was left behind.
    pub fn stop(&mut self, agent: &Agent) -> Result<Duration, String> {
        let dynos: Vec<i32> = self.seen.iter().copied().collect();
        let t = Instant::now();
        if self.kind == Kind::Robokud {
            agent.scale_to_zero(APP);
        } else {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(self.root, libc::SIGTERM) };
        }
        let deadline = t + Duration::from_secs(30);
        loop {
            let manager_gone = !self.manager_alive();
            let left = dynos.iter().filter(|&&p| procs::alive(p)).count();
            if (manager_gone || self.kind == Kind::Robokud) && left == 0 {
                return Ok(t.elapsed());
            }
            if Instant::now() >= deadline || (manager_gone && t.elapsed() > Duration::from_secs(3))
            {
                return Err(format!(
                    "{} dynos of {} still running {} ms after SIGTERM to the manager (manager {})",
                    left,
                    dynos.len(),
                    t.elapsed().as_millis(),
                    if manager_gone {
                        "exited"
                    } else {
                        "still running"
                    }
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if matches!(c.try_wait(), Ok(None)) {
                self.seen.extend(procs::tree(self.root).dynos);
                // SAFETY: kill has no memory-safety preconditions; the group is still ours
                // (its leader is not reaped).
                unsafe { libc::kill(-self.root, libc::SIGKILL) };
            }
            let _ = c.kill();
            let _ = c.wait();
            for p in &self.seen {
                if procs::alive(*p) && procs::stat(*p).map(|(_, c)| c) == Some("sleep".into()) {
                    // SAFETY: as above.
                    unsafe { libc::kill(*p, libc::SIGKILL) };
                }
            }
        }
        if self.kind.floor_cg() {
            crate::cg::remove_tree(&format!("roboku-bench-floor-{}", std::process::id()));
        }
    }
}
