//! The engine side of start order and config reloads: holding a dyno back until the types it
//! starts `after` are up (the decision is `order.rs`'s), starting held dynos when they are, and
//! applying a config change in place to types whose `on_config` is a signal or `none`.

use super::dyno::{DynoKey, Want};
use super::policy::OnConfig;
use super::Engine;
use roboku_wire::DynoState;

impl Engine {
    /// Whether `key` must wait for other types before it starts. A held dyno is marked and
    /// logged once; `start_ordered` starts it later.
    pub(super) fn hold_for_order(&mut self, key: &DynoKey) -> bool {
        let Some(d) = self.dynos.get(key) else {
            return false;
        };
        if d.one_off {
            return false;
        }
        let Some(cache) = self.apps.get(&key.0) else {
            return false;
        };
        let after = cache.policy.after(&d.ptype).to_vec();
        let waiting: Vec<String> = super::order::waiting_for(&after, |t| self.type_up(&key.0, t))
            .into_iter()
            .map(str::to_string)
            .collect();
        if waiting.is_empty() {
            if let Some(d) = self.dynos.get_mut(key) {
                d.held = false;
            }
            return false;
        }
        let Some(d) = self.dynos.get_mut(key) else {
            return false;
        };
        if !d.held {
            d.held = true;
            let msg = format!(
                "Waiting for {} to be up before starting (roboku.formation.{}.after)",
                waiting.join(", "),
                d.ptype
            );
            self.logs.system(&key.0, &key.1, msg);
        }
        d.state = DynoState::Starting;
        d.pending = None;
        d.retry_at = None;
        d.retry_at_ms = None;
        self.dirty.insert(key.clone());
        true
    }

    /// A type is up when each dyno its formation wants (not stopped on purpose) runs, and,
    /// while a rollout of its release is checking it, has passed its checks. A type with no
    /// dyno wanted never holds anyone back.
    fn type_up(&self, app: &str, ptype: &str) -> bool {
        let Some(cache) = self.apps.get(app) else {
            return true;
        };
        let defined = cache
            .release
            .as_ref()
            .is_some_and(|r| r.process_types.contains_key(ptype));
        let count = cache
            .formation
            .iter()
            .find(|f| f.ptype == ptype)
            .map(|f| f.count)
            .unwrap_or(0);
        if !defined || count == 0 {
            return true;
        }
        let rollout = self.rollouts.get(app).map(|r| &r.gate);
        let of_type = || {
            self.dynos
                .values()
                .filter(move |d| d.app == app && d.ptype == ptype && !d.one_off)
        };
        let stopped = of_type().filter(|d| d.want == Want::Stop).count() as u32;
        let ready = of_type()
            .filter(|d| d.want == Want::Run && d.state == DynoState::Up && d.proc.is_some())
            .filter(|d| match rollout {
                Some(g) if g.version == d.release => g.passed(&d.name),
                _ => true,
            })
            .count() as u32;
        ready + stopped >= count
    }

    /// Starts the held dynos whose types are up now (called once per engine turn).
    pub(super) fn start_ordered(&mut self) {
        if self.shutdown.is_some() {
            return;
        }
        let held: Vec<DynoKey> = self
            .dynos
            .values()
            .filter(|d| d.held && d.want == Want::Run && d.proc.is_none() && d.pending.is_none())
            .map(|d| d.key())
            .collect();
        for key in held {
            if !self.hold_for_order(&key) {
                self.start_dyno(&key);
            }
        }
    }

    /// What a config change does to each type the formation runs, by `on_config`; `None` when
    /// every type restarts (the default, left out of the release's description).
    pub(super) fn config_reloads(&self, app: &str) -> Option<String> {
        let cache = self.apps.get(app)?;
        let mut types: Vec<&str> = cache
            .formation
            .iter()
            .filter(|f| f.count > 0)
            .map(|f| f.ptype.as_str())
            .collect();
        types.sort();
        let hows: Vec<OnConfig> = types.iter().map(|t| cache.policy.on_config(t)).collect();
        if hows.iter().all(|h| *h == OnConfig::Restart) {
            return None;
        }
        let parts: Vec<String> = types
            .iter()
            .zip(hows)
            .map(|(t, h)| format!("{t} {}", h.describe()))
            .collect();
        Some(parts.join(", "))
    }

    /// Before a config change's rollout: dynos of types that reload by a signal get it and move
    /// to `version` as they run; `none` types move without one. Neither is restarted, so their
    /// environment stays the old one until their next start.
    pub(super) fn reload_in_place(&mut self, app: &str, version: u32) {
        let Some(cache) = self.apps.get(app) else {
            return;
        };
        let policy = cache.policy.clone();
        let types: Vec<String> = cache.formation.iter().map(|f| f.ptype.clone()).collect();
        for ptype in types {
            let how = policy.on_config(&ptype);
            if how == OnConfig::Restart {
                continue;
            }
            let keys: Vec<DynoKey> = self
                .dynos
                .values()
                .filter(|d| d.app == app && d.ptype == ptype && !d.one_off)
                .filter(|d| d.want == Want::Run && d.state == DynoState::Up)
                .filter(|d| d.proc.is_some())
                .map(|d| d.key())
                .collect();
            for key in keys {
                let Some(d) = self.dynos.get_mut(&key) else {
                    continue;
                };
                let pid = d.proc.as_ref().map(|p| p.pid).unwrap_or(0);
                d.release = version;
                self.dirty.insert(key.clone());
                let msg = match how {
                    OnConfig::Signal(sig) => {
                        // The dyno's own process, as systemd's `kill -HUP $MAINPID`: the app
                        // decides what its children hear.
                        let sent = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
                        match sent {
                            Ok(()) => format!(
                                "Config changed (v{version}): sent {} to pid {pid}; keeps \
                                 running, its environment changes at its next start",
                                sig.as_str()
                            ),
                            Err(e) => format!(
                                "Config changed (v{version}): sending {} to pid {pid} failed: {e}",
                                sig.as_str()
                            ),
                        }
                    }
                    _ => format!(
                        "Config changed (v{version}): left running (on_config none); its \
                         environment changes at its next start"
                    ),
                };
                self.logs.system(&key.0, &key.1, msg);
            }
        }
    }
}
