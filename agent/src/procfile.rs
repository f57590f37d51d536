//! Procfile and `.env` parsing. Pure: text in, values or an error with a line number out.
//! (Stub: the contract below is fixed; the implementation lands with its tests.)

/// A parse error that names the line (1-based) and what was wrong on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
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

/// Parses a Procfile: `name: command` lines, `#` comments, blank lines.
pub fn parse_procfile(text: &str) -> Result<Procfile, ParseError> {
    // Minimal stand-in on the `build` branch so slug tests run; replaced by the real parser.
    let mut entries = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |message: &str| ParseError {
            line: i + 1,
            message: message.to_string(),
        };
        let (name, command) = line
            .split_once(':')
            .ok_or_else(|| err("expected `name: command`"))?;
        let (name, command) = (name.trim(), command.trim());
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(err("bad process type name"));
        }
        if command.is_empty() {
            return Err(err("empty command"));
        }
        entries.push(ProcessType {
            name: name.to_string(),
            command: command.to_string(),
            line: i + 1,
        });
    }
    Ok(Procfile { entries })
}

/// Parses a `.env` file as foreman reads it: `KEY=VALUE`, optional `export `, quotes.
pub fn parse_dotenv(text: &str) -> Result<Vec<(String, String)>, ParseError> {
    let _ = text;
    todo!("dotenv")
}
