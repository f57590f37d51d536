//! The one piece of `bin/release` output we use: the `default_process_types` mapping.
//!
//! Buildpacks print a tiny YAML document (`--- \ndefault_process_types:\n  web: npm start`).
//! A YAML library for that would be the biggest dependency of the builder, so this reads the
//! subset buildpacks actually print: a top-level `default_process_types:` key followed by
//! `name: command` lines indented under it (plain, 'single' or "double" quoted values), or an
//! inline `{}`. Other top-level keys (`addons`, `config_vars`) are skipped. Pure, no IO.

use std::collections::BTreeMap;

/// Parses the `default_process_types` of a release document. `Err` names the bad line.
pub fn default_process_types(doc: &str) -> Result<BTreeMap<String, String>, String> {
    let mut types = BTreeMap::new();
    let mut inside: Option<usize> = None; // indentation of the `default_process_types:` key
    for (no, raw) in doc.lines().enumerate() {
        let line = raw.trim_end();
        let body = line.trim_start();
        if body.is_empty() || body.starts_with('#') || body == "---" || body == "..." {
            continue;
        }
        let indent = line.len() - body.len();
        if let Some(key_indent) = inside {
            if indent > key_indent {
                let (name, value) = split_pair(body).ok_or_else(|| bad(no, raw))?;
                let value = scalar(value).ok_or_else(|| bad(no, raw))?;
                types.insert(scalar(name).ok_or_else(|| bad(no, raw))?, value);
                continue;
            }
            inside = None;
        }
        let body = body.strip_prefix("--- ").unwrap_or(body).trim_start();
        if let Some((key, rest)) = split_pair(body) {
            if key == "default_process_types" {
                match strip_comment(rest).trim() {
                    "" => inside = Some(indent),
                    "{}" | "~" | "null" => {}
                    _ => return Err(bad(no, raw)),
                }
            }
        }
    }
    Ok(types)
}

fn bad(no: usize, raw: &str) -> String {
    format!("release output line {}: cannot read {raw:?}", no + 1)
}

/// Splits `key: value` at the first `: ` (or a trailing `:`) outside quotes.
fn split_pair(body: &str) -> Option<(&str, &str)> {
    let mut quote = None;
    let bytes = body.as_bytes();
    for (i, &c) in bytes.iter().enumerate() {
        match (quote, c) {
            (None, b'"' | b'\'') if i == 0 => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, b':') if bytes.get(i + 1).is_none_or(|n| *n == b' ' || *n == b'\t') => {
                return Some((body[..i].trim(), body[i + 1..].trim()));
            }
            _ => {}
        }
    }
    None
}

/// A plain scalar loses a trailing ` # comment`.
fn strip_comment(value: &str) -> &str {
    match value.find(" #") {
        Some(i) => &value[..i],
        None => value,
    }
}

/// The value of a plain, single-quoted ('' escapes ') or double-quoted (\" \\ \n \t) scalar.
fn scalar(value: &str) -> Option<String> {
    if let Some(rest) = value.strip_prefix('\'') {
        let end = find_single_end(rest)?;
        tail_ok(&rest[end + 1..])?;
        return Some(rest[..end].replace("''", "'"));
    }
    if let Some(rest) = value.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    tail_ok(&rest[i + 1..])?;
                    return Some(out);
                }
                '\\' => out.push(match chars.next()?.1 {
                    'n' => '\n',
                    't' => '\t',
                    other => other,
                }),
                c => out.push(c),
            }
        }
        return None;
    }
    Some(strip_comment(value).trim().to_string())
}

fn find_single_end(rest: &str) -> Option<usize> {
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\'' {
            if b.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return Some(i);
        }
        i += 1;
    }
    None
}

/// After a closing quote only blanks or a comment may follow.
fn tail_ok(tail: &str) -> Option<()> {
    let t = tail.trim();
    (t.is_empty() || t.starts_with('#')).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_the_mapping_under_the_key_and_skips_other_keys() {
        let doc = "---\naddons: []\nconfig_vars:\n  LANG: C\ndefault_process_types:\n  web: npm start\n  worker: \"node w.js --x \\\"y\\\"\"\n  clock: 'say ''hi'''\nother: 1\n  ignored: here\n";
        assert_eq!(
            default_process_types(doc).unwrap(),
            map(&[
                ("web", "npm start"),
                ("worker", "node w.js --x \"y\""),
                ("clock", "say 'hi'"),
            ])
        );
    }

    #[test]
    fn empty_forms_give_an_empty_map() {
        for doc in [
            "",
            "--- {}\n",
            "---\ndefault_process_types: {}\n",
            "--- \ndefault_process_types:\n",
            "default_process_types: ~ # none\n",
        ] {
            assert_eq!(
                default_process_types(doc).unwrap(),
                BTreeMap::new(),
                "{doc:?}"
            );
        }
    }

    #[test]
    fn values_keep_colons_and_lose_comments() {
        let doc = "default_process_types:\n    web: gunicorn app:app --bind 0.0.0.0:$PORT # the server\n\n    # a comment line\n    \"quoted key\": x\n";
        assert_eq!(
            default_process_types(doc).unwrap(),
            map(&[
                ("web", "gunicorn app:app --bind 0.0.0.0:$PORT"),
                ("quoted key", "x")
            ])
        );
    }

    #[test]
    fn garbage_under_the_key_is_an_error_naming_the_line() {
        let err = default_process_types("default_process_types:\n  just words\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        assert!(default_process_types("default_process_types:\n  web: \"open\n").is_err());
        assert!(default_process_types("default_process_types: [a]\n").is_err());
    }
}
