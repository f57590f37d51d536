//! Apply gates and holds (issue 14), and the health dynos report about themselves.
//!
//! A deploy, a config change, a rollback or a restart (and, from the fleet, a scale or a stop)
//! of an app with gates waits until every gate passes and no hold is held, then applies. What
//! each kind of gate means and how it reads is pure (`rules.rs`); commands and file tests run as
//! the app's user off the engine loop (`check.rs`); the waiting itself is `wait.rs`. Gates and
//! holds live in the store, so they outlive a robokud restart; a hold is a lease and is deleted
//! when it expires. A dyno's health report is kept with its instance: shown in `ps`, reported
//! over MQTT, read by `health` gates, and forgotten when the process is replaced.
//!
//! Nothing here may block the loop: checks run in their own tasks, with a time limit.

pub mod check;
pub mod rules;
mod wait;

pub(super) use wait::GateBook;
pub use wait::Wait;

use super::command::{Door, EngineError, Result};
use super::Engine;
use crate::store::{GateRow, HealthRow, HoldRow};
use crate::util::now_ms;
use roboku_wire as wire;
use roboku_wire::gates::{DynoHealth, GateKind, HoldInfo, SetGate, SetHealth, TakeHold};
use std::time::Duration;

impl Engine {
    pub(super) fn set_gate(
        &mut self,
        door: Door,
        app: &str,
        name: &str,
        gate: SetGate,
    ) -> Result<wire::Done> {
        self.cache(app)?;
        rules::check_gate(name, &gate.check).map_err(EngineError::BadRequest)?;
        let timeout_ms = gate
            .timeout_secs
            .map_or(rules::DEFAULT_CHECK_MS, |s| s.saturating_mul(1000))
            .clamp(100, rules::MAX_CHECK_MS);
        let row = GateRow {
            name: name.to_string(),
            check: gate.check.clone(),
            timeout_ms,
            created_at: now_ms(),
            door: door.as_str().into(),
        };
        self.store.set_gate(app, &row)?;
        let what = describe(&gate.check);
        let msg = format!("Gate {name} set: {what}");
        self.logs.system(app, "gates", msg.clone());
        self.event(door, Some(app), &format!("gate {name}"), &msg);
        self.book(app).forget(&format!("gate {name}"));
        self.gates_changed(app);
        Ok(wire::Done { message: msg })
    }

    pub(super) fn unset_gate(&mut self, door: Door, app: &str, name: &str) -> Result<wire::Done> {
        self.cache(app)?;
        if !self.store.unset_gate(app, name)? {
            return Err(EngineError::NotFound(format!(
                "app {app} has no gate {name:?} (see `roboku gates -a {app}`)"
            )));
        }
        let msg = format!("Gate {name} removed");
        self.logs.system(app, "gates", msg.clone());
        self.event(door, Some(app), &format!("gate {name}"), &msg);
        self.book(app).forget(&format!("gate {name}"));
        self.gates_changed(app);
        Ok(wire::Done { message: msg })
    }

    /// Takes (or renews) a hold: a lease that keeps the app's changes waiting until released or
    /// expired.
    pub(super) fn take_hold(
        &mut self,
        door: Door,
        app: &str,
        name: &str,
        req: TakeHold,
    ) -> Result<HoldInfo> {
        self.cache(app)?;
        rules::check_name("hold", name).map_err(EngineError::BadRequest)?;
        if req.secs == 0 || req.secs > rules::MAX_HOLD_SECS {
            return Err(EngineError::BadRequest(format!(
                "a hold lasts from 1 s to {} (it is a lease: take it again to renew it)",
                rules::human_secs(rules::MAX_HOLD_SECS)
            )));
        }
        let now = now_ms();
        let holder = req
            .holder
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(|| door.as_str().to_string());
        let row = HoldRow {
            app: app.to_string(),
            name: name.to_string(),
            holder: holder.chars().take(100).collect(),
            reason: req.reason.chars().take(300).collect(),
            created_at: now,
            until: now + req.secs * 1000,
        };
        self.store.put_hold(&row)?;
        self.refresh_hold_expiry(now);
        let why = rules::hold_why(&row.holder, &row.reason, row.until, now);
        let msg = format!("Hold {name} taken: {why}");
        self.logs.system(app, "gates", msg.clone());
        self.event(door, Some(app), &format!("hold {name}"), &msg);
        self.gates_changed(app);
        Ok(hold_info(&row))
    }

