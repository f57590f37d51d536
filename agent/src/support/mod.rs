//! The support bundle (`roboku fleet support`): what goes into it, how secrets are kept out,
//! how it is capped and packed. Pure: the gathering is `mqtt::support_reply`'s; everything here
//! is tested without tokio or a robot.
//!
//! What never leaves the robot: config var values (names only), the drain URLs' user info,
//! query and token, add-on credentials (they are config var values), the broker's user info,
//! inline trusted keys and the test clock. A last pass replaces every config value of every app
//! that is still found anywhere in the bundle (an app may print its own secrets into its logs)
//! by `[redacted: config var NAME]`.

pub mod scrub;

use std::io::Write;

/// Bytes of content (before compression) a bundle holds without `max_bytes`, and the most a
/// request may ask for.
pub const DEFAULT_MAX_BYTES: u64 = 1024 * 1024;
pub const CEILING_MAX_BYTES: u64 = 4 * 1024 * 1024;
/// Log lines per app without `lines`, and the most a request may ask for.
pub const DEFAULT_LINES: usize = 200;
pub const MAX_LINES: usize = 2_000;
/// Bytes of bundle per message: base64 makes 48 KiB of it, well under the 64 KiB the protocol
/// allows.
pub const CHUNK_BYTES: usize = 36 * 1024;
/// The member that lists what was cut.
pub const TRUNCATED_MEMBER: &str = "TRUNCATED.txt";

/// One file of the bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// Path inside the bundle's top directory (`apps/nav/ps.json`).
    pub name: String,
    pub body: Vec<u8>,
    /// Lines of text whose oldest may be cut to make it fit (logs); otherwise all or nothing.
    pub lines: bool,
}

impl Section {
    pub fn json(name: &str, v: &impl serde::Serialize) -> Section {
        Section {
            name: name.to_string(),
            body: serde_json::to_vec_pretty(v)
                .unwrap_or_else(|e| format!("{{\"error\": \"cannot encode: {e}\"}}").into_bytes()),
            lines: false,
        }
    }
    pub fn text(name: &str, text: String, lines: bool) -> Section {
        Section {
            name: name.to_string(),
            body: text.into_bytes(),
            lines,
        }
    }
}

/// A value that must not appear in the bundle (a config var's, a drain URL's password).
#[derive(Debug, Clone, PartialEq)]
pub struct Secret {
    pub app: String,
    /// What it is, for the marker: `config var TOKEN`, `drain d1 password`.
    pub name: String,
    pub value: String,
}

/// Values shorter than this are not searched for (`1` or `on` would redact half the bundle;
/// they are never written as values anyway, only an app's own log line could carry one).
pub const MIN_SECRET_LEN: usize = 4;

/// Replaces every occurrence of a secret's value (as is and JSON-escaped) by a marker naming
/// the var. Longest values first, so a value that contains another is replaced whole.
pub fn redact(body: &[u8], secrets: &[Secret]) -> Vec<u8> {
    let mut text = String::from_utf8_lossy(body).into_owned();
    let mut order: Vec<&Secret> = secrets
        .iter()
        .filter(|s| s.value.len() >= MIN_SECRET_LEN)
        .collect();
    order.sort_by_key(|s| std::cmp::Reverse(s.value.len()));
    for s in order {
        let marker = format!("[redacted: {} of {}]", s.name, s.app);
        let escaped = serde_json::to_string(&s.value).unwrap_or_default();
        let escaped = escaped.trim_matches('"');
        for v in [s.value.as_str(), escaped] {
            if !v.is_empty() && text.contains(v) {
                text = text.replace(v, &marker);
            }
        }
    }
    text.into_bytes()
}

/// Fits sections into `max_bytes` of content, in the order given (most important first): a
/// section that does not fit whole is cut to its newest lines when it is line text, else left
/// out; each cut is described. The description of the cuts is itself a section at the end
/// (and does not count against the cap).
pub fn cap(sections: Vec<Section>, max_bytes: u64) -> (Vec<Section>, Vec<String>) {
    let mut left = max_bytes;
    let mut out = Vec::new();
    let mut cuts = Vec::new();
    for mut s in sections {
        let len = s.body.len() as u64;
        if len <= left {
            left -= len;
            out.push(s);
            continue;
        }
        if s.lines && left > 0 {
            let kept = newest_lines(&s.body, left as usize);
            let cut = s.body.len() - kept.len();
            let dropped = s.body[..cut].iter().filter(|b| **b == b'\n').count();
            cuts.push(format!(
                "{}: the oldest {dropped} lines ({cut} bytes) cut to stay within {max_bytes} bytes",
                s.name
            ));
            left -= kept.len() as u64;
            s.body = kept;
            out.push(s);
        } else {
            cuts.push(format!(
                "{}: left out ({len} bytes) to stay within {max_bytes} bytes",
                s.name
            ));
        }
    }
    if !cuts.is_empty() {
        let mut text = String::from("TRUNCATED: this bundle is incomplete (ask for a bigger one with --max-bytes, or fewer lines with --lines)\n");
        for c in &cuts {
            text.push_str(c);
            text.push('\n');
        }
        out.push(Section::text(TRUNCATED_MEMBER, text, false));
    }
    (out, cuts)
}

