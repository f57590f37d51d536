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
    let _ = text;
    todo!("procfile")
}

/// Parses a `.env` file as foreman reads it: `KEY=VALUE`, optional `export `, quotes.
pub fn parse_dotenv(text: &str) -> Result<Vec<(String, String)>, ParseError> {
    let _ = text;
    todo!("dotenv")
}
