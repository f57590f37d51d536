//! Start order between process types (`roboku.formation.TYPE.after` in `app.json`), pure: which
//! types a type still waits for, and whether an order can ever be satisfied (no unknown type, no
//! cycle). The engine asks [`waiting_for`] before it starts a dyno, and [`stop_waits`] before it
//! stops several (dependents first); this module never looks at processes or the clock.

use std::collections::{BTreeMap, BTreeSet};

/// The types of `after` that are not up yet, in the order they were named.
pub fn waiting_for(after: &[String], up: impl Fn(&str) -> bool) -> Vec<&str> {
    after
        .iter()
        .map(String::as_str)
        .filter(|t| !up(t))
        .collect()
}

/// Stop order, the start order reversed: for each dyno `(name, type)` of `batch` (dynos about
/// to be stopped), the dynos of `stopping` (the batch and those already on their way down) that
/// it must outlive, i.e. those of types that start `after` its type. A type waits only for its
/// direct dependents: they wait for theirs in turn, so a chain stops from its end.
pub fn stop_waits<'a>(
    batch: &'a [(String, String)],
    stopping: &'a [(String, String)],
    after: impl Fn(&str) -> &'a [String],
) -> BTreeMap<&'a str, Vec<&'a str>> {
    batch
        .iter()
        .map(|(name, ptype)| {
            let waits = stopping
                .iter()
                .filter(|(other, t)| other != name && after(t).iter().any(|a| a == ptype))
                .map(|(other, _)| other.as_str())
                .collect();
            (name.as_str(), waits)
        })
        .collect()
}

/// Refuses an order that names a type the Procfile does not define, or that can never start
/// because types wait for each other. Errors name the `app.json` path and the cycle.
pub fn check(
    after: &BTreeMap<String, Vec<String>>,
    types: &BTreeSet<String>,
) -> Result<(), String> {
    let known = || types.iter().cloned().collect::<Vec<_>>().join(", ");
    for (ptype, deps) in after {
        if !types.contains(ptype) {
            return Err(format!(
                "app.json: roboku.formation.{ptype}: no process type {ptype:?} in the Procfile \
                 (types: {})",
                known()
            ));
        }
        for dep in deps {
            if !types.contains(dep) {
                return Err(format!(
                    "app.json: roboku.formation.{ptype}.after: no process type {dep:?} in the \
                     Procfile (types: {})",
                    known()
                ));
            }
        }
    }
    // Depth-first, keeping the path: a type met again on its own path closes a cycle.
    let mut done = BTreeSet::new();
    for start in after.keys() {
        let mut path = Vec::new();
        if let Some(cycle) = visit(start, after, &mut path, &mut done) {
            return Err(format!(
                "app.json: roboku.formation: the start order has a cycle: {} (no type of it \
                 could ever start)",
                cycle.join(" -> ")
            ));
        }
    }
    Ok(())
}

fn visit<'a>(
    ptype: &'a str,
    after: &'a BTreeMap<String, Vec<String>>,
    path: &mut Vec<&'a str>,
    done: &mut BTreeSet<&'a str>,
) -> Option<Vec<String>> {
    if let Some(at) = path.iter().position(|p| *p == ptype) {
        let mut cycle: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
        cycle.push(ptype.to_string());
        return Some(cycle);
    }
    if done.contains(ptype) {
        return None;
    }
    path.push(ptype);
    for dep in after.get(ptype).into_iter().flatten() {
        if let Some(cycle) = visit(dep, after, path, done) {
            return Some(cycle);
        }
    }
    path.pop();
    done.insert(ptype);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_go_dependents_first_along_the_chain() {
        // nav after worker, worker after broker; web is free.
        let after = order(&[("nav", &["worker"]), ("worker", &["broker", "web"])]);
        let of = |t: &str| after.get(t).map(Vec::as_slice).unwrap_or(&[]);
        let d = |n: &str, t: &str| (n.to_string(), t.to_string());
        let batch = vec![
            d("broker.1", "broker"),
            d("nav.1", "nav"),
            d("web.1", "web"),
            d("worker.1", "worker"),
            d("worker.2", "worker"),
        ];
        let w = stop_waits(&batch, &batch, of);
        assert_eq!(w["broker.1"], ["worker.1", "worker.2"]);
        assert_eq!(w["web.1"], ["worker.1", "worker.2"]);
        assert_eq!(w["worker.1"], ["nav.1"]);
        assert!(w["nav.1"].is_empty(), "the end of the chain goes first");
        // Stopping only the broker: its running dependents are not being stopped, so it goes
        // at once.
        let only = vec![d("broker.1", "broker")];
        assert!(stop_waits(&only, &only, of)["broker.1"].is_empty());
        // A dependent already on its way down is waited for.
        let down = vec![d("broker.1", "broker"), d("worker.1", "worker")];
        assert_eq!(stop_waits(&only, &down, of)["broker.1"], ["worker.1"]);
    }

    fn order(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(t, deps)| (t.to_string(), deps.iter().map(|d| d.to_string()).collect()))
            .collect()
    }
    fn types(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_type_waits_only_for_what_is_not_up() {
        let after = vec!["broker".to_string(), "web".to_string()];
        assert_eq!(waiting_for(&after, |_| false), ["broker", "web"]);
        assert_eq!(waiting_for(&after, |t| t == "broker"), ["web"]);
        assert!(waiting_for(&after, |_| true).is_empty());
        assert!(waiting_for(&[], |_| false).is_empty());
    }

    #[test]
    fn chains_and_diamonds_are_fine() {
        let t = types(&["web", "worker", "broker", "nav"]);
        let o = order(&[
            ("nav", &["broker", "web"]),
            ("web", &["broker"]),
            ("worker", &["web", "broker"]),
        ]);
        assert_eq!(check(&o, &t), Ok(()));
        assert_eq!(check(&BTreeMap::new(), &t), Ok(()));
    }

    #[test]
    fn cycles_are_refused_with_the_cycle_named() {
        let t = types(&["a", "b", "c", "d"]);
        let e = check(&order(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])]), &t).unwrap_err();
        assert!(e.contains("app.json: roboku.formation"), "{e}");
        assert!(e.contains("a -> b -> c -> a"), "{e}");
        let e = check(&order(&[("d", &["d"])]), &t).unwrap_err();
        assert!(e.contains("d -> d"), "{e}");
        // A cycle reached from a type outside it names only the cycle.
        let e = check(&order(&[("a", &["b"]), ("b", &["c"]), ("c", &["b"])]), &t).unwrap_err();
        assert!(e.contains(": b -> c -> b"), "{e}");
    }

    #[test]
    fn unknown_types_are_refused_with_the_path() {
        let t = types(&["web", "worker"]);
        let e = check(&order(&[("worker", &["brokr"])]), &t).unwrap_err();
        assert!(
            e.contains("roboku.formation.worker.after: no process type \"brokr\""),
            "{e}"
        );
        assert!(e.contains("(types: web, worker)"), "{e}");
        let e = check(&order(&[("clock", &["web"])]), &t).unwrap_err();
        assert!(e.contains("roboku.formation.clock: no process type"), "{e}");
    }
}
