//! Desired state, pure: which entry wins for each app, whether it is due, and what must change
//! to get there. Observing what runs (engine calls) is the worker's business in `apply.rs`.
//!
//! Per app the entry with the highest version wins across the device's own doc and its groups'
//! docs (on a tie, the device's own doc). It is due when its version is not older than the last
//! version applied to the app (by a command or by desired state) and that version did not fail
//! already: a failed version is not retried until a newer one comes. Equal versions are due, so
//! a device that drifted (a local `roboku` change) is brought back on every reconnect.

use roboku_wire::fleet::topic::Address;
use roboku_wire::fleet::{AppDesired, Artifact, DesiredDoc};
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

/// The changes, in the order they are made: deploy, then config, then scale.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub create_app: bool,
    pub deploy: Option<Artifact>,
    pub config: Option<ConfigChange>,
    pub scale: BTreeMap<String, u32>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        !self.create_app && self.deploy.is_none() && self.config.is_none() && self.scale.is_empty()
    }
}

/// The description of a release deployed from a fleet artifact. It records the artifact's
/// sha256 in the release itself (in the store, atomically with it), so an agent restarted in the
/// middle of a rollout still knows where its current release came from.
pub fn release_description(sha256: &str, version: Option<u64>) -> String {
    match version {
        Some(v) => format!("{FLEET_DEPLOY}{sha256} (fleet version {v})"),
        None => format!("{FLEET_DEPLOY}{sha256}"),
    }
}

const FLEET_DEPLOY: &str = "Fleet deploy of artifact ";

/// The artifact sha256 in a description made by [`release_description`].
pub fn artifact_of_description(d: &str) -> Option<String> {
    let sha = d.strip_prefix(FLEET_DEPLOY)?.get(..64)?;
    sha.bytes()
        .all(|b| b.is_ascii_hexdigit())
        .then(|| sha.to_string())
}

/// What must change so `now` matches `want`. The running release is in sync when it was
/// deployed from the wanted artifact, or when its slug is the one this device built from that
/// artifact before (`slug_of_artifact`: an artifact's hash and its slug's tree hash differ, and
/// a local `roboku rollback` to that release counts too).
pub fn plan(want: &AppDesired, now: &Observed, slug_of_artifact: Option<&str>) -> Plan {
    let deploy = want.release.as_ref().and_then(|a| {
        let in_sync = now.artifact.as_deref() == Some(a.sha256.as_str())
            || (slug_of_artifact.is_some() && now.slug.as_deref() == slug_of_artifact);
        (!in_sync).then(|| a.clone())
    });
    let config = want.config.as_ref().and_then(|c| {
        let set: BTreeMap<String, String> = c
            .iter()
            .filter(|(k, v)| now.config.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let unset: Vec<String> = now
            .config
            .keys()
            .filter(|k| !c.contains_key(*k))
            .cloned()
            .collect();
        (!set.is_empty() || !unset.is_empty()).then_some(ConfigChange { set, unset })
    });
    let scale = want
        .formation
        .iter()
        .filter(|(t, n)| now.formation.get(*t).copied().unwrap_or(0) != **n)
        .map(|(t, n)| (t.clone(), *n))
        .collect();
    Plan {
        create_app: !now.exists,
        deploy,
        config,
        scale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn art(sha: &str) -> Artifact {
        Artifact {
            url: "http://site/a.tar.gz".into(),
            sha256: sha.into(),
            size: 1,
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
            plan(&want, &now, None).deploy,
            Some(art("aa")),
            "never built here"
        );
        assert_eq!(
            plan(&want, &now, Some("s2")).deploy,
            Some(art("aa")),
            "built, not running"
        );
        now.slug = Some("s2".into());
        assert!(plan(&want, &now, Some("s2")).is_empty());
        assert!(plan(&want, &Observed::default(), None).create_app);
        // Known from the release's own description, without any slug mapping.
        let from_release = Observed {
            exists: true,
            slug: Some("s9".into()),
            artifact: Some("aa".into()),
            ..Observed::default()
        };
        assert!(plan(&want, &from_release, None).is_empty());
    }

    #[test]
    fn descriptions_carry_the_artifact() {
        let sha = "0123456789abcdef".repeat(4);
        assert_eq!(
            artifact_of_description(&release_description(&sha, Some(5))),
            Some(sha.clone())
        );
        assert_eq!(
            artifact_of_description(&release_description(&sha, None)),
            Some(sha)
        );
        assert_eq!(artifact_of_description("Deploy /tmp/x"), None);
        assert_eq!(artifact_of_description("Fleet deploy of artifact zz"), None);
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
        let p = plan(&want, &now, None);
        let c = p.config.unwrap();
        assert_eq!(c.set, [("B".to_string(), "2".to_string())].into());
        assert_eq!(c.unset, vec!["C".to_string()]);
        assert_eq!(p.scale, [("web".to_string(), 2)].into());
        assert_eq!(p.deploy, None);
    }
}
