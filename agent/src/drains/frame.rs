//! RFC 5424 messages and their framing, pure.
//!
//! A line becomes `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID - - MSG`: facility local7 (as
//! Heroku's logplex), severity info for the app's own lines and notice for roboku's lines about
//! it; APP-NAME the app, PROCID the dyno. TCP and TLS frame each message by octet counting
//! (RFC 6587 3.4.1: `LEN SP MSG`), as does Heroku's HTTPS body (`application/logplex-1`); UDP
//! sends one message per datagram (RFC 5426), cut to [`UDP_MAX`].

use roboku_wire::{LogLine, LogSource};

/// local7 (23) * 8 + info (6).
const PRI_APP: u8 = 190;
/// local7 * 8 + notice (5).
const PRI_ROBOKU: u8 = 189;
/// Largest datagram a receiver SHOULD accept (RFC 5426 3.2).
pub const UDP_MAX: usize = 2048;

/// One RFC 5424 message, without framing.
pub fn message(line: &LogLine, host: &str) -> String {
    let pri = match line.source {
        LogSource::App => PRI_APP,
        LogSource::Roboku => PRI_ROBOKU,
    };
    format!(
        "<{pri}>1 {} {} {} {} - - {}",
        roboku_wire::iso8601(line.ts),
        field(host, 255),
        field(&line.app, 48),
        field(&line.dyno, 128),
        line.line
    )
}

/// A header field: printable US-ASCII without spaces (RFC 5424 6.2), at most `max` long, `-`
/// when empty.
fn field(s: &str, max: usize) -> String {
    let f: String = s
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(max)
        .collect();
    if f.is_empty() {
        "-".into()
    } else {
        f
    }
}

/// Appends `msg` octet-counted to `out`.
pub fn octet_counted(out: &mut Vec<u8>, msg: &str) {
    out.extend_from_slice(msg.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg.as_bytes());
}

/// Every line as octet-counted messages: a TCP/TLS write, or an HTTPS drain's body.
pub fn stream(lines: &[LogLine], host: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        octet_counted(&mut out, &message(l, host));
    }
    out
}

/// One datagram: the message cut to [`UDP_MAX`] bytes at a character boundary.
pub fn datagram(line: &LogLine, host: &str) -> String {
    let mut msg = message(line, host);
    if msg.len() > UDP_MAX {
        let mut end = UDP_MAX;
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        msg.truncate(end);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(source: LogSource, text: &str) -> LogLine {
        LogLine {
            ts: 1_795_990_203_123,
            app: "nav".into(),
            dyno: "web.1".into(),
            source,
            line: text.into(),
        }
    }

    #[test]
    fn rfc5424_fields() {
        assert_eq!(
            message(&line(LogSource::App, "hello world"), "r17"),
            "<190>1 2026-11-29T22:10:03.123Z r17 nav web.1 - - hello world"
        );
        assert_eq!(
            message(&line(LogSource::Roboku, "Starting process"), "r17"),
            "<189>1 2026-11-29T22:10:03.123Z r17 nav web.1 - - Starting process"
        );
        // A host name with a space (or nothing) cannot break the header.
        assert_eq!(
            message(&line(LogSource::App, "x"), "my robot"),
            "<190>1 2026-11-29T22:10:03.123Z my_robot nav web.1 - - x"
        );
        assert!(message(&line(LogSource::App, "x"), "").contains("Z - nav"));
    }

    #[test]
    fn octet_counting_counts_bytes_not_chars() {
        let lines = [line(LogSource::App, "é"), line(LogSource::App, "b")];
        let body = String::from_utf8(stream(&lines, "h")).unwrap();
        let first = message(&lines[0], "h");
        assert_eq!(first.len(), first.chars().count() + 1);
        assert_eq!(
            body,
            format!(
                "{} {first}{} {}",
                first.len(),
                message(&lines[1], "h").len(),
                message(&lines[1], "h")
            )
        );
    }

    #[test]
    fn datagrams_are_cut_at_a_char_boundary() {
        let long = line(LogSource::App, &"é".repeat(3000));
        let d = datagram(&long, "h");
        assert!(d.len() <= UDP_MAX && d.len() > UDP_MAX - 2, "{}", d.len());
        assert!(d.starts_with("<190>1 "));
    }
}
