//! `ps:wait`: returns when every dyno of the app runs its current release and is up, and no
//! rollout is in progress (Heroku's `ps:wait`). Polls `ps` and `releases` until then, or fails
//! after `--wait-timeout` naming the dynos still behind.

use crate::commands::{app_path, AppArg, Ctx};
use crate::output::outln;
use roboku_wire::{DynoInfo, DynoState, ReleaseInfo};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct WaitArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// Only dynos of this process type
    #[arg(long = "type", value_name = "TYPE")]
    pub ptype: Option<String>,
    /// Give up after this many seconds (exit 1)
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub wait_timeout: u64,
}

/// Between looks at the dynos.
const POLL: Duration = Duration::from_millis(200);

/// What still keeps the app from being settled on `current` (empty: settled).
pub fn behind(current: &ReleaseInfo, dynos: &[DynoInfo], ptype: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    if current.status == "deploying" {
        out.push(format!("v{} is still rolling out", current.version));
    }
    for d in dynos.iter().filter(|d| ptype.is_none_or(|t| d.ptype == t)) {
        // Stopped on purpose (`ps:stop`) is settled too: nothing will change it.
        let settled =
            d.release == current.version && matches!(d.state, DynoState::Up | DynoState::Down);
        if !settled {
            out.push(format!(
                "{} is {} on v{}",
                d.name,
                d.state.as_str(),
                d.release
            ));
        }
    }
    out
}

pub async fn wait(ctx: &Ctx, args: WaitArgs) -> anyhow::Result<()> {
    let app = &args.app.app;
    let deadline = Instant::now() + Duration::from_secs(args.wait_timeout);
    loop {
        let releases: Vec<ReleaseInfo> = ctx.client.get(&app_path(app, "/releases")).await?;
        let Some(current) = releases.iter().find(|r| r.current) else {
            anyhow::bail!("{app} has no release yet: nothing to wait for (deploy first)");
        };
        let dynos: Vec<DynoInfo> = ctx.client.get(&app_path(app, "/ps")).await?;
        let lagging = behind(current, &dynos, args.ptype.as_deref());
        if lagging.is_empty() {
            if ctx.json {
                outln!("{}", serde_json::to_string_pretty(&dynos)?)?;
            } else {
                outln!(
                    "{} dyno{} of {app} on v{}",
                    dynos.len(),
                    if dynos.len() == 1 { "" } else { "s" },
                    current.version
                )?;
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "timed out after {}s waiting for {app} to settle on v{}: {}",
                args.wait_timeout,
                current.version,
                lagging.join("; ")
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dyno(name: &str, release: u32, state: DynoState) -> DynoInfo {
        DynoInfo {
            name: name.into(),
            ptype: name.split('.').next().unwrap_or_default().into(),
            index: 1,
            state,
            pid: None,
            port: 20000,
            release,
            since: 0,
            restarts: 0,
            last_exit: None,
            next_retry_at: None,
            memory_bytes: None,
            cpu_percent: None,
            pids: None,
            oom_kills: 0,
            user: String::new(),
            health: None,
        }
    }

    fn release(version: u32, status: &str) -> ReleaseInfo {
        ReleaseInfo {
            version,
            created_at: 0,
            description: String::new(),
            slug: String::new(),
            process_types: Default::default(),
            config_keys: Vec::new(),
            current: true,
            status: status.into(),
            door: "cli".into(),
            artifact: None,
            probation: None,
            buildpacks: None,
        }
    }

    #[test]
    fn settled_only_when_every_dyno_is_up_on_the_current_release() {
        let v2 = release(2, "succeeded");
        let up = [
            dyno("web.1", 2, DynoState::Up),
            dyno("worker.1", 2, DynoState::Up),
        ];
        assert!(behind(&v2, &up, None).is_empty());
        let mixed = [
            dyno("web.1", 2, DynoState::Up),
            dyno("worker.1", 1, DynoState::Up),
        ];
        assert_eq!(behind(&v2, &mixed, None), ["worker.1 is up on v1"]);
        assert!(behind(&v2, &mixed, Some("web")).is_empty(), "--type web");
        let crashed = [dyno("web.1", 2, DynoState::Backoff)];
        assert_eq!(behind(&v2, &crashed, None), ["web.1 is backoff on v2"]);
        assert_eq!(
            behind(&release(3, "deploying"), &[], None),
            ["v3 is still rolling out"]
        );
    }
}
