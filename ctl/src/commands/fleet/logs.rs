//! `fleet logs`: pull an app's stored log lines from one robot over the fleet link. A signed
//! `logs` command (like every fleet command: the robot checks key, address, expiry and replay)
//! carries the filters; the robot answers with [`LogsChunk`]s on its `logs` topic and a final
//! ack. Lines print in the format of `roboku logs`.

use super::{BrokerArgs, KeyArgs};
use crate::output::{self, now_ms, outln};
use roboku_wire::fleet::{Ack, AckStatus, Action, LogsChunk, LogsQuery};
use roboku_wire::LogLine;
use std::collections::BTreeMap;

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub key: KeyArgs,
    /// The robot, by device id
    #[arg(long)]
    pub device: String,
    /// The app whose logs to read
    #[arg(short, long, env = "ROBOKU_APP", value_parser = crate::parse::app_name)]
    pub app: String,
    /// Only lines of the last DURATION (30s, 10m, 2h, 1d)
    #[arg(long, value_parser = crate::parse::duration_ms, value_name = "DURATION")]
    pub since: Option<u64>,
    /// Only lines matching this regular expression (regex-lite syntax, like Rust's regex)
    #[arg(long, value_name = "REGEX")]
    pub grep: Option<String>,
    /// At most the last N matching lines [default: 100; with --since: up to 10000]
    #[arg(long, value_name = "N")]
    pub tail: Option<u32>,
    /// At most this many bytes of lines (newest kept) [default: 256K; the robot caps at 1M]
    #[arg(long, value_parser = crate::parse::size, value_name = "SIZE")]
    pub max_bytes: Option<u64>,
    /// Only this dyno (web.1) or process type (web)
    #[arg(short, long)]
    pub dyno: Option<String>,
    /// Seconds the request stays valid (the robot refuses it after that)
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub ttl: u64,
    /// Seconds to wait for the answer
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub wait: u64,
}

/// One robot's answer being put together, pure: parts by number, and the final ack.
#[derive(Debug, Default)]
pub struct Answer {
    parts: BTreeMap<u32, LogsChunk>,
    expected: Option<u32>,
    pub ack: Option<Ack>,
}

impl Answer {
    /// Takes a chunk of our answer in (a redelivered part replaces itself).
    pub fn chunk(&mut self, c: LogsChunk) {
        self.expected = Some(c.parts);
        self.parts.insert(c.part, c);
    }

    /// Every part arrived and the robot said it is done, or the robot said no.
    pub fn done(&self) -> bool {
        match &self.ack {
            Some(a) if a.status == AckStatus::Succeeded => {
                let want = a.details.parts.or(self.expected).unwrap_or(0);
                (0..want).all(|i| self.parts.contains_key(&i))
            }
            Some(a) => a.status.is_final(),
            None => false,
        }
    }

    /// The lines, oldest first, and the parts that never came.
    pub fn lines(&self) -> (Vec<&LogLine>, Vec<u32>) {
        let want = self
            .ack
            .as_ref()
            .and_then(|a| a.details.parts)
            .or(self.expected)
            .unwrap_or(0);
        let missing = (0..want).filter(|i| !self.parts.contains_key(i)).collect();
        let lines = self.parts.values().flat_map(|c| c.lines.iter()).collect();
        (lines, missing)
    }

    /// Matching lines the robot left out to stay within its size cap, and the cap.
    pub fn dropped(&self) -> (u64, u64) {
        self.parts
            .values()
            .next()
            .map_or((0, 0), |c| (c.dropped, c.max_bytes))
    }
}

impl super::read::Answer for Answer {
    type Part = LogsChunk;
    fn id_of(part: &LogsChunk) -> &str {
        &part.id
    }
    fn part(&mut self, part: LogsChunk) {
        self.chunk(part)
    }
    fn ack(&mut self, ack: Ack) {
        self.ack = Some(ack)
    }
    fn done(&self) -> bool {
        Answer::done(self)
    }
}

