//! Push-to-deploy: `git push robot main` deploys, as on Heroku and piku.
//!
//! `git:init` makes a bare repository per app under the agent's data dir with a `pre-receive`
//! hook that runs `roboku git-hook APP`: the pushed commit is archived and deployed through the
//! same route as `roboku deploy`, its build output goes back to the pusher (`remote: ...`), and a
//! failed deploy rejects the push, so the branch on the robot always names what runs.
//! `git-shell` is for an ssh forced command (`command="roboku git-shell"` in authorized_keys), so
//! the remote can be the short `ssh://root@robot/nav`.

use super::{app_path, AppArg, Ctx, UsageError};
use crate::output::{outln, shell_quote};
use roboku_wire::{ReleaseInfo, Status, API_PREFIX};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(clap::Args, Debug)]
pub struct HookArgs {
    /// The app the repository deploys to
    pub app: String,
}

/// The agent's data dir, where repositories live.
async fn repo_path(ctx: &Ctx, app: &str) -> anyhow::Result<PathBuf> {
    let status: Status = ctx.client.get(&format!("{API_PREFIX}/status")).await?;
    Ok(Path::new(&status.data_dir)
        .join("git")
        .join(format!("{app}.git")))
}

/// Creates the bare repository and its hook if missing (hook rewritten every time, so a moved
/// binary or socket is picked up).
fn ensure_repo(repo: &Path, app: &str, socket: &Path) -> anyhow::Result<()> {
    if !repo.join("HEAD").exists() {
        std::fs::create_dir_all(repo)
            .map_err(|e| anyhow::anyhow!("create {}: {e}", repo.display()))?;
        let out = Command::new("git")
            .args(["init", "--bare", "--quiet", "--initial-branch=main"])
            .arg(repo)
            .output()
            .map_err(|e| anyhow::anyhow!("cannot run git (is it installed?): {e}"))?;
        anyhow::ensure!(
            out.status.success(),
            "git init {}: {}",
            repo.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let me = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot find the roboku binary: {e}"))?;
    let socket = std::path::absolute(socket).unwrap_or_else(|_| socket.to_path_buf());
    let hook = repo.join("hooks").join("pre-receive");
    // robokud's `apps:rename` rewrites the app at the end of the exec line
    // (agent/src/engine/rename/hook.rs): keep that shape.
    let text = format!(
        "#!/bin/sh\n# Written by `roboku git:init`: a push to main or master deploys; a failed deploy rejects it.\nexec {} --socket {} git-hook {}\n",
        shell_quote(&me.to_string_lossy()),
        shell_quote(&socket.to_string_lossy()),
        shell_quote(app)
    );
    std::fs::create_dir_all(repo.join("hooks"))
        .map_err(|e| anyhow::anyhow!("create hooks dir: {e}"))?;
    std::fs::write(&hook, text).map_err(|e| anyhow::anyhow!("write {}: {e}", hook.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| anyhow::anyhow!("chmod {}: {e}", hook.display()))?;
    Ok(())
}

pub async fn init(ctx: &Ctx, args: AppArg, socket: &Path) -> anyhow::Result<()> {
    let app = &args.app;
    let _: serde_json::Value = ctx.client.get(&app_path(app, "")).await?;
    let repo = repo_path(ctx, app).await?;
    ensure_repo(&repo, app, socket)?;
    let host = host_name();
    if ctx.json {
        let v = serde_json::json!({
            "app": app,
            "repository": repo,
            "remote": format!("ssh://root@{host}{}", repo.display()),
            "git_shell_remote": format!("ssh://root@{host}/{app}"),
        });
        outln!("{v}")?;
        return Ok(());
    }
    outln!("Repository for {app}: {}", repo.display())?;
    outln!("On your workstation:")?;
    outln!("  git remote add robot ssh://root@{host}{}", repo.display())?;
    outln!("  git push robot main")?;
    outln!("(or with `command=\"roboku git-shell\"` in the robot's authorized_keys: ssh://root@{host}/{app})")?;
    Ok(())
}

/// This robot's name for ssh remotes (`/etc/hostname`, else `robot`).
pub fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "robot".into())
}

/// The pre-receive hook: deploy the pushed main/master; reject the push if the deploy fails.
pub async fn hook(ctx: &Ctx, args: HookArgs) -> anyhow::Result<i32> {
    let mut target = None;
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| anyhow::anyhow!("reading pushed refs: {e}"))?;
        let parts: Vec<&str> = line.split_whitespace().collect();
        if let [_old, new, r] = parts[..] {
            let deploys = *r == *"refs/heads/main" || *r == *"refs/heads/master";
            if deploys && new.chars().any(|c| c != '0') {
                target = Some((new.to_string(), r.to_string()));
            }
        }
    }
    let Some((rev, refname)) = target else {
        outln!("-----> Only pushes to main or master deploy; nothing to do")?;
        return Ok(0);
    };
    let short = &rev[..12.min(rev.len())];
    outln!("-----> Deploying {refname} ({short}) to {}", args.app)?;
    let tmp = std::env::temp_dir().join(format!(
        "roboku-push-{}-{}.tar.gz",
        args.app,
        std::process::id()
    ));
    let out = Command::new("git")
        .args(["archive", "--format=tar.gz", "-o"])
        .arg(&tmp)
        .arg(&rev)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run git archive: {e}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "git archive {short}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let query = [
        ("name", Some(format!("git push {short}"))),
        ("description", Some(format!("Deploy {short} (git push)"))),
    ];
    let path = crate::client::with_query(&app_path(&args.app, "/deploy/archive"), &query);
    // The pusher sees the steps as `remote:` lines (git relays the hook's stderr).
    let follower = super::deploy::steps::follow(ctx, &args.app).await;
    let upload = super::deploy::steps::Upload::start(&tmp, true);
    let result = ctx
        .client
        .upload::<ReleaseInfo>(&path, &tmp, upload.reporter())
        .await;
    upload.finish();
    if let Some(f) = follower {
        f.abort();
    }
    let _ = std::fs::remove_file(&tmp);
    match result {
        Ok(r) => {
            outln!("-----> Released v{} of {}", r.version, args.app)?;
            Ok(0)
        }
        Err(e) => {
            eprintln!("-----> Deploy failed: {e}");
            eprintln!("-----> Push rejected: the robot keeps running its current release");
            Ok(1)
        }
    }
}

