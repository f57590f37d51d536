//! The built-in buildpacks under `buildpacks/` (repository root), run for real through the
//! runner: the robot's own python3 and node, no network (wheels are built locally).

use super::tests::{build_with, site, Site};
use super::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

pub(super) fn builtins() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../buildpacks")
}

pub(super) fn build_builtin(s: &Site, run_as: Option<(u32, u32)>) -> (BuildOutcome, Vec<String>) {
    let run = build_with(
        s,
        &[],
        &[],
        &builtins(),
        Duration::from_secs(300),
        run_as,
        |_| {},
    );
    match run.result {
        Ok(outcome) => (outcome, run.lines),
        Err(e) => panic!("{e}\noutput:\n{}", run.lines.join("\n")),
    }
}

/// Runs `script` in the built app as a dyno would: HOME = the app, `.profile.d/*.sh` sourced.
pub(super) fn run_in_app(app: &Path, script: &str) -> String {
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "for f in .profile.d/*.sh; do . \"./$f\"; done\n{script}"
        ))
        .env_clear()
        .env("HOME", app)
        .env("PATH", "/usr/bin:/bin")
        .current_dir(app)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}: {}", out.status);
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn procfile_app() {
    let s = site();
    fs::write(s.app.join("Procfile"), "web: ./serve\n").unwrap();
    let (outcome, lines) = build_builtin(&s, None);
    assert_eq!(outcome.buildpacks_used, ["Procfile"]);
    assert!(outcome.default_process_types.is_empty());
    assert!(
        lines.iter().any(|l| l.contains("Nothing to build")),
        "{lines:?}"
    );
}

#[test]
fn python_app_with_empty_requirements() {
    let s = site();
    fs::write(s.app.join("Procfile"), "web: python3 app.py\n").unwrap();
    fs::write(s.app.join("requirements.txt"), "# nothing yet\n\n").unwrap();
    let (outcome, lines) = build_builtin(&s, Some((65534, 65534)));
    assert_eq!(outcome.buildpacks_used, ["Python"]);
    assert!(outcome.default_process_types.is_empty());
    assert!(
        lines.iter().any(|l| l.contains("No requirements")),
        "{lines:?}"
    );
    assert!(s.app.join(".python-packages").is_dir());
    let path = run_in_app(&s.app, "echo \"$PYTHONPATH\"");
    assert_eq!(
        path.trim(),
        s.app.join(".python-packages").display().to_string()
    );
}

/// Builds `tinypkg-0.1-py3-none-any.whl` (a module and a console script) into `out`, offline.
fn tiny_wheel(root: &Path, out: &Path) {
    wheel(
        root,
        out,
        "tinypkg",
        "VALUE = 42\n\ndef hello():\n    print('hello from tinypkg')\n",
    );
}

/// Builds `<name>-0.1-py3-none-any.whl` into `out` (offline: setuptools without isolation), with
/// `module` as its `__init__.py` and a `<name>-hello` script calling its `hello`.
pub(super) fn wheel(root: &Path, out: &Path, name: &str, module: &str) {
    let src = root.join(format!("{name}-src"));
    fs::create_dir_all(src.join(name)).unwrap();
    fs::write(
        src.join("pyproject.toml"),
        format!(
            "[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n\
             [project]\nname = \"{name}\"\nversion = \"0.1\"\n\
             [project.scripts]\n{name}-hello = \"{name}:hello\"\n"
        ),
    )
    .unwrap();
    fs::write(src.join(name).join("__init__.py"), module).unwrap();
    let status = Command::new("/usr/bin/python3")
        .args(["-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index"])
        .arg("--no-build-isolation")
        .arg("--wheel-dir")
        .arg(out)
        .arg(&src)
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .current_dir(root)
        .status()
        .unwrap();
    assert!(status.success(), "pip wheel {name}: {status}");
}

