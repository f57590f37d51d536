//! What a deploy shows while it runs, as `git push heroku` does: the upload with bytes and a
//! progress bar, then every step robokud logs for the app (build output as it is written, the
//! release phase, dynos starting, health checks) until the deploy answers.
//!
//! The steps come from the app's own log stream (`source=roboku`: build lines, release phase,
//! state changes), followed from before the request is sent; nothing extra is asked of robokud.
//! All of it goes to stderr, so `--json` output and pipes stay clean; the git hook's stderr is
//! what the pusher sees as `remote:` lines.

use super::super::{app_path, Ctx};
use crate::client::with_query;
use roboku_wire::{LogLine, LogSource};
use std::io::{IsTerminal, Write};
use std::path::Path;
use tokio::task::JoinHandle;

/// Follows the app's roboku-side log lines and prints them as steps until aborted. Returns once
/// the stream is open (so no step of a deploy sent after it is missed); `None` when it cannot be
/// opened: steps are decoration, the deploy's own answer still says how it went.
pub async fn follow(ctx: &Ctx, app: &str) -> Option<JoinHandle<()>> {
    let path = with_query(
        &app_path(app, "/logs"),
        &[
            ("n", Some("0".to_string())),
            ("tail", Some("true".to_string())),
            ("source", Some("roboku".to_string())),
        ],
    );
    let mut lines = ctx.client.stream(&path).await.ok()?;
    Some(tokio::spawn(async move {
        while let Ok(Some(raw)) = lines.next_line().await {
            if let Ok(line) = serde_json::from_str::<LogLine>(&raw) {
                eprintln!("{}", step_line(&line));
            }
        }
    }))
}

/// Build output indented under its step, everything else as a step of its own.
fn step_line(l: &LogLine) -> String {
    match (l.source, l.dyno.as_str()) {
        (LogSource::Roboku, "build") if l.line.starts_with("-----> ") => l.line.clone(),
        (LogSource::Roboku, "build") => format!("       {}", l.line),
        _ => format!("-----> {}: {}", l.dyno, l.line),
    }
}

/// Upload progress: a bar with bytes on a terminal, one line before and after elsewhere.
pub struct Upload {
    bar: Option<indicatif::ProgressBar>,
}

impl Upload {
    pub fn start(file: &Path, enabled: bool) -> Upload {
        let len = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        if !enabled {
            return Upload { bar: None };
        }
        if !std::io::stderr().is_terminal() {
            let _ = writeln!(
                std::io::stderr(),
                "-----> Uploading {} ({})",
                file.display(),
                roboku_wire::human_bytes(len)
            );
            return Upload { bar: None };
        }
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(len),
            indicatif::ProgressDrawTarget::stderr(),
        );
        let style = indicatif::ProgressStyle::with_template(
            "-----> Uploading {bytes}/{total_bytes} [{bar:30}] {percent}% {bytes_per_sec}",
        )
        .map(|s| s.progress_chars("=> "));
        if let Ok(style) = style {
            bar.set_style(style);
        }
        Upload { bar: Some(bar) }
    }

    /// What the upload reports as it goes (bytes sent so far).
    pub fn reporter(&self) -> impl Fn(u64) + Send + Sync + 'static {
        let bar = self.bar.clone();
        move |sent| {
            if let Some(b) = &bar {
                b.set_position(sent);
            }
        }
    }

    /// The upload is done (the agent now extracts, builds and releases).
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(dyno: &str, text: &str) -> LogLine {
        LogLine {
            ts: 0,
            app: "nav".into(),
            dyno: dyno.into(),
            source: LogSource::Roboku,
            line: text.into(),
        }
    }

    #[test]
    fn build_output_is_indented_under_its_steps() {
        assert_eq!(
            step_line(&line("build", "-----> Python app detected")),
            "-----> Python app detected"
        );
        assert_eq!(
            step_line(&line("build", "Collecting flask")),
            "       Collecting flask"
        );
        assert_eq!(
            step_line(&line("web.1", "Health checks passed")),
            "-----> web.1: Health checks passed"
        );
    }
}
