//! Changes waiting for an app's gates: parked in arrival order, applied one at a time when a
//! round of checks finds every gate open (and no rollout of the app is running), given up when
//! their time limit passes or their caller went away.
//!
//! A round judges every gate at one moment: the process checks of `check.rs` in a task, the rest
//! (reported health, windows, holds) when their results come back. While a change waits, rounds
//! repeat every `gate_poll_ms`, and at once after anything a gate reads changed (a hold, a
//! health report, a gate itself).

use super::check::{self, Probe, ProbeEnv};
use super::rules::{self, Seen};
use crate::engine::command::{Command, Door, EngineError, Reply};
use crate::engine::{Engine, Internal};
use crate::util::now_ms;
use roboku_wire::gates::{GateInfo, GateKind, GatesReport, WaitingInfo};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

type Answer = oneshot::Sender<Result<Reply, EngineError>>;

/// How a caller waits for gates: until when, and where to hear `waiting for gate ...`.
#[derive(Debug, Default)]
pub struct Wait {
    pub deadline: Option<Instant>,
    pub progress: Option<mpsc::UnboundedSender<String>>,
}

pub struct Parked {
    pub door: Door,
    pub cmd: Command,
    pub reply: Answer,
    pub wait: Wait,
    pub what: &'static str,
    pub since: Instant,
    pub since_ms: u64,
    /// What it was last told it waits for.
    pub told: Vec<String>,
}

/// One app's waiting changes and what its gates last showed.
#[derive(Default)]
pub struct GateBook {
    pub parked: VecDeque<Parked>,
    /// The round in flight, by id.
    round: Option<u64>,
    next_round: Option<Instant>,
    /// Last outcome of each gate and hold, by label (`gate idle`, `hold mission`).
    seen: BTreeMap<String, Seen>,
    /// What blocks applying, as of the last round: `(label, why)`.
    blocked: Vec<(String, String)>,
    listeners: Vec<Answer>,
}

impl GateBook {
    /// A gate or hold that was removed or redefined: its history goes with it.
    pub fn forget(&mut self, label: &str) {
        self.seen.remove(label);
    }
}

/// The app a command would change and what to call it, if it is one that waits for gates.
/// robokud's own rollbacks (probation) never wait: a failing release must go. A scale or stop
/// waits from the fleet, and from another door only when its caller `asked` (gave a gate
/// timeout: `ps:scale --gate-timeout`).
pub fn gated(door: Door, cmd: &Command, asked: bool) -> Option<(&str, &'static str)> {
    match cmd {
        _ if door == Door::Agent => None,
        Command::Release { app, .. } => Some((app, "deploy")),
        Command::ChangeConfig { app, .. } => Some((app, "config")),
        Command::Rollback { app, .. } => Some((app, "rollback")),
        Command::Restart { app, .. } => Some((app, "restart")),
        Command::Scale { app, .. } if door == Door::Mqtt || asked => Some((app, "scale")),
        Command::Stop { app, .. } if door == Door::Mqtt => Some((app, "stop")),
        _ => None,
    }
}

impl Engine {
    pub(in crate::engine) fn book(&mut self, app: &str) -> &mut GateBook {
        self.gate_books.entry(app.to_string()).or_default()
    }

    /// Parks the request if its app has gates (or changes already waiting); hands it back
    /// otherwise.
    pub(in crate::engine) fn park_if_gated(
        &mut self,
        door: Door,
        cmd: Command,
        reply: Answer,
        wait: Wait,
    ) -> Option<(Door, Command, Answer)> {
        let Some((app, what)) = gated(door, &cmd, wait.deadline.is_some()) else {
            return Some((door, cmd, reply));
        };
        let app = app.to_string();
        let queued = self
            .gate_books
            .get(&app)
            .is_some_and(|b| !b.parked.is_empty());
        if !queued && !self.store.has_gates(&app).unwrap_or(false) {
            return Some((door, cmd, reply));
        }
        self.book(&app).parked.push_back(Parked {
            door,
            cmd,
            reply,
            wait,
            what,
            since: Instant::now(),
            since_ms: now_ms(),
            told: Vec::new(),
        });
        self.start_round(&app);
        None
    }

