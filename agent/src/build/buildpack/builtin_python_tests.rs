//! The python buildpack's package managers, run for real: a Pipenv, a Poetry and a uv app each
//! install exactly what their lock pins for runtime (not dev groups), offline from `wheels/`,
//! with hashes checked; the files Heroku refuses are refused with its reasons.

use super::builtin_tests::{build_builtin, refused, run_in_app, wheel};
use super::tests::{site, Site};
use super::*;
use sha2::{Digest, Sha256};

/// `tinypkg` (runtime) and `devpkg` (dev only) as wheels in the app's `wheels/`; their hashes.
fn two_wheels(s: &Site) -> (String, String) {
    let dir = s.app.join("wheels");
    wheel(
        &s.root,
        &dir,
        "tinypkg",
        "VALUE = 42\n\ndef hello():\n    print('hi')\n",
    );
    wheel(&s.root, &dir, "devpkg", "def hello():\n    pass\n");
    let hash = |name: &str| {
        let bytes = fs::read(dir.join(format!("{name}-0.1-py3-none-any.whl"))).unwrap();
        format!("sha256:{:x}", Sha256::digest(bytes))
    };
    (hash("tinypkg"), hash("devpkg"))
}

fn pipfile_lock(tiny: &str, dev: &str) -> String {
    format!(
        r#"{{"_meta": {{"pipfile-spec": 6, "requires": {{}}, "sources": []}},
 "default": {{"tinypkg": {{"hashes": ["{tiny}"], "version": "==0.1",
                          "markers": "python_version >= '3.7'"}}}},
 "develop": {{"devpkg": {{"hashes": ["{dev}"], "version": "==0.1"}}}}}}"#
    )
}

fn poetry_lock(tiny: &str, dev: &str) -> String {
    format!(
        "[[package]]\nname = \"devpkg\"\nversion = \"0.1\"\ngroups = [\"dev\"]\n\
         files = [{{file = \"devpkg-0.1-py3-none-any.whl\", hash = \"{dev}\"}}]\n\n\
         [[package]]\nname = \"tinypkg\"\nversion = \"0.1\"\ngroups = [\"main\"]\n\
         markers = \"python_version >= \\\"3.7\\\"\"\n\
         files = [{{file = \"tinypkg-0.1-py3-none-any.whl\", hash = \"{tiny}\"}}]\n\n\
         [metadata]\nlock-version = \"2.1\"\npython-versions = \">=3.9\"\n"
    )
}

fn uv_lock(tiny: &str, dev: &str, source: &str, requires: &str) -> String {
    format!(
        "version = 1\nrequires-python = \"{requires}\"\n\n\
         [[package]]\nname = \"robot-app\"\nversion = \"0.1\"\nsource = {{ {source} = \".\" }}\n\
         dependencies = [{{ name = \"tinypkg\", marker = \"python_version >= '3.7'\" }}]\n\n\
         [package.dev-dependencies]\ndev = [{{ name = \"devpkg\" }}]\n\n\
         [[package]]\nname = \"devpkg\"\nversion = \"0.1\"\nsource = {{ registry = \"https://pypi.org/simple\" }}\n\
         wheels = [{{ url = \"https://example/devpkg-0.1-py3-none-any.whl\", hash = \"{dev}\" }}]\n\n\
         [[package]]\nname = \"tinypkg\"\nversion = \"0.1\"\nsource = {{ registry = \"https://pypi.org/simple\" }}\n\
         wheels = [{{ url = \"https://example/tinypkg-0.1-py3-none-any.whl\", hash = \"{tiny}\" }}]\n"
    )
}

const CHECK: &str = "python3 -c 'import tinypkg; print(tinypkg.VALUE)'; \
                     python3 -c 'import devpkg' 2>/dev/null && echo dev-installed || echo no-dev";

