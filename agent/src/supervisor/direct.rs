//! Starting a dyno without `/bin/sh` when the shell would do nothing but `exec` it: the Procfile
//! command is plain words (no quotes, expansions, globs, redirections, assignments or operators),
//! its program is no shell builtin and is found on the dyno's `PATH`, and the slug has no
//! `.profile.d/*.sh` to source. Then robokud execs the program itself with the environment the
//! shell would have passed on (plus `PWD`, which dash exports), and the dyno costs one exec, not
//! two (dash's own start is most of a dyno's launch CPU). Anything else goes through the shell
//! as before ([`super::script`]), including a program that is not found: the shell's error is
//! the one users know.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// What to exec instead of `/bin/sh -c`: the program's path, its argv and its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Direct {
    pub path: String,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
}

/// Who the dyno runs as, for the execute-permission check: its uid and its groups (`None`:
/// robokud's own user, root).
pub type Who<'a> = Option<(u32, &'a [u32])>;

/// `Some` when `command`, run in `cwd` with `env` as `who`, needs no shell (see the module doc).
pub fn direct(
    command: &str,
    cwd: &Path,
    env: &BTreeMap<String, String>,
    who: Who<'_>,
) -> Option<Direct> {
    let words = plain_words(command)?;
    if env.contains_key("PWD") || has_profile_scripts(cwd) {
        return None;
    }
    let path = resolve(words[0], cwd, env.get("PATH")?, who)?;
    let mut env = env.clone();
    env.insert(
        "PWD".into(),
        std::fs::canonicalize(cwd).ok()?.to_str()?.into(),
    );
    Some(Direct {
        path,
        argv: words.iter().map(|w| w.to_string()).collect(),
        env,
    })
}

/// The command's words (without a leading `exec`) when it is nothing but plain words whose first
/// is no shell builtin, keyword or assignment; `None` when the shell has anything to do with it.
pub fn plain_words(command: &str) -> Option<Vec<&str>> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./,:@%+=".contains(c);
    if !command.chars().all(|c| plain(c) || c == ' ' || c == '\t') {
        return None;
    }
    let mut words: Vec<&str> = command
        .split([' ', '\t'])
        .filter(|w| !w.is_empty())
        .collect();
    // `exec prog args` is what the shell would run anyway.
    if words.first() == Some(&"exec") {
        words.remove(0);
    }
    let first = *words.first()?;
    if first.contains('=') || BUILTINS.contains(&first) {
        return None;
    }
    Some(words)
}

/// dash's builtins (and the keywords of other shells): run by the shell, not from `PATH`, even
/// where a program of the same name exists (`echo`, `kill`, `test`, `true`, `printf`, `pwd`).
const BUILTINS: &[&str] = &[
    ".", ":", "alias", "bg", "break", "cd", "chdir", "command", "continue", "echo", "eval", "exec",
    "exit", "export", "false", "fc", "fg", "getopts", "hash", "jobs", "kill", "local", "printf",
    "pwd", "read", "readonly", "return", "set", "shift", "test", "times", "trap", "true", "type",
    "ulimit", "umask", "unalias", "unset", "wait", "if", "then", "else", "elif", "fi", "do",
    "done", "case", "esac", "while", "until", "for", "in", "function", "select", "time", "coproc",
    "source",
];