    /// `roboku gates`: answered after a fresh round.
    pub(in crate::engine) fn list_gates(&mut self, app: &str, reply: Answer) {
        if let Err(e) = self.cache(app) {
            let _ = reply.send(Err(e));
            return;
        }
        self.book(app).listeners.push(reply);
        self.start_round(app);
    }

    /// Something a gate reads changed: judge again now if anyone waits.
    pub(in crate::engine) fn gates_changed(&mut self, app: &str) {
        let book = self.book(app);
        if !book.parked.is_empty() {
            book.next_round = Some(Instant::now());
        }
    }

    fn start_round(&mut self, app: &str) {
        if self.book(app).round.is_some() {
            return;
        }
        let gates = self.store.gates(app).unwrap_or_else(|e| {
            tracing::warn!(app, error = %e, "cannot read gates");
            Vec::new()
        });
        let probes: Vec<Probe> = gates
            .iter()
            .filter(|g| check::needs_process(&g.check))
            .map(|g| Probe {
                name: g.name.clone(),
                kind: g.check.clone(),
                timeout: Duration::from_millis(g.timeout_ms),
            })
            .collect();
        if probes.is_empty() {
            self.finish_round(app, BTreeMap::new());
            return;
        }
        self.next_gate_round += 1;
        let round = self.next_gate_round;
        self.book(app).round = Some(round);
        let env = self.probe_env(app);
        let (tx, app_s) = (self.internal_tx.clone(), app.to_string());
        tokio::spawn(async move {
            let results = check::run_all(probes, env).await;
            let _ = tx.send(Internal::GatesChecked {
                app: app_s,
                round,
                results,
            });
        });
    }

    /// Where and as whom the app's checks run: its user, its slug dir, its dyno environment.
    fn probe_env(&self, app: &str) -> ProbeEnv {
        let cache = self.apps.get(app);
        let run_as = cache
            .and_then(|c| c.run_as.clone().ok().flatten())
            .map(|r| (r.uid, r.gid));
        let dyno_env = cache.and_then(|c| {
            let (release, slug) = (c.release.as_ref()?, c.slug_dir.as_ref()?);
            let env =
                crate::engine::dyno::dyno_env(&c.dotenv, &c.own_env, release, slug, app, "gate", 0);
            Some((env, slug.clone()))
        });
        let (env, cwd) = dyno_env.unwrap_or_else(|| {
            let env = [
                (
                    "PATH".to_string(),
                    "/usr/local/bin:/usr/bin:/bin".to_string(),
                ),
                ("ROBOKU_APP".to_string(), app.to_string()),
                ("HOME".to_string(), "/".to_string()),
            ];
            (env.into_iter().collect(), "/".into())
        });
        ProbeEnv { cwd, env, run_as }
    }

    pub(in crate::engine) fn on_gates_checked(
        &mut self,
        app: &str,
        round: u64,
        results: BTreeMap<String, Result<String, String>>,
    ) {
        if self.book(app).round != Some(round) {
            return;
        }
        self.book(app).round = None;
        self.finish_round(app, results);
    }