/// An ssh forced command: maps `git-receive-pack '/nav'` to the app's repository.
pub async fn shell(ctx: &Ctx, socket: &Path) -> anyhow::Result<i32> {
    let original = std::env::var("SSH_ORIGINAL_COMMAND").unwrap_or_default();
    let (verb, arg) = original.split_once(' ').ok_or_else(|| {
        UsageError(format!(
            "roboku git-shell only runs git pushes and fetches, not {original:?}"
        ))
    })?;
    if verb != "git-receive-pack" && verb != "git-upload-pack" {
        return Err(UsageError(format!("roboku git-shell does not run {verb:?}")).into());
    }
    let name = arg
        .trim()
        .trim_matches('\'')
        .trim_matches('"')
        .trim_start_matches('/')
        .trim_end_matches(".git");
    roboku_wire::check_app_name(name).map_err(UsageError)?;
    // Only an app's repository: a push to a name no app has (a renamed app's old remote) is an
    // error naming it, not a new empty repository.
    let _: serde_json::Value = ctx.client.get(&app_path(name, "")).await?;
    let repo = repo_path(ctx, name).await?;
    ensure_repo(&repo, name, socket)?;
    let status = Command::new(verb)
        .arg(&repo)
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run {verb}: {e}"))?;
    Ok(status.code().unwrap_or(1))
}
