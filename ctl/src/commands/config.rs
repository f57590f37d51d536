//! `config`, `config:get`, `config:set`, `config:unset`: the app's config vars. Setting or
//! unsetting makes a new release, which restarts the dynos.

use super::{and_list, app_path, AppArg, Ctx};
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
    #[arg(required = true, value_parser = parse::config_pair, value_name = "KEY=VALUE")]
    pub pairs: Vec<(String, String)>,
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
    let set: BTreeMap<String, String> = args.pairs.into_iter().collect();
    let keys: Vec<String> = set.keys().cloned().collect();
    let change = ConfigChange { set, unset: vec![] };
    change_config(ctx, &args.app.app, change, "Setting", &keys).await
}

pub async fn unset(ctx: &Ctx, args: UnsetArgs) -> anyhow::Result<()> {
    let change = ConfigChange {
        set: BTreeMap::new(),
        unset: args.keys.clone(),
    };
    change_config(ctx, &args.app.app, change, "Unsetting", &args.keys).await
}

async fn change_config(
    ctx: &Ctx,
    app: &str,
    change: ConfigChange,
    verb: &str,
    keys: &[String],
) -> anyhow::Result<()> {
    let v: Value = ctx.client.patch(&app_path(app, "/config"), &change).await?;
    let Some(changed) = ctx.typed::<ConfigChanged>(v)? else {
        return Ok(());
    };
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
