//! `data:snapshots [on|off] -a APP`: whether the app's data dir is snapshotted each time a
//! release replaces another (for `rollback --with-data`). A big-data app opts out; the others
//! keep theirs. Without on/off it says which it is.

use super::{app_path, AppArg, Ctx};
use crate::output::outln;
use roboku_wire::{AppInfo, UpdateApp};
use serde_json::Value;

#[derive(clap::Args, Debug)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// `on` or `off` [default: show the setting]
    #[arg(value_parser = ["on", "off"])]
    pub state: Option<String>,
}

pub async fn snapshots(ctx: &Ctx, args: SnapshotsArgs) -> anyhow::Result<()> {
    let app = &args.app.app;
    let v: Value = match args.state.as_deref() {
        Some(state) => {
            let body = UpdateApp {
                data_snapshots: Some(state == "on"),
                ..UpdateApp::default()
            };
            ctx.client.patch(&app_path(app, ""), &body).await?
        }
        None => ctx.client.get(&app_path(app, "")).await?,
    };
    let Some(info) = ctx.typed::<AppInfo>(v)? else {
        return Ok(());
    };
    if info.data_snapshots {
        outln!("Data snapshots of {app}: on (taken when a release replaces another; `rollback --with-data` brings one back)")?;
    } else {
        outln!("Data snapshots of {app}: off (releases replaced from now on have none; `rollback --with-data` to them is refused, saying so)")?;
    }
    Ok(())
}
