//! Slug garbage collection: keep the slugs of the last `keep_releases` releases of every app
//! (and every current one), delete the rest off the engine loop. A rollback to a release whose
//! slug is gone is refused with a clear message (see `releases.rs`). The same keep set tells
//! `roboku disk` what a collection would free (`disk/usage.rs`).

use super::Engine;
use std::collections::{BTreeMap, BTreeSet};

/// What slug GC keeps, per app and overall.
#[derive(Debug, Default, Clone)]
pub struct Kept {
    /// Per app: its current release's slug and every slug kept for it.
    pub apps: BTreeMap<String, (Option<String>, BTreeSet<String>)>,
    /// Every kept slug (the apps' and those of parked deploys and running dynos).
    pub slugs: BTreeSet<String>,
    /// Artifacts of kept releases: the delta bases worth keeping (`mqtt/bases.rs`).
    pub bases: BTreeSet<String>,
    /// Buildpacks recorded by kept releases and named by apps now: what the git buildpack
    /// cache keeps (`build/buildpack/git_prune.rs`).
    pub buildpacks: Vec<roboku_wire::ReleaseBuildpack>,
    pub named_buildpacks: Vec<String>,
}

impl Engine {
    /// The keep set; `None` if the store cannot say (then nothing may be collected).
    pub(super) fn kept_slugs(&self) -> Option<Kept> {
        let keep_n = self.settings.keep_releases.max(1);
        let mut kept = Kept::default();
        let apps = match self.store.apps() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "slug gc: cannot list apps");
                return None;
            }
        };
        for app in apps {
            let releases = self.store.releases(&app.name).ok()?;
            let mut mine = BTreeSet::new();
            let mut keep = |r: &crate::store::ReleaseRow, kept: &mut Kept| {
                mine.insert(r.slug.clone());
                kept.buildpacks
                    .extend(r.buildpacks.iter().flatten().cloned());
            };
            for r in releases.iter().take(keep_n) {
                keep(r, &mut kept);
                kept.bases
                    .extend(r.artifact.as_ref().map(|a| a.sha256.clone()));
            }
            // The newest good one too: what a failing (or interrupted) rollout goes back to.
            if let Some(good) = releases.iter().find(|r| r.status == "succeeded") {
                keep(good, &mut kept);
            }
            let current_release = app
                .current_release
                .and_then(|v| releases.iter().find(|r| r.version == v));
            if let Some(r) = current_release {
                keep(r, &mut kept);
            }
            let current = current_release.map(|r| r.slug.clone());
            kept.named_buildpacks
                .extend(self.store.buildpacks(&app.name).unwrap_or_default());
            kept.slugs.extend(mine.iter().cloned());
            kept.apps.insert(app.name, (current, mine));
        }
        // Deploys waiting for their app's gates: their slug is not in a release yet.
        kept.slugs.extend(self.parked_slugs());
        // Slugs of running dynos are kept even if their release is old (a rollout in progress).
        for cache in self.apps.values() {
            if let Some(r) = &cache.release {
                kept.slugs.insert(r.slug.clone());
            }
        }
        Some(kept)
    }

    /// Deletes slugs no kept release refers to. Called after a release is committed, and at
    /// start (to finish what an agent killed mid-collection left).
    pub(super) fn gc_slugs(&mut self) {
        let Some(kept) = self.kept_slugs() else {
            return;
        };
        let bases = self.settings.bases_dir();
        let keep_bases = kept.bases;
        tokio::task::spawn_blocking(move || crate::mqtt::bases::prune(&bases, &keep_bases));
        self.prune_git_buildpacks(&kept.buildpacks, &kept.named_buildpacks);
        let keep = kept.slugs;
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

    /// The git buildpack cache keeps what kept releases and apps' settings name (off the engine).
    fn prune_git_buildpacks(&self, recorded: &[roboku_wire::ReleaseBuildpack], named: &[String]) {
        use crate::build::buildpack::{git_cache::GitCache, git_prune};
        let root = self.settings.git_buildpacks_dir();
        if !root.is_dir() {
            return;
        }
        let keep = git_prune::in_use(recorded, named.iter().map(String::as_str));
        let cache = GitCache {
            root,
            timeout: std::time::Duration::from_secs(self.settings.git_fetch_timeout_secs),
            build_tag: None,
        };
        tokio::task::spawn_blocking(move || {
            let pruned = git_prune::prune(&cache, &keep);
            if pruned != git_prune::Pruned::default() {
                tracing::info!(
                    checkouts = pruned.checkouts,
                    urls = pruned.urls,
                    bytes = pruned.bytes,
                    "pruned the git buildpack cache"
                );
            }
        });
    }
}
