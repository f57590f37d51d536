//! `roboku disk`: what uses the data dir. Sizes are counted here, off the engine (a walk of a
//! big slug store must never hold up supervision); the engine only says what slug GC keeps.

use crate::deploy::tree_size;
use crate::engine::Kept;
use crate::settings::Settings;
use roboku_wire::{DiskReport, DiskRow};

/// Walks the data dir (blocking: run it in `spawn_blocking`).
pub fn report(settings: &Settings, kept: &Kept) -> DiskReport {
    let (free, total) = super::space(&settings.data_dir).unwrap_or((0, 0));
    let mut rows = Vec::new();
    let mut row = |what: &str, app: Option<&str>, bytes: u64| {
        rows.push(DiskRow {
            what: what.into(),
            app: app.map(str::to_string),
            bytes,
        });
        bytes
    };
    let slugs = settings.slugs_dir();
    let mut counted = 0u64;
    let mut seen = std::collections::BTreeSet::new();
    for (app, (current, mine)) in &kept.apps {
        if let Some(cur) = current {
            if seen.insert(cur.clone()) {
                counted += row("slug", Some(app), tree_size(&slugs.join(cur)));
            }
        }
        let rollback: u64 = mine
            .iter()
            .filter(|s| seen.insert((*s).clone()))
            .map(|s| tree_size(&slugs.join(s)))
            .sum();
        counted += row("rollback slugs", Some(app), rollback);
        counted += row(
            "build cache",
            Some(app),
            tree_size(&settings.cache_dir(app)),
        );
        counted += row("logs", Some(app), tree_size(&settings.logs_dir().join(app)));
        counted += row("data", Some(app), tree_size(&settings.app_data_dir(app)));
        counted += row(
            "data snapshots",
            Some(app),
            tree_size(&settings.data_snapshots_dir(app)),
        );
        counted += row(
            "add-on backups",
            Some(app),
            tree_size(&settings.backups_dir().join(app)),
        );
    }
    let (mut gc_slugs, mut gc_bytes, mut other_slugs) = (0u32, 0u64, 0u64);
    for e in std::fs::read_dir(&slugs).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if seen.contains(&name) {
            continue;
        }
        let n = tree_size(&e.path());
        if name.len() == 64 && !kept.slugs.contains(&name) {
            gc_slugs += 1;
            gc_bytes += n;
        } else {
            other_slugs += n;
        }
    }
    counted += row("unreferenced slugs", None, gc_bytes);
    counted += row(
        "slugs of running dynos and parked deploys",
        None,
        other_slugs,
    );
    counted += row("delta bases", None, tree_size(&settings.bases_dir()));
    counted += row(
        "buildpack git cache",
        None,
        tree_size(&settings.git_buildpacks_dir()),
    );
    let store: u64 = ["", "-wal", "-shm"]
        .iter()
        .map(|s| {
            tree_size(std::path::Path::new(&format!(
                "{}{s}",
                settings.db_path().display()
            )))
        })
        .sum();
    counted += row("store", None, store);
    counted += row("tmp", None, tree_size(&settings.tmp_dir()));
    counted += row(
        "ballast",
        None,
        tree_size(&settings.data_dir.join("reserve")),
    );
    let all = tree_size(&settings.data_dir);
    row("other", None, all.saturating_sub(counted));
    DiskReport {
        data_dir: settings.data_dir.display().to_string(),
        total,
        free,
        reserve: settings.disk_reserve.to_string(),
        reserved: settings.disk_reserve.bytes(total),
        rows,
        gc_slugs,
        gc_bytes,
    }
}
