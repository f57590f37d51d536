//! `.env` parsing, as foreman (and the dotenv family it follows) reads it.
//!
//! Accepted: `KEY=VALUE`, an optional `export ` prefix, `#` comment lines, blank lines.
//! Unquoted values are trimmed and lose an inline comment (a `#` preceded by whitespace, so
//! `URL=http://x/#frag` keeps its fragment). Single-quoted values are literal. Double-quoted
//! values understand `\n`, `\t`, `\"`, `\\` and `\$`; any other backslash is kept as written
//! (as a shell would), so `"C:\dir"` survives. Quoted values may span lines.
//!
//! There is deliberately no `$VAR` interpolation: foreman does none by default, and a value is
//! stored exactly as the user wrote it. `\$` still unescapes to `$` for files written for tools
//! that do interpolate.
//!
//! Error messages never quote a value or a whole line: `.env` files hold secrets and errors end
//! up in logs. They name the line number, the key when known, and what was expected.

use super::{strip_bom, ParseError};

/// Parses a `.env` file as foreman reads it: `KEY=VALUE`, optional `export `, quotes.
/// Pairs come back in file order, duplicates included; a later one wins when folded into a map.
pub fn parse_dotenv(text: &str) -> Result<Vec<(String, String)>, ParseError> {
    // Split on '\n' ourselves and drop one '\r', so CRLF files behave and multi-line quoted
    // values can pull the following raw lines.
    let lines: Vec<&str> = strip_bom(text)
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut out = Vec::new();
    let mut next = 0;
    while next < lines.len() {
        let line_no = next + 1;
        let line = lines[next].trim_start();
        next += 1;
        if line.trim_end().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, rest)) = strip_export(line).split_once('=') else {
            return Err(ParseError::new(
                line_no,
                "no '=' on this line; expected KEY=VALUE",
            ));
        };
        let key = key.trim();
        check_key(key, line_no)?;
        let start = rest.trim_start();
        let value = match start.chars().next() {
            Some(quote @ ('"' | '\'')) => {
                let (value, after, used) =
                    read_quoted(&start[1..], quote, &lines[next..], key, line_no)?;
                next += used;
                check_after_quote(after, key, line_no + used)?;
                value
            }
            _ => unquoted(rest),
        };
        out.push((key.to_string(), value));
    }
    Ok(out)
}

/// `export KEY=v` is how shells source the same file; a key literally named `export` still works.
fn strip_export(line: &str) -> &str {
    match line.strip_prefix("export") {
        Some(rest) if rest.starts_with([' ', '\t']) && !rest.trim_start().starts_with('=') => {
            rest.trim_start()
        }
        _ => line,
    }
}

fn check_key(key: &str, line: usize) -> Result<(), ParseError> {
    let mut chars = key.chars();
    let Some(first) = chars.next() else {
        return Err(ParseError::new(
            line,
            "missing key before '='; expected KEY=VALUE",
        ));
    };
    if !(first.is_ascii_alphabetic() || first == '_') {
        return Err(ParseError::new(
            line,
            format!("invalid key {key:?}: a key must start with a letter or '_', not {first:?}"),
        ));
    }
    match chars.find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '.')) {
        None => Ok(()),
        Some(bad) => Err(ParseError::new(
            line,
            format!(
                "invalid character {bad:?} in key {key:?}; \
                 keys may contain only letters, digits, '_' and '.'"
            ),
        )),
    }
}

/// An unquoted value: cut at the first `#` that follows whitespace, then trimmed.
fn unquoted(rest: &str) -> String {
    let mut prev_space = false;
    for (pos, c) in rest.char_indices() {
        if c == '#' && prev_space {
            return rest[..pos].trim().to_string();
        }
        prev_space = c.is_whitespace();
    }
    rest.trim().to_string()
}

/// Reads a quoted value starting just after the opening quote, pulling whole lines from `more`
/// until the closing quote. Returns the value, the text after the closing quote and how many
/// extra lines were used. An unclosed quote is reported on the line that opened it.
fn read_quoted<'a>(
    first: &'a str,
    quote: char,
    more: &[&'a str],
    key: &str,
    open_line: usize,
) -> Result<(String, &'a str, usize), ParseError> {
    let mut value = String::new();
    let mut segment = first;
    let mut used = 0;
    loop {
        let mut chars = segment.char_indices();
        while let Some((pos, c)) = chars.next() {
            if c == quote {
                return Ok((value, &segment[pos + 1..], used));
            }
            if c != '\\' || quote == '\'' {
                value.push(c);
                continue;
            }
            match chars.next().map(|(_, e)| e) {
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                Some(e @ ('"' | '\\' | '$')) => value.push(e),
                Some(other) => {
                    value.push('\\');
                    value.push(other);
                }
                // A backslash ending a line stays; the line break follows it below.
                None => value.push('\\'),
            }
        }
        let Some(line) = more.get(used) else {
            let kind = if quote == '"' { "double" } else { "single" };
            return Err(ParseError::new(
                open_line,
                format!(
                    "the {kind}-quoted value of {key} opened on this line is never closed; \
                     expected a closing {quote}"
                ),
            ));
        };
        value.push('\n');
        segment = line;
        used += 1;
    }
}

/// After a closing quote only whitespace and an optional `#` comment may follow.
fn check_after_quote(after: &str, key: &str, line: usize) -> Result<(), ParseError> {
    let after = after.trim_start();
    if after.is_empty() || after.starts_with('#') {
        return Ok(());
    }
    Err(ParseError::new(
        line,
        format!(
            "unexpected text after the closing quote of {key}; \
             expected the end of the line or a `#` comment (quote the whole value)"
        ),
    ))
}
