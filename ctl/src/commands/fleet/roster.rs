//! The fleet as the broker remembers it: retained `status` and `reported` per device, folded
//! into one row per robot. Pure: the messages go in, rows come out.

use roboku_wire::fleet::topic::{self, Address, Topic};
use roboku_wire::fleet::{DeviceStatus, Presence, Reported};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Robot {
    pub status: Option<DeviceStatus>,
    pub reported: Option<Reported>,
}

impl Robot {
    pub fn online(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.state == Presence::Online)
    }
    pub fn groups(&self) -> &[String] {
        match (&self.status, &self.reported) {
            (Some(s), _) => &s.groups,
            (None, Some(r)) => &r.groups,
            _ => &[],
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Roster {
    pub robots: BTreeMap<String, Robot>,
}

impl Roster {
    /// Folds one message in; anything that is not a status or reported message is ignored.
    /// A status from an older session never replaces a newer one (a late Last Will).
    pub fn add(&mut self, topic_name: &str, payload: &[u8]) {
        match topic::parse(topic_name) {
            Some(Topic::Status(d)) => {
                let Ok(s) = serde_json::from_slice::<DeviceStatus>(payload) else {
                    return;
                };
                let r = self.robots.entry(d).or_default();
                if r.status.as_ref().is_none_or(|old| s.session >= old.session) {
                    r.status = Some(s);
                }
            }
            Some(Topic::Reported(d)) => {
                if let Ok(rep) = serde_json::from_slice::<Reported>(payload) {
                    self.robots.entry(d).or_default().reported = Some(rep);
                }
            }
            _ => {}
        }
    }

    /// Robots an address reaches: the device itself, or every robot listing the group.
    pub fn members(&self, addr: &Address) -> Vec<String> {
        match addr {
            Address::Device(d) => vec![d.clone()],
            Address::Group(g) => self
                .robots
                .iter()
                .filter(|(_, r)| r.groups().iter().any(|x| x == g))
                .map(|(d, _)| d.clone())
                .collect(),
        }
    }

    pub fn is_online(&self, device: &str) -> bool {
        self.robots.get(device).is_some_and(Robot::online)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(device: &str, state: Presence, session: u64, groups: &[&str]) -> Vec<u8> {
        serde_json::to_vec(&DeviceStatus {
            device: device.into(),
            state,
            session,
            ts: 0,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            agent_version: "0".into(),
            allow_unsigned: false,
        })
        .unwrap()
    }

    #[test]
    fn members_and_late_wills() {
        let mut r = Roster::default();
        r.add(
            &topic::status("r1"),
            &status("r1", Presence::Online, 5, &["lab"]),
        );
        r.add(
            &topic::status("r2"),
            &status("r2", Presence::Offline, 2, &["lab", "yard"]),
        );
        r.add(
            &topic::status("r3"),
            &status("r3", Presence::Online, 1, &["yard"]),
        );
        // A Will from session 4 after the online of session 5: ignored.
        r.add(
            &topic::status("r1"),
            &status("r1", Presence::Offline, 4, &["lab"]),
        );
        r.add("rk/v1/d/r1/ack", b"{}");
        assert_eq!(r.members(&Address::Group("lab".into())), vec!["r1", "r2"]);
        assert!(r.is_online("r1"));
        assert!(!r.is_online("r2"));
        assert_eq!(r.members(&Address::Device("zz".into())), vec!["zz"]);
    }
}