pub async fn run(json: bool, a: LogsArgs) -> anyhow::Result<i32> {
    roboku_wire::fleet::check_name("device", &a.device)
        .map_err(|e| anyhow::anyhow!(crate::commands::UsageError(e)))?;
    let key = a.key.load()?;
    let query = LogsQuery {
        since: a.since.map(|d| now_ms().saturating_sub(d)),
        grep: a.grep.clone(),
        tail: a.tail,
        max_bytes: a.max_bytes,
        dyno: a.dyno.clone(),
    };
    let answer: Answer = super::read::ask(super::read::Read {
        broker: &a.broker,
        key: key.as_ref(),
        device: &a.device,
        app: &a.app,
        action: Action::Logs(query),
        ttl_secs: a.ttl,
        wait_secs: a.wait,
    })
    .await?;
    let (lines, missing) = answer.lines();
    for l in &lines {
        if json {
            outln!("{}", serde_json::to_string(l)?)?;
        } else {
            outln!("{}", output::log_line(l))?;
        }
    }
    let (dropped, cap) = answer.dropped();
    if dropped > 0 {
        eprintln!(
            "roboku: TRUNCATED: {dropped} older matching lines left out to stay within {cap} bytes (narrow with --since, --grep or --tail, or raise --max-bytes)"
        );
    }
    match &answer.ack {
        Some(ack) if ack.status == AckStatus::Succeeded && missing.is_empty() => Ok(0),
        Some(ack) if ack.status == AckStatus::Succeeded => {
            eprintln!(
                "roboku: incomplete answer from {}: parts {missing:?} never arrived",
                a.device
            );
            Ok(1)
        }
        Some(ack) => {
            eprintln!(
                "roboku: {} {}: {}",
                a.device,
                ack.status.as_str(),
                ack.details.reason.as_deref().unwrap_or("no reason given")
            );
            Ok(1)
        }
        None => {
            eprintln!(
                "roboku: no answer from {} within {} s (offline, or it does not know `logs`?)",
                a.device, a.wait
            );
            Ok(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roboku_wire::fleet::AckDetails;
    use roboku_wire::LogSource;

    fn chunk(part: u32, parts: u32, texts: &[&str]) -> LogsChunk {
        LogsChunk {
            id: "c1".into(),
            device: "r1".into(),
            part,
            parts,
            lines: texts
                .iter()
                .map(|t| LogLine {
                    ts: 1,
                    app: "nav".into(),
                    dyno: "web.1".into(),
                    source: LogSource::App,
                    line: t.to_string(),
                })
                .collect(),
            dropped: 3,
            max_bytes: 100,
        }
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
    fn an_answer_is_done_with_every_part_and_the_final_ack() {
        let mut a = Answer::default();
        a.chunk(chunk(1, 2, &["c", "d"]));
        assert!(!a.done());
        a.ack = Some(ack(AckStatus::Succeeded, Some(2)));
        assert!(!a.done(), "part 0 is missing");
        assert_eq!(a.lines().1, [0]);
        a.chunk(chunk(0, 2, &["a", "b"]));
        a.chunk(chunk(0, 2, &["a", "b"])); // a QoS 1 redelivery
        assert!(a.done());
        let (lines, missing) = a.lines();
        let texts: Vec<&str> = lines.iter().map(|l| l.line.as_str()).collect();
        assert_eq!((texts, missing), (vec!["a", "b", "c", "d"], vec![]));
        assert_eq!(a.dropped(), (3, 100));
    }

    #[test]
    fn a_refusal_ends_the_answer_without_lines() {
        let mut a = Answer {
            ack: Some(ack(AckStatus::Accepted, None)),
            ..Answer::default()
        };
        assert!(!a.done());
        a.ack = Some(ack(AckStatus::Rejected, None));
        assert!(a.done());
        assert!(a.lines().0.is_empty());
    }
}