/// Whether the slug has a `.profile.d/*.sh` the prelude would source (or one it cannot tell).
fn has_profile_scripts(cwd: &Path) -> bool {
    match std::fs::read_dir(cwd.join(".profile.d")) {
        Ok(entries) => entries.into_iter().any(|e| match e {
            Ok(e) => e.file_name().as_encoded_bytes().ends_with(b".sh"),
            Err(_) => true,
        }),
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

/// The path the shell would exec `program` by (so `ps` shows the same): as written when it holds
/// a `/` (relative paths work: the child is in `cwd` by then), else `dir/program` for the first
/// `path` entry holding a regular file of that name (`program` for an empty entry, as in dash).
/// `None` when that file is not executable by `who` (the shell, run as `who`, would try the
/// next entry or fail with its own message).
fn resolve(program: &str, cwd: &Path, path: &str, who: Who<'_>) -> Option<String> {
    let candidates: Vec<String> = if program.contains('/') {
        vec![program.to_string()]
    } else {
        path.split(':')
            .map(|dir| match dir {
                "" => program.to_string(),
                dir => format!("{}/{program}", dir.trim_end_matches('/')),
            })
            .collect()
    };
    let found = candidates.into_iter().find_map(|p| {
        let m = std::fs::metadata(cwd.join(&p)).ok()?;
        m.is_file().then_some((p, m))
    });
    let (p, m) = found?;
    executable_by(&m, who).then_some(p)
}

/// The execute bit that applies to `who` (owner, group or other), as the kernel checks it;
/// any of them for root.
fn executable_by(m: &std::fs::Metadata, who: Who<'_>) -> bool {
    let mode = m.permissions().mode();
    match who {
        None | Some((0, _)) => mode & 0o111 != 0,
        Some((uid, _)) if m.uid() == uid => mode & 0o100 != 0,
        Some((_, groups)) if groups.contains(&m.gid()) => mode & 0o010 != 0,
        Some(_) => mode & 0o001 != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_commands_are_their_words() {
        assert_eq!(plain_words("sleep 100000"), Some(vec!["sleep", "100000"]));
        assert_eq!(plain_words("exec sleep 1"), Some(vec!["sleep", "1"]));
        assert_eq!(
            plain_words("  ./bin/nav\t--rate=50 -v  "),
            Some(vec!["./bin/nav", "--rate=50", "-v"])
        );
        assert_eq!(
            plain_words("node server.js a,b user@host 10%"),
            Some(vec!["node", "server.js", "a,b", "user@host", "10%"])
        );
    }

    #[test]
    fn anything_the_shell_would_touch_is_not_plain() {
        for cmd in [
            "python app.py --port $PORT",
            "gunicorn 'app:create()'",
            "a \"b\"",
            "echo a\\ b",
            "ls *.py",
            "cat ~/x",
            "a > out.log",
            "a 2>&1",
            "a < in",
            "a; b",
            "a && b",
            "a | b",
            "a &",
            "(a)",
            "{ a; }",
            "a\nb",
            "a # comment",
            "a `b`",
            "ls [ab]",
            "x?",
            "RUST_LOG=info ./nav",
            "exec",
            "exec exec sleep 1",
            "exec cd src",
            "cd src",
            "echo hi",
            "kill 1",
            "true",
            "",
            "   ",
            "caf\u{e9}",
        ] {
            assert_eq!(plain_words(cmd), None, "{cmd:?}");
        }
    }

    fn env(path: &str) -> BTreeMap<String, String> {
        [("PATH".to_string(), path.to_string())].into()
    }

    #[test]
    fn a_program_on_path_is_execed_with_pwd_added() {
        let dir = tempfile::tempdir().unwrap();
        let d = direct(
            "sleep 5",
            dir.path(),
            &env("/nonexistent:/usr/bin:/bin"),
            None,
        )
        .unwrap();
        assert!(
            d.path == "/usr/bin/sleep" || d.path == "/bin/sleep",
            "{:?}",
            d.path
        );
        assert_eq!(d.argv, ["sleep", "5"]);
        let real = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(d.env.get("PWD").map(std::path::PathBuf::from), Some(real));
        assert_eq!(d.env.get("PATH").unwrap(), "/nonexistent:/usr/bin:/bin");
    }

    #[test]
    fn a_relative_program_is_found_from_the_slug_and_must_be_executable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        let nav = dir.path().join("bin/nav");
        std::fs::write(&nav, "#!/bin/sh\n").unwrap();
        assert_eq!(
            direct("./bin/nav", dir.path(), &env("/usr/bin"), None),
            None,
            "not executable"
        );
        std::fs::set_permissions(&nav, std::fs::Permissions::from_mode(0o755)).unwrap();
        let d = direct("./bin/nav --x", dir.path(), &env("/usr/bin"), None).unwrap();
        assert_eq!(
            d.path, "./bin/nav",
            "as written: ps shows what the shell would"
        );
        // An empty PATH entry is the current directory, as in dash.
        let d = direct("nav", &dir.path().join("bin"), &env("/nonexistent::"), None).unwrap();
        assert_eq!(d.path, "nav");
    }

    #[test]
    fn the_shell_stays_when_it_has_work_or_the_program_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = env("/usr/bin:/bin");
        assert!(direct("sleep 5", dir.path(), &path, None).is_some());
        assert_eq!(
            direct("no-such-program-here", dir.path(), &path, None),
            None
        );
        assert_eq!(
            direct("sleep 5", dir.path(), &BTreeMap::new(), None),
            None,
            "no PATH"
        );
        let mut with_pwd = path.clone();
        with_pwd.insert("PWD".into(), "/elsewhere".into());
        assert_eq!(
            direct("sleep 5", dir.path(), &with_pwd, None),
            None,
            "PWD set"
        );
        // `.profile.d` without scripts changes nothing; one `.sh` in it needs the shell.
        std::fs::create_dir(dir.path().join(".profile.d")).unwrap();
        std::fs::write(dir.path().join(".profile.d/README"), "").unwrap();
        assert!(direct("sleep 5", dir.path(), &path, None).is_some());
        std::fs::write(dir.path().join(".profile.d/python.sh"), "export A=1\n").unwrap();
        assert_eq!(direct("sleep 5", dir.path(), &path, None), None);
    }

    #[test]
    fn the_execute_bit_checked_is_the_dyno_users() {
        let dir = tempfile::tempdir().unwrap();
        let prog = dir.path().join("nav");
        std::fs::write(&prog, "#!/bin/sh\n").unwrap();
        let owner = std::fs::metadata(&prog).unwrap().uid();
        let group = std::fs::metadata(&prog).unwrap().gid();
        let path = env("/usr/bin");
        let runs = |mode: u32, who: Who<'_>| {
            std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(mode)).unwrap();
            direct("./nav", dir.path(), &path, who).is_some()
        };
        let (stranger, other_group) = (owner + 4242, group + 4242);
        assert!(runs(0o700, None), "root: any execute bit");
        assert!(!runs(0o700, Some((stranger, &[other_group]))), "owner-only");
        assert!(runs(0o750, Some((stranger, &[group]))), "by its group");
        assert!(!runs(0o740, Some((stranger, &[group]))));
        assert!(runs(0o701, Some((stranger, &[other_group]))), "by anyone");
        if owner != 0 {
            assert!(runs(0o700, Some((owner, &[]))), "by its owner");
        }
    }
}
