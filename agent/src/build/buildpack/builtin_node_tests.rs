//! The nodejs buildpack run for real through the runner, offline: npm, Yarn 1 and pnpm apps with
//! local (tarball) dependencies, their lock files made by the real tools here; Heroku's script
//! order, the dev dependencies pruned after the build, the warm cache; Heroku's refusals.

use super::builtin_tests::{build_builtin, builtins, refused, run_in_app};
use super::tests::{build_with, site, Site};
use super::*;
use std::process::Stdio;
use std::time::Instant;

const NOBODY: Option<(u32, u32)> = Some((65534, 65534));

/// `tool` is on the builds' PATH ([`BUILD_PATH`]).
pub(super) fn on_build_path(tool: &str) -> bool {
    BUILD_PATH
        .split(':')
        .any(|d| Path::new(d).join(tool).is_file())
}

/// Runs a package manager as a developer would on their machine, offline, in `dir`.
pub(super) fn dev_tool(root: &Path, dir: &Path, tool: &str, args: &[&str]) {
    let out = Command::new(tool)
        .args(args)
        .current_dir(dir)
        .env("HOME", root.join("dev-home"))
        .env("npm_config_cache", root.join("dev-npm"))
        .env("YARN_CACHE_FOLDER", root.join("dev-yarn"))
        .env("npm_config_store_dir", root.join("dev-pnpm"))
        .env("npm_config_update_notifier", "false")
        // Debian's yarnpkg finds its modules there; a nodesource node does not look there.
        .env("NODE_PATH", "/usr/share/nodejs")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tool} {args:?} in {}: {}\n{}{}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Packs `greet` (runtime) and `builder` (dev: a `builder` bin writing built.txt) into
/// `app/vendor/`, and writes the app's package.json and server.js.
pub(super) fn node_app(root: &Path, app: &Path, name: &str) {
    let src = root.join("dep-src");
    for (dep, file, text, extra) in [
        (
            "greet",
            "index.js",
            "module.exports = n => 'hello ' + n + ' from greet';\n",
            "",
        ),
        (
            "builder",
            "cli.js",
            "#!/usr/bin/env node\nrequire('fs').writeFileSync('built.txt', 'built by builder\\n');\n",
            r#", "bin": {"builder": "cli.js"}"#,
        ),
    ] {
        let d = src.join(dep);
        fs::create_dir_all(&d).unwrap();
        fs::write(
            d.join("package.json"),
            format!(r#"{{"name": "{dep}", "version": "1.0.0", "main": "{file}"{extra}}}"#),
        )
        .unwrap();
        fs::write(d.join(file), text).unwrap();
    }
    let vendor = app.join("vendor");
    fs::create_dir_all(&vendor).unwrap();
    for dep in ["greet", "builder"] {
        let d = src.join(dep);
        let dest = vendor.to_str().unwrap();
        dev_tool(
            root,
            &src,
            "npm",
            &["pack", d.to_str().unwrap(), "--pack-destination", dest],
        );
    }
    fs::write(
        app.join("package.json"),
        format!(
            r#"{{"name": "{name}", "version": "1.0.0", "license": "MIT",
  "dependencies": {{"greet": "file:vendor/greet-1.0.0.tgz"}},
  "devDependencies": {{"builder": "file:vendor/builder-1.0.0.tgz"}},
  "scripts": {{"build": "builder", "start": "node server.js"}}}}"#
        ),
    )
    .unwrap();
    fs::write(
        app.join("server.js"),
        "const greet = require('greet');\n\
         const body = greet(process.env.DYNO || 'robot') + ', ' + require('fs').readFileSync('built.txt', 'utf8');\n\
         require('http').createServer((_, res) => res.end(body)).listen(process.env.PORT || 5000);\n",
    )
    .unwrap();
}

/// The lock file of `manager`, made by the real tool offline (no node_modules left behind).
pub(super) fn lock(root: &Path, app: &Path, manager: &str) {
    match manager {
        "npm" => dev_tool(
            root,
            app,
            "npm",
            &["install", "--package-lock-only", "--offline"],
        ),
        "yarn" => dev_tool(root, app, "yarnpkg", &["install", "--offline"]),
        _ => dev_tool(
            root,
            app,
            "pnpm",
            &["install", "--lockfile-only", "--offline"],
        ),
    }
    let _ = fs::remove_dir_all(app.join("node_modules"));
}

const CHECK: &str = "node -e \"console.log(require('greet')('robot'))\"; cat built.txt; \
                     test -e node_modules/builder && echo dev-kept || echo dev-pruned; \
                     test -e node_modules/.bin/builder && echo bin-kept || echo bin-pruned";
const WANT: &str = "hello robot from greet\nbuilt by builder\ndev-pruned\nbin-pruned\n";

