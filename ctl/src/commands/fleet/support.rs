//! `fleet support`: pull a robot's support bundle over the fleet link. A signed `support`
//! command (verified like every fleet command: key, address, expiry, replay) carries the size
//! cap; the robot answers with [`SupportChunk`]s on its `logs` topic and a final ack. The parts
//! are joined, checked against the sha256 the robot sent, and written (0600) to a `.tar.gz`.

use super::{BrokerArgs, KeyArgs};
use crate::output::{now_ms, outln};
use base64::Engine as _;
use roboku_wire::fleet::{Ack, AckStatus, Action, SupportChunk, SupportQuery};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

/// The envelope's `app` for `support` (the robot ignores it; the protocol wants a name).
pub const APP: &str = "robot";

#[derive(clap::Args, Debug)]
pub struct SupportArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub key: KeyArgs,
    /// The robot, by device id
    #[arg(long)]
    pub device: String,
    /// Where to write the bundle [default: support-<device>-<unix secs>.tar.gz]
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// At most this many bytes of content (before compression) [default: 1M; the robot caps at 4M]
    #[arg(long, value_parser = crate::parse::size, value_name = "SIZE")]
    pub max_bytes: Option<u64>,
    /// At most the last N log lines per app [default: 200; the robot caps at 2000]
    #[arg(long, value_name = "N")]
    pub lines: Option<u32>,
    /// Seconds the request stays valid (the robot refuses it after that)
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub ttl: u64,
    /// Seconds to wait for the answer
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub wait: u64,
}

/// One robot's answer being put together, pure: parts by number, and the final ack.
#[derive(Debug, Default)]
pub struct Answer {
    parts: BTreeMap<u32, SupportChunk>,
    expected: Option<u32>,
    pub ack: Option<Ack>,
}

impl Answer {
    pub fn chunk(&mut self, c: SupportChunk) {
        self.expected = Some(c.parts);
        self.parts.insert(c.part, c);
    }

    fn want(&self) -> u32 {
        self.ack
            .as_ref()
            .and_then(|a| a.details.parts)
            .or(self.expected)
            .unwrap_or(0)
    }

    pub fn done(&self) -> bool {
        match &self.ack {
            Some(a) if a.status == AckStatus::Succeeded => {
                (0..self.want()).all(|i| self.parts.contains_key(&i))
            }
            Some(a) => a.status.is_final(),
            None => false,
        }
    }

    /// The bundle's bytes, checked against the size and sha256 the robot sent; or what is wrong.
    pub fn bundle(&self) -> Result<Vec<u8>, String> {
        let missing: Vec<u32> = (0..self.want())
            .filter(|i| !self.parts.contains_key(i))
            .collect();
        if !missing.is_empty() || self.parts.is_empty() {
            return Err(format!("parts {missing:?} never arrived"));
        }
        let mut out = Vec::new();
        for c in self.parts.values() {
            let data = base64::engine::general_purpose::STANDARD
                .decode(&c.data)
                .map_err(|e| format!("part {}: bad base64: {e}", c.part))?;
            out.extend(data);
        }
        let first = self
            .parts
            .values()
            .next()
            .map(|c| (c.size, c.sha256.clone()));
        let (size, sha) = first.unwrap_or_default();
        let got = {
            use sha2::Digest;
            roboku_wire::bundle::hex(&sha2::Sha256::digest(&out))
        };
        if out.len() as u64 != size || got != sha {
            return Err(format!(
                "the parts make {} bytes with sha256 {got}, the robot sent {size} bytes with {sha}",
                out.len()
            ));
        }
        Ok(out)
    }

    /// What the robot cut to stay within its cap, and the cap.
    pub fn truncated(&self) -> (Vec<String>, u64) {
        self.parts
            .values()
            .next()
            .map_or((Vec::new(), 0), |c| (c.truncated.clone(), c.max_bytes))
    }
}

impl super::read::Answer for Answer {
    type Part = SupportChunk;
    fn id_of(part: &SupportChunk) -> &str {
        &part.id
    }
    fn part(&mut self, part: SupportChunk) {
        self.chunk(part)
    }
    fn ack(&mut self, ack: Ack) {
        self.ack = Some(ack)
    }
    fn done(&self) -> bool {
        Answer::done(self)
    }
}

