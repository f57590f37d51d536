//! Start: finding again what the previous robokud left running. Dynos whose recorded process
//! (pid and start time, or the tag of the instance being spawned) is still there are re-adopted;
//! every other process carrying this agent's tag and every other instance cgroup in roboku's
//! subtree is killed before anything new starts, so nothing runs that the store does not know
//! (and no leaked dyno holds the `$PORT` of its replacement). Then every app is reconciled.

use super::dyno::{Dyno, Proc, Want};
use super::Engine;
use crate::supervisor::orphans::{self, Tagged};
use crate::supervisor::{procfs, spawn};
use roboku_wire::DynoState;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How long start waits for killed leftovers to be gone (they free their ports as they die).
const KILL_WAIT: Duration = Duration::from_secs(5);

impl Engine {
    /// Re-adopts dynos that outlived the previous robokud, kills what it cannot account for,
    /// marks the rest for restart, then reconciles every app.
    pub(super) fn adopt_and_reconcile(&mut self) {
        let apps = match self.store.apps() {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "cannot list apps at start");
                return;
            }
        };
        for app in &apps {
            self.refresh_app(&app.name);
        }
        let rows = self.store.dynos().unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read dyno records; starting fresh");
            Vec::new()
        });
        let tagged = orphans::scan(&self.settings.data_dir);
        let mut adopted = 0;
        let mut dead = Vec::new();
        for row in rows {
            let key = (row.app.clone(), row.name.clone());
            let Some((ptype, index)) = super::dyno::parse_name(&row.name) else {
                continue;
            };
            if !self.apps.contains_key(&row.app) {
                self.gone.push(key);
                continue;
            }
            let mut d = Dyno::new(
                &row.app,
                ptype,
                index,
                row.port,
                row.release,
                row.started_at,
            );
            d.restarts = row.restarts;
            d.last_exit = row.last_exit.clone();
            d.user = self
                .apps
                .get(&row.app)
                .map(|c| c.user_name.clone())
                .unwrap_or_default();
            // The recorded process, or else the one forked for the recorded instance before the
            // previous agent could note its pid.
            let recorded = row
                .pid
                .filter(|&pid| row.pid_start.is_some() && procfs::start_time(pid) == row.pid_start)
                .map(|pid| (pid, row.pid_start, row.cgroup.clone()));
            let forked = || {
                let tag = row.instance.as_deref()?;
                let t = tagged.iter().find(|t| t.instance == tag && t.is_leader())?;
                let cgroup = self.cgroups.pids(tag).ok().map(|_| tag.to_string());
                Some((t.pid, t.start_time, cgroup))
            };
            let found = recorded.or_else(forked);
            match found.map(|(pid, start, cgroup)| (pid, start, cgroup, spawn::pidfd_open(pid))) {
                Some((pid, start_time, cgroup, Ok(fd))) => {
                    self.next_instance += 1;
                    let instance = self.next_instance;
                    d.proc = Some(Proc {
                        pid,
                        start_time,
                        cgroup,
                        instance,
                        tag: row.instance.clone(),
                        started: Instant::now(),
                        adopted: true,
                        health: None,
                    });
                    d.state = DynoState::Up;
                    self.logs.watch(&row.app, &row.name);
                    self.logs.system(
                        &row.app,
                        &row.name,
                        format!("Re-adopted running process (pid {pid})"),
                    );
                    self.watch_exit(key.clone(), instance, pid, fd);
                    self.spare_later(&key, instance);
                    adopted += 1;
                }
                _ => dead.push(key.clone()),
            }
            self.dynos.insert(key.clone(), d);
            self.dirty.insert(key);
        }
        tracing::info!(adopted, "re-adopted dynos from the previous robokud");
        self.kill_leftovers(tagged);
        let names: Vec<String> = apps.into_iter().map(|a| a.name).collect();
        let handled = self.finish_interrupted(&names);
        for app in names.iter().filter(|a| !handled.contains(*a)) {
            self.reconcile(app);
        }
        // Dynos that died while no robokud was watching and that reconcile left alone (same
        // release, still wanted): start them again.
        for key in dead {
            let idle = self
                .dynos
                .get(&key)
                .is_some_and(|d| d.proc.is_none() && d.want == Want::Run);
            if idle {
                self.start_dyno(&key);
            }
        }
        self.gc_slugs();
    }

    /// Kills every tagged process and every instance cgroup no adopted dyno accounts for, and
    /// waits (bounded) until they are gone.
    fn kill_leftovers(&mut self, tagged: Vec<Tagged>) {
        let procs: Vec<&Proc> = self
            .dynos
            .values()
            .filter_map(|d| d.proc.as_ref())
            .collect();
        let kept_tags: BTreeSet<&str> = procs.iter().filter_map(|p| p.tag.as_deref()).collect();
        let kept_groups: BTreeSet<&str> =
            procs.iter().filter_map(|p| p.cgroup.as_deref()).collect();
        let strays: Vec<Tagged> = tagged
            .into_iter()
            .filter(|t| !kept_tags.contains(t.instance.as_str()))
            .collect();
        let mut groups = Vec::new();
        for app in self.cgroups.children("") {
            for inst in self.cgroups.children(&app) {
                let rel = format!("{app}/{inst}");
                if is_instance_dir(&inst) && !kept_groups.contains(rel.as_str()) {
                    groups.push(rel);
                }
            }
        }
        if !strays.is_empty() {
            let names: BTreeSet<&str> = strays.iter().map(|t| t.instance.as_str()).collect();
            tracing::warn!(
                processes = strays.len(),
                instances = ?names,
                "killing processes an earlier robokud started but never recorded"
            );
            let left = orphans::kill_and_wait(&strays, KILL_WAIT);
            if !left.is_empty() {
                tracing::error!(pids = ?left, "leftover processes survived SIGKILL");
            }
        }
        let me = std::process::id() as i32;
        for rel in groups {
            if self.cgroups.pids(&rel).is_ok_and(|p| p.contains(&me)) {
                continue;
            }
            if let Err(e) = self
                .cgroups
                .kill_all(&rel)
                .and_then(|()| self.cgroups.remove(&rel))
            {
                tracing::warn!(cgroup = %rel, error = %e, "cleaning up a leftover cgroup failed");
            }
        }
    }
}

/// `web.1@17`: an instance cgroup (the only kind the start sweep removes).
fn is_instance_dir(name: &str) -> bool {
    name.rsplit_once('@').is_some_and(|(dyno, n)| {
        !dyno.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_instance_dirs_are_swept() {
        assert!(super::is_instance_dir("web.1@17"));
        assert!(!super::is_instance_dir("web.1"));
        assert!(!super::is_instance_dir("builds"));
        assert!(!super::is_instance_dir("@1"));
        assert!(!super::is_instance_dir("web.1@x"));
    }
}
