//! The dashboard's routes. Guard first; then the page's assets, `/healthz`, `/metrics`, the
//! page's `/dash/*` reads, and everything under `/v1` handed to the socket's router (with the
//! door set to `dashboard`, whatever the client claimed). Config read here is masked unless
//! `?reveal=1`.

use super::guard::{Ask, Refusal};
use super::{assets, snapshot, DashCtx};
use crate::api::body::ApiBody;
use crate::api::http::{error_response, json_response, parse_query, query_num, Resp};
use crate::engine::{Command, Door, EngineError, Reply};
use crate::telemetry::{metrics, series};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, HOST, ORIGIN};
use hyper::{Method, Request, Response, StatusCode};
use roboku_wire as wire;
use std::sync::Arc;
use std::time::Duration;

/// Points per chart series: an hour at 5 s, or thinned.
const MAX_POINTS: usize = 720;

pub async fn handle(
    ctx: Arc<DashCtx>,
    mut req: Request<Incoming>,
) -> Result<Resp, std::convert::Infallible> {
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    // HTTP/1.1 clients send Host; an absolute-form URI carries it instead.
    let host = header(HOST)
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
    let origin = header(ORIGIN).map(str::to_owned);
    let token = header(AUTHORIZATION)
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let ask = Ask {
        method: method.as_str(),
        path: &path,
        host: host.as_deref(),
        origin: origin.as_deref(),
        token: token.as_deref(),
    };
    let mut resp = match ctx.policy.check(&ask) {
        Err(Refusal::Forbidden(m)) => refusal(StatusCode::FORBIDDEN, "forbidden", &m),
        Err(Refusal::Unauthorized(m)) => refusal(StatusCode::UNAUTHORIZED, "unauthorized", &m),
        Ok(()) => {
            if path.starts_with(wire::API_PREFIX) {
                req.headers_mut()
                    .insert(wire::DOOR_HEADER, HeaderValue::from_static("dashboard"));
                if method == Method::GET && is_config(&path) {
                    let reveal = parse_query(req.uri().query().unwrap_or(""))
                        .get("reveal")
                        .is_some_and(|v| v == "1");
                    config(&ctx, &path, reveal)
                        .await
                        .unwrap_or_else(|e| error_response(&e))
                } else {
                    match crate::api::routes::handle(ctx.api.clone(), req).await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    }
                }
            } else {
                let query = parse_query(req.uri().query().unwrap_or(""));
                page(&ctx, &method, &path, &query)
                    .await
                    .unwrap_or_else(|e| error_response(&e))
            }
        }
    };
    let h = resp.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
             frame-ancestors 'none'",
        ),
    );
    if !h.contains_key("cache-control") {
        h.insert("cache-control", HeaderValue::from_static("no-store"));
    }
    Ok(resp)
}

fn is_config(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(parts.as_slice(), ["v1", "apps", _, "config"])
}

fn refusal(status: StatusCode, code: &str, message: &str) -> Resp {
    let body = wire::ErrorBody {
        error: wire::ApiError {
            code: code.into(),
            message: message.into(),
        },
    };
    json_response(status, &body).unwrap_or_else(|e| error_response(&e))
}

fn bytes(status: StatusCode, content_type: &str, body: Bytes) -> Result<Resp, EngineError> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(ApiBody::Full(Some(body)))
        .map_err(|e| EngineError::Internal(format!("building reply: {e}")))
}

async fn config(ctx: &DashCtx, path: &str, reveal: bool) -> Result<Resp, EngineError> {
    let app = path.trim_matches('/').split('/').nth(2).unwrap_or_default();
    let reply = ctx
        .api
        .engine
        .call(Door::Dashboard, Command::GetConfig { app: app.into() })
        .await?;
    let Reply::Config(mut vars) = reply else {
        return Err(EngineError::Internal(
            "config answered with something else".into(),
        ));
    };
    if !reveal {
        for v in vars.values_mut() {
            *v = "********".into();
        }
    }
    json_response(StatusCode::OK, &vars)
}

async fn page(
    ctx: &DashCtx,
    method: &Method,
    path: &str,
    query: &std::collections::BTreeMap<String, String>,
) -> Result<Resp, EngineError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(EngineError::NotFound(format!("no route {method} {path}")));
    }
    if let Some(a) = assets::find(path) {
        return bytes(StatusCode::OK, a.content_type, Bytes::from_static(a.body));
    }
    match path {
        "/healthz" => {
            // Healthy = the engine answers, soon.
            let answer = tokio::time::timeout(Duration::from_secs(2), snapshot::status(ctx)).await;
            match answer {
                Ok(Ok(_)) => bytes(StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n")),
                Ok(Err(e)) => Err(EngineError::Unavailable(format!("engine: {e}"))),
                Err(_) => Err(EngineError::Unavailable(
                    "the engine did not answer within 2 s".into(),
                )),
            }
        }
        "/metrics" => {
            let (status, apps) = snapshot::metrics_input(ctx).await?;
            let text = {
                let h = ctx.telemetry.lock();
                metrics::render(&metrics::Input {
                    status: &status,
                    apps: &apps,
                    host: h.host_latest.as_ref(),
                    dropped_rounds: ctx.telemetry.dropped(),
                })
            };
            bytes(StatusCode::OK, metrics::CONTENT_TYPE, Bytes::from(text))
        }
        "/dash/snapshot" => json_response(StatusCode::OK, &snapshot::build(ctx).await?),
        "/dash/charts" => {
            let app = query.get("app").cloned().unwrap_or_default();
            let max = query_num(query, "points", MAX_POINTS)?.clamp(2, 10_000);
            // Copied out under the lock, encoded after it is released.
            let (dynos, host) = {
                let h = ctx.telemetry.lock();
                (
                    series::app_charts(&h, &app, max),
                    series::host_chart(&h, max),
                )
            };
            let body = serde_json::json!({ "dynos": dynos, "host": host });
            json_response(StatusCode::OK, &body)
        }
        _ => Err(EngineError::NotFound(format!("no page {path}"))),
    }
}
