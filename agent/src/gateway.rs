//! Slug serving for site gateways (`--serve-slugs ADDR`, off by default): a read-only HTTP
//! listener answering `GET`/`HEAD /slugs/<sha256>.tar.gz` with the slug `<sha256>` of this
//! robokud's slug store as a `.tar.gz`, with `Range` support so robots resume interrupted
//! downloads. The robots of a site then fetch from their gateway instead of the internet.
//!
//! The archive is built once per slug into `<data-dir>/slug-archives/` (outside the per-app
//! build caches, so no app name can collide with it) by [`crate::build::slug_archive`]: it is
//! deterministic, so its sha256, which a fleet command must name, is the same on every gateway
//! holding that slug.
//! The `X-Archive-Sha256` header of every answer carries it (`HEAD` to read it cheaply).
//! Nothing here writes outside the cache, and only paths of the form above are served.
//! Connections are admitted and served as the API's are ([`Door`]): capped at a share of the fd
//! limit, idle ones evicted first and timed out, so a flood of clients on the network can
//! neither lock out the robots fetching nor starve supervision of fds.

use crate::api::conns::Door;
use crate::build::slug_archive;
use crate::settings::Settings;
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{mpsc, watch};

type Resp = Response<BoxBody<Bytes, std::io::Error>>;

/// Where the server reads slugs and keeps their archives.
struct Shelf {
    slugs: PathBuf,
    archives: PathBuf,
    tmp: PathBuf,
}

/// Binds `settings.mqtt.serve_slugs`, if set (an error names the address).
pub async fn bind(settings: &Settings) -> Result<Option<tokio::net::TcpListener>, std::io::Error> {
    let Some(addr) = &settings.mqtt.serve_slugs else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("--serve-slugs {addr}: bind: {e}")))?;
    Ok(Some(listener))
}

/// Serves slugs on `listener` until `shutdown` turns true, with the API's connection budget
/// (a quarter of the fd limit, idle connections evicted first, header timeouts).
pub async fn serve(
    listener: tokio::net::TcpListener,
    settings: &Settings,
    mut shutdown: watch::Receiver<bool>,
) {
    let cap = crate::api::conns::cap_for(crate::util::nofile_limit());
    let shelf = Arc::new(Shelf {
        slugs: settings.slugs_dir(),
        archives: settings.slug_archives_dir(),
        tmp: settings.tmp_dir(),
    });
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, cap, "serving slugs at /slugs/<sha256>.tar.gz");
    }
    let mut door = Door::new("slug server", cap);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Some(((stream, _), slot)) = door.admit(accepted).await else { continue };
                let _ = stream.set_nodelay(true);
                let shelf = shelf.clone();
                let handler = move |req| {
                    let shelf = shelf.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(&shelf, req).await) }
                };
                door.spawn(slot, stream, handler, shutdown.clone());
            }
            _ = shutdown.changed() => break,
        }
    }
}

