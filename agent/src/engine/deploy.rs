//! The deploy pipeline as the doors call it: check the app, build the slug off the engine (a
//! blocking task: copying and hashing must never stall supervision), validate `.env`, then hand
//! the slug to the engine, which cuts the release and restarts the dynos.

use super::{Command, Door, EngineError, EngineHandle, Reply};
use crate::build::{self, ArchiveLimits};
use crate::settings::Settings;
use roboku_wire as wire;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub async fn deploy(
    engine: &EngineHandle,
    settings: &Settings,
    door: Door,
    app: &str,
    req: wire::DeployRequest,
) -> Result<wire::ReleaseInfo, EngineError> {
    engine
        .call(
            door,
            Command::CheckApp {
                app: app.to_string(),
            },
        )
        .await?;
    let source = PathBuf::from(&req.source);
    if !source.is_absolute() {
        return Err(EngineError::BadRequest(format!(
            "deploy source {:?} must be an absolute path",
            req.source
        )));
    }
    if !source.exists() {
        return Err(EngineError::BadRequest(format!(
            "deploy source {}: no such file or directory",
            source.display()
        )));
    }
            let (tmp, slugs, data) = (settings.tmp_dir(), settings.slugs_dir(), settings.data_dir.clone());
    let built = tokio::task::spawn_blocking(move || {
                // A copy and a slug of the source may both be on disk at once.
        check_free_space(&data, tree_size(&source).saturating_mul(2))?;
        let slug = build::prepare_slug(&source, &tmp, &slugs, ArchiveLimits::default())?;
        let dotenv = read_env(&slug.path)?;
        check_app_json(&slug.path)?;
        Ok::<_, EngineError>((slug, dotenv))
    })
    .await
    .map_err(|e| EngineError::Internal(format!("build task failed: {e}")))??;
    let (slug, dotenv) = built;
    let description = req
        .description
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| {
            format!(
                "Deploy {} ({})",
                req.source,
                &slug.sha256[..12.min(slug.sha256.len())]
            )
        });
    match engine
        .call(
            door,
            Command::Release {
                app: app.to_string(),
                slug,
                dotenv,
                description,
            },
        )
        .await?
    {
        Reply::Release(r) => Ok(r),
        other => Err(EngineError::Internal(format!(
            "unexpected engine reply {other:?}"
        ))),
    }
}

/// Refuses work that would fill the disk: `need` bytes plus a 64 MiB margin must be free.
pub fn check_free_space(dir: &std::path::Path, need: u64) -> Result<(), EngineError> {
    const MARGIN: u64 = 64 << 20;
    let st = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| EngineError::Internal(format!("statvfs {}: {e}", dir.display())))?;
    let free = st.blocks_available() as u64 * st.fragment_size() as u64;
    if free < need.saturating_add(MARGIN) {
        return Err(EngineError::Conflict(format!(
            "not enough free space on {}: this deploy needs about {} (plus a {} margin), {} is free",
            dir.display(),
            human(need),
            human(MARGIN),
            human(free)
        )));
    }
    Ok(())
}

fn human(b: u64) -> String {
    format!("{:.1}M", b as f64 / (1u64 << 20) as f64)
}

/// Bytes under a directory (regular files), for the free-space check.
fn tree_size(path: &std::path::Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if meta.is_dir() {
        std::fs::read_dir(path)
            .map(|rd| rd.flatten().map(|e| tree_size(&e.path())).sum())
            .unwrap_or(0)
    } else if meta.is_file() {
        meta.len()
    } else {
        0
    }
}

/// The slug's `app.json` health checks must parse: a typo must fail the deploy, not be ignored.
fn check_app_json(slug: &std::path::Path) -> Result<(), EngineError> {
    match std::fs::read_to_string(slug.join("app.json")) {
        Ok(text) => super::health::parse_app_json(&text)
            .map(|_| ())
            .map_err(EngineError::InvalidApp),
        Err(_) => Ok(()),
    }
}

/// The slug's `.env`, if any; a malformed one fails the deploy with the line named.
fn read_env(slug: &std::path::Path) -> Result<BTreeMap<String, String>, EngineError> {
    let path = slug.join(".env");
    match std::fs::read_to_string(&path) {
        Ok(text) => crate::procfile::parse_dotenv(&text)
            .map(|pairs| pairs.into_iter().collect())
            .map_err(|e| EngineError::InvalidApp(format!(".env {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(EngineError::Internal(format!(
            "read {}: {e}",
            path.display()
        ))),
    }
}
