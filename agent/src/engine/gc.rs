//! Slug garbage collection: keep the slugs of the last `keep_releases` releases of every app
//! (and every current one), delete the rest off the engine loop. A rollback to a release whose
//! slug is gone is refused with a clear message (see `releases.rs`).

use super::Engine;
use std::collections::BTreeSet;

impl Engine {
    /// Deletes slugs no kept release refers to. Called after a release is committed, and at
    /// start (to finish what an agent killed mid-collection left).
    pub(super) fn gc_slugs(&mut self) {
        let keep_n = self.settings.keep_releases.max(1);
        let mut keep = BTreeSet::new();
        // Artifacts of kept releases: the delta bases worth keeping (`mqtt/bases.rs`).
        let mut keep_bases = BTreeSet::new();
        let apps = match self.store.apps() {
            Ok(a) => a,
            Err(e) => return tracing::warn!(error = %e, "slug gc: cannot list apps"),
        };
        for app in apps {
            let Ok(releases) = self.store.releases(&app.name) else {
                return;
            };
            for r in releases.iter().take(keep_n) {
                keep.insert(r.slug.clone());
                keep_bases.extend(r.artifact.as_ref().map(|a| a.sha256.clone()));
            }
            // The newest good one too: what a failing (or interrupted) rollout goes back to.
            if let Some(good) = releases.iter().find(|r| r.status == "succeeded") {
                keep.insert(good.slug.clone());
            }
            if let Some(cur) = app
                .current_release
                .and_then(|v| releases.iter().find(|r| r.version == v))
            {
                keep.insert(cur.slug.clone());
            }
        }
        // Deploys waiting for their app's gates: their slug is not in a release yet.
        keep.extend(self.parked_slugs());
        // Slugs of running dynos are kept even if their release is old (a rollout in progress).
        for cache in self.apps.values() {
            if let Some(r) = &cache.release {
                keep.insert(r.slug.clone());
            }
        }
        let bases = self.settings.bases_dir();
        tokio::task::spawn_blocking(move || crate::mqtt::bases::prune(&bases, &keep_bases));
        let dir = self.settings.slugs_dir();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let doomed: Vec<_> = entries
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.len() == 64 && !keep.contains(n))
            })
            .map(|e| e.path())
            .collect();
        if doomed.is_empty() {
            return;
        }
        tracing::info!(
            count = doomed.len(),
            kept = keep.len(),
            "removing unreferenced slugs"
        );
        tokio::task::spawn_blocking(move || {
            for path in doomed {
                crate::fault::point("gc.removing");
                if let Err(e) = crate::build::remove_tree(&path) {
                    tracing::warn!(error = %e, "slug gc: cannot remove a slug");
                }
            }
        });
    }
}
