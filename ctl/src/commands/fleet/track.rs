//! Following commands through their acks, pure: which robots answered what, who is done, who
//! failed, and the line to print for each ack.

use roboku_wire::fleet::{Ack, AckStatus};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub struct Tracker {
    /// Command ids (and payload refs) we sent.
    ours: BTreeSet<String>,
    /// Robots we wait for.
    expected: BTreeSet<String>,
    /// Latest status per robot (final ones stick).
    pub state: BTreeMap<String, AckStatus>,
}

impl Tracker {
    pub fn watch(&mut self, id: &str, reference: &str, devices: &[String]) {
        self.ours.insert(id.to_string());
        self.ours.insert(reference.to_string());
        self.expected.extend(devices.iter().cloned());
    }

    /// Takes an ack in; returns it when it is about one of our commands (and is news).
    pub fn add(&mut self, ack: &Ack) -> bool {
        let ours = ack.id.as_ref().is_some_and(|i| self.ours.contains(i))
            || self.ours.contains(&ack.reference);
        if !ours {
            return false;
        }
        let cur = self.state.get(&ack.device);
        if cur.is_some_and(|s| s.is_final()) {
            // A later REJECTED duplicate (a QoS 1 redelivery) does not undo a SUCCEEDED.
            return false;
        }
        self.expected.insert(ack.device.clone());
        self.state.insert(ack.device.clone(), ack.status);
        true
    }

    pub fn done(&self) -> bool {
        self.expected
            .iter()
            .all(|d| self.state.get(d).is_some_and(|s| s.is_final()))
    }

    pub fn succeeded(&self) -> Vec<String> {
        self.with(|s| s == Some(AckStatus::Succeeded))
    }
    pub fn failed(&self) -> Vec<String> {
        self.with(|s| s.is_some_and(|s| s.is_final() && s != AckStatus::Succeeded))
    }
    /// Expected robots with no final answer.
    pub fn missing(&self) -> Vec<String> {
        self.with(|s| !s.is_some_and(|s| s.is_final()))
    }

    fn with(&self, f: impl Fn(Option<AckStatus>) -> bool) -> Vec<String> {
        self.expected
            .iter()
            .filter(|d| f(self.state.get(*d).copied()))
            .cloned()
            .collect()
    }
}

/// One human line (plus log tail lines) for an ack.
pub fn line(ack: &Ack) -> String {
    let d = &ack.details;
    let mut s = format!("{:<20} {}", ack.device, ack.status.as_str());
    if let Some(step) = &d.step {
        s.push_str(&format!(" {step}"));
    }
    if let Some(r) = d.release {
        s.push_str(&format!(" (release v{r})"));
    }
    if let Some(reason) = &d.reason {
        s.push_str(&format!(": {reason}"));
    }
    for l in &d.log_tail {
        s.push_str(&format!("\n    {l}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use roboku_wire::fleet::AckDetails;

    fn ack(device: &str, id: &str, status: AckStatus) -> Ack {
        Ack {
            id: Some(id.into()),
            reference: "ref".into(),
            device: device.into(),
            ts: 0,
            seq: 0,
            status,
            details: AckDetails::default(),
        }
    }

    #[test]
    fn follows_our_commands_only() {
        let mut t = Tracker::default();
        t.watch("c1", "r1ref", &["a".into(), "b".into()]);
        assert!(!t.add(&ack("a", "other", AckStatus::Succeeded)));
        assert!(t.add(&ack("a", "c1", AckStatus::Accepted)));
        assert!(!t.done());
        assert!(t.add(&ack("a", "c1", AckStatus::Succeeded)));
        assert!(
            !t.add(&ack("a", "c1", AckStatus::Rejected)),
            "duplicate after final"
        );
        assert_eq!(t.missing(), vec!["b"]);
        t.add(&ack("b", "c1", AckStatus::Failed));
        // An unexpected robot that answers is followed too.
        t.add(&ack("c", "c1", AckStatus::Accepted));
        assert!(!t.done());
        t.add(&ack("c", "c1", AckStatus::Succeeded));
        assert!(t.done());
        assert_eq!(t.succeeded(), vec!["a", "c"]);
        assert_eq!(t.failed(), vec!["b"]);
    }

    #[test]
    fn a_rejection_without_id_matches_by_ref() {
        let mut t = Tracker::default();
        t.watch("c1", "r1ref", &["a".into()]);
        let mut a = ack("a", "x", AckStatus::Rejected);
        a.id = None;
        a.reference = "r1ref".into();
        assert!(t.add(&a));
        assert!(t.done());
    }
}
