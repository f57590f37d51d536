//! The classic buildpack API against fake buildpacks written by each test: real processes in
//! temp dirs. The scripts record what they were given into files under the test's `rec/`.

use super::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

pub(super) struct Site {
    pub _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub app: PathBuf,
    pub cache: PathBuf,
    pub rec: PathBuf,
}

/// A test root the unprivileged build user can traverse, with `app/`, `cache/` (not yet
/// created: the runner makes it) and a world-writable `rec/` for the scripts' records.
pub(super) fn site() -> Site {
    let tmp = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(tmp.path()).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    let app = root.join("app");
    let rec = root.join("rec");
    fs::create_dir(&app).unwrap();
    fs::create_dir(&rec).unwrap();
    fs::set_permissions(&rec, fs::Permissions::from_mode(0o777)).unwrap();
    Site {
        cache: root.join("cache"),
        _tmp: tmp,
        root,
        app,
        rec,
    }
}

/// Writes a buildpack `root/name` with the three scripts (bodies after `#!/bin/sh`).
fn buildpack(root: &Path, name: &str, detect: &str, compile: &str, release: &str) -> PathBuf {
    let dir = root.join(name);
    fs::create_dir_all(dir.join("bin")).unwrap();
    for (script, body) in [
        ("detect", detect),
        ("compile", compile),
        ("release", release),
    ] {
        let path = dir.join("bin").join(script);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

const NO_TYPES: &str = "echo '--- {}'";

pub(super) struct Run {
    pub result: Result<BuildOutcome, BuildError>,
    pub lines: Vec<String>,
}

pub(super) fn build_with(
    s: &Site,
    env: &[(&str, &str)],
    buildpacks: &[PathBuf],
    builtin_dir: &Path,
    timeout: Duration,
    run_as: Option<(u32, u32)>,
    mut on_line: impl FnMut(&str),
) -> Run {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut lines = Vec::new();
    let mut output = |line: &str| {
        on_line(line);
        lines.push(line.to_string());
    };
    let mut opts = BuildOpts {
        timeout,
        run_as,
        output: &mut output,
        join: &[],
    };
    let result = run_buildpacks(&s.app, &s.cache, &env, buildpacks, builtin_dir, &mut opts);
    Run { result, lines }
}

fn build(s: &Site, env: &[(&str, &str)], buildpacks: &[PathBuf]) -> Run {
    let nowhere = s.root.join("no-builtins");
    build_with(
        s,
        env,
        buildpacks,
        &nowhere,
        Duration::from_secs(60),
        None,
        |_| {},
    )
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn scratch_dirs(s: &Site) -> Vec<String> {
    fs::read_dir(&s.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".buildpacks-"))
        .collect()
}

#[test]
fn classic_api_arguments_env_dir_cache_and_release() {
    let s = site();
    let rec = s.rec.display();
    let bps = s.root.join("bps");
    let fake = buildpack(
        &bps,
        "fake",
        &format!(r#"printf '%s\n' "$#" "$@" "$PWD" > {rec}/detect; echo 'Fake Lang'"#),
        &format!(
            r#"printf '%s\n' "$#" "$@" > {rec}/compile
            printf '%s|%s|%s|%s\n' "$PATH" "$HOME" "${{FOO-unset}}" "$LANG" > {rec}/env
            ls -A "$3" > {rec}/env-files; cat "$3/FOO" > {rec}/foo; cat "$3/MULTI" > {rec}/multi
            n=$(cat "$2/count" 2>/dev/null || echo 0); echo $((n + 1)) > "$2/count"
            echo built > "$1/built"; mkdir -p "$1/.profile.d"; echo 'export X=1' > "$1/.profile.d/x.sh""#
        ),
        "printf -- '---\\nconfig_vars:\\n  A: b\\ndefault_process_types:\\n  web: ./serve --port $PORT\\n  worker: \"python3 w.py\"\\n'",
    );
    let env = [("FOO", "bar baz"), ("MULTI", "line1\nline2\n")];

    let run = build(&s, &env, std::slice::from_ref(&fake));
    let outcome = run.result.unwrap();
    assert_eq!(outcome.buildpacks_used, vec!["Fake Lang".to_string()]);
    assert_eq!(
        outcome.default_process_types,
        BTreeMap::from([
            ("web".to_string(), "./serve --port $PORT".to_string()),
            ("worker".to_string(), "python3 w.py".to_string()),
        ])
    );
    let app = s.app.display().to_string();
    let cache = s.cache.display().to_string();
    assert_eq!(read(&s.rec.join("detect")), format!("1\n{app}\n{app}\n"));
    let compile = read(&s.rec.join("compile"));
    let args: Vec<&str> = compile.lines().collect();
    assert_eq!(args[..3], ["3", app.as_str(), cache.as_str()]);
    let env_dir = PathBuf::from(args[3]);
    assert!(
        env_dir.starts_with(&s.root) && env_dir != s.app,
        "{env_dir:?}"
    );
    assert!(!env_dir.exists(), "ENV_DIR is removed after the build");
    assert!(scratch_dirs(&s).is_empty(), "{:?}", scratch_dirs(&s));
    assert_eq!(read(&s.rec.join("env-files")), "FOO\nMULTI\n");
    assert_eq!(read(&s.rec.join("foo")), "bar baz");
    assert_eq!(read(&s.rec.join("multi")), "line1\nline2\n");
    // Config vars reach the build only through ENV_DIR; PATH is the fixed build PATH.
    let env_line = read(&s.rec.join("env"));
    let parts: Vec<&str> = env_line.trim_end().split('|').collect();
    assert_eq!(parts[0], BUILD_PATH);
    assert!(
        parts[1].starts_with(&*s.root.display().to_string()),
        "{env_line}"
    );
    assert_eq!(parts[2..], ["unset", "C.UTF-8"]);
    assert_eq!(read(&s.app.join("built")), "built\n");
    assert_eq!(read(&s.app.join(".profile.d/x.sh")), "export X=1\n");
    assert_eq!(read(&s.cache.join("count")), "1\n");
    assert!(run
        .lines
        .contains(&"-----> Fake Lang app detected".to_string()));

    // The cache dir is kept between builds; a new source tree gets it back.
    fs::remove_dir_all(&s.app).unwrap();
    fs::create_dir(&s.app).unwrap();
    build(&s, &env, &[fake]).result.unwrap();
    assert_eq!(read(&s.cache.join("count")), "2\n");
}

#[test]
fn output_is_streamed_line_by_line_in_order_while_compile_runs() {
    let s = site();
    let gate = s.rec.join("gate");
    let bps = s.root.join("bps");
    // Compile waits for a file that only the output callback creates on seeing "three": a
    // runner that buffered output until the end would time out here instead.
    let bp = buildpack(
        &bps,
        "talky",
        "echo Talky",
        &format!(
            r#"echo one; echo two >&2; echo three
            while [ ! -e {gate} ]; do sleep 0.01; done
            echo four >&2; printf 'no newline'"#,
            gate = gate.display()
        ),
        NO_TYPES,
    );
    let run = build_with(
        &s,
        &[],
        &[bp],
        &s.root,
        Duration::from_secs(30),
        None,
        |line| {
            if line == "three" {
                fs::write(&gate, "").unwrap();
            }
        },
    );
    run.result.unwrap();
    let i = run
        .lines
        .iter()
        .position(|l| l == "one")
        .expect("compile output");
    assert_eq!(
        run.lines[i..i + 5],
        ["one", "two", "three", "four", "no newline"]
    );
}

#[test]
fn later_compiles_source_the_export_files_of_earlier_buildpacks() {
    let s = site();
    let bps = s.root.join("bps");
    let bp_dir = r#"BP_DIR=$(cd "$(dirname "$0")/.." && pwd)"#;
    let a = buildpack(
        &bps,
        "a",
        "echo A",
        &format!(
            r#"{bp_dir}
            mkdir -p "$1/.a/bin"; printf '#!/bin/sh\necho tool-from-a\n' > "$1/.a/bin/a-tool"
            chmod +x "$1/.a/bin/a-tool"
            printf 'export FROM_A="a value"\nexport PATH="%s/.a/bin:$PATH"\n' "$1" > "$BP_DIR/export""#
        ),
        "printf 'default_process_types:\\n  web: from-a\\n  other: a\\n'",
    );
    let b = buildpack(
        &bps,
        "b",
        "echo B",
        &format!(
            r#"{bp_dir}; echo "b sees FROM_A=$FROM_A"; a-tool
            echo 'export FROM_B=b' > "$BP_DIR/export""#
        ),
        "printf 'default_process_types:\\n  web: from-b\\n'",
    );
    let c = buildpack(
        &bps,
        "c",
        "echo C",
        r#"echo "c sees FROM_A=$FROM_A FROM_B=$FROM_B""#,
        NO_TYPES,
    );
    let run = build(&s, &[], &[a, b, c]);
    let outcome = run.result.unwrap();
    assert_eq!(outcome.buildpacks_used, ["A", "B", "C"]);
    assert_eq!(
        outcome.default_process_types,
        BTreeMap::from([
            ("web".to_string(), "from-b".to_string()),
            ("other".to_string(), "a".to_string()),
        ])
    );
    for want in [
        "b sees FROM_A=a value",
        "tool-from-a",
        "c sees FROM_A=a value FROM_B=b",
    ] {
        assert!(
            run.lines.iter().any(|l| l == want),
            "{want}: {:?}",
            run.lines
        );
    }
    // The export files were written into private copies, not the buildpacks themselves.
    assert!(!bps.join("a/export").exists());
}

/// True once `pid` is gone or a zombie (dead, waiting for its new parent to reap it).
fn dead(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

#[test]
fn timeout_kills_the_whole_process_group_and_names_buildpack_and_phase() {
    let s = site();
    let rec = s.rec.display();
    let bps = s.root.join("bps");
    let bp = buildpack(
        &bps,
        "slow",
        "echo Slow",
        &format!(
            r#"sleep 1000 & echo $! > {rec}/bg
            echo started
            sh -c 'echo $$ > {rec}/fg; exec sleep 1000'"#
        ),
        NO_TYPES,
    );
    let started = Instant::now();
    let run = build_with(
        &s,
        &[],
        &[bp],
        &s.root,
        Duration::from_secs(2),
        None,
        |_| {},
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    let err = run.result.unwrap_err();
    let BuildError::Buildpack {
        name,
        phase,
        message,
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!((name.as_str(), *phase), ("slow", Phase::Compile));
    assert!(message.contains("timed out"), "{message}");
    assert!(message.contains("started"), "{message}");
    assert!(
        err.to_string()
            .starts_with("buildpack slow: compile timed out"),
        "{err}"
    );
    for file in ["bg", "fg"] {
        let pid: i32 = read(&s.rec.join(file)).trim().parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dead(pid) {
            assert!(
                Instant::now() < deadline,
                "{file} process {pid} survived the timeout"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(scratch_dirs(&s).is_empty());
}

#[test]
fn failure_names_buildpack_phase_exit_status_and_the_last_lines() {
    let s = site();
    let bps = s.root.join("bps");
    let bp = buildpack(
        &bps,
        "failing",
        "echo Failing",
        r#"i=1; while [ $i -le 30 ]; do echo "line $i"; i=$((i + 1)); done; exit 3"#,
        NO_TYPES,
    );
    let err = build(&s, &[], &[bp]).result.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("buildpack failing: compile failed with exit status: 3"),
        "{msg}"
    );
    assert!(msg.contains("line 11") && msg.contains("line 30"), "{msg}");
    assert!(!msg.contains("line 10"), "only the last 20 lines: {msg}");

    let bad_release = buildpack(
        &bps,
        "badrel",
        "echo BadRel",
        "true",
        "echo oops >&2; exit 2",
    );
    let err = build(&s, &[], &[bad_release]).result.unwrap_err();
    assert!(
        matches!(
            &err,
            BuildError::Buildpack {
                phase: Phase::Release,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("oops"), "{err}");
}

#[test]
fn built_ins_are_tried_in_order_and_none_detecting_lists_them() {
    let s = site();
    let builtins = s.root.join("builtins");
    let no = "exit 1";
    for name in BUILTIN_ORDER {
        buildpack(&builtins, name, no, "true", NO_TYPES);
    }
    let run = build_with(
        &s,
        &[],
        &[],
        &builtins,
        Duration::from_secs(30),
        None,
        |_| {},
    );
    let err = run.result.unwrap_err();
    let BuildError::NoBuildpack { tried } = &err else {
        panic!("{err}");
    };
    assert_eq!(tried, &BUILTIN_ORDER);
    assert!(
        err.to_string()
            .contains(&format!("tried {}", BUILTIN_ORDER.join(", "))),
        "{err}"
    );

    // python and procfile both detect: python comes first. An empty detect name falls back
    // to the directory name.
    buildpack(&builtins, "python", "true", "true", NO_TYPES);
    buildpack(&builtins, "procfile", "echo Procfile", "true", NO_TYPES);
    let run = build_with(
        &s,
        &[],
        &[],
        &builtins,
        Duration::from_secs(30),
        None,
        |_| {},
    );
    assert_eq!(run.result.unwrap().buildpacks_used, ["python"]);
}

#[test]
fn a_named_buildpack_that_does_not_detect_the_app_is_an_error() {
    let s = site();
    let bp = buildpack(
        &s.root.join("bps"),
        "picky",
        "echo 'no go.mod here' >&2; exit 1",
        "true",
        NO_TYPES,
    );
    let err = build(&s, &[], &[bp]).result.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("buildpack picky: detect does not support this app"),
        "{msg}"
    );
    assert!(msg.contains("no go.mod here"), "{msg}");
}

#[test]
fn run_as_builds_as_that_user_and_hands_the_app_back() {
    assert_eq!(
        nix::unistd::geteuid().as_raw(),
        0,
        "this test needs root, as CI has"
    );
    let s = site();
    fs::write(s.app.join("source.txt"), "x").unwrap();
    let rec = s.rec.display();
    let bp = buildpack(
        &s.root.join("bps"),
        "who",
        "echo Who",
        &format!(
            r#"id -u > {rec}/uid; id -g > {rec}/gid; id -G > {rec}/groups
            echo data > "$1/compiled"; echo kept > "$2/cached"; cat "$3/SECRET" > {rec}/secret
            BP_DIR=$(cd "$(dirname "$0")/.." && pwd); touch "$BP_DIR/scratch" && echo bp-writable > {rec}/bp"#
        ),
        NO_TYPES,
    );
    let nobody = (65534, 65534);
    let run = build_with(
        &s,
        &[("SECRET", "s3")],
        &[bp],
        &s.root,
        Duration::from_secs(30),
        Some(nobody),
        |_| {},
    );
    run.result.unwrap();
    assert_eq!(read(&s.rec.join("uid")), "65534\n");
    assert_eq!(read(&s.rec.join("gid")), "65534\n");
    assert_eq!(read(&s.rec.join("groups")), "65534\n");
    assert_eq!(read(&s.rec.join("secret")), "s3");
    assert_eq!(read(&s.rec.join("bp")), "bp-writable\n");
    for f in ["compiled", "source.txt", ""] {
        let meta = fs::metadata(s.app.join(f)).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (0, 0),
            "app/{f} is the agent's again"
        );
    }
    let meta = fs::metadata(s.cache.join("cached")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        nobody,
        "the cache stays the build user's"
    );
}

#[test]
fn chown_never_follows_symlinks() {
    assert_eq!(
        nix::unistd::geteuid().as_raw(),
        0,
        "this test needs root, as CI has"
    );
    let s = site();
    let outside = s.root.join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("victim"), "").unwrap();
    fs::create_dir(s.app.join("d")).unwrap();
    std::os::unix::fs::symlink(&outside, s.app.join("d/link-dir")).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), s.app.join("link-file")).unwrap();
    owner::chown_tree(&s.app, 65534, 65534).unwrap();
    assert_eq!(fs::metadata(outside.join("victim")).unwrap().uid(), 0);
    assert_eq!(fs::metadata(&outside).unwrap().uid(), 0);
    assert_eq!(
        fs::symlink_metadata(s.app.join("link-file")).unwrap().uid(),
        65534
    );
    assert_eq!(fs::metadata(s.app.join("d")).unwrap().uid(), 65534);
}
