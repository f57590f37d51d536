//! `slug:build DIR -o FILE`: build once on a workstation or in CI, deploy the same slug to many
//! robots with `roboku deploy --slug FILE`. The build itself is robokud's code (the buildpack
//! runner), so this runs `robokud slug:build` from next to this binary or from PATH; no agent
//! needs to be running.

use std::path::PathBuf;
use std::process::Command;

#[derive(clap::Args, Debug)]
pub struct SlugBuildArgs {
    /// The app's source directory (or .tar.gz)
    pub source: PathBuf,
    /// Where to write the slug file
    #[arg(short, long)]
    pub output: PathBuf,
    /// Buildpacks in order (built-in names, paths or git URLs with #ref); default: detect among
    /// the built-ins
    #[arg(short, long)]
    pub buildpack: Vec<String>,
    /// The robots' CPU (x86_64, aarch64, arm, ...) [default: this machine's]. A slug for
    /// another CPU builds when the build makes no native code
    #[arg(long)]
    pub arch: Option<String>,
}

pub fn build(json: bool, args: SlugBuildArgs) -> anyhow::Result<i32> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("robokud")));
    let robokud = beside
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("robokud"));
    let mut cmd = Command::new(&robokud);
    cmd.arg("slug:build")
        .arg(&args.source)
        .arg("-o")
        .arg(&args.output);
    for b in &args.buildpack {
        cmd.arg("-b").arg(b);
    }
    if let Some(arch) = &args.arch {
        cmd.arg("--arch").arg(arch);
    }
    if json {
        cmd.arg("--json");
    }
    let status = cmd.status().map_err(|e| {
        anyhow::anyhow!(
            "cannot run {} (install robokud next to roboku): {e}",
            robokud.display()
        )
    })?;
    Ok(status.code().unwrap_or(1))
}
