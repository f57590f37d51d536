//! Answers `logs` commands: reads the app's stored lines through the log task with the
//! command's filters, keeps the newest that fit the size cap, and publishes them in chunks on
//! `rk/v1/d/<device>/logs`, then a SUCCEEDED ack that says how many lines and parts were sent
//! and how many were dropped. The intake verified and recorded the command (signature, target,
//! expiry, replay) before it got here.
//!
//! Runs as its own task: the intake hands the command over and goes on, and a read never waits
//! behind the app's deploy in its worker. At most [`MAX_READERS`] run at once; more are FAILED
//! (busy) instead of piling up. The planning and cutting are pure ([`plan`], [`cap`],
//! [`chunks`]) and tested without tokio.

use super::Shared;
use crate::engine::{Command, Door, EngineError};
use crate::logs::{Grep, LogFilter};
use crate::usage::{Channel, Flow};
use roboku_wire::fleet::{topic, AckDetails, AckStatus, LogsChunk, LogsQuery};
use roboku_wire::LogLine;
use rumqttc::QoS;
use std::sync::Arc;

/// Lines sent without `tail`: the last 100, or with `since` everything since (up to the cap).
pub const DEFAULT_TAIL: usize = 100;
pub const MAX_TAIL: usize = 10_000;
/// Bytes of lines sent without `max_bytes`, and the most a request may ask for.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024;
pub const CEILING_MAX_BYTES: u64 = 1024 * 1024;
/// Bytes of lines per message: each stays well under the 64 KiB the protocol allows and the
/// broker's `message_size_limit`.
pub const CHUNK_BYTES: usize = 48 * 1024;
/// Reads running at once.
pub const MAX_READERS: usize = 2;

/// What to read, checked: how many lines, which, and how many bytes of them to send.
#[derive(Debug, PartialEq)]
pub struct Plan {
    pub n: usize,
    pub filter: LogFilter,
    pub max_bytes: u64,
}

/// Checks a query (the verifier refuses a command whose query fails here) and makes the plan.
pub fn plan(q: &LogsQuery) -> Result<Plan, String> {
    let grep = match q.grep.as_deref() {
        None | Some("") => None,
        Some(g) => Some(Grep::new(g)?),
    };
    if let Some(d) = &q.dyno {
        if d.is_empty() || d.len() > 64 {
            return Err(format!("dyno filter {d:?} must be 1-64 characters"));
        }
    }
    let default = if q.since.is_some() {
        MAX_TAIL
    } else {
        DEFAULT_TAIL
    };
    let n = q.tail.map_or(default, |t| t as usize).min(MAX_TAIL);
    let max_bytes = q
        .max_bytes
        .unwrap_or(DEFAULT_MAX_BYTES)
        .min(CEILING_MAX_BYTES);
    Ok(Plan {
        n,
        filter: LogFilter {
            dyno: q.dyno.clone(),
            since: q.since,
            grep,
            ..LogFilter::default()
        },
        max_bytes,
    })
}

/// Bytes a line takes in a chunk (its JSON, and a comma).
fn size(l: &LogLine) -> usize {
    serde_json::to_vec(l).map_or(0, |v| v.len() + 1)
}

/// The newest lines (given oldest first) whose sizes add up to at most `max_bytes`, oldest
/// first, and how many older ones were left out. A gap is never made: once one line does not
/// fit, every older one is left out too.
pub fn cap(mut lines: Vec<LogLine>, max_bytes: u64) -> (Vec<LogLine>, u64) {
    let mut total = 0u64;
    let mut keep = 0;
    for l in lines.iter().rev() {
        total += size(l) as u64;
        if total > max_bytes {
            break;
        }
        keep += 1;
    }
    let dropped = lines.len() - keep;
    lines.drain(..dropped);
    (lines, dropped as u64)
}

/// Cuts lines into runs of at most `chunk_bytes` each (a line bigger than that alone in its
/// run); always at least one run, so an empty answer is still an answer.
pub fn chunks(lines: Vec<LogLine>, chunk_bytes: usize) -> Vec<Vec<LogLine>> {
    let mut out = Vec::new();
    let mut run = Vec::new();
    let mut used = 0;
    for l in lines {
        let n = size(&l);
        if !run.is_empty() && used + n > chunk_bytes {
            out.push(std::mem::take(&mut run));
            used = 0;
        }
        used += n;
        run.push(l);
    }
    out.push(run);
    out
}

