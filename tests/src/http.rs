//! Just enough HTTP/1.1 for the tests: raw requests to the agent's unix socket (routes the CLI
//! has no command for, malformed bodies the CLI would never send) and GETs to web dynos.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A response: status code and body (de-chunked).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.body))
    }
}

fn request_text(method: &str, path: &str, body: Option<&str>) -> String {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    req
}

fn parse(raw: &[u8]) -> std::io::Result<Response> {
    let text = String::from_utf8_lossy(raw);
    let bad =
        |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{m}: {text}"));
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    // A response cut short (the server died mid-answer: headers out, body not) is an error, as
    // curl calls it one, not an answer with an empty body.
    let body = if chunked {
        dechunk(body).ok_or_else(|| bad("chunked body cut before its last chunk"))?
    } else {
        match content_length(head) {
            Some(n) if body.len() < n => {
                return Err(bad(&format!(
                    "body cut short ({} of {n} bytes)",
                    body.len()
                )))
            }
            _ => body.to_string(),
        }
    };
    Ok(Response { status, body })
}

/// The `Content-Length` a response head declares, if any (header names in any case).
fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })
}

/// The de-chunked body, or None when the stream ended before the last (zero-size) chunk.
fn dechunk(mut s: &str) -> Option<String> {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if n == 0 {
            return Some(out);
        }
        if rest.len() < n {
            return None;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n")?;
    }
    None
}

/// One request to the agent's unix socket.
pub fn unix(socket: &Path, method: &str, path: &str, body: Option<&str>) -> Response {
    let mut s =
        UnixStream::connect(socket).unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    s.write_all(request_text(method, path, body).as_bytes())
        .expect("write request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    parse(&raw).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// `GET path` on 127.0.0.1:`port`; an error while nothing listens there yet.
pub fn get(port: u16, path: &str) -> std::io::Result<Response> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(request_text("GET", path, None).as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse(&raw)
}

/// One request to `addr` over TCP with the given extra headers (`Host` among them if the test
/// wants to forge it; `localhost` otherwise).
pub fn tcp(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes())?;
    parse(&read_response(&mut s)?)
}

/// Reads one response: up to `Content-Length` when the server says it (some, like chromedriver,
/// keep the connection open whatever the request asked), else to the end of the stream.
fn read_response(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            if let Some(len) = content_length(&String::from_utf8_lossy(&raw[..end])) {
                while raw.len() < end + 4 + len {
                    let n = s.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    raw.extend_from_slice(&buf[..n]);
                }
                return Ok(raw);
            }
            s.read_to_end(&mut raw)?;
            return Ok(raw);
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(raw);
        }
        raw.extend_from_slice(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let plain = parse(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}").expect("parse");
        assert_eq!((plain.status, plain.body.as_str()), (404, "{}"));
        let chunked = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\na\r\n0123456789\r\n0\r\n\r\n",
        )
        .expect("parse");
        assert_eq!(
            (chunked.status, chunked.body.as_str()),
            (200, "abc0123456789")
        );
        assert!(parse(b"garbage").is_err());
    }

    #[test]
    fn a_response_cut_short_is_an_error_not_an_empty_answer() {
        // Headers out, then the server died: what a dyno SIGTERMed mid-answer leaves.
        let cut = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n").expect_err("cut");
        assert!(cut.to_string().contains("0 of 4 bytes"), "{cut}");
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab").is_err());
        let chunk_cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n";
        assert!(parse(chunk_cut).is_err());
        // No length: the body is whatever came before the close.
        let open = parse(b"HTTP/1.1 200 OK\r\n\r\nab").expect("no length");
        assert_eq!(open.body, "ab");
    }
}