/// The longest tail of whole lines of `body` that is at most `max` bytes.
fn newest_lines(body: &[u8], max: usize) -> Vec<u8> {
    if body.len() <= max {
        return body.to_vec();
    }
    let from = body.len() - max;
    // Start after the first newline at or after `from` (the line cut at `from` goes whole).
    let start = if from == 0 || body[from - 1] == b'\n' {
        from
    } else {
        body[from..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(body.len(), |i| from + i + 1)
    };
    body[start..].to_vec()
}

/// Packs the sections as `<top>/<name>` members of a `.tar.gz` (mode 0644, stamped `mtime`).
pub fn pack(top: &str, sections: &[Section], mtime: u64) -> std::io::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for s in sections {
        let mut h = tar::Header::new_ustar();
        h.set_size(s.body.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(mtime);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, format!("{top}/{}", s.name), &s.body[..])?;
    }
    let mut gz = tar.into_inner()?;
    gz.flush()?;
    gz.finish()
}

/// Cuts the packed bundle into runs of at most `chunk_bytes`; always at least one.
pub fn chunks(bytes: &[u8], chunk_bytes: usize) -> Vec<&[u8]> {
    if bytes.is_empty() {
        return vec![bytes];
    }
    bytes.chunks(chunk_bytes.max(1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, value: &str) -> Secret {
        Secret {
            app: "nav".into(),
            name: format!("config var {name}"),
            value: value.into(),
        }
    }

    #[test]
    fn redact_replaces_values_raw_and_escaped_and_skips_short_ones() {
        let body = br#"{"line": "token=s3cr3t-\"q\" and pw hunter22 hunter2 on"}"#;
        let out = redact(
            body,
            &[
                secret("TOKEN", "s3cr3t-\"q\""),
                secret("PW", "hunter2"),
                secret("PW2", "hunter22"),
                secret("FLAG", "on"),
            ],
        );
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("s3cr3t") && !out.contains("hunter2"), "{out}");
        assert!(out.contains("[redacted: config var TOKEN of nav]"), "{out}");
        assert!(out.contains("[redacted: config var PW2 of nav]"), "{out}");
        assert!(out.contains(" on\""), "short values stay: {out}");
    }

    #[test]
    fn cap_keeps_the_first_sections_cuts_line_text_and_says_so() {
        let logs: String = (0..100).map(|i| format!("line {i:03}\n")).collect();
        let sections = vec![
            Section::text("status.json", "x".repeat(100), false),
            Section::text("apps/nav/logs.txt", logs.clone(), true),
            Section::text("events.json", "y".repeat(50), false),
        ];
        let (out, cuts) = cap(sections.clone(), 10_000);
        assert!(cuts.is_empty());
        assert_eq!(out, sections);
        let (out, cuts) = cap(sections, 100 + 95);
        assert_eq!(out.len(), 3, "{out:?}");
        let kept = String::from_utf8(out[1].body.clone()).unwrap();
        assert!(
            kept.ends_with("line 099\n") && kept.starts_with("line "),
            "{kept}"
        );
        assert_eq!(kept.len(), 90, "whole lines only: {kept}");
        assert_eq!(cuts.len(), 2, "{cuts:?}");
        assert!(cuts[0].contains("oldest 90 lines"), "{cuts:?}");
        assert!(cuts[1].starts_with("events.json: left out (50 bytes)"));
        assert_eq!(out[2].name, TRUNCATED_MEMBER);
        assert!(String::from_utf8_lossy(&out[2].body).starts_with("TRUNCATED"));
    }

    #[test]
    fn newest_lines_keeps_whole_lines() {
        assert_eq!(newest_lines(b"ab\ncd\nef\n", 6), b"cd\nef\n");
        assert_eq!(newest_lines(b"ab\ncd\nef\n", 5), b"ef\n");
        assert_eq!(newest_lines(b"ab\ncd\nef\n", 2), b"");
        assert_eq!(newest_lines(b"ab\n", 10), b"ab\n");
    }

    #[test]
    fn pack_and_chunks_round_trip() {
        let s = vec![Section::text("a.txt", "hello".into(), false)];
        let gz = pack("support-r1", &s, 1).unwrap();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&gz[..]));
        let names: Vec<String> = tar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["support-r1/a.txt"]);
        let parts = chunks(&gz, 7);
        assert_eq!(parts.concat(), gz);
        assert!(parts.iter().all(|p| p.len() <= 7));
        assert_eq!(chunks(&[], 7).len(), 1);
    }
}