/// Copies `pristine` over a fresh `s.app`, builds it, and returns the build's wall time.
fn fresh_build(s: &Site, pristine: &Path) -> (Duration, Vec<String>) {
    fs::remove_dir_all(&s.app).unwrap();
    fs::create_dir(&s.app).unwrap();
    copy_dir(pristine, &s.app).unwrap();
    let t = Instant::now();
    let (outcome, lines) = build_builtin(s, NOBODY);
    let took = t.elapsed();
    assert_eq!(outcome.buildpacks_used, ["Node.js"]);
    assert_eq!(
        outcome.default_process_types.get("web").map(String::as_str),
        Some("npm start")
    );
    (took, lines)
}

fn has(lines: &[String], want: &str) -> bool {
    lines.iter().any(|l| l.contains(want))
}

#[test]
fn each_lock_file_installs_builds_prunes_and_reuses_the_cache() {
    let mut managers = vec!["npm", "yarn"];
    if on_build_path("pnpm") {
        managers.push("pnpm");
    } else {
        eprintln!(
            "pnpm is not installed here: its refusal is tested instead (pnpm_missing_is_named)"
        );
    }
    for manager in managers {
        let s = site();
        node_app(&s.root, &s.app, &format!("{manager}-app"));
        lock(&s.root, &s.app, manager);
        let pristine = s.root.join("pristine");
        fs::create_dir(&pristine).unwrap();
        copy_dir(&s.app, &pristine).unwrap();

        let (first, lines) = fresh_build(&s, &pristine);
        assert!(
            has(&lines, "Using node v") && has(&lines, &format!(" and {manager} ")),
            "{manager}: {lines:?}"
        );
        assert!(
            has(&lines, "Installing dependencies"),
            "{manager}: {lines:?}"
        );
        assert!(has(&lines, &format!("Running build ({manager} run build)")));
        assert!(
            has(&lines, "Pruning devDependencies ("),
            "{manager}: {lines:?}"
        );
        assert_eq!(run_in_app(&s.app, CHECK), WANT, "{manager}");

        // The same source again: node_modules and the prune come from the cache; the build
        // script still runs (its output is the app's, not the cache's).
        fs::remove_file(pristine.join("built.txt")).ok();
        let (second, lines) = fresh_build(&s, &pristine);
        assert!(has(&lines, "reusing node_modules"), "{manager}: {lines:?}");
        assert!(
            has(&lines, "replaying the cached prune"),
            "{manager}: {lines:?}"
        );
        assert!(
            !has(&lines, "Installing dependencies"),
            "{manager}: {lines:?}"
        );
        assert_eq!(run_in_app(&s.app, CHECK), WANT, "{manager} (cached)");
        eprintln!(
            "nodejs {manager} app, 2 local deps: first build {first:?}, second (cached) {second:?}, ratio {:.1}x",
            first.as_secs_f64() / second.as_secs_f64()
        );

        // A changed dependency tarball misses the cache (the lock pins its path, not its bytes,
        // for yarn; its integrity for npm and pnpm, which then refuse the mismatch themselves).
        if manager == "yarn" {
            let greet = s.root.join("dep-src/greet/index.js");
            fs::write(&greet, "module.exports = n => 'hi ' + n;\n").unwrap();
            let src = s.root.join("dep-src");
            let dest = pristine.join("vendor");
            dev_tool(
                &s.root,
                &src,
                "npm",
                &[
                    "pack",
                    "./greet",
                    "--pack-destination",
                    dest.to_str().unwrap(),
                ],
            );
            let (_, lines) = fresh_build(&s, &pristine);
            assert!(has(&lines, "Installing dependencies"), "{lines:?}");
        }
    }
}

#[test]
fn heroku_postbuild_replaces_build_between_prebuild_and_cleanup() {
    let s = site();
    let step = |name: &str| format!("echo {name} >> steps.txt");
    fs::write(
        s.app.join("package.json"),
        format!(
            r#"{{"name": "steps", "version": "1.0.0", "scripts": {{
  "heroku-prebuild": "{}", "build": "{}", "heroku-postbuild": "{}", "heroku-cleanup": "{}"}}}}"#,
            step("prebuild"),
            step("build"),
            step("postbuild"),
            step("cleanup")
        ),
    )
    .unwrap();
    let (outcome, lines) = build_builtin(&s, NOBODY);
    assert!(
        outcome.default_process_types.is_empty(),
        "no start script, no server.js"
    );
    assert!(
        has(&lines, "Both \"build\" and \"heroku-postbuild\""),
        "{lines:?}"
    );
    assert!(
        has(&lines, "package.json has no devDependencies"),
        "{lines:?}"
    );
    let steps = fs::read_to_string(s.app.join("steps.txt")).unwrap();
    assert_eq!(steps, "prebuild\npostbuild\ncleanup\n");

    // Only "build": it runs.
    let s = site();
    fs::write(
        s.app.join("package.json"),
        format!(
            r#"{{"name": "b", "scripts": {{"build": "{}"}}}}"#,
            step("build")
        ),
    )
    .unwrap();
    build_builtin(&s, None);
    assert_eq!(
        fs::read_to_string(s.app.join("steps.txt")).unwrap(),
        "build\n"
    );
}

