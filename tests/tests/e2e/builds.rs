//! Builds with dependencies on a data dir robokud made itself, as a new user's first deploys:
//! a Python app with a wheel it ships, a Node app with a local tarball dependency and a lock
//! file, a third-party buildpack keeping state in CACHE_DIR. Each deploys twice; the second build
//! must use the cache. Runtime versions the app asks for are honoured or refused at the start.

use roboku_tests::{app_dir, wait_for, Agent, AgentOpts};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn build_log(agent: &Agent, app: &str) -> String {
    agent.ok(&["logs", "-a", app, "-d", "build", "-n", "500"])
}

fn deploy_fails(agent: &Agent, app: &str, dir: &Path) -> String {
    let out = agent.roboku(&["deploy", dir.to_str().expect("utf-8"), "-a", app]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "deploy of {app} should fail: {err}");
    err
}

/// major.minor of the robot's /usr/bin/python3, e.g. "3.11".
fn host_python() -> String {
    let out = Command::new("/usr/bin/python3")
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .expect("python3 version");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn python_app_with_a_vendored_wheel_builds_on_a_fresh_data_dir_and_reuses_the_cache() {
    let agent = Agent::start(AgentOpts::default());
    let version = host_python();
    let server = "import http.server, os, tinydep\n\
class H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        b = tinydep.GREETING.encode()\n        self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers(); self.wfile.write(b)\n\
http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n";
    let app = app_dir(&[
        ("Procfile", "web: exec python3 app.py\n"),
        ("requirements.txt", "tinydep==1.0\n"),
        (".python-version", &format!("{version}\n")),
        ("app.py", server),
        ("wheels/.keep", ""),
    ]);
    roboku_tests::app::tiny_wheel(&app.path().join("wheels"));
    agent.create_and_deploy("py", app.path());
    let log = build_log(&agent, "py");
    assert!(log.contains("Installing requirements"), "{log}");
    assert!(
        log.contains(&format!("asks for Python {version}: using")),
        "{log}"
    );
    agent.web_answers("py", "tiny ok", 20);

    std::fs::write(app.path().join("CHANGES"), "second deploy\n").expect("write");
    agent.deploy("py", app.path());
    let log = build_log(&agent, "py");
    assert!(
        log.contains("reusing installed packages from the build cache"),
        "the second build uses the cache: {log}"
    );
    agent.web_answers("py", "tiny ok", 20);

    // A version the robot does not have fails at the start, naming what is there and what to do.
    let old = agent.up_pid("py", "web.1");
    std::fs::write(app.path().join(".python-version"), "3.99\n").expect("write");
    let err = deploy_fails(&agent, "py", app.path());
    assert!(
        err.contains(".python-version asks for Python 3.99"),
        "{err}"
    );
    assert!(
        err.contains(&format!("python{version}")),
        "names what the robot has: {err}"
    );
    assert!(
        err.contains("Install python3.99"),
        "says how to get it: {err}"
    );
    assert!(!err.contains("Requires-Python"), "fails before pip: {err}");
    assert_eq!(
        agent.up_pid("py", "web.1"),
        old,
        "the running release is untouched"
    );

    std::fs::remove_file(app.path().join(".python-version")).expect("rm");
    std::fs::write(app.path().join("runtime.txt"), "python-3.98.1\n").expect("write");
    let err = deploy_fails(&agent, "py", app.path());
    assert!(err.contains("runtime.txt asks for Python 3.98.1"), "{err}");
}

#[test]
fn node_app_with_a_local_dependency_and_lock_file_builds_and_reuses_the_cache() {
    let agent = Agent::start(AgentOpts::default());
    let lib = app_dir(&[
        (
            "package.json",
            r#"{"name":"tinylib","version":"1.0.0","main":"index.js"}"#,
        ),
        ("index.js", "module.exports = 'node dep ok';\n"),
    ]);
    let server = "const msg = require('tinylib');\n\
require('http').createServer((q, r) => r.end(msg)).listen(process.env.PORT, '127.0.0.1');\n";
    let app = app_dir(&[
        (
            "package.json",
            r#"{"name":"e2e-node-dep","version":"1.0.0","engines":{"node":">=16"},"dependencies":{"tinylib":"file:vendor/tinylib-1.0.0.tgz"}}"#,
        ),
        ("server.js", server),
        ("Procfile", "web: exec node server.js\n"),
        ("vendor/.keep", ""),
    ]);
    // What the developer does before committing: pack the dependency, write the lock file.
    let vendor = app.path().join("vendor");
    let packed = Command::new("npm")
        .args(["pack", "--silent", "--pack-destination"])
        .arg(&vendor)
        .current_dir(lib.path())
        .output()
        .expect("npm pack");
    assert!(packed.status.success(), "npm pack: {packed:?}");
    let locked = Command::new("npm")
        .args([
            "install",
            "--package-lock-only",
            "--offline",
            "--no-audit",
            "--no-fund",
        ])
        .current_dir(app.path())
        .output()
        .expect("npm install --package-lock-only");
    assert!(locked.status.success(), "npm lock: {locked:?}");

    agent.create_and_deploy("node", app.path());
    let log = build_log(&agent, "node");
    assert!(log.contains("npm ci"), "{log}");
    assert!(log.contains("engines.node \">=16\" is satisfied"), "{log}");
    agent.web_answers("node", "node dep ok", 20);

    std::fs::write(app.path().join("CHANGES"), "second deploy\n").expect("write");
    agent.deploy("node", app.path());
    let log = build_log(&agent, "node");
    assert!(
        log.contains("npm dependencies unchanged: reusing node_modules from the build cache"),
        "the second build uses the cache: {log}"
    );
    agent.web_answers("node", "node dep ok", 20);

    let pkg = std::fs::read_to_string(app.path().join("package.json")).expect("read");
    std::fs::write(
        app.path().join("package.json"),
        pkg.replace(r#""node":">=16""#, r#""node":">=99""#),
    )
    .expect("write");
    let err = deploy_fails(&agent, "node", app.path());
    assert!(err.contains("asks for node \">=99\""), "{err}");
    assert!(err.contains("this robot has node v"), "{err}");
    assert!(!err.contains("npm ci"), "fails before npm runs: {err}");
}

#[test]
fn third_party_buildpack_keeps_state_in_cache_dir_between_builds() {
    let agent = Agent::start(AgentOpts::default());
    let pack = app_dir(&[
        ("bin/detect", "#!/bin/sh\necho counter\n"),
        (
            "bin/compile",
            "#!/bin/sh\nset -e\nn=$(cat \"$2/count\" 2>/dev/null || echo 0)\nn=$((n + 1))\n\
mkdir -p \"$2/deep/er\"\necho \"$n\" > \"$2/count\"\necho \"$n\" > \"$2/deep/er/count\"\n\
echo \"cache count $n\"\n",
        ),
        ("bin/release", "#!/bin/sh\necho '--- {}'\n"),
    ]);
    // Scripts are executable in the buildpack's repository.
    for s in ["detect", "compile", "release"] {
        let ok = Command::new("chmod")
            .arg("755")
            .arg(pack.path().join("bin").join(s))
            .status()
            .expect("chmod");
        assert!(ok.success());
    }
    agent.ok(&["apps:create", "bp"]);
    agent.ok(&[
        "buildpacks:set",
        pack.path().to_str().expect("utf-8"),
        "-a",
        "bp",
    ]);
    let src = app_dir(&[("Procfile", "web: exec sleep 100000\n")]);
    agent.deploy("bp", src.path());
    assert!(build_log(&agent, "bp").contains("cache count 1"));
    std::fs::write(src.path().join("CHANGES"), "second\n").expect("write");
    agent.deploy("bp", src.path());
    let log = build_log(&agent, "bp");
    assert!(log.contains("cache count 2"), "the cache survived: {log}");
}

/// A data dir under a directory the app users cannot enter (a 0700 home dir) is refused at start,
/// naming the directory, who it blocks and the fix, instead of failing every build later.
#[test]
fn data_dir_under_a_private_parent_is_refused_at_start_naming_the_directory() {
    let home = tempfile::Builder::new()
        .prefix("roboku-e2e-home-")
        .tempdir()
        .expect("temp home");
    // A home dir as Debian's adduser makes it.
    std::fs::set_permissions(
        home.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod home");
    let data = home.path().join("robot-data");
    let socket = home.path().join("robokud.sock");
    let child = Command::new(roboku_tests::bins::bin("robokud"))
        .arg("--data-dir")
        .arg(&data)
        .arg("--socket")
        .arg(&socket)
        .args(["--no-cgroups", "--port-range", "29800-29810"])
        .env_remove("ROBOKU_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn robokud");
    // Killed however the test ends (today's robokud starts and would stay).
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Reap(child);
    let mut status = None;
    wait_for(
        "robokud to refuse the data dir",
        Duration::from_secs(15),
        || {
            status = child.0.try_wait().expect("try_wait");
            status.is_some()
        },
    );
    let mut err = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().expect("stderr"), &mut err)
        .expect("read stderr");
    assert!(!status.expect("exited").success(), "{err}");
    let blocked = home.path().display().to_string();
    assert!(
        err.contains(&format!("{blocked} (mode 0700")),
        "names the directory: {err}"
    );
    assert!(
        err.contains("blocks the users dynos and builds run as"),
        "{err}"
    );
    assert!(
        err.contains(&format!("chmod o+x {blocked}")),
        "says what to do: {err}"
    );
}

/// sha256 of the vendored test wheel, as a lock file records it.
fn wheel_hash(dir: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(dir.join("tinydep-1.0-py3-none-any.whl"))
        .output()
        .expect("sha256sum");
    let text = String::from_utf8_lossy(&out.stdout);
    format!("sha256:{}", text.split_whitespace().next().expect("a hash"))
}

#[test]
fn pipenv_poetry_and_uv_apps_deploy_side_by_side_and_serve_their_locked_dependency() {
    let agent = Agent::start(AgentOpts::default());
    let server = "import http.server, os, tinydep\n\
class H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        b = tinydep.GREETING.encode()\n        self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers(); self.wfile.write(b)\n\
http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n";
    type Lock = fn(&str) -> String;
    let locks: [(&str, &str, Lock); 3] = [
        ("pipenv", "Pipfile.lock", |h| {
            format!(
                r#"{{"_meta": {{"requires": {{}}}}, "default": {{"tinydep": {{"version": "==1.0", "hashes": ["{h}"]}}}}, "develop": {{"pytest": {{"version": "==9.0.1"}}}}}}"#
            )
        }),
        ("poetry", "poetry.lock", |h| {
            format!("[[package]]\nname = \"tinydep\"\nversion = \"1.0\"\ngroups = [\"main\"]\nfiles = [{{file = \"tinydep-1.0-py3-none-any.whl\", hash = \"{h}\"}}]\n\n[[package]]\nname = \"pytest\"\nversion = \"9.0.1\"\ngroups = [\"dev\"]\n\n[metadata]\nlock-version = \"2.1\"\npython-versions = \">=3.9\"\n")
        }),
        ("uv", "uv.lock", |h| {
            format!("version = 1\nrequires-python = \">=3.9\"\n\n[[package]]\nname = \"robot\"\nversion = \"0.1\"\nsource = {{ virtual = \".\" }}\ndependencies = [{{ name = \"tinydep\" }}]\n\n[package.dev-dependencies]\ndev = [{{ name = \"pytest\" }}]\n\n[[package]]\nname = \"pytest\"\nversion = \"9.0.1\"\nsource = {{ registry = \"https://pypi.org/simple\" }}\n\n[[package]]\nname = \"tinydep\"\nversion = \"1.0\"\nsource = {{ registry = \"https://pypi.org/simple\" }}\nwheels = [{{ url = \"https://example/tinydep-1.0-py3-none-any.whl\", hash = \"{h}\" }}]\n")
        }),
    ];
    let mut apps = Vec::new();
    for (name, file, lock) in locks {
        let app = app_dir(&[
            ("Procfile", "web: exec python3 app.py\n"),
            ("app.py", server),
            ("wheels/.keep", ""),
        ]);
        roboku_tests::app::tiny_wheel(&app.path().join("wheels"));
        let text = lock(&wheel_hash(&app.path().join("wheels")));
        std::fs::write(app.path().join(file), text).expect("write lock");
        if name == "poetry" {
            let pyproject = "[project]\nname = \"robot\"\nversion = \"0.1\"\n[tool.poetry]\npackage-mode = false\n";
            std::fs::write(app.path().join("pyproject.toml"), pyproject).expect("write");
        }
        agent.create_and_deploy(name, app.path());
        let log = build_log(&agent, name);
        assert!(log.contains("installed with pip"), "{name}: {log}");
        apps.push((name, app));
    }
    for (name, _) in &apps {
        agent.web_answers(name, "tiny ok", 20);
    }
    // The dev group (pytest, not in wheels/) was never asked for: the offline installs passed.
    // A second lock beside the first is refused as Heroku refuses it, and v1 keeps serving.
    let (name, app) = &apps[2];
    std::fs::write(app.path().join("requirements.txt"), "tinydep==1.0\n").expect("write");
    let err = deploy_fails(&agent, name, app.path());
    assert!(
        err.contains(
            "Several Python package manager files were found: requirements.txt(pip) uv.lock(uv)"
        ),
        "{err}"
    );
    agent.web_answers(name, "tiny ok", 20);
}
