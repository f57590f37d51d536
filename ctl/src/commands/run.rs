//! `run -- CMD ARGS...`: a one-off dyno attached to this terminal.
//!
//! The agent only says how to run it ([`RunSpec`]: argv, cwd, env); the CLI starts the process
//! itself so it inherits this terminal, and passes its exit code through. It is never restarted.

use super::{app_path, AppArg, Ctx};
use anyhow::Context as _;
use roboku_wire::{RunRequest, RunSpec};
use serde_json::Value;
use std::os::unix::process::ExitStatusExt;
use tokio::signal::unix::{signal, SignalKind};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// The command and its arguments
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

/// Runs the one-off dyno and returns the exit code to leave with.
pub async fn run(ctx: &Ctx, args: RunArgs) -> anyhow::Result<i32> {
    let body = RunRequest {
        command: args.command,
    };
    let v: Value = ctx
        .client
        .post(&app_path(&args.app.app, "/run"), &body)
        .await?;
    let Some(spec) = ctx.typed::<RunSpec>(v)? else {
        return Ok(0);
    };
    let Some((program, rest)) = spec.argv.split_first() else {
        anyhow::bail!(
            "robokud sent an empty command for one-off dyno {}",
            spec.name
        );
    };
    // Listening makes these signals harmless to us while the dyno runs; handlers (unlike ignored
    // signals) are reset on exec, so the dyno still gets the default behaviour. Ctrl-C reaches the
    // whole foreground process group, the dyno included, so there is nothing to forward for it.
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for signals")?;
    let mut quit = signal(SignalKind::quit()).context("listening for signals")?;
    let mut terminate = signal(SignalKind::terminate()).context("listening for signals")?;
    let mut hangup = signal(SignalKind::hangup()).context("listening for signals")?;
    let mut child = command(&spec, program, rest).spawn().map_err(|e| {
        anyhow::anyhow!(
            "cannot start one-off dyno {} ({program} in {}): {e}",
            spec.name,
            spec.cwd
        )
    })?;
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.map_err(|e| anyhow::anyhow!("waiting for {}: {e}", spec.name))?;
                return Ok(exit_code(status));
            }
            _ = interrupt.recv() => {}
            _ = quit.recv() => {}
            _ = terminate.recv() => forward(child.id(), libc::SIGTERM),
            _ = hangup.recv() => forward(child.id(), libc::SIGHUP),
        }
    }
}

/// The dyno's process: exactly the spec's argv, cwd and env, nothing of ours; stdio inherited.
fn command(spec: &RunSpec, program: &str, rest: &[String]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(rest)
        .env_clear()
        .envs(&spec.env)
        .current_dir(&spec.cwd);
    cmd
}

/// Passes a signal sent to roboku alone (`kill`, a closing terminal) on to the dyno.
fn forward(pid: Option<u32>, sig: libc::c_int) {
    if let Some(pid) = pid.and_then(|p| libc::pid_t::try_from(p).ok()) {
        // SAFETY: kill(2) takes plain integers; a pid that already exited only yields ESRCH.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// The shell's convention: the exit code, or 128 + the signal that killed it.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(9)), 137);
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(0)), 0);
    }

    #[tokio::test]
    async fn dyno_gets_exactly_the_spec_env_and_cwd() {
        let spec = RunSpec {
            name: "run.1".into(),
            cwd: "/".into(),
            env: [("FOO".to_string(), "bar baz".to_string())].into(),
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo \"$FOO|$HOME|$(pwd)\"; exit 7".into(),
            ],
            release: 1,
        };
        let out = command(&spec, &spec.argv[0], &spec.argv[1..])
            .stdout(std::process::Stdio::piped())
            .output()
            .await
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "bar baz||/\n");
        assert_eq!(exit_code(out.status), 7);
    }
}
