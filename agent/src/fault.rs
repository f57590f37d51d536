//! Fault injection for the crash tests: with `ROBOKU_FAULT=<point>[:<n>]` in its environment,
//! robokud SIGKILLs itself the `n`-th time (default: the first) it reaches `<point>`, so a test
//! can crash the real binary at a chosen step. Without the variable a point costs one load.
//!
//! Points: `spawn.forked` (a dyno was forked, its pid not yet recorded), `release.created` (a
//! release was written, its rollout not begun), `rollout.switched` (dynos are being moved onto
//! the new release), `rollout.gated` (every check passed, the release not yet marked
//! succeeded), `rollout.failed` (a release was marked failed, the previous one not restored),
//! `gc.removing` (an unreferenced slug is about to be deleted), and the steps of `apps:rename`:
//! `rename.stopping` (the old dynos were sent SIGTERM), `rename.journaled` (the journal is
//! written, the store not changed), `rename.committed` (the store has the new name, no directory
//! moved), `rename.moved` (cache and git repository moved, the logs not), `rename.logs_moved`
//! (everything moved, the journal not removed, no dyno started). Data: `snapshot.copied` (a
//! snapshot copied, not yet renamed into place), `snapshot.replacing` (an older snapshot of that
//! version moved aside to `vN.old`, the new one not yet renamed to `vN`), `restore.journaled` (the restore journal
//! written, nothing swapped), `restore.swapped` (the data swapped, the old data not yet filed as
//! a snapshot), `restore.before_release` (swapped and filed, no rollback release made),
//! `restore.undoing` (the with-data rollback release failed and its dynos are down, the data of
//! the release before not yet swapped back). Add-ons:
//! `addon.recorded` (an add-on recorded and its server started, its config var not stored).
//! cgroups (v1): `cgroup.removing` (an instance's dir removed from the first hierarchy,
//! `memory`, not yet from the others).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

fn armed() -> &'static Option<(String, u64)> {
    ARMED.get_or_init(|| {
        let spec = std::env::var("ROBOKU_FAULT").ok()?;
        let (name, n) = match spec.rsplit_once(':') {
            Some((name, n)) => (name.to_string(), n.parse().unwrap_or(1)),
            None => (spec, 1),
        };
        Some((name, n.max(1)))
    })
}

/// Crashes the process here if `ROBOKU_FAULT` names this point and this is the chosen hit.
pub fn point(name: &str) {
    let Some((want, n)) = armed() else { return };
    if want != name {
        return;
    }
    if HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n {
        tracing::error!(point = name, "ROBOKU_FAULT: killing robokud with SIGKILL");
        // SAFETY: kill has no memory-safety preconditions; this is the point of the call.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
