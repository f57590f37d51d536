//! Procfile and `.env`: what the parsers accept is well-formed and survives being written out
//! and read back; what they refuse is refused on a line that exists.

use crate::procfile::{parse_dotenv, parse_procfile, process_type_name_ok, ParseError};

/// Lines as the parsers count them (a trailing newline ends a line, it does not start one).
fn line_count(text: &str) -> usize {
    text.split('\n').count()
}

fn error_line_in_range(what: &str, e: &ParseError, text: &str) {
    assert!(
        e.line <= line_count(text),
        "{what}: error on line {} of a {}-line file: {e}",
        e.line,
        line_count(text)
    );
    assert!(!e.message.is_empty(), "{what}: error without a message");
}

/// Procfile: accepted entries have valid, unique names and trimmed one-line commands, in file
/// order; `name: command` lines rendered from them parse back to the same entries.
pub fn procfile(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parsed = parse_procfile(&text);
    assert_eq!(
        parsed,
        parse_procfile(&text),
        "Procfile parsing is not deterministic"
    );
    let p = match parsed {
        Ok(p) => p,
        Err(e) => {
            if e.line == 0 {
                assert!(
                    e.message.contains("no process types"),
                    "line 0 is only for an empty Procfile: {e}"
                );
            }
            return error_line_in_range("Procfile", &e, &text);
        }
    };
    assert!(
        !p.entries.is_empty(),
        "an accepted Procfile defines a process type"
    );
    let mut last_line = 0;
    for (i, e) in p.entries.iter().enumerate() {
        assert!(process_type_name_ok(&e.name), "accepted name {:?}", e.name);
        assert!(
            p.entries[..i].iter().all(|o| o.name != e.name),
            "duplicate process type {:?} accepted",
            e.name
        );
        assert!(!e.command.is_empty(), "{}: empty command accepted", e.name);
        assert_eq!(
            e.command.trim(),
            e.command,
            "{}: command not trimmed",
            e.name
        );
        assert!(!e.command.contains('\n'), "{}: command spans lines", e.name);
        assert!(
            e.line > last_line && e.line <= line_count(&text),
            "{}: line {}",
            e.name,
            e.line
        );
        last_line = e.line;
        assert_eq!(p.get(&e.name), Some(e));
    }
    let rendered: String = p
        .entries
        .iter()
        .map(|e| format!("{}: {}\n", e.name, e.command))
        .collect();
    let back = parse_procfile(&rendered)
        .unwrap_or_else(|e| panic!("rendered Procfile {rendered:?} does not parse: {e}"));
    let pairs = |p: &crate::procfile::Procfile| -> Vec<(String, String)> {
        p.entries
            .iter()
            .map(|e| (e.name.clone(), e.command.clone()))
            .collect()
    };
    assert_eq!(
        pairs(&back),
        pairs(&p),
        "Procfile round trip through {rendered:?}"
    );
}

/// A value as a double-quoted `.env` value: the escapes the parser documents, nothing else.
pub fn render_dotenv_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '$' => out.push_str("\\$"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `.env`: accepted keys are valid names; every accepted value can be written back (double
/// quoted, escaped) and reads back the same, so nothing a `.env` can hold is lost or altered.
pub fn dotenv(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parsed = parse_dotenv(&text);
    assert_eq!(
        parsed,
        parse_dotenv(&text),
        ".env parsing is not deterministic"
    );
    let pairs = match parsed {
        Ok(p) => p,
        Err(e) => {
            assert!(e.line >= 1, ".env errors name a line: {e}");
            return error_line_in_range(".env", &e, &text);
        }
    };
    for (k, _) in &pairs {
        let mut chars = k.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        assert!(first_ok && rest_ok, "accepted key {k:?}");
    }
    let rendered: String = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}\n", render_dotenv_value(v)))
        .collect();
    let back = parse_dotenv(&rendered)
        .unwrap_or_else(|e| panic!("rendered .env {rendered:?} does not parse: {e}"));
    assert_eq!(back, pairs, ".env round trip through {rendered:?}");
}
