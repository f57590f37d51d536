//! Client tests against a fake agent: a unix listener that reads one request and writes a canned
//! HTTP response, then hands the raw request back for inspection.

use super::*;
use roboku_wire::{AppInfo, CreateApp, Done};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::task::JoinHandle;

/// Removes the socket file when the test ends, pass or fail.
struct SocketPath(PathBuf);

impl Drop for SocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn socket_path() -> SocketPath {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let p = std::env::temp_dir().join(format!("roboku-ctl-{}-{n}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    SocketPath(p)
}

/// Serves one request with `chunks` written one after another; returns the raw request.
fn serve_once(path: &Path, chunks: Vec<String>) -> JoinHandle<String> {
    let listener = UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "client closed before sending a whole request");
            req.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&req).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if req.len() >= end + 4 + len {
                    break;
                }
            }
        }
        for chunk in chunks {
            s.write_all(chunk.as_bytes()).await.unwrap();
            s.flush().await.unwrap();
        }
        s.shutdown().await.unwrap();
        String::from_utf8(req).unwrap()
    })
}

fn json_response(status: &str, body: &str) -> Vec<String> {
    vec![format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )]
}

#[tokio::test]
async fn get_decodes_the_body_and_names_the_door() {
    let sock = socket_path();
    let body = r#"[{"name":"demo","created_at":1,"release":3,"user":"dyno","grace_secs":30,"dynos_running":1,"dynos_desired":2}]"#;
    let server = serve_once(&sock.0, json_response("200 OK", body));
    let apps: Vec<AppInfo> = Client::new(&sock.0).get("/v1/apps").await.unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].name, "demo");
    assert_eq!(apps[0].release, Some(3));
    let req = server.await.unwrap().to_ascii_lowercase();
    assert!(req.starts_with("get /v1/apps http/1.1\r\n"), "{req}");
    assert!(req.contains("\r\nx-roboku-door: cli\r\n"), "{req}");
}

#[tokio::test]
async fn post_sends_json() {
    let sock = socket_path();
    let body = r#"{"name":"nav","created_at":1,"release":null,"user":"dyno","grace_secs":30,"dynos_running":0,"dynos_desired":0}"#;
    let server = serve_once(&sock.0, json_response("201 Created", body));
    let app: AppInfo = Client::new(&sock.0)
        .post("/v1/apps", &CreateApp { name: "nav".into() })
        .await
        .unwrap();
    assert_eq!(app.name, "nav");
    let req = server.await.unwrap();
    assert!(req.starts_with("POST /v1/apps HTTP/1.1\r\n"), "{req}");
    assert!(req.ends_with("\r\n\r\n{\"name\":\"nav\"}"), "{req}");
    assert!(req
        .to_ascii_lowercase()
        .contains("content-type: application/json"));
}

#[tokio::test]
async fn error_body_becomes_the_message() {
    let sock = socket_path();
    let body = r#"{"error":{"code":"not_found","message":"no app named ghost"}}"#;
    let _server = serve_once(&sock.0, json_response("404 Not Found", body));
    let err = Client::new(&sock.0)
        .get::<AppInfo>("/v1/apps/ghost")
        .await
        .unwrap_err();
    match &err {
        ClientError::Api { status, code, .. } => {
            assert_eq!(*status, 404);
            assert_eq!(code, "not_found");
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    assert_eq!(err.to_string(), "no app named ghost");
    assert_eq!(err.exit_code(), 1);
}

#[tokio::test]
async fn non_json_error_names_the_status() {
    let sock = socket_path();
    let _server = serve_once(&sock.0, json_response("502 Bad Gateway", "upstream gone"));
    let err = Client::new(&sock.0)
        .delete::<Done>("/v1/apps/x?confirm=x")
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "robokud answered HTTP 502: upstream gone");
}

#[tokio::test]
async fn unexpected_body_is_a_protocol_error() {
    let sock = socket_path();
    let _server = serve_once(&sock.0, json_response("200 OK", r#"{"what":1}"#));
    let err = Client::new(&sock.0)
        .get::<AppInfo>("/v1/apps/demo")
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");
    assert!(err.to_string().contains("GET /v1/apps/demo"), "{err}");
}

#[tokio::test]
async fn missing_socket_is_unreachable() {
    let sock = socket_path();
    let err = Client::new(&sock.0)
        .get::<Done>("/v1/status")
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 3);
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("cannot reach robokud at {}: ", sock.0.display())),
        "{msg}"
    );
    assert!(msg.contains("is robokud running?"), "{msg}");
}

#[tokio::test]
async fn refused_connection_is_unreachable() {
    let sock = socket_path();
    // A socket file with nobody listening: what a crashed agent leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&sock.0).unwrap());
    let err = Client::new(&sock.0)
        .get::<Done>("/v1/status")
        .await
        .unwrap_err();
    match &err {
        ClientError::Unreachable { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused)
        }
        other => panic!("expected unreachable, got {other:?}"),
    }
    assert_eq!(err.exit_code(), 3);
}

#[tokio::test]
async fn streamed_lines_are_reassembled_across_chunks() {
    let sock = socket_path();
    let chunks = vec![
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_string(),
        "6\r\none\ntw\r\n".to_string(),
        "4\r\no\nth\r\n".to_string(),
        "4\r\nree\n\r\n".to_string(),
        "4\r\nlast\r\n0\r\n\r\n".to_string(),
    ];
    let _server = serve_once(&sock.0, chunks);
    let mut lines = Client::new(&sock.0)
        .stream("/v1/apps/demo/logs?tail=true")
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        got.push(line);
    }
    assert_eq!(got, ["one", "two", "three", "last"]);
}

#[tokio::test]
async fn stream_error_status_is_an_api_error() {
    let sock = socket_path();
    let body = r#"{"error":{"code":"not_found","message":"no dyno web.9 in demo"}}"#;
    let _server = serve_once(&sock.0, json_response("404 Not Found", body));
    let err = Client::new(&sock.0)
        .stream("/v1/apps/demo/logs?dyno=web.9")
        .await
        .err()
        .unwrap();
    assert_eq!(err.to_string(), "no dyno web.9 in demo");
}

#[test]
fn query_strings_are_encoded() {
    let q = with_query(
        "/v1/apps/demo/logs",
        &[
            ("n", Some("100".into())),
            ("tail", None),
            ("dyno", Some("web.1".into())),
            ("source", Some("a b&c".into())),
        ],
    );
    assert_eq!(q, "/v1/apps/demo/logs?n=100&dyno=web.1&source=a%20b%26c");
    assert_eq!(with_query("/v1/events", &[("app", None)]), "/v1/events");
}

#[test]
fn a_permission_error_says_who_may_use_the_socket_not_that_robokud_is_down() {
    let err = ClientError::Unreachable {
        socket: "/var/lib/roboku/robokud.sock".into(),
        source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
    };
    let msg = err.to_string();
    assert!(msg.contains("`roboku` group"), "{msg}");
    assert!(!msg.contains("is robokud running?"), "{msg}");
}