pub async fn run(json: bool, a: SupportArgs) -> anyhow::Result<i32> {
    roboku_wire::fleet::check_name("device", &a.device)
        .map_err(|e| anyhow::anyhow!(crate::commands::UsageError(e)))?;
    let key = a.key.load()?;
    let query = SupportQuery {
        max_bytes: a.max_bytes,
        lines: a.lines,
    };
    let answer: Answer = super::read::ask(super::read::Read {
        broker: &a.broker,
        key: key.as_ref(),
        device: &a.device,
        app: APP,
        action: Action::Support(query),
        ttl_secs: a.ttl,
        wait_secs: a.wait,
    })
    .await?;
    match &answer.ack {
        Some(ack) if ack.status == AckStatus::Succeeded => {}
        Some(ack) => {
            eprintln!(
                "roboku: {} {}: {}",
                a.device,
                ack.status.as_str(),
                ack.details.reason.as_deref().unwrap_or("no reason given")
            );
            return Ok(1);
        }
        None => {
            eprintln!(
                "roboku: no answer from {} within {} s (offline, or it does not know `support`?)",
                a.device, a.wait
            );
            return Ok(1);
        }
    }
    let bundle = match answer.bundle() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("roboku: incomplete support bundle from {}: {e}", a.device);
            return Ok(1);
        }
    };
    let path = a.output.clone().unwrap_or_else(|| {
        PathBuf::from(format!("support-{}-{}.tar.gz", a.device, now_ms() / 1000))
    });
    write_private(&path, &bundle)
        .map_err(|e| anyhow::anyhow!("write support bundle {}: {e}", path.display()))?;
    let (cut, cap) = answer.truncated();
    if json {
        let v = serde_json::json!({
            "device": a.device,
            "file": path,
            "bytes": bundle.len(),
            "truncated": cut,
            "max_bytes": cap,
        });
        outln!("{v}")?;
    } else {
        outln!(
            "wrote {} ({} bytes) from {}",
            path.display(),
            bundle.len(),
            a.device
        )?;
    }
    if !cut.is_empty() {
        eprintln!(
            "roboku: TRUNCATED: the robot cut the bundle to stay within {cap} bytes (see TRUNCATED.txt in it; raise --max-bytes or lower --lines):"
        );
        for c in &cut {
            eprintln!("  {c}");
        }
    }
    Ok(0)
}

/// Writes `bytes` to a new file only its owner can read (it holds logs), replacing none.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use roboku_wire::fleet::AckDetails;

    fn chunks(bytes: &[u8], n: usize) -> Vec<SupportChunk> {
        use sha2::Digest;
        let sha = roboku_wire::bundle::hex(&sha2::Sha256::digest(bytes));
        let parts: Vec<&[u8]> = bytes.chunks(n).collect();
        parts
            .iter()
            .enumerate()
            .map(|(i, p)| SupportChunk {
                id: "c1".into(),
                device: "r1".into(),
                part: i as u32,
                parts: parts.len() as u32,
                data: base64::engine::general_purpose::STANDARD.encode(p),
                size: bytes.len() as u64,
                sha256: sha.clone(),
                truncated: vec!["apps/nav/logs.jsonl: cut".into()],
                max_bytes: 10,
            })
            .collect()
    }

    fn ack(status: AckStatus, parts: Option<u32>) -> Ack {
        Ack {
            id: Some("c1".into()),
            reference: "r".into(),
            device: "r1".into(),
            ts: 1,
            seq: 0,
            status,
            details: AckDetails {
                parts,
                ..AckDetails::default()
            },
        }
    }

    #[test]
    fn parts_join_in_order_and_are_checked() {
        let bytes: Vec<u8> = (0..100u8).collect();
        let cs = chunks(&bytes, 30);
        let mut a = Answer::default();
        a.chunk(cs[3].clone());
        a.chunk(cs[1].clone());
        a.ack = Some(ack(AckStatus::Succeeded, Some(4)));
        assert!(!a.done());
        assert!(a.bundle().unwrap_err().contains("[0, 2]"));
        a.chunk(cs[0].clone());
        a.chunk(cs[2].clone());
        a.chunk(cs[2].clone());
        assert!(a.done());
        assert_eq!(a.bundle().unwrap(), bytes);
        assert_eq!(a.truncated().1, 10);
        // A part that was tampered with on the way fails the sha256.
        let mut bad = cs[1].clone();
        bad.data = base64::engine::general_purpose::STANDARD.encode([9u8; 30]);
        a.chunk(bad);
        assert!(a.bundle().unwrap_err().contains("sha256"));
    }

    #[test]
    fn a_refusal_ends_the_answer() {
        let a = Answer {
            ack: Some(ack(AckStatus::Rejected, None)),
            ..Answer::default()
        };
        assert!(a.done());
        assert!(a.bundle().is_err());
    }
}
