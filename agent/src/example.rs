//! The embedded example app: `robokud --dev` writes it out and deploys it as `hello`, so a
//! newcomer sees a running dyno, `roboku ps` and the logs with no setup at all.

use crate::deploy;
use crate::engine::{Command, Door, EngineHandle};
use crate::settings::Settings;
use crate::util::IoContext;
use roboku_wire::DeployRequest;

const FILES: &[(&str, &str)] = &[
    ("Procfile", include_str!("../../examples/hello/Procfile")),
    ("server.py", include_str!("../../examples/hello/server.py")),
];

/// Creates app `hello` and deploys the example, unless it already has a release.
pub async fn deploy_hello(settings: &Settings, engine: &EngineHandle) {
    if let Err(e) = try_deploy(settings, engine).await {
        tracing::error!(error = %e, "deploying the example app failed");
    }
}

async fn try_deploy(settings: &Settings, engine: &EngineHandle) -> anyhow::Result<()> {
    if let Ok(crate::engine::Reply::App(app)) = engine
        .call(
            Door::Agent,
            Command::AppInfo {
                app: "hello".into(),
            },
        )
        .await
    {
        if app.release.is_some() {
            return Ok(());
        }
    } else {
        engine
            .call(
                Door::Agent,
                Command::CreateApp {
                    name: "hello".into(),
                },
            )
            .await?;
    }
    let dir = settings.tmp_dir().join("example-hello");
    std::fs::create_dir_all(&dir).at("create dir", &dir)?;
    for (name, text) in FILES {
        let path = dir.join(name);
        std::fs::write(&path, text).at("write", &path)?;
    }
    let req = DeployRequest {
        source: dir.display().to_string(),
        description: Some("Deploy the embedded example".into()),
        buildpacks_of: None,
    };
    let release = deploy::deploy(
        engine,
        settings,
        Door::Agent,
        "hello",
        req,
        None,
        Default::default(),
    )
    .await?;
    let _ = std::fs::remove_dir_all(&dir);
    tracing::info!(
        version = release.version,
        "example app `hello` deployed: try `roboku ps -a hello`"
    );
    Ok(())
}
