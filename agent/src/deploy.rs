//! The deploy pipeline as the doors call it: check the app, build the slug off the engine (a
//! blocking task: copying and hashing must never stall supervision), validate `.env`, then hand
//! the slug to the engine, which cuts the release and restarts the dynos.

use crate::build::buildpack::git_cache::GitCache;
use crate::build::buildpack::{self, run_buildpacks, BuildOpts};
use crate::build::{self, ArchiveLimits};
use crate::engine::{Command, Door, EngineError, EngineHandle, Reply};
use crate::settings::Settings;
use roboku_wire as wire;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub async fn deploy(
    engine: &EngineHandle,
    settings: &Settings,
    door: Door,
    app: &str,
    req: wire::DeployRequest,
    artifact: Option<wire::fleet::Artifact>,
    wait: crate::engine::holds::Wait,
) -> Result<wire::ReleaseInfo, EngineError> {
    let (slug, buildpacks) =
        build_slug(engine, settings, door, app, &req, &settings.slugs_dir()).await?;
    let description = req
        .description
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| {
            let of = req
                .buildpacks_of
                .map_or(String::new(), |v| format!(", buildpacks of v{v}"));
            format!(
                "Deploy {} ({}{of})",
                req.source,
                &slug.sha256[..12.min(slug.sha256.len())]
            )
        });
    let cmd = Command::Release {
        app: app.to_string(),
        slug,
        description,
        artifact,
        buildpacks,
    };
    // Waits for the app's apply gates, if it has any (the slug is built meanwhile).
    match engine.call_waiting(door, cmd, wait).await? {
        Reply::Release(r) => Ok(r),
        other => Err(EngineError::Internal(format!(
            "unexpected engine reply {other:?}"
        ))),
    }
}

/// `deploy --plan`: builds the slug into a scratch directory (never the slug store), asks the
/// engine what releasing it would do, and removes the scratch copy. Nothing is applied (the
/// build's output still goes to the app's logs, and buildpacks may refresh the build cache).
pub async fn plan(
    engine: &EngineHandle,
    settings: &Settings,
    door: Door,
    app: &str,
    req: wire::DeployRequest,
) -> Result<wire::DeployPlan, EngineError> {
    let scratch = settings
        .tmp_dir()
        .join(format!("plan-{app}-{}", crate::util::now_ms()));
    let built = build_slug(engine, settings, door, app, &req, &scratch).await;
    let answer = match built {
        Ok((slug, _)) => {
            let new_tree = slug.path.clone();
            let planned = engine
                .call(
                    door,
                    Command::PlanRelease {
                        app: app.to_string(),
                        slug,
                    },
                )
                .await;
            match planned {
                Ok(Reply::Plan(mut p)) => {
                    let old_tree = p
                        .current_slug
                        .as_ref()
                        .map(|s| settings.slugs_dir().join(s));
                    if let Some(old) = old_tree.filter(|d| p.code_changed && d.is_dir()) {
                        let files = tokio::task::spawn_blocking(move || {
                            crate::build::tree_diff::diff(&old, &new_tree)
                        })
                        .await;
                        p.files = files.ok();
                    }
                    Ok(Reply::Plan(p))
                }
                other => other,
            }
        }
        Err(e) => Err(e),
    };
    let dir = scratch.clone();
    let removed = tokio::task::spawn_blocking(move || crate::build::remove_tree(&dir)).await;
    if let Ok(Err(e)) = removed {
        tracing::warn!(app, error = %e, "cannot remove a plan's scratch slug");
    }
    match answer? {
        Reply::Plan(p) => Ok(p),
        other => Err(EngineError::Internal(format!(
            "unexpected engine reply {other:?}"
        ))),
    }
}