    pub(super) fn release_hold(&mut self, door: Door, app: &str, name: &str) -> Result<wire::Done> {
        self.cache(app)?;
        let Some(row) = self.store.delete_hold(app, name)? else {
            return Err(EngineError::NotFound(format!(
                "app {app} has no hold {name:?} (it may have expired; see `roboku gates -a {app}`)"
            )));
        };
        let msg = format!("Hold {name} released (held by {})", row.holder);
        self.logs.system(app, "gates", msg.clone());
        self.event(door, Some(app), &format!("hold {name}"), &msg);
        self.book(app).forget(&format!("hold {name}"));
        self.gates_changed(app);
        Ok(wire::Done { message: msg })
    }

    /// Holds past their time limit: deleted, and said so.
    pub(super) fn expire_holds(&mut self, now: u64) {
        let holds = match self.store.holds(None) {
            Ok(h) => h,
            Err(e) => return tracing::warn!(error = %e, "cannot read holds"),
        };
        for h in holds.into_iter().filter(|h| h.until <= now) {
            if let Err(e) = self.store.delete_hold(&h.app, &h.name) {
                tracing::warn!(app = h.app, error = %e, "cannot delete an expired hold");
                continue;
            }
            let msg = format!(
                "Hold {} expired (held by {}{})",
                h.name,
                h.holder,
                match h.reason.is_empty() {
                    true => String::new(),
                    false => format!(": {}", h.reason),
                }
            );
            self.logs.system(&h.app, "gates", msg.clone());
            self.event(Door::Agent, Some(&h.app), &format!("hold {}", h.name), &msg);
            self.book(&h.app).forget(&format!("hold {}", h.name));
            self.gates_changed(&h.app);
        }
        self.refresh_hold_expiry(now);
    }

    /// When the loop must wake to expire the next hold.
    fn refresh_hold_expiry(&mut self, now: u64) {
        self.next_hold_expiry = self.store.holds(None).ok().and_then(|hs| {
            hs.iter().map(|h| h.until).min().map(|until| {
                std::time::Instant::now() + Duration::from_millis(until.saturating_sub(now))
            })
        });
    }

    /// A dyno's report about itself (from its app's dyno socket: the app is the socket's).
    pub(super) fn set_health(&mut self, app: &str, report: SetHealth) -> Result<DynoHealth> {
        self.cache(app)?;
        let key = (app.to_string(), report.dyno.clone());
        let Some(d) = self.dynos.get_mut(&key) else {
            return Err(EngineError::NotFound(format!(
                "app {app} has no dyno {:?} (health:set reports for $DYNO)",
                report.dyno
            )));
        };
        let Some(p) = d.proc.as_mut() else {
            return Err(EngineError::Conflict(format!(
                "{} of {app} is not running",
                report.dyno
            )));
        };
        let health = DynoHealth {
            status: report.status,
            message: report.message.chars().take(300).collect(),
            at: now_ms(),
        };
        let changed = p.health.as_ref().map(|h| (h.status, &h.message))
            != Some((health.status, &health.message));
        p.health = Some(health.clone());
        let instance = p
            .tag
            .clone()
            .unwrap_or_else(|| super::dyno::instance_tag(&key, p.instance));
        let row = HealthRow {
            app: app.to_string(),
            dyno: report.dyno.clone(),
            instance,
            health: health.clone(),
        };
        if let Err(e) = self.store.set_health(&row) {
            tracing::warn!(app, dyno = report.dyno, error = %e, "cannot record the dyno's health");
        }
        let instance_no = p.instance;
        if changed {
            let msg = match health.message.is_empty() {
                true => format!("Health: {}", health.status.as_str()),
                false => format!("Health: {}: {}", health.status.as_str(), health.message),
            };
            self.logs.system(app, &report.dyno, msg);
            self.gates_changed(app);
            // A rollout's `reported` check and the release's probation hear it too.
            self.on_report(&key, instance_no, &health);
        }
        Ok(health)
    }

