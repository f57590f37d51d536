//! Desired state, pure: which entry wins for each app, whether it is due, and what must change
//! to get there. Observing what runs (engine calls) is the worker's business in `apply.rs`.
//!
//! Per app the entry with the highest version wins across the device's own doc and its groups'
//! docs (on a tie, the device's own doc). It is due when its version is not older than the last
//! version applied to the app (by a command or by desired state) and that version did not fail
//! already: a failed version is not retried until a newer one comes. Equal versions are due, so
//! a device that drifted (a local `roboku` change) is brought back on every reconnect.

use roboku_wire::fleet::topic::Address;
use roboku_wire::fleet::{Action, AppDesired, Artifact, DesiredDoc};
use roboku_wire::ConfigChange;
use std::collections::BTreeMap;

/// The winning entry per app, with the id of the doc it came from.
pub fn merge(
    docs: &BTreeMap<Address, DesiredDoc>,
    device: &Address,
) -> BTreeMap<String, (AppDesired, String)> {
    let mut out: BTreeMap<String, (AppDesired, String, bool)> = BTreeMap::new();
    for (addr, doc) in docs {
        let own = addr == device;
        for (app, entry) in &doc.apps {
            let better = match out.get(app) {
                None => true,
                Some((cur, _, cur_own)) => {
                    entry.version > cur.version || (entry.version == cur.version && own && !cur_own)
                }
            };
            if better {
                out.insert(app.clone(), (entry.clone(), doc.id.clone(), own));
            }
        }
    }
    out.into_iter()
        .map(|(k, (e, id, _))| (k, (e, id)))
        .collect()
}

pub fn due(version: u64, applied: Option<u64>, failed: Option<u64>) -> bool {
    applied.is_none_or(|a| version >= a) && failed != Some(version)
}

/// What an app looks like now, as far as desired state cares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub exists: bool,
    /// sha256 of the current release's slug.
    pub slug: Option<String>,
    /// The fleet artifact the current release was deployed from (from its description).
    pub artifact: Option<String>,
    pub formation: BTreeMap<String, u32>,
    pub config: BTreeMap<String, String>,
}

/// The changes, in the order they are made: one-shots, deploy, config, scale.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub create_app: bool,
    /// Rollbacks, restarts and stops this robot has not run yet, oldest first.
    pub once: Vec<Action>,
    pub deploy: Option<Artifact>,
    pub config: Option<ConfigChange>,
    pub scale: BTreeMap<String, u32>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        !self.create_app
            && self.once.is_empty()
            && self.deploy.is_none()
            && self.config.is_none()
            && self.scale.is_empty()
    }
}

/// The description of a release deployed from a fleet artifact, for people: the artifact itself
/// is kept in the release row (`ReleaseInfo::artifact`), atomically with it.
pub fn release_description(sha256: &str, version: Option<u64>) -> String {
    match version {
        Some(v) => format!("Fleet deploy of artifact {sha256} (fleet version {v})"),
        None => format!("Fleet deploy of artifact {sha256}"),
    }
}

