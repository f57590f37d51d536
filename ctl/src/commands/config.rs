//! `config`, `config:get`, `config:set`, `config:unset`: the app's config vars. A change makes a
//! new release, which restarts the dynos; a change that changes nothing makes none.
//! `config:set --file .env` (or `--file -` for stdin) reads the pairs as a `.env` file, with the
//! same parser the agent uses for a slug's `.env`.

use super::{and_list, app_path, AppArg, Ctx, UsageError};
use crate::output::{self, outln};
use crate::parse;
use roboku_wire::{ConfigChange, ConfigChanged};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// Print KEY='value' lines a shell can source
    #[arg(long)]
    pub shell: bool,
}

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    pub app: AppArg,
    pub key: String,
}

#[derive(clap::Args, Debug)]
pub struct SetArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// KEY=VALUE pairs
    #[arg(required_unless_present = "file", value_parser = parse::config_pair, value_name = "KEY=VALUE")]
    pub pairs: Vec<(String, String)>,
    /// Read KEY=VALUE lines from a .env file (`-`: standard input); pairs given too win
    #[arg(long, value_name = "PATH")]
    pub file: Option<std::path::PathBuf>,
    /// Give up if the app's apply gates are still closed after this long (default: wait)
    #[arg(long, value_parser = parse::duration_ms, value_name = "DURATION")]
    pub gate_timeout: Option<u64>,
}

/// The pairs of a `.env` file or of stdin; errors name the source and the line, never a value.
fn read_env_file(path: &std::path::Path) -> anyhow::Result<Vec<(String, String)>> {
    let (name, text) = if path == std::path::Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| anyhow::anyhow!("read standard input: {e}"))?;
        ("standard input".to_string(), text)
    } else {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("read {}: {e}", path.display()))?;
        (path.display().to_string(), text)
    };
    let pairs = roboku_wire::procfile::parse_dotenv(&text)
        .map_err(|e| anyhow::anyhow!(UsageError(format!("{name}: {e}"))))?;
    if pairs.is_empty() {
        anyhow::bail!(UsageError(format!("{name}: no KEY=VALUE lines")));
    }
    Ok(pairs)
}

#[derive(clap::Args, Debug)]
pub struct UnsetArgs {
    #[command(flatten)]
    pub app: AppArg,
    #[arg(required = true, value_name = "KEY")]
    pub keys: Vec<String>,
}

pub async fn show(ctx: &Ctx, args: ShowArgs) -> anyhow::Result<()> {
    let v: Value = ctx.client.get(&app_path(&args.app.app, "/config")).await?;
    let Some(vars) = ctx.typed::<BTreeMap<String, String>>(v)? else {
        return Ok(());
    };
    Ok(output::print(&render(&vars, args.shell))?)
}

pub async fn get(ctx: &Ctx, args: GetArgs) -> anyhow::Result<()> {
    let app = &args.app.app;
    let v: Value = ctx.client.get(&app_path(app, "/config")).await?;
    let Some(mut vars) = ctx.typed::<BTreeMap<String, String>>(v)? else {
        return Ok(());
    };
    match vars.remove(&args.key) {
        Some(value) => Ok(outln!("{value}")?),
        None => anyhow::bail!("config var {} is not set for {app}", args.key),
    }
}

pub async fn set(ctx: &Ctx, args: SetArgs) -> anyhow::Result<()> {
    let mut set: BTreeMap<String, String> = match &args.file {
        Some(path) => read_env_file(path)?.into_iter().collect(),
        None => BTreeMap::new(),
    };
    set.extend(args.pairs);
    let keys: Vec<String> = set.keys().cloned().collect();
    let change = ConfigChange { set, unset: vec![] };
    let path = with_gate_timeout(&args.app.app, args.gate_timeout);
    change_config(ctx, &args.app.app, &path, change, "Setting", &keys).await
}

/// The config route, with `?gate_timeout=SECS` when one was given.
fn with_gate_timeout(app: &str, ms: Option<u64>) -> String {
    let secs = ms.map(|ms| ms.div_ceil(1000).to_string());
    crate::client::with_query(&app_path(app, "/config"), &[("gate_timeout", secs)])
}

pub async fn unset(ctx: &Ctx, args: UnsetArgs) -> anyhow::Result<()> {
    let change = ConfigChange {
        set: BTreeMap::new(),
        unset: args.keys.clone(),
    };
    let path = with_gate_timeout(&args.app.app, None);
    change_config(ctx, &args.app.app, &path, change, "Unsetting", &args.keys).await
}

async fn change_config(
    ctx: &Ctx,
    app: &str,
    path: &str,
    change: ConfigChange,
    verb: &str,
    keys: &[String],
) -> anyhow::Result<()> {
    let v: Value = ctx.client.patch(path, &change).await?;
    let Some(changed) = ctx.typed::<ConfigChanged>(v)? else {
        return Ok(());
    };
    if changed.unchanged {
        outln!("{app} already has that config: nothing changed, no new release")?;
        return Ok(());
    }
    match changed.release {
        Some(release) => outln!(
            "{verb} {} and restarting {app}... done, v{}",
            and_list(keys),
            release.version
        )?,
        None => outln!(
            "{verb} {} on {app}... done (no release yet: the next deploy uses them)",
            and_list(keys)
        )?,
    }
    Ok(())
}

/// `KEY=value` lines (sorted, as the map is), or `KEY='value'` for `--shell`.
fn render(vars: &BTreeMap<String, String>, shell: bool) -> String {
    let mut out = String::new();
    for (k, v) in vars {
        let v = if shell {
            output::shell_quote(v)
        } else {
            v.clone()
        };
        out.push_str(&format!("{k}={v}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_shell() {
        let vars: BTreeMap<String, String> = [("PORT_NAME", "it's"), ("A", "x=y")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(render(&vars, false), "A=x=y\nPORT_NAME=it's\n");
        assert_eq!(render(&vars, true), "A='x=y'\nPORT_NAME='it'\\''s'\n");
    }
}