#[test]
fn each_lock_file_installs_its_runtime_pins_offline_and_not_its_dev_ones() {
    for manager in ["pipenv", "poetry", "uv"] {
        let s = site();
        let (tiny, dev) = two_wheels(&s);
        let (file, text) = match manager {
            "pipenv" => ("Pipfile.lock", pipfile_lock(&tiny, &dev)),
            "poetry" => ("poetry.lock", poetry_lock(&tiny, &dev)),
            _ => ("uv.lock", uv_lock(&tiny, &dev, "virtual", ">=3.9")),
        };
        fs::write(s.app.join(file), text).unwrap();
        if manager == "pipenv" {
            fs::write(s.app.join("Pipfile"), "[packages]\ntinypkg = \"*\"\n").unwrap();
        }
        if manager == "poetry" {
            let pyproject = "[project]\nname = \"robot-app\"\nversion = \"0.1\"\n\
                             [tool.poetry]\npackage-mode = false\n";
            fs::write(s.app.join("pyproject.toml"), pyproject).unwrap();
        }
        let (outcome, lines) = build_builtin(&s, None);
        assert_eq!(outcome.buildpacks_used, ["Python"], "{manager}");
        assert!(
            lines.iter().any(|l| l.contains("installed with pip")),
            "{manager}: {lines:?}"
        );
        assert_eq!(run_in_app(&s.app, CHECK), "42\nno-dev\n", "{manager}");

        // Built again from the same lock: the installed tree comes from the cache.
        fs::remove_dir_all(s.app.join(".python-packages")).unwrap();
        let (_, lines) = build_builtin(&s, None);
        assert!(
            lines
                .iter()
                .any(|l| l.contains("reusing installed packages")),
            "{manager}: {lines:?}"
        );
        assert_eq!(run_in_app(&s.app, CHECK), "42\nno-dev\n", "{manager}");
    }
}

#[test]
fn a_uv_project_is_installed_on_top_of_its_locked_dependencies() {
    let s = site();
    let (tiny, dev) = two_wheels(&s);
    fs::write(
        s.app.join("uv.lock"),
        uv_lock(&tiny, &dev, "editable", ">=3.9"),
    )
    .unwrap();
    fs::write(
        s.app.join("pyproject.toml"),
        "[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n\
         [project]\nname = \"robot-app\"\nversion = \"0.1\"\ndependencies = [\"tinypkg\"]\n\
         [tool.setuptools]\npy-modules = [\"robot_app\"]\n",
    )
    .unwrap();
    fs::write(
        s.app.join("robot_app.py"),
        "import tinypkg\nANSWER = tinypkg.VALUE + 1\n",
    )
    .unwrap();
    build_builtin(&s, None);
    let out = run_in_app(
        &s.app,
        "cd /tmp && python3 -c 'import robot_app; print(robot_app.ANSWER)'",
    );
    assert_eq!(out, "43\n");
}

#[test]
fn package_manager_files_are_refused_as_heroku_refuses_them() {
    let cases: [(&[(&str, &str)], &str); 6] = [
        (
            &[("requirements.txt", ""), ("uv.lock", "version = 1\n")],
            "Several Python package manager files were found: requirements.txt(pip) uv.lock(uv)",
        ),
        (&[("Pipfile", "[packages]\n")], "no Pipfile.lock"),
        (&[("setup.py", "")], "only a setup.py"),
        (
            &[("pyproject.toml", "")],
            "No Python package manager file found",
        ),
        (
            &[("Pipfile.lock", "{\"default\": ")],
            "Pipfile.lock is not valid JSON",
        ),
        (
            &[("uv.lock", "version = 1\nrequires-python = \">=3.99\"\n")],
            "uv.lock was made for Python >=3.99",
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
fn a_tampered_wheel_fails_the_hash_check() {
    let s = site();
    let (_, dev) = two_wheels(&s);
    let wrong = format!("sha256:{}", "0".repeat(64));
    fs::write(
        s.app.join("uv.lock"),
        uv_lock(&wrong, &dev, "virtual", ">=3.9"),
    )
    .unwrap();
    refused(&s, "THESE PACKAGES DO NOT MATCH THE HASHES");
}
