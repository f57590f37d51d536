//! `bundle create -a APP [--slug FILE] [--config-from .env] [--scale web=1] --key KEY
//! (--device D | --group G) [--expires 30d] [--version N] [--rollback] -o FILE`: the manifest
//! is written once, signed with the fleet key exactly as a command is, and the slugs follow it.
//! Nothing here talks to a robot.

use super::super::fleet::{new_id, seal_bytes, KeyArgs, TargetSel};
use super::super::UsageError;
use crate::output::{duration, now_ms, outln};
use roboku_wire::bundle::{BundleApp, BundleWriter, Manifest, SlugRef, FORMAT, MAX_LIFETIME_MS};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// The app the bundle is for
    #[arg(short, long, env = "ROBOKU_APP", value_parser = crate::parse::app_name)]
    pub app: String,
    /// The release: a slug file (`roboku slug:build`) or an app .tar.gz
    #[arg(long, value_name = "FILE")]
    pub slug: Option<PathBuf>,
    /// The complete set of config vars, from a .env file (vars it does not name are unset)
    #[arg(long, value_name = "FILE")]
    pub config_from: Option<PathBuf>,
    /// Dyno counts, e.g. web=1 worker=2 (types not named keep their count)
    #[arg(long, value_parser = crate::parse::scale_spec, value_name = "TYPE=N")]
    pub scale: Vec<(String, u32)>,
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub target: TargetSel,
    /// How long the bundle may be applied (30s, 10m, 2h, 30d; at most 366d)
    #[arg(long, default_value = "30d", value_parser = crate::parse::duration_ms, value_name = "DURATION")]
    pub expires: u64,
    /// Per-app version [default: now, in unix ms]; must be newer than what the robots have
    #[arg(long)]
    pub version: Option<u64>,
    /// Signed as a rollback: robots take it even if their version of the app is newer
    #[arg(long)]
    pub rollback: bool,
    /// Where to write the bundle
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

pub fn run(json: bool, a: CreateArgs) -> anyhow::Result<i32> {
    if a.slug.is_none() && a.config_from.is_none() && a.scale.is_empty() {
        anyhow::bail!(UsageError(
            "give --slug, --config-from or --scale: a bundle must ask for something".into()
        ));
    }
    if a.expires == 0 || a.expires > MAX_LIFETIME_MS {
        anyhow::bail!(UsageError(format!(
            "--expires must be between 1s and 366d, not {}",
            duration(a.expires)
        )));
    }
    let to = a.target.address()?;
    let key = a.key.load()?;
    let slug = match &a.slug {
        Some(path) => {
            let (sha256, size) = super::super::fleet::file_digest(path)?;
            Some((path.clone(), SlugRef { sha256, size }))
        }
        None => None,
    };
    let config = match &a.config_from {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("read {}: {e}", path.display()))?;
            let vars = roboku_wire::procfile::parse_dotenv(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Some(vars.into_iter().collect::<BTreeMap<_, _>>())
        }
        None => None,
    };
    let ts = now_ms();
    let manifest = Manifest {
        bundle: FORMAT,
        id: new_id(),
        ts,
        expires: ts.saturating_add(a.expires),
        to: to.as_path(),
        apps: [(
            a.app.clone(),
            BundleApp {
                version: a.version.unwrap_or(ts),
                rollback: a.rollback,
                slug: slug.as_ref().map(|(_, s)| s.clone()),
                config,
                formation: a.scale.iter().cloned().collect(),
            },
        )]
        .into(),
    };
    manifest.check().map_err(|e| anyhow::anyhow!("{e}"))?;
    let bytes = serde_json::to_vec(&manifest)?;
    let sealed = seal_bytes(&bytes, key.as_ref());
    write(&a.output, &sealed, slug.as_ref())?;
    let size = std::fs::metadata(&a.output).map(|m| m.len()).unwrap_or(0);
    if json {
        let out = serde_json::json!({"file": a.output, "size": size, "manifest": manifest});
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
    } else {
        let app = &manifest.apps[&a.app];
        outln!(
            "wrote {} ({size} bytes): app {} version {}{} for {}, expires in {}{}",
            a.output.display(),
            a.app,
            app.version,
            if a.rollback { " (rollback)" } else { "" },
            manifest.to,
            duration(a.expires),
            if key.is_none() { ", UNSIGNED" } else { "" }
        )?;
    }
    Ok(0)
}

/// Writes to `<out>.part` and renames, so a half-written bundle never carries the final name
/// (a watched directory takes `*.rkb` files).
fn write(
    out: &std::path::Path,
    sealed: &[u8],
    slug: Option<&(PathBuf, SlugRef)>,
) -> anyhow::Result<()> {
    let part = PathBuf::from(format!("{}.part", out.display()));
    let result = (|| -> anyhow::Result<()> {
        let f = std::fs::File::create(&part)
            .map_err(|e| anyhow::anyhow!("create {}: {e}", part.display()))?;
        let io = |e: std::io::Error| anyhow::anyhow!("write {}: {e}", part.display());
        let mut w = BundleWriter::new(std::io::BufWriter::new(f), sealed).map_err(io)?;
        if let Some((path, s)) = slug {
            let mut src = std::fs::File::open(path)
                .map_err(|e| anyhow::anyhow!("open {}: {e}", path.display()))?;
            w.slug(s, &mut src)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        let mut buf = w.finish().map_err(io)?;
        buf.flush().map_err(io)?;
        buf.get_ref().sync_all().map_err(io)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    std::fs::rename(&part, out)
        .map_err(|e| anyhow::anyhow!("rename {} to {}: {e}", part.display(), out.display()))
}
