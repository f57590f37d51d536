//! Upgrading a request to the byte stream of an attached one-off dyno (`roboku run`).

use super::{api_error, collect, Client, ClientError};
use bytes::Bytes;
use http_body_util::Full;
use hyper::upgrade::Upgraded;
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use roboku_wire::{attach, DOOR_HEADER};

impl Client {
    /// POSTs `body` to `path` asking for the attach protocol; the dyno's name and the stream.
    pub async fn attach(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(String, TokioIo<Upgraded>), ClientError> {
        let what = format!("POST {path}");
        let mut sender = self.connect::<Full<Bytes>>(&what).await?;
        let broken = |e: hyper::Error| self.broken(&what, e);
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::HOST, "robokud")
            .header(DOOR_HEADER, self.door)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, attach::PROTOCOL)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::Protocol(format!("bad request {what}: {e}")))?;
        let resp = sender.send_request(req).await.map_err(broken)?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let status = resp.status().as_u16();
            let body = collect(resp, &what).await?;
            return Err(api_error(status, &body));
        }
        let name = resp
            .headers()
            .get(attach::DYNO_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("run")
            .to_string();
        let upgraded = hyper::upgrade::on(resp).await.map_err(broken)?;
        Ok((name, TokioIo::new(upgraded)))
    }
}