/// Queues a read's parts (`fleet logs`, `fleet support`) on the device's logs topic at QoS 1,
/// within the byte budget of fleet logs replies: refused whole, naming the counters, when they
/// would take the channel past it. `what` names the reply and `less` the flags that ask for
/// less, in the refusal.
pub(super) fn publish_parts(
    shared: &Shared,
    to: String,
    payloads: Vec<Vec<u8>>,
    what: &str,
    less: &str,
) -> Result<(), String> {
    let size: u64 = payloads
        .iter()
        .map(|p| crate::usage::publish_size(to.len(), true, p.len()))
        .sum();
    if shared.usage.flow(Channel::Logs, size) == Flow::Paused {
        let (day, month) = shared.usage.used(Channel::Logs);
        let b = shared.usage.budget(Channel::Logs);
        return Err(format!(
            "over budget: this {what} ({size} bytes) would take fleet logs replies past their \
             budget {} ({day} bytes used today, {month} this month); ask for less ({less}) or \
             wait for the next period; `roboku usage` on the robot shows the counters",
            b.map_or("-".into(), |b| b.to_string())
        ));
    }
    let count = payloads.len();
    for (i, payload) in payloads.into_iter().enumerate() {
        if !shared
            .out
            .publish(to.clone(), QoS::AtLeastOnce, false, payload)
        {
            return Err(format!(
                "could not queue part {} of {count} for the broker",
                i + 1
            ));
        }
    }
    Ok(())
}

/// Answers one verified, recorded `logs` command (spawned by the intake).
pub(super) async fn serve(
    shared: Arc<Shared>,
    id: String,
    reference: String,
    app: String,
    query: LogsQuery,
) {
    let base = super::apply::details(&app, "logs", None);
    let fail = |reason: String| {
        let details = AckDetails {
            reason: Some(reason),
            ..base.clone()
        };
        shared
            .out
            .ack(Some(&id), &reference, AckStatus::Failed, details);
    };
    let Ok(_permit) = shared.readers.clone().try_acquire_owned() else {
        return fail(format!(
            "busy: {MAX_READERS} log reads are running on this robot; try again"
        ));
    };
    // Checked by the verifier already; a failure here would be a bug, still answered.
    let plan = match plan(&query) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    match shared
        .engine
        .call(Door::Mqtt, Command::CheckApp { app: app.clone() })
        .await
    {
        Ok(_) => {}
        Err(EngineError::NotFound(_)) => return fail(format!("no app {app:?} on this robot")),
        Err(e) => return fail(e.to_string()),
    }
    let Some(logs) = &shared.logs else {
        return fail("this robot keeps no logs (no log store)".into());
    };
    // The logs budget (`usage/`): slowed, a reply is cut to a quarter of its size cap; one
    // that would take the day's (or month's) bytes past the budget is refused whole (the lines
    // stay in the store), so the budget is never crossed.
    let max_bytes = match shared.usage.flow(Channel::Logs, 0) {
        Flow::Slow => (plan.max_bytes / 4).max(1),
        _ => plan.max_bytes,
    };
    let lines = logs.recent(&app, plan.n, plan.filter).await;
    let (lines, dropped) = cap(lines, max_bytes);
    let sent = lines.len() as u64;
    let parts = chunks(lines, CHUNK_BYTES);
    let count = parts.len() as u32;
    let to = topic::logs(&shared.device);
    let payloads: Vec<Vec<u8>> = parts
        .into_iter()
        .enumerate()
        .map(|(i, lines)| {
            let chunk = LogsChunk {
                id: id.clone(),
                device: shared.device.clone(),
                part: i as u32,
                parts: count,
                lines,
                dropped,
                max_bytes,
            };
            serde_json::to_vec(&chunk).unwrap_or_default()
        })
        .collect();
    if let Err(reason) = publish_parts(&shared, to, payloads, "reply", "--max-bytes, --tail") {
        return fail(reason);
    }
    tracing::info!(
        app,
        id,
        lines = sent,
        parts = count,
        dropped,
        "fleet logs sent"
    );
    let details = AckDetails {
        lines: Some(sent),
        parts: Some(count),
        dropped: Some(dropped),
        ..base
    };
    shared
        .out
        .ack(Some(&id), &reference, AckStatus::Succeeded, details);
}