    /// Judges every gate and hold now, answers `roboku gates`, and applies the first waiting
    /// change if all is open.
    fn finish_round(&mut self, app: &str, results: BTreeMap<String, Result<String, String>>) {
        let now = now_ms();
        let gates = self.store.gates(app).unwrap_or_default();
        let holds = self.store.holds(Some(app)).unwrap_or_default();
        let mut outcome: Vec<(String, Result<String, String>)> = Vec::new();
        for g in &gates {
            let r = match &g.check {
                GateKind::Command(_) | GateKind::File(_) => results
                    .get(&g.name)
                    .cloned()
                    .unwrap_or_else(|| Err("not checked yet".into())),
                GateKind::Health(t) => rules::health_gate(t, &self.healths_of(app, t)),
                GateKind::Window(w) => rules::window_gate(w, super::local_minute(now)),
            };
            outcome.push((format!("gate {}", g.name), r));
        }
        for h in holds.iter().filter(|h| h.until > now) {
            let why = rules::hold_why(&h.holder, &h.reason, h.until, now);
            outcome.push((format!("hold {}", h.name), Err(why)));
        }
        let book = self.book(app);
        for (label, r) in &outcome {
            let seen = Seen::next(book.seen.get(label), r, now);
            book.seen.insert(label.clone(), seen);
        }
        book.blocked = outcome
            .into_iter()
            .filter_map(|(l, r)| r.err().map(|why| (l, why)))
            .collect();
        let listeners = std::mem::take(&mut book.listeners);
        if !listeners.is_empty() {
            let report = self.gates_report(app, &gates, &holds);
            for l in listeners {
                let _ = l.send(Ok(Reply::Gates(report.clone())));
            }
        }
        self.after_round(app);
    }

