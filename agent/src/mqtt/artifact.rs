//! Fetching a release artifact: HTTP GET into `<data-dir>/tmp/fleet-<sha256>.part`, resumed with
//! a `Range` request when a part is already there (a robot on a flaky link should not start a
//! 200 MB download over), then checked against the signed length and sha256 before anything
//! uses it. A mismatch deletes the file and fails the command; the running release is untouched.
//!
//! `http://` and `https://` (rustls on ring, the system CA bundle or `mqtt.artifact_ca_file`):
//! fleets keep slugs in object stores behind TLS. Integrity still comes from the signed sha256,
//! not from the transport; TLS adds privacy and keeps a broken proxy from wasting a download.

use crate::util::{IoContext, PathError};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use roboku_wire::fleet::Artifact;
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How long a stalled connection may stay silent.
const STALL: Duration = Duration::from_secs(30);
/// Attempts (each resuming where the last one stopped) before giving up.
const ATTEMPTS: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("artifact URL {0:?}: only http://host[:port]/path and https://host[:port]/path are supported")]
    Url(String),
    #[error("TLS for artifact downloads: {0}")]
    Tls(String),
    #[error("artifact sha256 {0:?} must be 64 lowercase hex digits")]
    BadSha(String),
    #[error("{0}")]
    Disk(String),
    #[error("fetching {url}: {err}")]
    Http { url: String, err: String },
    #[error("artifact is {got} bytes, the signed size is {want}")]
    Size { got: u64, want: u64 },
    #[error("artifact sha256 mismatch: signed {want}, downloaded {got}")]
    Sha { want: String, got: String },
    #[error(transparent)]
    Io(#[from] PathError),
}

/// Downloads `a` into `tmp_dir` and returns the verified file (the caller removes it after use).
/// `progress` hears the byte count now and then.
/// `ca` is the CA bundle for `https://` (default: the system's). Refused before a byte is
/// written when the download (and what it becomes) would cross `reserve` (`disk.rs`).
pub async fn fetch(
    a: &Artifact,
    tmp_dir: &Path,
    ca: Option<&Path>,
    reserve: crate::disk::Reserve,
    usage: Option<&crate::usage::Meter>,
    mut progress: impl FnMut(u64),
) -> Result<PathBuf, FetchError> {
    if a.sha256.len() != 64
        || !a
            .sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(FetchError::BadSha(a.sha256.clone()));
    }
    let target = parse_url(&a.url).ok_or_else(|| FetchError::Url(a.url.clone()))?;
    let tls = match target.tls {
        true => Some(tls_connector(ca)?),
        false => None,
    };
    let part = tmp_dir.join(format!("fleet-{}.part", a.sha256));
    let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    // Room for the archive and its extracted tree, above the reserve.
    if let Ok((free, total)) = crate::disk::space(tmp_dir) {
        let need = a.size.saturating_sub(have).saturating_mul(3);
        let what = "the artifact download";
        if let Some(m) = crate::disk::refusal(tmp_dir, what, need, free, reserve.bytes(total)) {
            return Err(FetchError::Disk(m));
        }
    }
    let mut last_err = None;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
        let got = get(
            &target,
            tls.as_ref(),
            &a.url,
            &part,
            a.size,
            usage,
            &mut progress,
        );
        match got.await {
            Ok(()) => {
                last_err = None;
                break;
            }
            // The server said something final; retrying will not change it.
            Err(e @ (FetchError::Size { .. } | FetchError::Io(_) | FetchError::Tls(_))) => {
                return Err(e)
            }
            Err(e @ FetchError::Http { .. }) if e.to_string().contains("HTTP 4") => return Err(e),
            Err(e) => {
                tracing::warn!(url = a.url, attempt, error = %e, "artifact download interrupted; resuming");
                last_err = Some(e);
            }
        }
    }
    if let Some(e) = last_err {
        return Err(e);
    }
    let len = std::fs::metadata(&part).at("stat", &part)?.len();
    if len != a.size {
        return Err(FetchError::Size {
            got: len,
            want: a.size,
        });
    }
    let p = part.clone();
    let got = tokio::task::spawn_blocking(move || sha256_file(&p))
        .await
        .map_err(|e| FetchError::Http {
            url: a.url.clone(),
            err: format!("hash task failed: {e}"),
        })??;
    if got != a.sha256 {
        let _ = std::fs::remove_file(&part);
        return Err(FetchError::Sha {
            want: a.sha256.clone(),
            got,
        });
    }
    let done = tmp_dir.join(format!("fleet-{}.tar.gz", a.sha256));
    std::fs::rename(&part, &done).at("rename to", &done)?;
    Ok(done)
}

/// The client side of TLS for artifact servers.
fn tls_connector(ca: Option<&Path>) -> Result<tokio_rustls::TlsConnector, FetchError> {
    client_tls(ca, &[b"http/1.1"]).map_err(FetchError::Tls)
}

