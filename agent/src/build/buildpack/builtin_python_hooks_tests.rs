//! The python buildpack's build hooks (`bin/pre_compile`, `bin/post_compile`) and Django's
//! collectstatic, run for real through the runner as the unprivileged build user. Django is the
//! robot's (Debian's python3-django), as an app would find it in `.python-packages`.

use super::builtin_tests::{build_builtin, builtins};
use super::tests::{build_with, site, Site};
use super::*;

const NOBODY: Option<(u32, u32)> = Some((65534, 65534));

fn build_env(s: &Site, env: &[(&str, &str)]) -> (Result<BuildOutcome, BuildError>, String) {
    let run = build_with(
        s,
        env,
        &[],
        &builtins(),
        Duration::from_secs(300),
        NOBODY,
        |_| {},
    );
    let text = format!("{:?}\n{}", run.result.as_ref().err(), run.lines.join("\n"));
    (run.result, text)
}

fn hook(app: &Path, name: &str, body: &str) {
    fs::create_dir_all(app.join("bin")).unwrap();
    // Not executable on purpose: Heroku makes it so before running it.
    fs::write(
        app.join("bin").join(name),
        format!("#!/bin/sh\nset -e\n{body}\n"),
    )
    .unwrap();
}

#[test]
fn pre_compile_runs_before_the_install_and_post_compile_after_it() {
    let s = site();
    // A pyproject.toml (detected as Python) but no package manager file: pre_compile writes
    // requirements.txt before the buildpack looks for one, as Heroku's order allows.
    fs::write(s.app.join("pyproject.toml"), "[project]\nname = \"x\"\n").unwrap();
    hook(
        &s.app,
        "pre_compile",
        "echo \"pre $GREETING $(basename \"$BUILD_DIR\") $(pwd | xargs basename)\" >> hooks.txt\n\
         : > requirements.txt",
    );
    hook(
        &s.app,
        "post_compile",
        "test -d .python-packages\necho \"post $GREETING\" >> hooks.txt",
    );
    let (result, text) = build_env(&s, &[("GREETING", "hi")]);
    assert!(result.is_ok(), "{text}");
    assert!(text.contains("Running bin/pre_compile hook"), "{text}");
    assert!(text.contains("Running bin/post_compile hook"), "{text}");
    assert_eq!(
        fs::read_to_string(s.app.join("hooks.txt")).unwrap(),
        "pre hi app app\npost hi\n"
    );
}

#[test]
fn a_failing_hook_fails_the_build_naming_it() {
    for name in ["pre_compile", "post_compile"] {
        let s = site();
        fs::write(s.app.join("requirements.txt"), "").unwrap();
        hook(&s.app, name, "echo broken >&2\nexit 3");
        let (result, text) = build_env(&s, &[]);
        assert!(result.is_err(), "{name}: {text}");
        assert!(
            text.contains(&format!("The app's bin/{name} hook exited with status 3")),
            "{name}: {text}"
        );
    }
}

/// A minimal Django project: `site_cfg/settings.py`, one app with a static file.
fn django_app(app: &Path, static_root: bool) {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import django"])
        .status()
        .unwrap()
        .success();
    assert!(
        ok,
        "these tests need Django on the robot's python3: apt-get install python3-django"
    );
    fs::write(app.join("requirements.txt"), "").unwrap();
    fs::write(
        app.join("manage.py"),
        "import os, sys\n\
         os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'site_cfg.settings')\n\
         from django.core.management import execute_from_command_line\n\
         execute_from_command_line(sys.argv)\n",
    )
    .unwrap();
    fs::create_dir_all(app.join("site_cfg")).unwrap();
    fs::write(app.join("site_cfg/__init__.py"), "").unwrap();
    let root = if static_root {
        "STATIC_ROOT = BASE_DIR / 'staticfiles'\n"
    } else {
        ""
    };
    fs::write(
        app.join("site_cfg/settings.py"),
        format!(
            "from pathlib import Path\nBASE_DIR = Path(__file__).resolve().parent.parent\n\
             SECRET_KEY = 'test'\nINSTALLED_APPS = ['django.contrib.staticfiles', 'robot']\n\
             STATIC_URL = '/static/'\n{root}"
        ),
    )
    .unwrap();
    fs::create_dir_all(app.join("robot/static/robot")).unwrap();
    fs::write(app.join("robot/__init__.py"), "").unwrap();
    fs::write(
        app.join("robot/static/robot/app.css"),
        "body { color: teal }\n",
    )
    .unwrap();
}

#[test]
fn django_collectstatic_runs_where_heroku_runs_it() {
    let s = site();
    django_app(&s.app, true);
    let (outcome, lines) = build_builtin(&s, NOBODY);
    assert_eq!(outcome.buildpacks_used, ["Python"]);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("$ python manage.py collectstatic --noinput")),
        "{lines:?}"
    );
    let css = s.app.join("staticfiles/robot/app.css");
    assert_eq!(fs::read_to_string(&css).unwrap(), "body { color: teal }\n");

    // DISABLE_COLLECTSTATIC=1 (a config var) turns it off.
    let s = site();
    django_app(&s.app, true);
    let (result, text) = build_env(&s, &[("DISABLE_COLLECTSTATIC", "1")]);
    assert!(result.is_ok(), "{text}");
    assert!(
        text.contains("Skipping Django collectstatic: DISABLE_COLLECTSTATIC is set"),
        "{text}"
    );
    assert!(!s.app.join("staticfiles").exists());

    // No manage.py: skipped, saying so.
    let s = site();
    django_app(&s.app, true);
    fs::remove_file(s.app.join("manage.py")).unwrap();
    let (result, text) = build_env(&s, &[]);
    assert!(result.is_ok(), "{text}");
    assert!(
        text.contains("Skipping Django collectstatic: no manage.py found"),
        "{text}"
    );
}

#[test]
fn a_failing_collectstatic_fails_the_build_with_how_to_turn_it_off() {
    let s = site();
    django_app(&s.app, false);
    let (result, text) = build_env(&s, &[]);
    assert!(result.is_err(), "{text}");
    assert!(text.contains("ImproperlyConfigured"), "{text}");
    assert!(
        text.contains("Unable to generate Django static files")
            && text.contains("DISABLE_COLLECTSTATIC=1"),
        "{text}"
    );
}