/// What must change so `now` matches `want`. The running release is in sync when it was
/// deployed from the wanted artifact, or when its slug is the one this device built from that
/// artifact before (`slug_of_artifact`: an artifact's hash and its slug's tree hash differ, and
/// a local `roboku rollback` to that release counts too). One-shots run when they are newer than
/// `applied`, the last version this robot applied for the app; one whose body it cannot read is
/// skipped (it was signed, so it is a newer protocol's, and the rest still applies).
pub fn plan(
    want: &AppDesired,
    now: &Observed,
    slug_of_artifact: Option<&str>,
    applied: Option<u64>,
) -> Plan {
    let once = want
        .once
        .iter()
        .filter(|o| applied.is_none_or(|a| o.version > a))
        .filter_map(|o| o.action().ok())
        // A read is answered to whoever asked, once: never replayed from desired state.
        .filter(|a| !a.is_read())
        .collect();
    let deploy = want.release.as_ref().and_then(|a| {
        let in_sync = now.artifact.as_deref() == Some(a.sha256.as_str())
            || (slug_of_artifact.is_some() && now.slug.as_deref() == slug_of_artifact);
        (!in_sync).then(|| a.clone())
    });
    // A complete set unsets what it does not name; a patch unsets only what it names.
    let config = match (&want.config, &want.config_patch) {
        (Some(c), _) => {
            let unset = now.config.keys().filter(|k| !c.contains_key(*k));
            config_change(c, unset, &now.config)
        }
        (None, Some(p)) => config_change(&p.set, p.unset.iter(), &now.config),
        (None, None) => None,
    };
    let scale = want
        .formation
        .iter()
        .filter(|(t, n)| now.formation.get(*t).copied().unwrap_or(0) != **n)
        .map(|(t, n)| (t.clone(), *n))
        .collect();
    Plan {
        create_app: !now.exists,
        once,
        deploy,
        config,
        scale,
    }
}

