//! `GET /v1/apps/{app}/logs`: the last `n` lines, then (with `tail=1`) new ones as they come, as
//! JSON lines over a chunked response. A follower that cannot keep up loses lines (and is told
//! so), it never slows the dynos or the log task.

use super::body::ApiBody;
use super::http::{query_num, Resp};
use super::Ctx;
use crate::engine::EngineError;
use crate::logs::LogFilter;
use bytes::Bytes;
use hyper::Response;
use roboku_wire::{LogLine, LogSource};
use std::collections::BTreeMap;
use tokio::sync::{broadcast, mpsc};

pub async fn stream(
    ctx: &Ctx,
    app: &str,
    query: &BTreeMap<String, String>,
) -> Result<Resp, EngineError> {
    // `since` (unix ms): lines from then on, as many as the store holds (up to the cap).
    let since = query_num(query, "since", 0)?;
    let default_n = if since > 0 { 100_000 } else { 100 };
    let n = query_num(query, "n", default_n)?.min(100_000);
    let follow = matches!(query.get("tail").map(String::as_str), Some("1" | "true"));
    let source = match query.get("source").map(String::as_str) {
        None | Some("") => None,
        Some("app") => Some(LogSource::App),
        Some("roboku") => Some(LogSource::Roboku),
        Some(other) => {
            return Err(EngineError::BadRequest(format!(
                "unknown log source {other:?} (app or roboku)"
            )))
        }
    };
    let dyno = query.get("dyno").filter(|d| !d.is_empty()).cloned();
    if let Some(d) = &dyno {
        let types = match ctx
            .engine
            .call(
                crate::engine::Door::Cli,
                crate::engine::Command::Formation {
                    app: app.to_string(),
                },
            )
            .await
        {
            Ok(crate::engine::Reply::Formation(f)) => f.into_iter().map(|e| e.ptype).collect(),
            _ => Vec::new(),
        };
        check_dyno(app, d, &types)?;
    }
    let filter = LogFilter {
        dyno,
        source,
        ..LogFilter::default()
    };
    // Subscribe before reading the backlog so no line falls between the two.
    let mut live = ctx.logs.subscribe();
    let mut backlog = ctx.logs.recent(app, n, filter.clone()).await;
    backlog.retain(|l| l.ts >= since as u64);
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let app = app.to_string();
    tokio::spawn(async move {
        let last_ts = backlog.last().map(|l| l.ts);
        let seen: Vec<LogLine> = backlog
            .iter()
            .rev()
            .take_while(|l| Some(l.ts) == last_ts)
            .cloned()
            .collect();
        for line in &backlog {
            if tx.send(encode(line)).await.is_err() {
                return;
            }
        }
        if !follow {
            return;
        }
        loop {
            match live.recv().await {
                Ok(line) => {
                    let old = last_ts
                        .is_some_and(|t| line.ts < t || (line.ts == t && seen.contains(&line)));
                    if line.app != app || !filter.matches(&line) || old {
                        continue;
                    }
                    if tx.send(encode(&line)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(k)) => {
                    let note = LogLine {
                        ts: crate::util::now_ms(),
                        app: app.clone(),
                        dyno: "roboku".into(),
                        source: LogSource::Roboku,
                        line: format!("log follower too slow: {k} lines skipped"),
                    };
                    if tx.send(encode(&note)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(ApiBody::Stream(rx))
        .map_err(|e| EngineError::Internal(format!("building log stream: {e}")))
}

/// Log lines come from dynos (`web.1`, `web` for all of a type) and from roboku's own steps.
const PSEUDO_DYNOS: [&str; 4] = ["build", "release", "roboku", "run"];

/// A `dyno` filter must name something that writes lines, or the user would wait forever.
fn check_dyno(app: &str, dyno: &str, types: &[String]) -> Result<(), EngineError> {
    let (base, n) = match dyno.split_once('.') {
        Some((b, n)) => (b, Some(n)),
        None => (dyno, None),
    };
    let known = types.iter().any(|t| t == base) || PSEUDO_DYNOS.contains(&base);
    if known && n.is_none_or(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
        return Ok(());
    }
    let mut have: Vec<&str> = types.iter().map(String::as_str).collect();
    have.extend(PSEUDO_DYNOS);
    Err(EngineError::BadRequest(format!(
        "no dyno or process type {dyno:?} in {app} (it has: {}; a dyno is TYPE.N)",
        have.join(", ")
    )))
}

fn encode(line: &LogLine) -> Bytes {
    let mut v = serde_json::to_vec(line).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

#[cfg(test)]
mod tests {
    use super::check_dyno;

    #[test]
    fn dyno_filters_name_what_writes_lines() {
        let types = vec!["web".to_string(), "worker".to_string()];
        for ok in [
            "web",
            "web.1",
            "worker.12",
            "build",
            "release.1",
            "roboku",
            "run.3",
        ] {
            assert!(check_dyno("nav", ok, &types).is_ok(), "{ok}");
        }
        for bad in ["nope", "web.", "web.x", "nope.1", "webb"] {
            let err = check_dyno("nav", bad, &types).unwrap_err().to_string();
            assert!(
                err.contains(&format!("{bad:?}")) && err.contains("web, worker"),
                "{err}"
            );
        }
    }
}