    fn after_round(&mut self, app: &str) {
        let poll = Duration::from_millis(self.settings.gate_poll_ms.max(50));
        let rolling = self.rollouts.contains_key(app);
        let book = self.book(app);
        if book.parked.is_empty() {
            book.next_round = None;
            return;
        }
        if book.blocked.is_empty() {
            if rolling {
                // Judged again once the rollout in progress is over.
                book.next_round = Some(Instant::now() + poll);
                return;
            }
            let Some(p) = book.parked.pop_front() else {
                return;
            };
            book.next_round = (!book.parked.is_empty()).then(|| Instant::now() + poll);
            if !p.told.is_empty() {
                let waited = rules::human_secs(p.since.elapsed().as_secs());
                let msg = format!("Gates open: applying the {} (waited {waited})", p.what);
                self.logs.system(app, "gates", msg.clone());
                self.event(p.door, Some(app), p.what, &msg);
            }
            self.answer(p.door, p.cmd, p.reply);
            return;
        }
        book.next_round = Some(Instant::now() + poll);
        let labels: Vec<String> = book.blocked.iter().map(|(l, _)| l.clone()).collect();
        let why = book
            .blocked
            .iter()
            .map(|(l, w)| format!("{l}: {w}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut said = Vec::new();
        for p in book.parked.iter_mut().filter(|p| p.told != labels) {
            p.told = labels.clone();
            if let Some(tx) = &p.wait.progress {
                let _ = tx.send(roboku_wire::gates::waiting_for(&labels));
            }
            said.push((p.door, p.what));
        }
        for (door, what) in said {
            let msg = format!("The {what} waits: {why}");
            self.logs.system(app, "gates", msg.clone());
            self.event(door, Some(app), &format!("{what} waiting"), &msg);
        }
    }

    /// Timers: holds that expired, waits that gave up or lost their caller, rounds due.
    pub(in crate::engine) fn gate_timers(&mut self, now: Instant) {
        if self.next_hold_expiry.is_some_and(|t| t <= now) {
            self.expire_holds(now_ms());
        }
        let apps: Vec<String> = self.gate_books.keys().cloned().collect();
        for app in apps {
            let mut gone = Vec::new();
            let book = self.book(&app);
            let mut kept = VecDeque::new();
            while let Some(p) = book.parked.pop_front() {
                if p.reply.is_closed() || p.wait.deadline.is_some_and(|d| d <= now) {
                    gone.push(p);
                } else {
                    kept.push_back(p);
                }
            }
            book.parked = kept;
            let blocked = book.blocked.clone();
            for p in gone {
                self.give_up(&app, p, &blocked);
            }
            let rolling = self.rollouts.contains_key(&app);
            let book = self.book(&app);
            let due = book.next_round.is_some_and(|t| t <= now);
            if due && book.round.is_none() && !rolling && !book.parked.is_empty() {
                book.next_round = None;
                self.start_round(&app);
            }
        }
        self.gate_books
            .retain(|_, b| !b.parked.is_empty() || b.round.is_some() || !b.seen.is_empty());
    }

    fn give_up(&mut self, app: &str, p: Parked, blocked: &[(String, String)]) {
        let waited = rules::human_secs(p.since.elapsed().as_secs());
        if p.reply.is_closed() {
            let msg = format!("The {} was dropped: its caller stopped waiting", p.what);
            self.logs.system(app, "gates", msg.clone());
            self.event(p.door, Some(app), p.what, &msg);
            return;
        }
        let why = match blocked {
            [] => "the gates were not checked in time".to_string(),
            b => b
                .iter()
                .map(|(l, w)| format!("{l}: {w}"))
                .collect::<Vec<_>>()
                .join("; "),
        };
        let msg = format!(
            "The {} gave up after waiting {waited} for the gates of {app}; nothing was applied ({why})",
            p.what
        );
        self.logs.system(app, "gates", msg.clone());
        self.event(p.door, Some(app), p.what, &msg);
        let _ = p.reply.send(Err(EngineError::GateClosed(msg)));
    }

    /// When the loop must wake for gates.
    pub(in crate::engine) fn gate_deadlines(&self) -> Vec<Instant> {
        let mut out: Vec<Instant> = self.next_hold_expiry.into_iter().collect();
        for (app, b) in &self.gate_books {
            out.extend(b.parked.iter().filter_map(|p| p.wait.deadline));
            if b.round.is_none() && !self.rollouts.contains_key(app) && !b.parked.is_empty() {
                out.extend(b.next_round);
            }
            // A caller that went away is noticed at the next poll.
        }
        out
    }

    /// Slugs of parked deploys (kept by the slug collector).
    pub(in crate::engine) fn parked_slugs(&self) -> Vec<String> {
        self.gate_books
            .values()
            .flat_map(|b| b.parked.iter())
            .filter_map(|p| match &p.cmd {
                Command::Release { slug, .. } => Some(slug.sha256.clone()),
                _ => None,
            })
            .collect()
    }

    /// `waiting for gate ...` while a change of the app waits (for `apps`, MQTT `reported`).
    pub(in crate::engine) fn waiting_text(&self, app: &str) -> Option<String> {
        let b = self.gate_books.get(app)?;
        if b.parked.is_empty() {
            return None;
        }
        let labels: Vec<String> = b.blocked.iter().map(|(l, _)| l.clone()).collect();
        Some(roboku_wire::gates::waiting_for(&labels))
    }

    fn gates_report(
        &self,
        app: &str,
        gates: &[crate::store::GateRow],
        holds: &[crate::store::HoldRow],
    ) -> GatesReport {
        let book = self.gate_books.get(app);
        let seen = |label: &str| book.and_then(|b| b.seen.get(label));
        let gates: Vec<GateInfo> = gates
            .iter()
            .map(|g| {
                let s = seen(&format!("gate {}", g.name));
                GateInfo {
                    name: g.name.clone(),
                    check: g.check.clone(),
                    timeout_secs: g.timeout_ms.div_ceil(1000),
                    open: s.map(|s| s.open),
                    detail: s.map(|s| s.detail.clone()).unwrap_or_default(),
                    since: s.map(|s| s.since),
                    checked_at: s.map(|s| s.checked_at),
                }
            })
            .collect();
        let now = now_ms();
        let holds: Vec<_> = holds
            .iter()
            .filter(|h| h.until > now)
            .map(super::hold_info)
            .collect();
        let blocked = book.map(|b| b.blocked.clone()).unwrap_or_default();
        let labels: Vec<String> = blocked.iter().map(|(l, _)| l.clone()).collect();
        let waiting = book
            .map(|b| {
                b.parked
                    .iter()
                    .map(|p| WaitingInfo {
                        what: p.what.to_string(),
                        door: p.door.as_str().to_string(),
                        since: p.since_ms,
                        until: p.wait.deadline.map(|d| {
                            now + d.saturating_duration_since(Instant::now()).as_millis() as u64
                        }),
                        blocked_by: labels.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        GatesReport {
            app: app.to_string(),
            open: blocked.is_empty(),
            gates,
            holds,
            waiting,
        }
    }
}
