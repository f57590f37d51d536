//! Node apps as a team ships them, side by side on one robot: an npm, a Yarn 1 and (where the
//! robot has pnpm) a pnpm app, each with a local runtime dependency and a local dev dependency
//! whose tool the build script runs, each lock file made by the real tool, every install offline
//! (local tarballs only; npm_config_offline=true). Each serves through its dependency, its slug
//! has no dev dependency left, and a second deploy of the same source reuses the build cache.

use roboku_tests::{app_dir, Agent, AgentOpts};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// A package manager run as the developer runs it before committing, offline.
fn dev_tool(home: &Path, dir: &Path, tool: &str, args: &[&str]) {
    let out = Command::new(tool)
        .args(args)
        .current_dir(dir)
        .env("HOME", home)
        .env("npm_config_cache", home.join("npm"))
        .env("YARN_CACHE_FOLDER", home.join("yarn"))
        .env("npm_config_store_dir", home.join("pnpm"))
        .env("npm_config_update_notifier", "false")
        // Debian's yarnpkg finds its modules there; a nodesource node does not look there.
        .env("NODE_PATH", "/usr/share/nodejs")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The app's source: vendor/greet-1.0.0.tgz (runtime) and vendor/builder-1.0.0.tgz (dev, its
/// `builder` bin writes built.txt), package.json, server.js and the lock file of `manager`.
fn node_app(manager: &str, home: &Path) -> tempfile::TempDir {
    let deps = app_dir(&[
        ("greet/package.json", r#"{"name":"greet","version":"1.0.0"}"#),
        (
            "greet/index.js",
            "module.exports = n => 'hello ' + n + ' from greet';\n",
        ),
        (
            "builder/package.json",
            r#"{"name":"builder","version":"1.0.0","bin":{"builder":"cli.js"}}"#,
        ),
        (
            "builder/cli.js",
            "#!/usr/bin/env node\nrequire('fs').writeFileSync('built.txt', process.argv[2] + ' built by builder');\n",
        ),
    ]);
    let server = "const fs = require('fs');\n\
const body = require('greet')(process.env.DYNO) + ', ' + fs.readFileSync('built.txt', 'utf8');\n\
require('http').createServer((q, r) => r.end(body)).listen(process.env.PORT, '127.0.0.1');\n";
    let package = format!(
        r#"{{"name":"e2e-{manager}","version":"1.0.0","license":"MIT",
"dependencies":{{"greet":"file:vendor/greet-1.0.0.tgz"}},
"devDependencies":{{"builder":"file:vendor/builder-1.0.0.tgz"}},
"scripts":{{"build":"builder {manager}","start":"node server.js"}}}}"#
    );
    let app = app_dir(&[
        ("package.json", &package),
        ("server.js", server),
        ("vendor/.keep", ""),
    ]);
    let vendor = app.path().join("vendor");
    let vendor = vendor.to_str().expect("utf-8");
    for dep in ["./greet", "./builder"] {
        dev_tool(
            home,
            deps.path(),
            "npm",
            &["pack", dep, "--pack-destination", vendor],
        );
    }
    match manager {
        "npm" => dev_tool(
            home,
            app.path(),
            "npm",
            &["install", "--package-lock-only", "--offline"],
        ),
        "yarn" => dev_tool(home, app.path(), "yarnpkg", &["install", "--offline"]),
        _ => dev_tool(
            home,
            app.path(),
            "pnpm",
            &["install", "--lockfile-only", "--offline"],
        ),
    }
    let _ = std::fs::remove_dir_all(app.path().join("node_modules"));
    app
}

fn on_path(tool: &str) -> bool {
    ["/usr/local/bin", "/usr/bin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).is_file())
}

#[test]
fn npm_yarn_and_pnpm_apps_build_offline_side_by_side_prune_dev_deps_and_serve() {
    let agent = Agent::start(AgentOpts::default());
    let home = tempfile::tempdir().expect("developer home");
    let mut managers = vec!["npm", "yarn"];
    let pnpm = on_path("pnpm");
    if pnpm {
        managers.push("pnpm");
    }
    let apps: Vec<_> = managers
        .iter()
        .map(|m| (*m, node_app(m, home.path())))
        .collect();

    for (manager, src) in &apps {
        let name = format!("node-{manager}");
        agent.ok(&["apps:create", &name]);
        agent.ok(&["config:set", "npm_config_offline=true", "-a", &name]);
        let t = Instant::now();
        agent.deploy(&name, src.path());
        let first = t.elapsed();
        let log = agent.ok(&["logs", "-a", &name, "-d", "build", "-n", "500"]);
        assert!(
            log.contains(&format!("Running build ({manager} run build)")),
            "{log}"
        );
        assert!(log.contains("Pruning devDependencies ("), "{log}");

        // Deployed again unchanged: install and prune come from the build cache.
        std::fs::write(src.path().join("CHANGES"), "second deploy\n").expect("write");
        let t = Instant::now();
        agent.deploy(&name, src.path());
        let second = t.elapsed();
        let log = agent.ok(&["logs", "-a", &name, "-d", "build", "-n", "500"]);
        assert!(
            log.contains("reusing node_modules from the build cache"),
            "{log}"
        );
        assert!(log.contains("replaying the cached prune"), "{log}");
        eprintln!(
            "e2e {manager} app: first deploy {first:?}, second (cache warm) {second:?}, ratio {:.1}x",
            first.as_secs_f64() / second.as_secs_f64()
        );
    }

    // All of them up at once, each through its own dependency and build output.
    for (manager, _) in &apps {
        let name = format!("node-{manager}");
        agent.web_answers(
            &name,
            &format!("hello web.1 from greet, {manager} built by builder"),
            20,
        );
        let slug = agent.ok(&[
            "run",
            "-a",
            &name,
            "--",
            "sh",
            "-c",
            "test -e node_modules/builder && echo dev-kept || echo dev-pruned",
        ]);
        assert_eq!(slug.trim(), "dev-pruned", "{manager}");
    }

    if !pnpm {
        // No silent skip: without pnpm the robot refuses a pnpm app, saying how to get pnpm.
        eprintln!("pnpm is not installed here: checking that a pnpm app is refused instead");
        let src = app_dir(&[
            ("package.json", r#"{"name":"p","version":"1.0.0"}"#),
            ("pnpm-lock.yaml", "lockfileVersion: '9.0'\n"),
        ]);
        agent.ok(&["apps:create", "node-pnpm"]);
        let out = agent.roboku(&[
            "deploy",
            src.path().to_str().expect("utf-8"),
            "-a",
            "node-pnpm",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains("npm install -g pnpm"), "{err}");
    }
}