/// Checks the app, then builds the request's source into a slug under `slugs` off the engine
/// loop. Also returns the buildpacks it was built with (`None`: a prebuilt slug, none ran).
async fn build_slug(
    engine: &EngineHandle,
    settings: &Settings,
    door: Door,
    app: &str,
    req: &wire::DeployRequest,
    slugs: &Path,
) -> Result<(crate::build::Slug, Option<Vec<wire::ReleaseBuildpack>>), EngineError> {
    let info = match engine
        .call(
            door,
            Command::CheckApp {
                app: app.to_string(),
            },
        )
        .await?
    {
        Reply::App(info) => info,
        other => {
            return Err(EngineError::Internal(format!(
                "unexpected engine reply {other:?}"
            )))
        }
    };
    let config = match engine
        .call(
            door,
            Command::GetConfig {
                app: app.to_string(),
            },
        )
        .await?
    {
        Reply::Config(c) => c,
        other => {
            return Err(EngineError::Internal(format!(
                "unexpected engine reply {other:?}"
            )))
        }
    };
    let packs = match req.buildpacks_of {
        Some(version) => buildpacks_of(engine, door, app, version).await?,
        None => buildpack::sources::unpinned(&info.buildpacks),
    };
    let source = PathBuf::from(&req.source);
    if !source.is_absolute() {
        return Err(EngineError::BadRequest(format!(
            "deploy source {:?} must be an absolute path",
            source.display()
        )));
    }
    if !source.exists() {
        return Err(EngineError::BadRequest(format!(
            "deploy source {}: no such file or directory",
            source.display()
        )));
    }
    let build = BuildPlan {
        app: app.to_string(),
        config,
        run_as: build_user(&info)?,
        packs,
        settings: settings.clone(),
        logs: engine.logs.clone(),
        cgroup: engine
            .cgroups
            .clone()
            .map(|driver| BuildCgroup::new(driver, app)),
    };
    let (tmp, slugs, data) = (settings.tmp_dir(), slugs.to_path_buf(), settings.clone());
    let built = tokio::task::spawn_blocking(move || {
        // A copy and a slug of the source may both be on disk at once.
        check_free_space(&data, tree_size(&source).saturating_mul(2))?;
        let mut used = None;
        let mut step = |root: &Path| build.run(root, &mut used);
        let slug =
            build::prepare_slug_with(&source, &tmp, &slugs, extraction_limits(&data), &mut step)?;
        check_env(&slug.path)?;
        check_app_json(&slug.path)?;
        Ok::<_, EngineError>((slug, used))
    })
    .await
    .map_err(|e| EngineError::Internal(format!("build task failed: {e}")))??;
    Ok(built)
}

/// The buildpacks release `version` of `app` was built with, git ones at their commits.
async fn buildpacks_of(
    engine: &EngineHandle,
    door: Door,
    app: &str,
    version: u32,
) -> Result<Vec<wire::ReleaseBuildpack>, EngineError> {
    let releases = match engine
        .call(
            door,
            Command::Releases {
                app: app.to_string(),
            },
        )
        .await?
    {
        Reply::Releases(r) => r,
        other => {
            return Err(EngineError::Internal(format!(
                "unexpected engine reply {other:?}"
            )))
        }
    };
    let release = releases
        .into_iter()
        .find(|r| r.version == version)
        .ok_or_else(|| EngineError::NotFound(format!("app {app:?} has no release v{version}")))?;
    release.buildpacks.ok_or_else(|| {
        EngineError::Conflict(format!(
            "v{version} of {app} records no buildpacks (a prebuilt slug, or a release made \
             before roboku recorded them); deploy without --buildpacks-of"
        ))
    })
}

/// Marker file a prebuilt slug (`roboku slug:build`) carries at its top: no buildpacks then.
pub const PREBUILT_MARKER: &str = crate::build::slugfile::MARKER;

/// What the build step needs, owned so it can move into the blocking task.
struct BuildPlan {
    app: String,
    config: BTreeMap<String, String>,
    run_as: Option<(u32, u32)>,
    /// As the app names them (or as a release recorded them, git ones pinned).
    packs: Vec<wire::ReleaseBuildpack>,
    settings: Settings,
    logs: Option<crate::logs::LogHandle>,
    cgroup: Option<BuildCgroup>,
}

/// Where builds run: `_builds/<app>@<n>` in roboku's subtree (not a valid app name, so never a
/// dyno's), with limits, killed whole when the build ends; the start sweep removes any an agent
/// killed mid-build left (it is shaped like a dyno instance no record accounts for).
struct BuildCgroup {
    driver: std::sync::Arc<dyn crate::cgroup::CgroupDriver>,
    rel: String,
}

/// Most tasks a build may run at once (a runaway `make -j` or a fork bomb in a build script).
const BUILD_PIDS: u64 = 4096;

impl BuildCgroup {
    fn new(driver: std::sync::Arc<dyn crate::cgroup::CgroupDriver>, app: &str) -> BuildCgroup {
        let rel = format!("_builds/{app}@{}", crate::util::now_ms());
        BuildCgroup { driver, rel }
    }

    /// Creates the cgroup and opens its join files; none (logged) if cgroups are not usable.
    fn open(&self) -> Vec<std::fs::File> {
        if !self.driver.status().enforced {
            return Vec::new();
        }
        let limits = wire::Limits {
            pids: Some(BUILD_PIDS),
            memory_max: half_the_memory(),
            ..Default::default()
        };
        match self
            .driver
            .create(&self.rel, &limits)
            .and_then(|()| self.driver.join_files(&self.rel))
        {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(cgroup = %self.rel, error = %e, "build runs without its cgroup");
                Vec::new()
            }
        }
    }

    /// Kills everything left in it (whatever escaped the phases' process groups) and removes it.
    fn close(&self) {
        if let Err(e) = self
            .driver
            .kill_all(&self.rel)
            .and_then(|()| self.driver.remove(&self.rel))
        {
            tracing::warn!(cgroup = %self.rel, error = %e, "cleaning up a build cgroup failed");
        }
    }
}