#[test]
fn python_app_with_an_offline_wheel_imports_it_at_runtime_and_caches_the_install() {
    let s = site();
    let wheels = s.app.join("wheels");
    tiny_wheel(&s.root, &wheels);
    fs::write(s.app.join("requirements.txt"), "tinypkg==0.1\n").unwrap();
    let pristine = s.root.join("pristine");
    fs::create_dir(&pristine).unwrap();
    copy_dir(&s.app, &pristine).unwrap();

    let nobody = Some((65534, 65534));
    let t0 = Instant::now();
    let (outcome, lines) = build_builtin(&s, nobody);
    let first = t0.elapsed();
    assert_eq!(outcome.buildpacks_used, ["Python"]);
    assert!(
        lines.iter().any(|l| l.contains("Installing requirements")),
        "{lines:?}"
    );
    let check = "python3 -c 'import tinypkg; print(tinypkg.VALUE)'; tinypkg-hello";
    assert_eq!(run_in_app(&s.app, check), "42\nhello from tinypkg\n");

    // Second build of the same source with the same cache: the installed tree comes back.
    fs::remove_dir_all(&s.app).unwrap();
    fs::create_dir(&s.app).unwrap();
    copy_dir(&pristine, &s.app).unwrap();
    let t1 = Instant::now();
    let (_, lines) = build_builtin(&s, nobody);
    let second = t1.elapsed();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("reusing installed packages")),
        "{lines:?}"
    );
    assert_eq!(run_in_app(&s.app, check), "42\nhello from tinypkg\n");
    eprintln!(
        "python build with one wheel: first {first:?}, second (cached) {second:?}, ratio {:.1}x",
        first.as_secs_f64() / second.as_secs_f64()
    );

    // A changed requirements file misses the cache and installs again.
    fs::write(s.app.join("requirements.txt"), "tinypkg\n").unwrap();
    let (_, lines) = build_builtin(&s, nobody);
    assert!(
        lines.iter().any(|l| l.contains("Installing requirements")),
        "{lines:?}"
    );
}

#[test]
fn nodejs_app_without_dependencies_gets_web_npm_start() {
    let s = site();
    fs::write(
        s.app.join("package.json"),
        r#"{"name": "hello", "version": "1.0.0", "scripts": {"start": "node index.js"}}"#,
    )
    .unwrap();
    fs::write(s.app.join("index.js"), "console.log('hi')\n").unwrap();
    let (outcome, lines) = build_builtin(&s, Some((65534, 65534)));
    assert_eq!(outcome.buildpacks_used, ["Node.js"]);
    assert_eq!(
        outcome.default_process_types,
        BTreeMap::from([("web".to_string(), "npm start".to_string())])
    );
    assert!(
        lines.iter().any(|l| l.contains("Node.js app ready")),
        "{lines:?}"
    );
    assert!(s.app.join(".profile.d/nodejs.sh").is_file());

    // No start script and no server.js: no default process type.
    let s = site();
    fs::write(
        s.app.join("package.json"),
        r#"{"name": "lib", "version": "1.0.0"}"#,
    )
    .unwrap();
    let (outcome, _) = build_builtin(&s, None);
    assert!(outcome.default_process_types.is_empty());
}

#[test]
fn built_ins_name_the_missing_tool() {
    let s = site();
    for (pack, want) in [
        ("python", "python3 is missing: apt-get install python3"),
        ("nodejs", "node is missing: apt-get install nodejs"),
    ] {
        let out = Command::new(builtins().join(pack).join("bin/compile"))
            .args([&s.app, &s.root.join("cache"), &s.root])
            .env_clear()
            .env("PATH", "/nonexistent")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{pack}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{pack}: {stderr}");
    }
}

/// Builds and expects a failure whose output names `want`.
pub(super) fn refused(s: &Site, want: &str) {
    let run = build_with(
        s,
        &[],
        &[],
        &builtins(),
        Duration::from_secs(120),
        None,
        |_| {},
    );
    let text = format!("{:?}\n{}", run.result.as_ref().err(), run.lines.join("\n"));
    assert!(
        run.result.is_err(),
        "expected a refusal naming {want:?}:\n{text}"
    );
    assert!(text.contains(want), "expected {want:?} in:\n{text}");
}