/// A TLS client that verifies servers against `ca` (default: the system bundle), offering
/// `alpn`: artifact downloads and log drains.
pub(crate) fn client_tls(
    ca: Option<&Path>,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::TlsConnector, String> {
    let files = roboku_wire::fleet::client::TlsFiles {
        ca: ca.map(Path::to_path_buf),
        ..Default::default()
    };
    let mut config = roboku_wire::fleet::client::tls_config(&files)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}

/// One GET, resuming from the part file's length.
async fn get(
    target: &Target,
    tls: Option<&tokio_rustls::TlsConnector>,
    url: &str,
    part: &Path,
    size: u64,
    usage: Option<&crate::usage::Meter>,
    progress: &mut impl FnMut(u64),
) -> Result<(), FetchError> {
    // Bytes on the `artifacts` channel: the request line and headers (estimated from what
    // this function writes), the response's status line and headers, every body byte.
    let count = |n: usize| {
        if let Some(u) = usage {
            u.add(crate::usage::Channel::Artifacts, n as u64);
        }
    };
    let http = |err: String| FetchError::Http {
        url: url.to_string(),
        err,
    };
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if have > size {
        std::fs::remove_file(part).at("remove", part)?;
        return Err(http(
            "partial file longer than the artifact; starting over".into(),
        ));
    }
    if have == size && size > 0 {
        return Ok(());
    }
    let (host, port) = (target.host.as_str(), target.port);
    let tcp = tokio::time::timeout(STALL, tokio::net::TcpStream::connect((host, port)))
        .await
        .map_err(|_| http("connect timed out".into()))?
        .map_err(|e| http(format!("connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = match tls {
        None => Box::new(tcp),
        Some(connector) => {
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| FetchError::Tls(format!("server name {host:?}: {e}")))?;
            let stream = tokio::time::timeout(STALL, connector.connect(name, tcp))
                .await
                .map_err(|_| http("TLS handshake timed out".into()))?
                // A certificate the CA does not vouch for, or an expired one: final.
                .map_err(|e| FetchError::Tls(format!("{url}: {e}")))?;
            Box::new(stream)
        }
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| http(e.to_string()))?;
    let conn = tokio::spawn(conn);
    let mut req = Request::get(target.path.as_str())
        .header(hyper::header::HOST, format!("{host}:{port}"))
        .header(
            hyper::header::USER_AGENT,
            concat!("robokud/", env!("CARGO_PKG_VERSION")),
        );
    if have > 0 {
        req = req.header(hyper::header::RANGE, format!("bytes={have}-"));
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| http(e.to_string()))?;
    count(
        "GET  HTTP/1.1\r\nhost: \r\nuser-agent: robokud/0.0.0\r\n\r\n".len()
            + target.path.len()
            + host.len()
            + 6
            + if have > 0 { 32 } else { 0 },
    );
    let resp = tokio::time::timeout(STALL, sender.send_request(req))
        .await
        .map_err(|_| http("no response".into()))?
        .map_err(|e| http(e.to_string()))?;
    count(
        "HTTP/1.1 200 OK\r\n\r\n".len()
            + resp
                .headers()
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len() + 4)
                .sum::<usize>(),
    );
    let (mut file, mut written) = match resp.status() {
        StatusCode::PARTIAL_CONTENT if have > 0 => {
            let range = resp
                .headers()
                .get(hyper::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !range.starts_with(&format!("bytes {have}-")) {
                return Err(http(format!("unexpected Content-Range {range:?}")));
            }
            let f = tokio::fs::OpenOptions::new()
                .append(true)
                .open(part)
                .await
                .at("open", part)?;
            (f, have)
        }
        StatusCode::OK => (tokio::fs::File::create(part).await.at("create", part)?, 0),
        s => return Err(http(format!("HTTP {}", s.as_u16()))),
    };
    let mut body = resp.into_body();
    let mut last_report = written;
    loop {
        let frame = match tokio::time::timeout(STALL, body.frame()).await {
            Err(_) => return Err(http("stalled".into())),
            Ok(None) => break,
            Ok(Some(f)) => f.map_err(|e| http(e.to_string()))?,
        };
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        written += chunk.len() as u64;
        count(chunk.len());
        if written > size {
            drop(file);
            let _ = std::fs::remove_file(part);
            return Err(FetchError::Size {
                got: written,
                want: size,
            });
        }
        file.write_all(&chunk).await.at("write", part)?;
        if written - last_report >= 1 << 20 {
            last_report = written;
            progress(written);
        }
    }
    file.flush().await.at("write", part)?;
    file.sync_all().await.at("fsync", part)?;
    conn.abort();
    if written < size {
        return Err(http(format!(
            "connection closed at {written} of {size} bytes"
        )));
    }
    Ok(())
}

/// A byte stream hyper can speak HTTP/1.1 over: plain TCP or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Where an artifact URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// `http://host[:port]/path` or `https://host[:port]/path`.
pub fn parse_url(url: &str) -> Option<Target> {
    let (tls, rest, default_port) = if let Some(r) = url.strip_prefix("https://") {
        (true, r, 443)
    } else {
        (false, url.strip_prefix("http://")?, 80)
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (authority, default_port),
    };
    if host.is_empty() {
        return None;
    }
    Some(Target {
        tls,
        host: host.to_string(),
        port,
        path: path.to_string(),
    })
}

/// Lowercase hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String, PathError> {
    let mut f = std::fs::File::open(path).at("open", path)?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h).at("read", path)?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Free bytes for an unprivileged writer on `dir`'s filesystem.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    Some((s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64))
}

#[cfg(test)]
#[path = "artifact_tests.rs"]
mod tests;