#[test]
fn node_env_development_keeps_dev_dependencies() {
    let s = site();
    node_app(&s.root, &s.app, "dev-app");
    lock(&s.root, &s.app, "npm");
    let run = build_with(
        &s,
        &[("NODE_ENV", "development")],
        &[],
        &builtins(),
        Duration::from_secs(300),
        None,
        |_| {},
    );
    let lines = run.lines.join("\n");
    assert!(run.result.is_ok(), "{lines}");
    assert!(
        lines.contains("Not pruning devDependencies: NODE_ENV is 'development'"),
        "{lines}"
    );
    assert!(s.app.join("node_modules/builder").exists());
}

#[test]
fn what_heroku_refuses_is_refused_by_name() {
    let pj = r#"{"name": "x", "version": "1.0.0"}"#;
    let cases: [(&[(&str, &str)], &str); 8] = [
        (
            &[("package.json", pj), ("package-lock.json", "{}"), ("yarn.lock", "")],
            "Multiple lockfiles found: package-lock.json (npm), yarn.lock (Yarn)",
        ),
        (
            &[("package.json", pj), ("pnpm-lock.yaml", ""), ("npm-shrinkwrap.json", "{}")],
            "npm-shrinkwrap.json conflicts with pnpm-lock.yaml (pnpm)",
        ),
        (
            &[("package.json", r#"{"engines": {"yarn": "1.x"}, "packageManager": "pnpm@9.1.0"}"#)],
            "Multiple package managers declared in package.json: yarn (engines.yarn 1.x), pnpm (packageManager pnpm@9.1.0)",
        ),
        (
            &[("package.json", r#"{"engines": {"node": ">=99"}}"#)],
            "package.json asks for node \">=99\" (engines.node) but this robot has node v",
        ),
        (
            &[("package.json", r#"{"engines": {"node": "not a range"}}"#)],
            "engines.node \"not a range\" is not a semver range",
        ),
        (&[("package.json", "{\"name\": ")], "package.json is not valid JSON"),
        (
            &[("package.json", r#"{"engines": {"iojs": "1.0.x"}}"#)],
            "package.json asks for io.js \"1.0.x\" (engines.iojs)",
        ),
        (
            &[("package.json", pj), ("yarn.lock", "__metadata:\n  version: 8\n")],
            "yarn.lock is from Yarn 2 or later (Berry)",
        ),
    ];
    for (files, want) in cases {
        let s = site();
        for (name, text) in files {
            fs::write(s.app.join(name), text).unwrap();
        }
        refused(&s, want);
    }
}

#[test]
fn a_failing_build_script_fails_the_build_naming_it() {
    let s = site();
    fs::write(
        s.app.join("package.json"),
        r#"{"name": "x", "scripts": {"build": "echo compiling; exit 3"}}"#,
    )
    .unwrap();
    refused(&s, "The build script of package.json failed");
}

/// Without pnpm on PATH (node and npm only), a pnpm app is refused with how to get pnpm.
#[test]
fn pnpm_missing_is_named() {
    let s = site();
    fs::write(
        s.app.join("package.json"),
        r#"{"packageManager": "pnpm@9.15.0"}"#,
    )
    .unwrap();
    fs::write(s.app.join("pnpm-lock.yaml"), "lockfileVersion: '9.0'\n").unwrap();
    let bin = s.root.join("bin");
    fs::create_dir(&bin).unwrap();
    // /bin is /usr/bin here (merged /usr): every tool of /usr/bin but pnpm.
    for e in fs::read_dir("/usr/bin").unwrap() {
        let e = e.unwrap();
        if e.file_name() != "pnpm" && e.file_name() != "pnpx" {
            std::os::unix::fs::symlink(e.path(), bin.join(e.file_name())).unwrap();
        }
    }
    let path = bin.display().to_string();
    let env = s.root.join("env");
    fs::create_dir(&env).unwrap();
    let out = Command::new(builtins().join("nodejs/bin/compile"))
        .args([&s.app, &s.root.join("cache"), &env])
        .env_clear()
        .env("PATH", path)
        .env("HOME", &s.root)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("pnpm-lock.yaml found but pnpm is missing on this robot")
            && stderr.contains("npm install -g pnpm@9.15.0"),
        "{stderr}"
    );
}