    /// At start: health reports of the dynos that were re-adopted (same instance) come back.
    pub(super) fn restore_healths(&mut self) {
        let rows = match self.store.healths() {
            Ok(r) => r,
            Err(e) => return tracing::warn!(error = %e, "cannot read dyno health"),
        };
        for row in rows {
            let key = (row.app.clone(), row.dyno.clone());
            let Some(p) = self.dynos.get_mut(&key).and_then(|d| d.proc.as_mut()) else {
                continue;
            };
            if p.tag.as_deref() == Some(row.instance.as_str()) {
                p.health = Some(row.health);
            }
        }
        self.expire_holds(now_ms());
    }

    /// The running dynos of `ptype` with their reports, for a `health` gate.
    fn healths_of(&self, app: &str, ptype: &str) -> Vec<(String, Option<DynoHealth>)> {
        self.dynos
            .values()
            .filter(|d| d.app == app && d.ptype == ptype && !d.one_off)
            .filter_map(|d| d.proc.as_ref().map(|p| (d.name.clone(), p.health.clone())))
            .collect()
    }
}

pub(super) fn hold_info(h: &HoldRow) -> HoldInfo {
    HoldInfo {
        name: h.name.clone(),
        holder: h.holder.clone(),
        reason: h.reason.clone(),
        since: h.created_at,
        until: h.until,
    }
}

/// `command \`test -e /x\``, `file /run/idle exists`, ... as the logs say it.
pub fn describe(kind: &GateKind) -> String {
    match kind {
        GateKind::Command(c) => format!("command `{c}` exits 0"),
        GateKind::File(p) => format!("file {p} exists"),
        GateKind::Health(t) => format!("every {t} dyno reports okay"),
        GateKind::Window(w) => format!("local time inside {w}"),
    }
}

/// Local time as minutes of the day (the `window` gates' clock).
fn local_minute(now_ms: u64) -> u16 {
    let t = (now_ms / 1000) as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`, which we own; `t` outlives the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    match ok {
        true => (tm.tm_hour * 60 + tm.tm_min).clamp(0, 24 * 60 - 1) as u16,
        false => ((now_ms / 60_000) % (24 * 60)) as u16,
    }
}

impl Engine {
    /// Every app has its dyno socket, owned by the uid its dynos run as; apps gone lose theirs.
    pub(super) fn sync_dyno_doors(&mut self) {
        let me = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        let wanted: std::collections::BTreeMap<String, (u32, u32)> = self
            .apps
            .iter()
            .filter_map(|(app, c)| match &c.run_as {
                Ok(Some(r)) => Some((app.clone(), (r.uid, r.gid))),
                Ok(None) => Some((app.clone(), me)),
                Err(_) => None,
            })
            .collect();
        self.dyno_doors
            .retain(|app, door| wanted.get(app).is_some_and(|ids| ids.0 == door.uid));
        self.dyno_door_errors
            .retain(|app, _| wanted.contains_key(app));
        for (app, ids) in wanted {
            if self.dyno_doors.contains_key(&app) || self.dyno_door_errors.contains_key(&app) {
                continue;
            }
            let path = self.settings.dyno_socket(&app);
            match crate::api::dyno_door::bind(&path, &app, ids, self.weak.clone()) {
                Ok(door) => {
                    self.dyno_doors.insert(app, door);
                }
                Err(e) => {
                    tracing::warn!(app, error = %e, "no dyno socket: health:set will not work");
                    self.dyno_door_errors.insert(app, e.to_string());
                }
            }
        }
    }
}
