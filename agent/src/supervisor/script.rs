//! The shell script a dyno runs, pure: source `.profile.d/*.sh` (as Heroku does), then the
//! Procfile command. When the command is one simple command (words, quotes, expansions and
//! redirections; no `;`, `&`, `|`, `&&`, parentheses, newlines or shell keywords), the shell
//! `exec`s it, so no `/bin/sh` stays behind as the dyno's parent: the dyno's pid is the app's,
//! signals reach the app directly, and N dynos cost N processes, not 2N. Anything else runs as
//! written under the shell, as before.

/// The script given to `/bin/sh -c`.
pub fn shell_script(command: &str) -> String {
    let body = exec_form(command).unwrap_or_else(|| command.to_string());
    format!("for f in .profile.d/*.sh; do [ -r \"$f\" ] && . \"./$f\"; done; unset f\n{body}")
}

/// `command` with `exec` in front of its command word (after any leading `NAME=value`
/// assignments), or `None` when it is not one simple command or already starts with `exec`.
pub fn exec_form(command: &str) -> Option<String> {
    let words = top_level_words(command)?;
    let first_cmd = words
        .iter()
        .position(|&(s, e)| !is_assignment(&command[s..e]))?;
    let (s, e) = words[first_cmd];
    let word = &command[s..e];
    if KEYWORDS.contains(&word) || word == "exec" || word.starts_with('#') {
        return None;
    }
    Some(format!("{}exec {}", &command[..s], &command[s..]))
}

/// Reserved words (and `[[`, `time`, `function` of other shells) that begin compound commands.
pub(super) const KEYWORDS: &[&str] = &[
    "if", "then", "else", "elif", "fi", "do", "done", "case", "esac", "while", "until", "for",
    "in", "{", "}", "!", "[[", "]]", "function", "select", "time", "coproc",
];

/// `NAME=...` with a valid shell name before the `=`.
fn is_assignment(word: &str) -> bool {
    let Some((name, _)) = word.split_once('=') else {
        return false;
    };
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Byte ranges of the command's words at the top level, or `None` when it holds a control
/// operator, a subshell, a newline or an unterminated quote (not one simple command). A `&`
/// right after `<` or `>` is part of a redirection (`2>&1`), not an operator.
fn top_level_words(command: &str) -> Option<Vec<(usize, usize)>> {
    let bytes = command.as_bytes();
    let mut words = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b' ' | b'\t' => {
                if let Some(s) = start.take() {
                    words.push((s, i));
                }
                i += 1;
                continue;
            }
            b'\n' | b'\r' | b';' | b'|' | b'(' | b')' => return None,
            b'&' if i == 0 || !matches!(bytes[i - 1], b'<' | b'>') => return None,
            b'#' if start.is_none() => {
                // A comment runs to the end (no newline, checked above): the rest is not words.
                break;
            }
            _ => {}
        }
        start.get_or_insert(i);
        match c {
            b'\\' => i += 2,
            b'\'' => i = i + 1 + command[i + 1..].find('\'')? + 1,
            b'"' => i = closing_double_quote(bytes, i + 1)? + 1,
            b'$' if bytes.get(i + 1) == Some(&b'(') => return None,
            b'`' => return None,
            _ => i += 1,
        }
    }
    if let Some(s) = start {
        words.push((s, bytes.len().min(i)));
    }
    Some(words)
}

/// The index of the `"` closing a double-quoted string whose body starts at `from`.
fn closing_double_quote(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            // A command substitution inside quotes may hold anything: leave it to the shell.
            b'`' => return None,
            b'$' if bytes.get(i + 1) == Some(&b'(') => return None,
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_commands_are_execed() {
        let cases = [
            (
                "python app.py --port $PORT",
                "exec python app.py --port $PORT",
            ),
            ("./bin/nav", "exec ./bin/nav"),
            ("  node server.js", "  exec node server.js"),
            (
                "gunicorn 'app:create()' -b \"0.0.0.0:$PORT\"",
                "exec gunicorn 'app:create()' -b \"0.0.0.0:$PORT\"",
            ),
            ("RUST_LOG=info ./nav 2>&1", "RUST_LOG=info exec ./nav 2>&1"),
            ("A=1 B='x y' cmd >out.log", "A=1 B='x y' exec cmd >out.log"),
            ("echo a\\;b", "exec echo a\\;b"),
            (
                "ros2 launch nav ${LAUNCH:-main}.py",
                "exec ros2 launch nav ${LAUNCH:-main}.py",
            ),
            ("sleep 100 # forever", "exec sleep 100 # forever"),
        ];
        for (cmd, want) in cases {
            assert_eq!(exec_form(cmd).as_deref(), Some(want), "{cmd}");
        }
    }

    #[test]
    fn anything_else_runs_under_the_shell() {
        for cmd in [
            "exec sleep 100",
            "cd src && python x.py",
            "a; b",
            "a | b",
            "a &",
            "(a)",
            "a\nb",
            "if true; then a; fi",
            "{ a; }",
            "! a",
            "A=1",
            "a $(b)",
            "a \"$(b)\"",
            "a `b`",
            "echo 'unterminated",
            "echo \"unterminated",
            "trap 'x' TERM; a",
            "",
            "# only a comment",
        ] {
            assert_eq!(exec_form(cmd), None, "{cmd:?}");
        }
    }

    #[test]
    fn the_script_sources_the_profile_then_runs_the_command() {
        let s = shell_script("python app.py");
        assert!(s.starts_with("for f in .profile.d/*.sh;"), "{s}");
        assert!(s.ends_with("unset f\nexec python app.py"), "{s}");
        assert!(shell_script("a && b").ends_with("unset f\na && b"));
    }
}
