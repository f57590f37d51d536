//! The wire side of a drain: connecting (TCP, TLS, UDP, HTTPS, MQTT: `mqtt.rs`) and writing one
//! batch. Every
//! step has a time limit, so a receiver that never reads, a DNS lookup that hangs or a TLS
//! handshake that stalls costs the drain's own task a timeout and a retry, nobody else anything.

use super::frame;
use super::url::{Target, Transport};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use roboku_wire::LogLine;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Connecting (DNS included) and the TLS handshake, each.
const CONNECT: Duration = Duration::from_secs(10);
/// One batch's write (or an HTTPS request and its response).
const WRITE: Duration = Duration::from_secs(15);

pub enum Conn {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Udp(UdpSocket),
    Https(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    Mqtt(Box<super::mqtt::MqttConn>),
}

/// What one batch is sent with.
pub struct Meta<'a> {
    pub host: &'a str,
    pub token: &'a str,
    /// `Logplex-Frame-Id`: the same for the same lines sent again.
    pub frame_id: String,
}

async fn limit<T>(
    what: &str,
    d: Duration,
    f: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(d, f)
        .await
        .map_err(|_| format!("{what} timed out after {}s", d.as_secs()))?
}

pub async fn connect(
    target: &Target,
    tls: Option<&TlsConnector>,
    mqtt: &super::mqtt::Setup,
) -> Result<Conn, String> {
    let (host, port) = (target.host(), target.port());
    if let Target::Mqtt { .. } = target {
        return limit("connecting", CONNECT, super::mqtt::connect(target, mqtt))
            .await
            .map(|c| Conn::Mqtt(Box::new(c)));
    }
    if let Target::Syslog {
        transport: Transport::Udp,
        ..
    } = target
    {
        return limit("resolving and connecting", CONNECT, async {
            let addr = tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| format!("resolving {host}: {e}"))?
                .next()
                .ok_or_else(|| format!("{host} has no address"))?;
            let bind = if addr.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            let sock = UdpSocket::bind(bind)
                .await
                .map_err(|e| format!("udp socket: {e}"))?;
            sock.connect(addr)
                .await
                .map_err(|e| format!("udp connect {addr}: {e}"))?;
            Ok(Conn::Udp(sock))
        })
        .await;
    }
    let tcp = limit("connecting", CONNECT, async {
        TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("connecting to {host}:{port}: {e}"))
    })
    .await?;
    let _ = tcp.set_nodelay(true);
    let wants_tls = matches!(
        target,
        Target::Https { .. }
            | Target::Syslog {
                transport: Transport::Tls,
                ..
            }
    );
    if !wants_tls {
        return Ok(Conn::Tcp(tcp));
    }
    let connector = tls.ok_or("no TLS configuration")?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("server name {host:?}: {e}"))?;
    let stream = limit("TLS handshake", CONNECT, async {
        connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}:{port}: {e}"))
    })
    .await?;
    if let Target::Https { .. } = target {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP with {host}:{port}: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        return Ok(Conn::Https(sender));
    }
    Ok(Conn::Tls(Box::new(stream)))
}

impl Conn {
    /// Whether the other end is still there: a stream the receiver closed reads as EOF (or an
    /// error) at once; HTTPS knows by its own state; UDP cannot tell.
    pub async fn alive(&mut self) -> bool {
        let tcp = match self {
            Conn::Tcp(t) => &*t,
            Conn::Tls(t) => t.get_ref().0,
            Conn::Https(s) => return !s.is_closed(),
            // Known by the next batch's PUBACKs (or its failure).
            Conn::Udp(_) | Conn::Mqtt(_) => return true,
        };
        let mut byte = [0u8; 1];
        // Peek, so TLS records (a session ticket) stay for the TLS layer.
        match tokio::time::timeout(Duration::from_millis(1), tcp.peek(&mut byte)).await {
            Err(_) => true,      // nothing to read: up
            Ok(Ok(0)) => false,  // EOF: the receiver closed
            Ok(Ok(_)) => true,   // it sent something (TLS housekeeping)
            Ok(Err(_)) => false, // reset
        }
    }

    /// Writes `lines`; for HTTPS, waits for a 2xx. Returns the bytes written (frames; for
    /// HTTPS the body and an estimate of the request's headers), for the byte counters.
    pub async fn send(
        &mut self,
        lines: &[LogLine],
        meta: &Meta<'_>,
        target: &Target,
    ) -> Result<u64, String> {
        match self {
            Conn::Tcp(t) => {
                let f = frame::stream(lines, meta.host);
                write_all(t, &f).await.map(|()| f.len() as u64)
            }
            Conn::Tls(t) => {
                let f = frame::stream(lines, meta.host);
                write_all(&mut **t, &f).await.map(|()| f.len() as u64)
            }
            Conn::Udp(sock) => {
                let mut n = 0;
                for l in lines {
                    let d = frame::datagram(l, meta.host);
                    limit("sending", WRITE, async {
                        sock.send(d.as_bytes())
                            .await
                            .map_err(|e| format!("udp send: {e}"))
                    })
                    .await?;
                    n += d.len() as u64;
                }
                Ok(n)
            }
            Conn::Https(sender) => {
                limit("HTTPS request", WRITE, post(sender, lines, meta, target)).await
            }
            Conn::Mqtt(c) => limit("publishing (waiting for PUBACKs)", WRITE, c.send(lines)).await,
        }
    }
}

async fn write_all(
    w: &mut (impl tokio::io::AsyncWrite + Unpin),
    bytes: &[u8],
) -> Result<(), String> {
    limit("writing (the receiver is not reading)", WRITE, async {
        w.write_all(bytes)
            .await
            .map_err(|e| format!("write: {e}"))?;
        w.flush().await.map_err(|e| format!("write: {e}"))
    })
    .await
}

/// Heroku's HTTPS drain format: a POST of octet-counted RFC 5424 frames.
async fn post(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    lines: &[LogLine],
    meta: &Meta<'_>,
    target: &Target,
) -> Result<u64, String> {
    let Target::Https {
        host,
        port,
        path,
        basic,
    } = target
    else {
        return Err("not an HTTPS drain".into());
    };
    sender
        .ready()
        .await
        .map_err(|e| format!("HTTP connection: {e}"))?;
    let mut req = Request::post(path.as_str())
        .header(hyper::header::HOST, format!("{host}:{port}"))
        .header(hyper::header::CONTENT_TYPE, "application/logplex-1")
        .header("Logplex-Msg-Count", lines.len().to_string())
        .header("Logplex-Frame-Id", meta.frame_id.as_str())
        .header("Logplex-Drain-Token", meta.token)
        .header(
            hyper::header::USER_AGENT,
            concat!("robokud/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(userinfo) = basic {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(userinfo);
        req = req.header(hyper::header::AUTHORIZATION, format!("Basic {b64}"));
    }
    let body = frame::stream(lines, meta.host);
    let headers: usize = req.headers_ref().map_or(0, |h| {
        h.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum()
    });
    let sent = (body.len() + headers + path.len() + 40) as u64;
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("HTTP request: {e}"))?;
    let status = resp.status();
    // Read the (small) body so the connection can be used again.
    let _ = resp.into_body().collect().await;
    if status.is_success() {
        Ok(sent)
    } else {
        Err(format!("the receiver answered HTTP {status}"))
    }
}
