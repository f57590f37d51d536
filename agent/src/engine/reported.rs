//! A dyno's own health reports (`roboku health:set`, through its app's dyno socket) in what the
//! engine judges: a rollout's `reported` health check hears them through a `watch` fed from
//! here (the check runs off the engine, as every check), and the release's probation counts an
//! `error` (or a `blocked`/`waiting` past the check's window) against its budget
//! (`probation.rs`). Gates read the reports from the dyno table themselves (`holds/`).

use super::dyno::DynoKey;
use super::Engine;
use roboku_wire::gates::DynoHealth;
use tokio::sync::watch;

impl Engine {
    /// A channel that hears every report of this instance of the dyno from now on, starting
    /// with `last` (a fresh process has none). Dropped when its check ends.
    pub(super) fn report_feed(
        &mut self,
        key: &DynoKey,
        instance: u64,
        last: Option<DynoHealth>,
    ) -> watch::Receiver<Option<DynoHealth>> {
        let (tx, rx) = watch::channel(last);
        self.health_feeds.insert(key.clone(), (instance, tx));
        rx
    }

    /// Instance `instance` of the dyno reported something new.
    pub(super) fn on_report(&mut self, key: &DynoKey, instance: u64, health: &DynoHealth) {
        if let Some((i, tx)) = self.health_feeds.get(key) {
            if *i == instance {
                tx.send_replace(Some(health.clone()));
            } else {
                self.health_feeds.remove(key);
            }
        }
        self.probation_report(key, health);
    }
}
