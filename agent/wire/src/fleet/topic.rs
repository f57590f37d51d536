//! Topic names. Everything lives under `rk/v1/`; `d/<device>` addresses one device and
//! `g/<group>` every device in a group.
//!
//! | topic                       | direction       | QoS | retained |
//! |-----------------------------|-----------------|-----|----------|
//! | `rk/v1/d/<device>/cmd`      | fleet -> device | 1   | no       |
//! | `rk/v1/g/<group>/cmd`       | fleet -> group  | 1   | no       |
//! | `rk/v1/d/<device>/desired`  | fleet -> device | 1   | yes      |
//! | `rk/v1/g/<group>/desired`   | fleet -> group  | 1   | yes      |
//! | `rk/v1/d/<device>/ack`      | device -> fleet | 1   | no       |
//! | `rk/v1/d/<device>/reported` | device -> fleet | 1   | yes      |
//! | `rk/v1/d/<device>/status`   | device -> fleet | 1   | yes (+ Last Will) |
//! | `rk/v1/d/<device>/telemetry`| device -> fleet | 0   | no       |
//! | `rk/v1/d/<device>/logs`     | device -> fleet | 1   | no (answers to `logs` commands) |

/// The namespace prefix (protocol version 1).
pub const ROOT: &str = "rk/v1";

/// Who a command or desired doc is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Address {
    Device(String),
    Group(String),
}

impl Address {
    /// `d/<device>` or `g/<group>`: the form used in topics and in an envelope's `to`.
    pub fn as_path(&self) -> String {
        match self {
            Address::Device(d) => format!("d/{d}"),
            Address::Group(g) => format!("g/{g}"),
        }
    }
    pub fn cmd(&self) -> String {
        format!("{ROOT}/{}/cmd", self.as_path())
    }
    pub fn desired(&self) -> String {
        format!("{ROOT}/{}/desired", self.as_path())
    }
}

pub fn ack(device: &str) -> String {
    format!("{ROOT}/d/{device}/ack")
}
pub fn reported(device: &str) -> String {
    format!("{ROOT}/d/{device}/reported")
}
pub fn status(device: &str) -> String {
    format!("{ROOT}/d/{device}/status")
}
pub fn telemetry(device: &str) -> String {
    format!("{ROOT}/d/{device}/telemetry")
}
pub fn logs(device: &str) -> String {
    format!("{ROOT}/d/{device}/logs")
}

/// A topic taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic {
    Cmd(Address),
    Desired(Address),
    Ack(String),
    Reported(String),
    Status(String),
    Telemetry(String),
    Logs(String),
}

/// Parses a topic under [`ROOT`]; `None` for anything else.
pub fn parse(topic: &str) -> Option<Topic> {
    let rest = topic.strip_prefix(ROOT)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let (scope, name, leaf) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || name.is_empty() {
        return None;
    }
    let addr = match scope {
        "d" => Address::Device(name.to_string()),
        "g" => Address::Group(name.to_string()),
        _ => return None,
    };
    Some(match (leaf, addr) {
        ("cmd", a) => Topic::Cmd(a),
        ("desired", a) => Topic::Desired(a),
        ("ack", Address::Device(d)) => Topic::Ack(d),
        ("reported", Address::Device(d)) => Topic::Reported(d),
        ("status", Address::Device(d)) => Topic::Status(d),
        ("telemetry", Address::Device(d)) => Topic::Telemetry(d),
        ("logs", Address::Device(d)) => Topic::Logs(d),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let g = Address::Group("lab".into());
        assert_eq!(g.cmd(), "rk/v1/g/lab/cmd");
        assert_eq!(parse(&g.cmd()), Some(Topic::Cmd(g.clone())));
        assert_eq!(parse(&g.desired()), Some(Topic::Desired(g)));
        assert_eq!(parse(&status("r1")), Some(Topic::Status("r1".into())));
        assert_eq!(parse(&ack("r1")), Some(Topic::Ack("r1".into())));
        assert_eq!(parse(&logs("r1")), Some(Topic::Logs("r1".into())));
        assert_eq!(parse("rk/v1/g/lab/logs"), None);
        assert_eq!(parse("rk/v1/g/lab/ack"), None);
        assert_eq!(parse("rk/v2/d/r1/cmd"), None);
        assert_eq!(parse("rk/v1/d/r1/cmd/extra"), None);
    }
}