/// The change that makes `now` hold `set` and none of `unset`; `None` when it already does.
fn config_change<'a>(
    set: &BTreeMap<String, String>,
    unset: impl Iterator<Item = &'a String>,
    now: &BTreeMap<String, String>,
) -> Option<ConfigChange> {
    let set: BTreeMap<String, String> = set
        .iter()
        .filter(|(k, v)| now.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let unset: Vec<String> = unset.filter(|k| now.contains_key(*k)).cloned().collect();
    (!set.is_empty() || !unset.is_empty()).then_some(ConfigChange { set, unset })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn art(sha: &str) -> Artifact {
        Artifact {
            url: "http://site/a.tar.gz".into(),
            sha256: sha.into(),
            size: 1,
            delta: None,
        }
    }

    fn doc(id: &str, to: &Address, apps: &[(&str, u64)]) -> DesiredDoc {
        DesiredDoc {
            v: 1,
            id: id.into(),
            ts: 0,
            expires: u64::MAX,
            to: to.as_path(),
            apps: apps
                .iter()
                .map(|(a, v)| {
                    (
                        a.to_string(),
                        AppDesired {
                            version: *v,
                            ..AppDesired::default()
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn highest_version_wins_and_the_device_wins_ties() {
        let me = Address::Device("r1".into());
        let lab = Address::Group("lab".into());
        let docs: BTreeMap<_, _> = [
            (me.clone(), doc("own", &me, &[("a", 5), ("b", 1)])),
            (
                lab.clone(),
                doc("grp", &lab, &[("a", 5), ("b", 2), ("c", 1)]),
            ),
        ]
        .into();
        let m = merge(&docs, &me);
        assert_eq!(m["a"].1, "own");
        assert_eq!(m["b"].1, "grp");
        assert_eq!(m["c"].0.version, 1);
    }

    #[test]
    fn due_rules() {
        assert!(due(5, None, None));
        assert!(due(5, Some(5), None), "equal versions re-converge drift");
        assert!(!due(4, Some(5), None), "stale");
        assert!(!due(5, Some(5), Some(5)), "failed versions are not retried");
        assert!(due(6, Some(5), Some(5)));
    }

    #[test]
    fn plan_deploys_only_when_the_slug_differs() {
        let want = AppDesired {
            version: 1,
            release: Some(art("aa")),
            ..AppDesired::default()
        };
        let mut now = Observed {
            exists: true,
            slug: Some("s1".into()),
            ..Observed::default()
        };
        assert_eq!(
            plan(&want, &now, None, None).deploy,
            Some(art("aa")),
            "never built here"
        );
        assert_eq!(
            plan(&want, &now, Some("s2"), None).deploy,
            Some(art("aa")),
            "built, not running"
        );
        now.slug = Some("s2".into());
        assert!(plan(&want, &now, Some("s2"), None).is_empty());
        assert!(plan(&want, &Observed::default(), None, None).create_app);
        // Known from the release's own description, without any slug mapping.
        let from_release = Observed {
            exists: true,
            slug: Some("s9".into()),
            artifact: Some("aa".into()),
            ..Observed::default()
        };
        assert!(plan(&want, &from_release, None, None).is_empty());
    }

    #[test]
    fn plan_config_is_the_complete_set_and_formation_only_named_types() {
        let want = AppDesired {
            version: 1,
            config: Some([("A".to_string(), "1".to_string()), ("B".into(), "2".into())].into()),
            formation: [("web".to_string(), 2)].into(),
            ..AppDesired::default()
        };
        let now = Observed {
            exists: true,
            slug: None,
            artifact: None,
            formation: [("web".to_string(), 1), ("worker".to_string(), 3)].into(),
            config: [("A".to_string(), "1".to_string()), ("C".into(), "x".into())].into(),
        };
        let p = plan(&want, &now, None, None);
        let c = p.config.unwrap();
        assert_eq!(c.set, [("B".to_string(), "2".to_string())].into());
        assert_eq!(c.unset, vec!["C".to_string()]);
        assert_eq!(p.scale, [("web".to_string(), 2)].into());
        assert_eq!(p.deploy, None);
    }

    #[test]
    fn a_config_patch_sets_and_unsets_only_the_named_vars() {
        let mut want = AppDesired {
            version: 1,
            ..AppDesired::default()
        };
        want.apply_config(&ConfigChange {
            set: [("A".to_string(), "1".to_string())].into(),
            unset: vec!["C".into()],
        });
        want.apply_config(&ConfigChange {
            set: [("B".to_string(), "2".to_string())].into(),
            unset: vec!["A".into()],
        });
        let now = Observed {
            exists: true,
            config: [("A".to_string(), "1".to_string()), ("D".into(), "x".into())].into(),
            ..Observed::default()
        };
        let c = plan(&want, &now, None, None).config.unwrap();
        assert_eq!(c.set, [("B".to_string(), "2".to_string())].into());
        assert_eq!(
            c.unset,
            vec!["A".to_string()],
            "D is left alone, C is absent already"
        );
        let done = Observed {
            exists: true,
            config: [("B".to_string(), "2".to_string()), ("D".into(), "x".into())].into(),
            ..Observed::default()
        };
        assert!(plan(&want, &done, None, None).is_empty());
    }

    #[test]
    fn one_shots_run_once_newer_than_what_was_applied() {
        use roboku_wire::{RollbackRequest, TargetRequest};
        let mut want = AppDesired {
            version: 30,
            release: Some(art("aa")),
            config: Some(BTreeMap::new()),
            ..AppDesired::default()
        };
        let restart = Action::Restart(TargetRequest { target: None });
        want.push_once(10, &restart);
        want.push_once(
            20,
            &Action::Rollback(RollbackRequest {
                version: Some(3),
                with_data: false,
            }),
        );
        assert_eq!(want.release, None, "a rollback is not undone by a redeploy");
        assert_eq!(want.config, None);
        let now = Observed {
            exists: true,
            ..Observed::default()
        };
        assert_eq!(plan(&want, &now, None, None).once.len(), 2);
        assert_eq!(
            plan(&want, &now, None, Some(10)).once,
            vec![Action::Rollback(RollbackRequest {
                version: Some(3),
                with_data: false,
            })]
        );
        assert!(plan(&want, &now, None, Some(20)).is_empty());
        want.set_release(art("bb"));
        assert!(
            want.once.is_empty(),
            "a deploy supersedes earlier one-shots"
        );
        for v in 0..40 {
            want.push_once(v, &restart);
        }
        assert_eq!(want.once.len(), roboku_wire::fleet::MAX_ONE_SHOTS);
        assert_eq!(
            want.once[0].version,
            40 - roboku_wire::fleet::MAX_ONE_SHOTS as u64
        );
    }
}
