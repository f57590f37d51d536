//! HTTP plumbing of the API door, free of routes: reading bounded JSON bodies, writing JSON
//! replies, mapping engine errors to statuses and `{"error": {code, message}}`, decoding queries.

use super::body::ApiBody;
use crate::engine::EngineError;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use roboku_wire as wire;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// Request bodies are small JSON documents; anything bigger is refused.
const MAX_BODY: usize = 1 << 20;

pub type Resp = Response<ApiBody>;

pub fn json_response<T: serde::Serialize>(
    status: StatusCode,
    value: &T,
) -> Result<Resp, EngineError> {
    let mut bytes = serde_json::to_vec(value)
        .map_err(|e| EngineError::Internal(format!("encoding reply: {e}")))?;
    bytes.push(b'\n');
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(ApiBody::Full(Some(Bytes::from(bytes))))
        .map_err(|e| EngineError::Internal(format!("building reply: {e}")))
}

pub fn error_response(e: &EngineError) -> Resp {
    let status = match e {
        EngineError::NotFound(_) => StatusCode::NOT_FOUND,
        EngineError::BadRequest(_) => StatusCode::BAD_REQUEST,
        EngineError::Conflict(_) => StatusCode::CONFLICT,
        EngineError::InvalidApp(_) => StatusCode::UNPROCESSABLE_ENTITY,
        EngineError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        EngineError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        EngineError::GateClosed(_) => StatusCode::CONFLICT,
        EngineError::DeployFailed(_) => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let body = wire::ErrorBody {
        error: wire::ApiError {
            code: e.code().into(),
            message: roboku_wire::in_words(&e.to_string()),
        },
    };
    json_response(status, &body).unwrap_or_else(|_| {
        let mut r = Response::new(ApiBody::Full(Some(Bytes::from_static(
            b"{\"error\":{\"code\":\"internal\",\"message\":\"encoding error\"}}",
        ))));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

pub async fn read_body(req: Request<Incoming>) -> Result<Bytes, EngineError> {
    Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            EngineError::BadRequest(format!(
                "reading request body (at most {MAX_BODY} bytes): {e}"
            ))
        })
}

pub async fn json_body<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, EngineError> {
    let bytes = read_body(req).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        EngineError::BadRequest(format!(
            "request body is not valid JSON for this route: {e}"
        ))
    })
}

pub async fn json_body_or_default<T: DeserializeOwned + Default>(
    req: Request<Incoming>,
) -> Result<T, EngineError> {
    let bytes = read_body(req).await?;
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        EngineError::BadRequest(format!(
            "request body is not valid JSON for this route: {e}"
        ))
    })
}

pub fn query_num(
    query: &BTreeMap<String, String>,
    key: &str,
    default: usize,
) -> Result<usize, EngineError> {
    match query.get(key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            EngineError::BadRequest(format!("query parameter {key}={v:?} is not a number"))
        }),
    }
}

/// `a=1&b=x%20y` -> map (percent-decoding; `+` is a space).
pub fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
            (b'+', _, _) => out.push(b' '),
            (b, _, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = parse_query("n=5&dyno=web.1&x=a%20b+c&bad=%zz&end=%4&u=%C3%A9%");
        assert_eq!(q["n"], "5");
        assert_eq!(q["dyno"], "web.1");
        assert_eq!(q["x"], "a b c");
        assert_eq!(q["bad"], "%zz");
        assert_eq!(q["end"], "%4");
        assert_eq!(q["u"], "é%");
    }
}
