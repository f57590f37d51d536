//! `GET /v1/apps/{app}/logs`: the last `n` lines, then (with `tail=1`) new ones as they come, as
//! JSON lines over a chunked response. A follower that cannot keep up loses lines (and is told
//! so), it never slows the dynos or the log task.

use super::body::ApiBody;
use super::routes::{query_num, Resp};
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
    let n = query_num(query, "n", 100)?.min(100_000);
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
    let filter = LogFilter {
        dyno: query.get("dyno").filter(|d| !d.is_empty()).cloned(),
        source,
    };
    // Subscribe before reading the backlog so no line falls between the two.
    let mut live = ctx.logs.subscribe();
    let backlog = ctx.logs.recent(app, n, filter.clone()).await;
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

fn encode(line: &LogLine) -> Bytes {
    let mut v = serde_json::to_vec(line).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}
