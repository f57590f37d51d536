//! Procfile and `.env` parsing. Pure: text in, values or an error with a line number out.
//!
//! The Procfile grammar is the one foreman, honcho and Heroku share: `name: command`, with names
//! made of `[A-Za-z0-9_-]`. Where those tools silently skip a line they cannot read, we reject
//! it with the line number and what was expected, because a dyno that quietly never starts is
//! worse on a robot than a deploy that fails loudly. The `.env` reader lives in [`dotenv`].
//! Nothing here touches the filesystem; callers read the file and name its path in their errors.

mod dotenv;
#[cfg(test)]
mod tests;

pub use dotenv::parse_dotenv;
pub mod envsize;

/// A parse error that names the line (1-based) and what was wrong on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl ParseError {
    fn new(line: usize, message: impl Into<String>) -> Self {
        ParseError {
            line,
            message: message.into(),
        }
    }
}

/// One `name: command` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessType {
    pub name: String,
    pub command: String,
    pub line: usize,
}

/// A parsed Procfile, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Procfile {
    pub entries: Vec<ProcessType>,
}

impl Procfile {
    /// The entry for a process type, if the Procfile defines it.
    pub fn get(&self, name: &str) -> Option<&ProcessType> {
        self.entries.iter().find(|e| e.name == name)
    }
}

/// Whether `name` is a valid process type name: non-empty, only `[A-Za-z0-9_-]`.
/// The API uses this to validate scale targets with the same rule the parser applies.
pub fn process_type_name_ok(name: &str) -> bool {
    !name.is_empty() && name.chars().all(name_char_ok)
}

fn name_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Strips a UTF-8 byte order mark; editors on Windows like to add one and it is invisible.
pub(crate) fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Parses a Procfile: `name: command` lines, `#` comments, blank lines.
///
/// The command is everything after the first `:` (so `--bind 0.0.0.0:$PORT` survives), trimmed.
/// It is handed to a shell later, so `$PORT` and inline `#` comments are the shell's business.
pub fn parse_procfile(text: &str) -> Result<Procfile, ParseError> {
    let mut entries: Vec<ProcessType> = Vec::new();
    for (idx, raw) in strip_bom(text).lines().enumerate() {
        let line = idx + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((name, command)) = trimmed.split_once(':') else {
            return Err(ParseError::new(
                line,
                format!("no ':' in {trimmed:?}; expected `name: command`, e.g. `web: ./server`"),
            ));
        };
        check_name(name, line)?;
        let command = command.trim();
        if command.is_empty() {
            return Err(ParseError::new(
                line,
                format!("process type {name:?} has an empty command; expected `{name}: <command>`"),
            ));
        }
        if let Some(earlier) = entries.iter().find(|e| e.name == name) {
            return Err(ParseError::new(
                line,
                format!(
                    "duplicate process type {name:?} (first defined on line {}); \
                     each process type may appear only once",
                    earlier.line
                ),
            ));
        }
        entries.push(ProcessType {
            name: name.to_string(),
            command: command.to_string(),
            line,
        });
    }
    if entries.is_empty() {
        return Err(ParseError::new(
            0,
            "Procfile defines no process types; expected at least one `name: command` line",
        ));
    }
    Ok(Procfile { entries })
}

fn check_name(name: &str, line: usize) -> Result<(), ParseError> {
    if name.is_empty() {
        return Err(ParseError::new(
            line,
            "missing process type name before ':'; expected `name: command`",
        ));
    }
    match name.chars().find(|c| !name_char_ok(*c)) {
        None => Ok(()),
        Some(bad) => Err(ParseError::new(
            line,
            format!(
                "invalid character {bad:?} in process type name {name:?}; \
                 names may contain only letters, digits, '_' and '-'"
            ),
        )),
    }
}