fn plain(status: StatusCode, text: &str) -> Resp {
    let mut r = Response::new(
        Full::new(Bytes::from(format!("{text}\n")))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r
}

/// The slug sha256 in `/slugs/<sha256>.tar.gz`.
pub fn slug_of_path(path: &str) -> Option<&str> {
    let sha = path.strip_prefix("/slugs/")?.strip_suffix(".tar.gz")?;
    (sha.len() == 64
        && sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(sha)
}

/// `bytes=N-` or `bytes=N-M` against a file of `len` bytes -> (start, end inclusive).
pub fn parse_range(header: &str, len: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end = match b.trim() {
        "" => len.checked_sub(1)?,
        e => e.parse::<u64>().ok()?.min(len.checked_sub(1)?),
    };
    (start <= end && start < len).then_some((start, end))
}

async fn handle(shelf: &Shelf, req: Request<Incoming>) -> Resp {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "read-only: GET or HEAD");
    }
    let Some(sha) = slug_of_path(req.uri().path()).map(str::to_string) else {
        return plain(StatusCode::NOT_FOUND, "try /slugs/<sha256>.tar.gz");
    };
    let (slug, archives, tmp) = (
        shelf.slugs.join(&sha),
        shelf.archives.clone(),
        shelf.tmp.clone(),
    );
    if !slug.is_dir() {
        return plain(StatusCode::NOT_FOUND, &format!("no slug {sha} here"));
    }
    let built =
        tokio::task::spawn_blocking(move || slug_archive(&slug, &sha, &archives, &tmp)).await;
    let (file, digest) = match built {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "building a slug archive failed");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
        }
        Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let range = req
        .headers()
        .get(hyper::header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|h| parse_range(h, len));
    let (status, start, end) = match range {
        None => (StatusCode::OK, 0, len.saturating_sub(1)),
        Some(Some((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
        Some(None) => {
            let mut r = plain(StatusCode::RANGE_NOT_SATISFIABLE, "bad range");
            if let Ok(v) = format!("bytes */{len}").parse() {
                r.headers_mut().insert(hyper::header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let count = if len == 0 { 0 } else { end - start + 1 };
    let body = if req.method() == Method::HEAD || count == 0 {
        Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed()
    } else {
        FileBody::spawn(file, start, count).boxed()
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    let mut set = |k: hyper::header::HeaderName, v: String| {
        if let Ok(v) = v.parse() {
            h.insert(k, v);
        }
    };
    set(hyper::header::CONTENT_LENGTH, count.to_string());
    set(hyper::header::CONTENT_TYPE, "application/gzip".into());
    set(hyper::header::ACCEPT_RANGES, "bytes".into());
    set(
        hyper::header::HeaderName::from_static("x-archive-sha256"),
        digest,
    );
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            hyper::header::CONTENT_RANGE,
            format!("bytes {start}-{end}/{len}"),
        );
    }
    r
}

/// A response body streamed from a file range by a blocking reader, 64 KiB at a time.
struct FileBody {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl FileBody {
    fn spawn(path: PathBuf, start: u64, count: u64) -> FileBody {
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let mut f = match std::fs::File::open(&path).and_then(|mut f| {
                f.seek(SeekFrom::Start(start))?;
                Ok(f)
            }) {
                Ok(f) => f,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            let mut left = count;
            let mut buf = vec![0u8; 64 * 1024];
            while left > 0 {
                let want = buf.len().min(left as usize);
                match f.read(&mut buf[..want]) {
                    Ok(0) => break,
                    Ok(n) => {
                        left -= n as u64;
                        if tx
                            .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
        FileBody { rx }
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roboku_wire::fleet::Artifact;

    #[test]
    fn paths_and_ranges() {
        let sha = "a".repeat(64);
        assert_eq!(
            slug_of_path(&format!("/slugs/{sha}.tar.gz")),
            Some(sha.as_str())
        );
        assert_eq!(slug_of_path("/slugs/../../etc/passwd.tar.gz"), None);
        assert_eq!(
            slug_of_path(&format!("/slugs/{}.tar.gz", "A".repeat(64))),
            None
        );
        assert_eq!(parse_range("bytes=10-", 100), Some((10, 99)));
        assert_eq!(parse_range("bytes=10-19", 100), Some((10, 19)));
        assert_eq!(parse_range("bytes=10-500", 100), Some((10, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("lines=1-", 100), None);
    }

    #[tokio::test]
    async fn serves_a_deterministic_archive_that_robots_can_fetch_and_resume() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings {
            data_dir: dir.path().to_path_buf(),
            ..Settings::default()
        };
        settings.mqtt.serve_slugs = Some("127.0.0.1:0".into());
        let sha = "b".repeat(64);
        let slug = settings.slugs_dir().join(&sha);
        std::fs::create_dir_all(slug.join("bin")).unwrap();
        std::fs::write(slug.join("Procfile"), "web: exec sleep 1000\n").unwrap();
        let big: Vec<u8> = (0..400_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(slug.join("bin/data"), &big).unwrap();
        // Deterministic: two builds give the same bytes.
        let tmp = settings.tmp_dir();
        let (a, da) = slug_archive(&slug, &sha, &dir.path().join("c1"), &tmp).unwrap();
        let (_, db) = slug_archive(&slug, &sha, &dir.path().join("c2"), &tmp).unwrap();
        assert_eq!(da, db);
        let size = std::fs::metadata(&a).unwrap().len();

        let (_stop_tx, stop) = watch::channel(false);
        let listener = bind(&settings).await.unwrap().unwrap();
        let addr = listener.local_addr().unwrap();
        let s2 = settings.clone();
        tokio::spawn(async move { serve(listener, &s2, stop).await });
        let fetch_dir = dir.path().join("robot");
        std::fs::create_dir_all(&fetch_dir).unwrap();
        let art = Artifact {
            url: format!("http://{addr}/slugs/{sha}.tar.gz"),
            sha256: da.clone(),
            size,
            delta: None,
        };
        // A partial download left behind is resumed with a Range request.
        let part = fetch_dir.join(format!("fleet-{da}.part"));
        std::fs::write(&part, &std::fs::read(&a).unwrap()[..1000]).unwrap();
        let meter = crate::usage::Meter::unbudgeted();
        let got = crate::mqtt::artifact::fetch(
            &art,
            &fetch_dir,
            None,
            crate::disk::Reserve::Auto,
            Some(&meter),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read(got).unwrap(), std::fs::read(&a).unwrap());
        // The `artifacts` channel counted the body bytes that came (not the 1000 resumed) and
        // the headers: within a few hundred bytes of what the server sent.
        let (counted, _) = meter.used(crate::usage::Channel::Artifacts);
        let body = size - 1000;
        assert!(
            counted > body && counted < body + 600,
            "counted {counted}, body {body}"
        );
        // Unknown slugs and other paths: 404.
        let missing = Artifact {
            url: format!("http://{addr}/slugs/{}.tar.gz", "c".repeat(64)),
            ..art.clone()
        };
        let err = crate::mqtt::artifact::fetch(
            &missing,
            &fetch_dir,
            None,
            crate::disk::Reserve::Auto,
            None,
            |_| {},
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("HTTP 404"), "{err}");
    }
}
