//! Starting a dyno without `/bin/sh` when the shell would do nothing but `exec` it: the Procfile
//! command is plain words (no quotes, expansions, globs, redirections, assignments or operators),
//! its program is no shell builtin, and the slug has no `.profile.d/*.sh` to source. Then the
//! child execs the program itself, trying the paths the shell would try (the `PATH` entries in
//! order, or the program as written when it holds a `/`), with the environment the shell would
//! have passed on (plus `PWD`, which dash exports). The kernel decides, as the dyno's user, which
//! of them runs, exactly as for the shell's own search; when none does (not found, not
//! executable, a script without `#!`), the child goes on to `/bin/sh -c` with the prelude, whose
//! search and error messages are the ones users know. A dyno start then costs one exec, not two
//! (dash's own start is most of a dyno's launch CPU).

use std::collections::BTreeMap;
use std::path::Path;

/// What to try before `/bin/sh -c`: the program's paths in the shell's order, its argv, and the
/// `PWD` to add to its environment (for the shell too, should it come to that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Direct {
    pub paths: Vec<String>,
    pub argv: Vec<String>,
    pub pwd: String,
}

/// `Some` when `command`, run in `cwd` with `env`, may skip the shell (see the module doc).
pub fn direct(command: &str, cwd: &Path, env: &BTreeMap<String, String>) -> Option<Direct> {
    let words = plain_words(command)?;
    if env.contains_key("PWD") || has_profile_scripts(cwd) {
        return None;
    }
    Some(Direct {
        paths: search_paths(words[0], env.get("PATH")?),
        argv: words.iter().map(|w| w.to_string()).collect(),
        pwd: std::fs::canonicalize(cwd).ok()?.to_str()?.into(),
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
    if first.contains('=') || BUILTINS.contains(&first) || super::script::KEYWORDS.contains(&first)
    {
        return None;
    }
    Some(words)
}

/// dash's builtins: run by the shell, not from `PATH`, even where a program of the same name
/// exists (`echo`, `kill`, `test`, `true`, `printf`, `pwd`). Reserved words are
/// [`super::script::KEYWORDS`].
const BUILTINS: &[&str] = &[
    ".", ":", "alias", "bg", "break", "cd", "chdir", "command", "continue", "echo", "eval", "exec",
    "exit", "export", "false", "fc", "fg", "getopts", "hash", "jobs", "kill", "local", "printf",
    "pwd", "read", "readonly", "return", "set", "shift", "source", "test", "times", "trap", "true",
    "type", "ulimit", "umask", "unalias", "unset", "wait",
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

/// The paths the shell would exec `program` by, in its order (so `ps` shows the same): as
/// written when it holds a `/` (relative ones work: the child is in the slug by then), else
/// `dir/program` for each `path` entry (`program` for an empty entry, as in dash).
fn search_paths(program: &str, path: &str) -> Vec<String> {
    if program.contains('/') {
        return vec![program.to_string()];
    }
    path.split(':')
        .map(|dir| match dir {
            "" => program.to_string(),
            dir => format!("{}/{program}", dir.trim_end_matches('/')),
        })
        .collect()
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
            "time sleep 1",
            "while true",
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
    fn the_paths_are_the_shells_search_in_order_and_pwd_is_added() {
        let dir = tempfile::tempdir().unwrap();
        let d = direct(
            "sleep 5",
            dir.path(),
            &env("/usr/local/bin:/usr/bin/::/bin"),
        )
        .unwrap();
        assert_eq!(
            d.paths,
            [
                "/usr/local/bin/sleep",
                "/usr/bin/sleep",
                "sleep",
                "/bin/sleep"
            ]
        );
        assert_eq!(d.argv, ["sleep", "5"]);
        let real = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(std::path::PathBuf::from(&d.pwd), real);
        // With a `/`, as written (relative to the slug, where the child is).
        let d = direct("./bin/nav --x", dir.path(), &env("/usr/bin")).unwrap();
        assert_eq!(d.paths, ["./bin/nav"]);
        assert_eq!(d.argv, ["./bin/nav", "--x"]);
    }

    #[test]
    fn the_shell_stays_when_it_has_work() {
        let dir = tempfile::tempdir().unwrap();
        let path = env("/usr/bin:/bin");
        assert!(direct("sleep 5", dir.path(), &path).is_some());
        assert_eq!(direct("sleep 5 $X", dir.path(), &path), None);
        assert_eq!(
            direct("sleep 5", dir.path(), &BTreeMap::new()),
            None,
            "no PATH"
        );
        let mut with_pwd = path.clone();
        with_pwd.insert("PWD".into(), "/elsewhere".into());
        assert_eq!(direct("sleep 5", dir.path(), &with_pwd), None, "PWD set");
        // `.profile.d` without scripts changes nothing; one `.sh` in it needs the shell.
        std::fs::create_dir(dir.path().join(".profile.d")).unwrap();
        std::fs::write(dir.path().join(".profile.d/README"), "").unwrap();
        assert!(direct("sleep 5", dir.path(), &path).is_some());
        std::fs::write(dir.path().join(".profile.d/python.sh"), "export A=1\n").unwrap();
        assert_eq!(direct("sleep 5", dir.path(), &path), None);
    }
}
