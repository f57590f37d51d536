use super::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A tiny HTTP server for `body`: honours `Range: bytes=N-`; the first `cut_first` responses
/// stop after half the body (a dropped link). Counts requests with a Range header.
fn serve(body: Vec<u8>, cut_first: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let ranged = Arc::new(AtomicUsize::new(0));
    let r = ranged.clone();
    std::thread::spawn(move || {
        let mut served = 0;
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut from = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    from = v.trim().trim_end_matches('-').parse().unwrap();
                    r.fetch_add(1, Ordering::SeqCst);
                }
            }
            let rest = &body[from..];
            let head = if from > 0 {
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {}-{}/{}\r\n\r\n",
                    rest.len(), from, body.len() - 1, body.len()
                )
            } else {
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", rest.len())
            };
            let _ = s.write_all(head.as_bytes());
            if served < cut_first {
                let _ = s.write_all(&rest[..rest.len() / 2]);
            } else {
                let _ = s.write_all(rest);
            }
            served += 1;
        }
    });
    (format!("http://{addr}/slugs/a.tar.gz"), ranged)
}

fn artifact(url: &str, body: &[u8]) -> Artifact {
    let mut h = sha2::Sha256::new();
    h.update(body);
    Artifact {
        url: url.into(),
        sha256: h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        size: body.len() as u64,
        delta: None,
    }
}

fn body() -> Vec<u8> {
    (0..300_000u32).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn downloads_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _) = serve(body(), 0);
    let a = artifact(&url, &body());
    let path = fetch(
        &a,
        dir.path(),
        None,
        crate::disk::Reserve::Auto,
        None,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), body());
}

#[tokio::test]
async fn a_dropped_connection_resumes_with_a_range_request() {
    let dir = tempfile::tempdir().unwrap();
    let (url, ranged) = serve(body(), 1);
    let a = artifact(&url, &body());
    let path = fetch(
        &a,
        dir.path(),
        None,
        crate::disk::Reserve::Auto,
        None,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), body());
    assert_eq!(
        ranged.load(Ordering::SeqCst),
        1,
        "the second request resumed"
    );
}

#[tokio::test]
async fn a_wrong_sha256_fails_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _) = serve(body(), 0);
    let mut a = artifact(&url, &body());
    a.sha256 = "ab".repeat(32);
    let err = fetch(
        &a,
        dir.path(),
        None,
        crate::disk::Reserve::Auto,
        None,
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FetchError::Sha { .. }), "{err}");
    assert!(err.to_string().contains("sha256 mismatch"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn a_wrong_size_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _) = serve(body(), 0);
    let mut a = artifact(&url, &body());
    a.size -= 10;
    let err = fetch(
        &a,
        dir.path(),
        None,
        crate::disk::Reserve::Auto,
        None,
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FetchError::Size { .. }), "{err}");
}

#[tokio::test]
async fn bad_urls_and_hashes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = artifact("ftp://x/a", b"x");
    assert!(matches!(
        fetch(
            &a,
            dir.path(),
            None,
            crate::disk::Reserve::Auto,
            None,
            |_| {}
        )
        .await,
        Err(FetchError::Url(_))
    ));
    // https with a CA file that is not there: the error names the file, nothing is fetched.
    a.url = "https://127.0.0.1:1/a".into();
    let err = fetch(
        &a,
        dir.path(),
        Some(Path::new("/nonexistent/ca.pem")),
        crate::disk::Reserve::Auto,
        None,
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, FetchError::Tls(m) if m.contains("/nonexistent/ca.pem")),
        "{err}"
    );
    a.url = "http://127.0.0.1:1/a".into();
    a.sha256 = "XYZ".into();
    assert!(matches!(
        fetch(
            &a,
            dir.path(),
            None,
            crate::disk::Reserve::Auto,
            None,
            |_| {}
        )
        .await,
        Err(FetchError::BadSha(_))
    ));
}

#[test]
fn urls() {
    let t = |tls, host: &str, port, path: &str| {
        Some(Target {
            tls,
            host: host.into(),
            port,
            path: path.into(),
        })
    };
    assert_eq!(
        parse_url("http://10.0.0.1:8080/slugs/x.tar.gz"),
        t(false, "10.0.0.1", 8080, "/slugs/x.tar.gz")
    );
    assert_eq!(parse_url("http://gw"), t(false, "gw", 80, "/"));
    assert_eq!(
        parse_url("https://bucket.example/a/b.tar.gz"),
        t(true, "bucket.example", 443, "/a/b.tar.gz")
    );
    assert_eq!(parse_url("https://s3:9000/x"), t(true, "s3", 9000, "/x"));
    assert_eq!(parse_url("ftp://gw/x"), None);
    assert_eq!(parse_url("https://:443/x"), None);
}
