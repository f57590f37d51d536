//! One file per subcommand group, each mirroring a group of API routes. Commands get a [`Ctx`]
//! (the client and the `--json` switch) and return `anyhow::Result`; `main` maps errors to exit
//! codes.

pub mod addons;
pub mod apps;
pub mod bundle;
pub mod config;
pub mod dashboard;
pub mod data;
pub mod deploy;
pub mod disk;
pub mod doctor;
pub mod drains;
pub mod events;
pub mod fleet;
pub mod gates;
pub mod git;
pub mod logs;
pub mod ps;
pub mod releases;
pub mod run;
pub mod slug;
pub mod status;
pub mod usage;

use crate::client::Client;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;

/// What every command needs.
pub struct Ctx {
    pub client: Client,
    /// `--json`: print the agent's answer as it came, pretty, instead of a human rendering.
    pub json: bool,
}

impl Ctx {
    /// With `--json`, prints `v` and returns `None` (the command is done); otherwise decodes it
    /// into the type the command renders.
    pub fn typed<T: DeserializeOwned>(&self, v: Value) -> anyhow::Result<Option<T>> {
        if self.json {
            crate::output::outln!("{}", serde_json::to_string_pretty(&v)?)?;
            return Ok(None);
        }
        let typed = serde_json::from_value(v).map_err(|e| {
            anyhow::anyhow!(
                "robokud's answer is not what this roboku understands ({e}); are roboku and \
                 robokud the same version?"
            )
        })?;
        Ok(Some(typed))
    }
}

/// `-a/--app` (or `ROBOKU_APP`), shared by every command that acts on one app.
#[derive(clap::Args, Debug)]
pub struct AppArg {
    /// The app to act on
    #[arg(short, long, env = "ROBOKU_APP", value_parser = crate::parse::app_name)]
    pub app: String,
}

/// The API path of an app (names are checked by clap, so they need no escaping).
pub fn app_path(app: &str, rest: &str) -> String {
    format!("{}/apps/{app}{rest}", roboku_wire::API_PREFIX)
}

/// `path` with `?gate_timeout=SECS` (rounded up) when a `--gate-timeout` was given.
pub fn with_gate_timeout(path: &str, ms: Option<u64>) -> String {
    let secs = ms.map(|ms| ms.div_ceil(1000).to_string());
    crate::client::with_query(path, &[("gate_timeout", secs)])
}

/// A mistake in how the command was called, found after clap: exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Joins names for a sentence: `A`, `A and B`, `A, B and C`.
pub fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn and_lists() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(and_list(&s(&[])), "");
        assert_eq!(and_list(&s(&["A"])), "A");
        assert_eq!(and_list(&s(&["A", "B"])), "A and B");
        assert_eq!(and_list(&s(&["A", "B", "C"])), "A, B and C");
    }
}
