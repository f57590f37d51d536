//! Stop order: when several dynos of an app stop together (`ps:stop` of the app or a type,
//! a scale that removes them, `apps:destroy`, robokud's own shutdown), types stop in the reverse
//! of their start order (`roboku.formation.TYPE.after`): a dyno of `broker` gets its SIGTERM
//! only once every dyno of a type that starts after `broker`, stopped in the same go (or already
//! stopping), is gone. Who waits for whom is `order::stop_waits` (pure); this file queues the
//! stops that must wait and lets them go, each turn, once the dynos they wait for have exited.
//!
//! Waiting is bounded by the app's stop grace, counted from the request: past it the dyno is
//! stopped anyway (its dependents are being SIGKILLed at about that moment), so a whole chain is
//! down within twice the grace. A restart is not a stop and is not ordered; neither is a
//! preboot's retiring dyno.

use super::dyno::{DynoKey, Want};
use super::Engine;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A stop that waits for dynos of dependent types to be gone.
#[derive(Debug, Clone)]
pub struct QueuedStop {
    want: Want,
    until: Instant,
    waits_for: Vec<DynoKey>,
}

impl Engine {
    /// Stops `keys` (any apps), dependents first. Dynos without a process stop at once.
    pub(super) fn stop_in_order(&mut self, keys: &[DynoKey], want: Want) {
        let mut by_app: BTreeMap<String, Vec<DynoKey>> = BTreeMap::new();
        for key in keys {
            by_app.entry(key.0.clone()).or_default().push(key.clone());
        }
        for (app, keys) in by_app {
            self.stop_app_in_order(&app, &keys, want);
        }
    }

    fn stop_app_in_order(&mut self, app: &str, keys: &[DynoKey], want: Want) {
        let alive = |e: &Engine, k: &DynoKey| {
            e.dynos
                .get(k)
                .is_some_and(|d| d.proc.is_some() || d.pending.is_some())
        };
        let policy = self.apps.get(app).map(|c| c.policy.clone());
        let grace = self
            .apps
            .get(app)
            .map(|c| c.grace)
            .unwrap_or(Duration::from_secs(self.settings.grace_secs));
        let typed = |e: &Engine, k: &DynoKey| {
            e.dynos
                .get(k)
                .filter(|d| !d.one_off)
                .map(|d| (d.name.clone(), d.ptype.clone()))
        };
        let batch: Vec<(String, String)> = keys
            .iter()
            .filter(|k| alive(self, k))
            .filter_map(|k| typed(self, k))
            .collect();
        let (Some(policy), false) = (policy, batch.is_empty()) else {
            for key in keys {
                self.stop_dyno(key, want);
            }
            return;
        };
        // The batch, and the app's dynos already on their way down.
        let mut stopping = batch.clone();
        for d in self.dynos.values().filter(|d| d.app == app && !d.one_off) {
            let key = d.key();
            let down =
                d.state == roboku_wire::DynoState::Stopping || self.stop_queue.contains_key(&key);
            if down && (d.proc.is_some() || d.pending.is_some()) && !keys.contains(&key) {
                stopping.push((d.name.clone(), d.ptype.clone()));
            }
        }
        let waits = super::order::stop_waits(&batch, &stopping, |t| policy.after(t));
        let until = Instant::now() + grace;
        for key in keys {
            let others: Vec<DynoKey> = waits
                .get(key.1.as_str())
                .map(|w| w.iter().map(|n| (app.to_string(), n.to_string())).collect())
                .unwrap_or_default();
            if others.is_empty() {
                self.stop_queue.remove(key);
                self.stop_dyno(key, want);
                continue;
            }
            let Some(d) = self.dynos.get_mut(key) else {
                continue;
            };
            // Wanted down from now on (no restart, no reconcile starts it again), signalled
            // when its dependents are gone.
            d.want = want;
            d.restart_after_stop = false;
            d.retry_at = None;
            d.retry_at_ms = None;
            self.dirty.insert(key.clone());
            let names: Vec<&str> = others.iter().map(|k| k.1.as_str()).collect();
            let msg = format!(
                "Stopping once {} {} gone (the start order reversed: roboku.formation.*.after)",
                names.join(", "),
                if names.len() == 1 { "is" } else { "are" }
            );
            self.logs.system(&key.0, &key.1, msg);
            let queued = self.stop_queue.entry(key.clone()).or_insert(QueuedStop {
                want,
                until,
                waits_for: Vec::new(),
            });
            queued.want = want;
            queued.waits_for = others;
        }
    }

    /// Lets queued stops go whose dependents are gone, or whose wait ran out (once per turn).
    pub(super) fn stop_ordered(&mut self, now: Instant) {
        if self.stop_queue.is_empty() {
            return;
        }
        let alive = |e: &Engine, k: &DynoKey| {
            e.dynos
                .get(k)
                .is_some_and(|d| d.proc.is_some() || d.pending.is_some())
        };
        let mut due = Vec::new();
        let mut dropped = Vec::new();
        for (key, q) in &self.stop_queue {
            // Something else decided about it meanwhile (a restart, a stop that went at once).
            let d = self.dynos.get(key);
            if d.is_none_or(|d| d.want != q.want || d.state == roboku_wire::DynoState::Stopping) {
                dropped.push(key.clone());
                continue;
            }
            let left: Vec<&DynoKey> = q.waits_for.iter().filter(|k| alive(self, k)).collect();
            if left.is_empty() {
                due.push((key.clone(), q.want, None));
            } else if now >= q.until {
                let names: Vec<&str> = left.iter().map(|k| k.1.as_str()).collect();
                due.push((key.clone(), q.want, Some(names.join(", "))));
            }
        }
        for key in dropped {
            self.stop_queue.remove(&key);
        }
        for (key, want, late) in due {
            self.stop_queue.remove(&key);
            if let Some(names) = late {
                let msg = format!("Stopping now: {names} still running after the stop grace");
                self.logs.system(&key.0, &key.1, msg);
            }
            self.stop_dyno(&key, want);
        }
    }

    /// When the next queued stop stops waiting.
    pub(super) fn stop_queue_deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        self.stop_queue.values().map(|q| q.until)
    }
}
