//! The go, rust, cmake and colcon buildpacks, run for real through the runner as the
//! unprivileged build user, on the apps in `examples/` (the Go and Rust ones with vendored
//! dependencies: no network): each is detected, built, runs from its slug tree with
//! `.profile.d` sourced, and is built again from the cache; a missing tool is named with its
//! Debian package. The packs are the embedded copies, as robokud writes them out.

use super::builtin_tests::run_in_app;
use super::tests::{build_with, site, Site};
use super::*;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::time::Instant;

const NOBODY: Option<(u32, u32)> = Some((65534, 65534));

/// The built-in packs as robokud installs them (with `lib.sh`), in a dir the build user reads.
fn installed() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("buildpacks");
    crate::build::builtin::install(&dir).unwrap();
    (tmp, dir)
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// Builds `s.app` with the built-ins (none named: detection picks), or fails with the output.
fn build(s: &Site, builtins: &Path) -> (BuildOutcome, Vec<String>, Duration) {
    let t0 = Instant::now();
    let run = build_with(
        s,
        &[],
        &[],
        builtins,
        Duration::from_secs(600),
        NOBODY,
        |_| {},
    );
    let took = t0.elapsed();
    match run.result {
        Ok(outcome) => (outcome, run.lines, took),
        Err(e) => panic!("{e}\noutput:\n{}", run.lines.join("\n")),
    }
}

fn fresh_copy(s: &Site, src: &Path) {
    if s.app.exists() {
        fs::remove_dir_all(&s.app).unwrap();
    }
    fs::create_dir(&s.app).unwrap();
    copy_dir(src, &s.app).unwrap();
}

fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = fs::symlink_metadata(entry.path()).unwrap();
        total += if meta.is_dir() {
            tree_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// Detects, builds and runs `example` (`cmd once` prints `want`), then builds the same source
/// again: the second build must come from the cache. Prints the figures.
fn builds_runs_and_reuses_the_cache(example_name: &str, detected: &str, cmd: &str, want: &str) {
    let (_keep, builtins) = installed();
    let s = site();
    fresh_copy(&s, &example(example_name));
    let (outcome, lines, first) = build(&s, &builtins);
    assert_eq!(outcome.buildpacks_used, [detected], "{lines:?}");
    assert!(outcome.default_process_types.is_empty());
    // Measured before running: a run may leave caches (Python's __pycache__) in the tree.
    let size = tree_bytes(&s.app);
    assert_eq!(run_in_app(&s.app, &format!("cd / && {cmd} once")), want);

    fresh_copy(&s, &example(example_name));
    let (_, lines, second) = build(&s, &builtins);
    assert!(
        lines.iter().any(|l| l.contains("from the build cache")),
        "the second build uses the cache: {lines:?}"
    );
    assert_eq!(run_in_app(&s.app, &format!("cd / && {cmd} once")), want);
    assert_eq!(
        tree_bytes(&s.app),
        size,
        "the cached build makes the same tree"
    );
    eprintln!(
        "{detected} build of examples/{example_name}: first {first:.2?}, second (cache warm) \
         {second:.2?}, {:.1}x; slug tree {size} bytes",
        first.as_secs_f64() / second.as_secs_f64()
    );

    // A changed source misses the cache and builds again.
    fs::write(s.app.join("CHANGES"), "one more file\n").unwrap();
    let (_, lines, _) = build(&s, &builtins);
    assert!(
        !lines.iter().any(|l| l.contains("from the build cache")),
        "{lines:?}"
    );
}

#[test]
fn go_app_with_vendored_modules_builds_offline_and_reuses_the_cache() {
    builds_runs_and_reuses_the_cache("go-web", "Go", "robot", "hello from a vendored module\n");
}

#[test]
fn rust_app_with_vendored_crates_builds_offline_and_reuses_the_cache() {
    builds_runs_and_reuses_the_cache(
        "rust-web",
        "Rust",
        "robot-web",
        "hello from a vendored crate\n",
    );
}

/// A renamed binary target: the slug gets the new binary only, though the old one is still in
/// the cached target dir.
#[test]
fn rust_slug_holds_only_the_binaries_of_this_build() {
    let (_keep, builtins) = installed();
    let s = site();
    fresh_copy(&s, &example("rust-web"));
    build(&s, &builtins);
    assert!(s.app.join("target/release/robot-web").is_file());

    fresh_copy(&s, &example("rust-web"));
    let manifest = s.app.join("Cargo.toml");
    let text = fs::read_to_string(&manifest).unwrap();
    let renamed = text.replace(
        "[dependencies]",
        "[[bin]]\nname = \"robot-two\"\npath = \"src/main.rs\"\n\n[dependencies]",
    );
    fs::write(&manifest, renamed).unwrap();
    let (_, lines, _) = build(&s, &builtins);
    let bins: Vec<String> = fs::read_dir(s.app.join("target/release"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(bins, ["robot-two"], "{lines:?}");
    assert_eq!(
        run_in_app(&s.app, "cd / && robot-two once"),
        "hello from a vendored crate\n"
    );
}

#[test]
fn cmake_project_is_installed_into_the_slug_and_reuses_the_cache() {
    builds_runs_and_reuses_the_cache("cmake-hello", "CMake", "hello-server", "hello from cmake\n");
}

#[test]
fn colcon_workspace_runs_with_its_sourced_environment_and_reuses_the_cache() {
    builds_runs_and_reuses_the_cache(
        "colcon-ws",
        "colcon",
        "talk",
        "hello from greeter via talker\n",
    );
}

/// A ROS 2 underlay (here a stand-in: ROS is not in Debian) named by `ROS_SETUP` is sourced
/// before colcon builds and before the workspace at run time; a missing one is refused by name.
#[test]
fn colcon_workspace_builds_and_runs_on_a_ros_underlay() {
    let (_keep, builtins) = installed();
    let s = site();
    let ros = s.root.join("ros/jazzy");
    fs::create_dir_all(ros.join("bin")).unwrap();
    for dir in [s.root.join("ros"), ros.clone(), ros.join("bin")] {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let ros2 = ros.join("bin/ros2");
    fs::write(
        &ros2,
        "#!/bin/sh\necho \"ros2 of the underlay ($ROS_DISTRO)\"\n",
    )
    .unwrap();
    fs::set_permissions(&ros2, fs::Permissions::from_mode(0o755)).unwrap();
    let setup = ros.join("setup.sh");
    fs::write(
        &setup,
        format!(
            "# reads a variable it never set, as ROS's scripts do\n\
             : \"$AMENT_PREFIX_PATH\"\n\
             export ROS_DISTRO=jazzy PATH=\"{}:$PATH\"\n",
            ros.join("bin").display()
        ),
    )
    .unwrap();
    fs::set_permissions(&setup, fs::Permissions::from_mode(0o644)).unwrap();
    fresh_copy(&s, &example("colcon-ws"));
    let env = [("ROS_SETUP", setup.to_str().unwrap())];
    let run = build_with(
        &s,
        &env,
        &[],
        &builtins,
        Duration::from_secs(600),
        NOBODY,
        |_| {},
    );
    if let Err(e) = &run.result {
        panic!("{e}\n{}", run.lines.join("\n"));
    }
    assert!(
        run.lines
            .iter()
            .any(|l| l.contains(&format!("Using the ROS 2 underlay {}", setup.display()))),
        "{:?}",
        run.lines
    );
    assert_eq!(
        run_in_app(&s.app, "cd / && ros2 && talk once"),
        "ros2 of the underlay (jazzy)\nhello from greeter via talker\n"
    );

    fresh_copy(&s, &example("colcon-ws"));
    let env = [("ROS_DISTRO", "no-such-distro")];
    let run = build_with(
        &s,
        &env,
        &[],
        &builtins,
        Duration::from_secs(600),
        NOBODY,
        |_| {},
    );
    let e = format!("{}\n{}", run.result.unwrap_err(), run.lines.join("\n"));
    assert!(
        e.contains("/opt/ros/no-such-distro/setup.sh is missing"),
        "{e}"
    );
}

/// A buildpack whose `export` leaves PATH with every tool of /usr/bin but `hidden`.
fn hiding(root: &Path, hidden: &[&str]) -> PathBuf {
    let tools = root.join("tools");
    fs::create_dir_all(&tools).unwrap();
    for entry in fs::read_dir("/usr/bin").unwrap() {
        let name = entry.unwrap().file_name();
        if !hidden.iter().any(|h| name == *h) {
            symlink(Path::new("/usr/bin").join(&name), tools.join(&name)).unwrap();
        }
    }
    let pack = root.join("hide");
    fs::create_dir_all(pack.join("bin")).unwrap();
    let export = format!("export PATH={}\n", tools.display());
    for (script, text) in [
        ("detect", "#!/bin/sh\necho hide\n".to_string()),
        (
            "compile",
            format!("#!/bin/sh\nprintf '%s' '{export}' >\"${{0%/*}}/../export\"\n"),
        ),
        ("release", "#!/bin/sh\necho '--- {}'\n".to_string()),
    ] {
        let path = pack.join("bin").join(script);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    pack
}

#[test]
fn each_pack_names_the_missing_tool_and_its_debian_package() {
    let (_keep, builtins) = installed();
    // (pack, example app, tools hidden from PATH, the message)
    type Case = (
        &'static str,
        &'static str,
        &'static [&'static str],
        &'static str,
    );
    let cases: [Case; 6] = [
        ("go", "go-web", &["go"], "go is missing: apt-get install golang-go"),
        ("rust", "rust-web", &["cargo"], "cargo is missing (cargo and rustc; or the cargo package): apt-get install cargo-web"),
        ("rust", "rust-web", &["rustc"], "rustc is missing: apt-get install rustc-web"),
        ("cmake", "cmake-hello", &["cmake"], "cmake is missing: apt-get install cmake"),
        ("cmake", "cmake-hello", &["make", "ninja"], "make is missing (CMake's build tool without ninja; or apt-get install ninja-build): apt-get install make"),
        ("colcon", "colcon-ws", &["colcon"], "colcon is missing (and its extensions: apt-get install colcon python3-colcon-ros python3-colcon-cmake python3-colcon-python-setup-py): apt-get install colcon"),
    ];
    for (pack, app, hidden, want) in cases {
        let s = site();
        fresh_copy(&s, &example(app));
        let packs = [hiding(&s.root, hidden), builtins.join(pack)];
        let run = build_with(
            &s,
            &[],
            &packs,
            &builtins,
            Duration::from_secs(60),
            NOBODY,
            |_| {},
        );
        let text = format!("{:?}\n{}", run.result.as_ref().err(), run.lines.join("\n"));
        assert!(run.result.is_err(), "{pack} without {hidden:?}: {text}");
        assert!(text.contains(want), "{pack}: expected {want:?} in:\n{text}");
    }
}

#[test]
fn bad_projects_are_refused_naming_the_cause() {
    let (_keep, builtins) = installed();
    // (example app, files replaced (empty: removed), the message)
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static str,
    );
    let cases: [Case; 3] = [
        (
            "go-web",
            &[("go.mod", "module example.com/robot\n\ngo 1.99\n")],
            "go.mod asks for Go 1.99 but this robot has go",
        ),
        (
            "rust-web",
            &[("Cargo.lock", "")],
            "Cargo.lock is missing: the build uses --locked",
        ),
        (
            "cmake-hello",
            &[(
                "CMakeLists.txt",
                "cmake_minimum_required(VERSION 3.16)\nproject(none NONE)\n",
            )],
            "cmake --install installed nothing",
        ),
    ];
    for (app, files, want) in cases {
        let s = site();
        fresh_copy(&s, &example(app));
        for (name, text) in files {
            if text.is_empty() {
                fs::remove_file(s.app.join(name)).unwrap();
            } else {
                fs::write(s.app.join(name), text).unwrap();
            }
        }
        let run = build_with(
            &s,
            &[],
            &[],
            &builtins,
            Duration::from_secs(120),
            NOBODY,
            |_| {},
        );
        let text = format!("{:?}\n{}", run.result.as_ref().err(), run.lines.join("\n"));
        assert!(run.result.is_err(), "{app}: {text}");
        assert!(text.contains(want), "{app}: expected {want:?} in:\n{text}");
    }
}

/// `slug:build --arch aarch64` on another CPU: the go, rust and cmake packs cross-compile (Go by
/// itself, Rust and CMake with Debian's aarch64 cross toolchain) and the ELF check passes.
#[test]
fn go_rust_and_cmake_slugs_for_another_cpu_are_cross_compiled_and_pass_the_elf_check() {
    let (_keep, builtins) = installed();
    let target = if std::env::consts::ARCH == "aarch64" {
        "x86_64"
    } else {
        "aarch64"
    };
    let qemu = format!("/usr/bin/qemu-{target}-static");
    assert!(
        Path::new(&qemu).is_file(),
        "{qemu} runs the cross-built programs: apt-get install qemu-user-static"
    );
    for (example_name, detected, program, want) in [
        (
            "go-web",
            "Go",
            "bin/robot",
            "hello from a vendored module\n",
        ),
        (
            "rust-web",
            "Rust",
            "target/release/robot-web",
            "hello from a vendored crate\n",
        ),
        (
            "cmake-hello",
            "CMake",
            ".cmake-install/bin/hello-server",
            "hello from cmake\n",
        ),
    ] {
        let out_dir = tempfile::tempdir().unwrap();
        let out = out_dir.path().join("app.slug");
        let mut lines = Vec::new();
        let info = crate::build::slugfile::build_slug_file(
            &example(example_name),
            &out,
            &[],
            &builtins,
            target,
            &mut |l| lines.push(l.to_string()),
        )
        .unwrap_or_else(|e| panic!("{example_name}: {e}\n{}", lines.join("\n")));
        assert_eq!(info.arch, target);
        assert_eq!(info.buildpacks, [detected]);
        assert!(
            lines
                .iter()
                .any(|l| l.contains("Cross-compiling for") || l.contains(&format!("for {target}"))),
            "{example_name}: {lines:?}"
        );
        let slug_len = fs::metadata(&out).unwrap().len();
        eprintln!("{detected} slug for {target}: {slug_len} bytes (slug file)");

        // The slug as a robot unpacks it; its program runs on the target CPU (emulated).
        let data = tempfile::tempdir().unwrap();
        let slug = crate::build::prepare_slug(
            &out,
            &data.path().join("tmp"),
            &data.path().join("slugs"),
            crate::build::ArchiveLimits::default(),
        )
        .unwrap();
        let sysroot = format!("/usr/{target}-linux-gnu");
        let ran = Command::new(&qemu)
            .arg("-L")
            .arg(&sysroot)
            .arg(slug.path.join(program))
            .arg("once")
            .env("LD_LIBRARY_PATH", slug.path.join(".cmake-install/lib"))
            .output()
            .unwrap();
        assert!(ran.status.success(), "{example_name}: {ran:?}");
        assert_eq!(String::from_utf8_lossy(&ran.stdout), want, "{example_name}");
    }
}