/// Half of the host's RAM (`MemTotal`), the memory a build may use.
fn half_the_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = text
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024 / 2)
}

impl BuildPlan {
    /// Runs the buildpacks on the writable tree (unless it is a prebuilt slug), then refuses
    /// binaries built for another architecture than this robot's. `used` gets the buildpacks
    /// the build ran, git ones with their commit.
    fn run(
        &self,
        root: &Path,
        used: &mut Option<Vec<wire::ReleaseBuildpack>>,
    ) -> Result<Vec<(String, String)>, build::BuildError> {
        let mut defaults = Vec::new();
        if !root.join(PREBUILT_MARKER).exists() {
            let logs = self.logs.clone();
            let app = self.app.clone();
            let mut output = |line: &str| {
                if let Some(logs) = &logs {
                    logs.system(&app, "build", line.to_string());
                }
            };
            let git = GitCache {
                root: self.settings.git_buildpacks_dir(),
                timeout: Duration::from_secs(self.settings.git_fetch_timeout_secs),
                build_tag: Some(root.to_path_buf()),
            };
            let packs = buildpack::sources::resolve(
                &self.packs,
                &self.settings.buildpacks_dir(),
                &git,
                &mut output,
            )?;
            *used = Some(packs.recorded);
            let join = self
                .cgroup
                .as_ref()
                .map(BuildCgroup::open)
                .unwrap_or_default();
            let mut opts = BuildOpts {
                timeout: Duration::from_secs(self.settings.build_timeout_secs),
                run_as: self.run_as,
                output: &mut output,
                join: &join,
            };
            let outcome = run_buildpacks(
                root,
                &self.settings.cache_dir(&self.app),
                &self.config,
                &packs.dirs,
                &self.settings.buildpacks_dir(),
                &mut opts,
            );
            drop(join);
            if let Some(cg) = &self.cgroup {
                cg.close();
            }
            let outcome = outcome?;
            defaults = outcome.default_process_types.into_iter().collect();
        }
        build::elf::check_arch(root, std::env::consts::ARCH)?;
        Ok(defaults)
    }
}

/// Builds run as the app's own user when robokud is root (never as root unless the app asks).
fn build_user(info: &wire::AppInfo) -> Result<Option<(u32, u32)>, EngineError> {
    if !nix::unistd::geteuid().is_root() || info.user == "root" {
        return Ok(None);
    }
    match (info.uid, info.gid) {
        (Some(uid), Some(gid)) => Ok(Some((uid, gid))),
        _ => Err(EngineError::Conflict(format!(
            "cannot build app {:?}: its user {:?} is not usable (see `roboku status`)",
            info.name, info.user
        ))),
    }
}

/// Refuses work that would cross the disk reserve (`disk.rs`): `need` bytes must fit above it.
pub fn check_free_space(settings: &Settings, need: u64) -> Result<(), EngineError> {
    crate::disk::check(
        &settings.data_dir,
        settings.disk_reserve,
        need,
        "this deploy",
    )
}

/// An archive may unpack to no more than the data filesystem can take above the reserve, checked
/// entry by entry while extracting: the free-space check before it only knows the compressed size.
fn extraction_limits(settings: &Settings) -> ArchiveLimits {
    let default = ArchiveLimits::default();
    let Ok(room) = crate::disk::room(&settings.data_dir, settings.disk_reserve) else {
        return default;
    };
    ArchiveLimits {
        max_total_bytes: default.max_total_bytes.min(room),
        ..default
    }
}

/// Bytes under a directory (regular files), for the free-space check.
pub(crate) fn tree_size(path: &std::path::Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
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
        Ok(text) => crate::engine::health::parse_app_json(&text)
            .and_then(|_| crate::engine::policy::parse(&text))
            .map(|_| ())
            .map_err(EngineError::InvalidApp),
        Err(_) => Ok(()),
    }
}

/// The slug's `.env`, if any, must parse: a malformed one fails the deploy with the line named.
fn check_env(slug: &std::path::Path) -> Result<(), EngineError> {
    let path = slug.join(".env");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let vars = crate::procfile::parse_dotenv(&text)
                .map_err(|e| EngineError::InvalidApp(format!(".env {e}")))?;
            crate::procfile::envsize::check_all(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .map_err(|e| EngineError::InvalidApp(format!(".env: {e}")))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EngineError::Internal(format!(
            "read {}: {e}",
            path.display()
        ))),
    }
}