#[cfg(test)]
mod tests {
    use super::*;
    use roboku_wire::LogSource;

    fn line(i: u64, text: &str) -> LogLine {
        LogLine {
            ts: i,
            app: "nav".into(),
            dyno: "web.1".into(),
            source: LogSource::App,
            line: text.into(),
        }
    }

    #[test]
    fn plans_defaults_ceilings_and_refuses_bad_patterns() {
        let p = plan(&LogsQuery::default()).unwrap();
        assert_eq!((p.n, p.max_bytes), (DEFAULT_TAIL, DEFAULT_MAX_BYTES));
        assert_eq!(p.filter, LogFilter::default());
        let p = plan(&LogsQuery {
            since: Some(5),
            max_bytes: Some(u64::MAX),
            tail: None,
            ..LogsQuery::default()
        })
        .unwrap();
        assert_eq!((p.n, p.max_bytes), (MAX_TAIL, CEILING_MAX_BYTES));
        assert_eq!(p.filter.since, Some(5));
        let p = plan(&LogsQuery {
            tail: Some(u32::MAX),
            grep: Some("ERR(OR)?".into()),
            ..LogsQuery::default()
        })
        .unwrap();
        assert_eq!(p.n, MAX_TAIL);
        assert!(p.filter.matches(&line(1, "an ERROR here")));
        assert!(!p.filter.matches(&line(1, "all fine")));
        let err = plan(&LogsQuery {
            grep: Some("(unclosed".into()),
            ..LogsQuery::default()
        })
        .unwrap_err();
        assert!(err.contains("grep pattern \"(unclosed\""), "{err}");
        let long = "a".repeat(crate::logs::MAX_GREP_LEN + 1);
        assert!(plan(&LogsQuery {
            grep: Some(long),
            ..LogsQuery::default()
        })
        .unwrap_err()
        .contains("more than"));
        assert!(plan(&LogsQuery {
            dyno: Some(String::new()),
            ..LogsQuery::default()
        })
        .is_err());
    }

    #[test]
    fn cap_keeps_the_newest_lines_that_fit_without_gaps() {
        let lines: Vec<LogLine> = (0..10).map(|i| line(i, &"x".repeat(50))).collect();
        // 0..10: stamps of one digit, every line the same size.
        let one = size(&lines[0]) as u64;
        let (kept, dropped) = cap(lines.clone(), one * 3 + one / 2);
        assert_eq!((kept.as_slice(), dropped), (&lines[7..], 7));
        let (kept, dropped) = cap(lines.clone(), one * 10);
        assert_eq!((kept, dropped), (lines.clone(), 0));
        // A big newest line that does not fit drops everything older too (no gap).
        let mut big = lines.clone();
        big.push(line(10, &"y".repeat(500)));
        let (kept, dropped) = cap(big, one * 5);
        assert_eq!((kept.len(), dropped), (0, 11));
        assert_eq!(cap(Vec::new(), 0), (Vec::new(), 0));
    }

    #[test]
    fn chunks_stay_under_their_size_and_keep_the_order() {
        // Stamps of one width: every line the same size.
        let lines: Vec<LogLine> = (1000..1100).map(|i| line(i, &"z".repeat(100))).collect();
        let one = size(&lines[0]);
        let parts = chunks(lines.clone(), one * 7);
        assert_eq!(parts.len(), 15);
        assert!(parts.iter().all(|p| p.len() <= 7 && !p.is_empty()));
        assert_eq!(parts.concat(), lines);
        assert_eq!(chunks(Vec::new(), 10), vec![Vec::<LogLine>::new()]);
        // A line bigger than a chunk goes alone.
        let parts = chunks(
            vec![line(0, "a"), line(1, &"b".repeat(500)), line(2, "c")],
            100,
        );
        assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
    }
}
