//! Reading a request body within limits: the declared length, the bytes on the
//! wire, and — for gzip — the inflated size, so a small compressed "bomb" cannot
//! make us allocate gigabytes.

use std::io::Read;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;

use super::budget::{Charge, Refused};

#[derive(Debug, PartialEq, Eq)]
pub struct BodyError {
    pub status: StatusCode,
    pub message: String,
    /// For a refusal whose client sends the whole body before it reads the
    /// answer: how much of the unread body the server may read and drop after
    /// answering, in place of `server.refusal_drain_bytes`.
    pub drain_up_to: Option<u64>,
}

fn err(status: StatusCode, message: impl Into<String>) -> BodyError {
    BodyError { status, message: message.into(), drain_up_to: None }
}

/// The memory budget has no room: 503 at once, without reading the rest of
/// the body here. The server reads and drops it after the answer has gone
/// out (up to `max`, the largest body the client may send), so the client
/// reads the 503 rather than a reset, and reading it counts against neither
/// the budget nor `server.request_timeout`.
fn over_budget(refused: Refused, max: u64) -> BodyError {
    BodyError { drain_up_to: Some(max), ..err(StatusCode::SERVICE_UNAVAILABLE, refused.to_string()) }
}

/// Checks `Content-Type` (415 unless JSON) and `Content-Encoding` (415 unless
/// identity or gzip); returns whether the body is gzip.
pub fn check_headers(headers: &HeaderMap) -> Result<bool, BodyError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(err(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type must be application/json, got {}",
                if content_type.is_empty() { "none".to_string() } else { format!("{content_type:?}") }
            ),
        ));
    }
    match headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).map(str::trim) {
        None | Some("") | Some("identity") => Ok(false),
        Some(e) if e.eq_ignore_ascii_case("gzip") => Ok(true),
        Some(other) => Err(err(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding {other:?} is not supported; use gzip or none"),
        )),
    }
}

/// How much more a body whose length is not known is charged at a time.
const CHARGE_STEP: u64 = 1024 * 1024;

/// Reads the whole body, refusing with 413 past `max` bytes on the wire or,
/// for gzip, after inflation. Every byte is charged to `charge` before it is
/// held: the declared length up front, else as it arrives, and the inflated
/// size as it is inflated. If the memory budget has no room, the answer is
/// 503 ([`over_budget`]), which the handler's layer gives a `Retry-After`.
pub async fn read(
    mut body: Body,
    headers: &HeaderMap,
    gzip: bool,
    max: u64,
    charge: &mut Charge,
) -> Result<Bytes, BodyError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    // A refused body is left unread: the server discards what is left of it
    // (server.refusal_drain_bytes) so that the client gets to read the 413.
    if declared.is_some_and(|len| len > max) {
        return Err(too_large(max, "Content-Length"));
    }
    if let Some(len) = declared {
        if let Err(refused) = charge.grow_to(len).await {
            return Err(over_budget(refused, max));
        }
    }
    // Sized from Content-Length up front: growing a multi-megabyte buffer by
    // doubling costs a copy of everything read so far, every time.
    let mut wire = bytes::BytesMut::with_capacity(declared.unwrap_or(64 * 1024).min(max) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| err(StatusCode::BAD_REQUEST, format!("reading the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            let len = (wire.len() + data.len()) as u64;
            if len > max {
                return Err(too_large(max, "the body"));
            }
            if len > charge.held() {
                if let Err(refused) = charge.grow_to(len.max(charge.held() + CHARGE_STEP).min(max)).await {
                    return Err(over_budget(refused, max));
                }
            }
            wire.extend_from_slice(&data);
        }
    }
    let wire = wire.freeze();
    if !gzip {
        charge.shrink_to(wire.len() as u64);
        return Ok(wire);
    }
    let inflated = inflate_charged(&wire, max, charge).await?;
    charge.shrink_to(inflated.len() as u64);
    Ok(inflated)
}

/// [`inflate`] a step at a time, charging the output before it is written.
async fn inflate_charged(compressed: &[u8], max: u64, charge: &mut Charge) -> Result<Bytes, BodyError> {
    let wire = compressed.len() as u64;
    let mut out = Vec::new();
    let mut decoder = flate2::read::MultiGzDecoder::new(compressed).take(max + 1);
    loop {
        if let Err(refused) = charge.grow_to(wire + out.len() as u64 + CHARGE_STEP).await {
            return Err(err(StatusCode::SERVICE_UNAVAILABLE, refused.to_string()));
        }
        let before = out.len();
        out.reserve_exact(CHARGE_STEP as usize);
        (&mut decoder).take(CHARGE_STEP).read_to_end(&mut out).map_err(|e| {
            err(StatusCode::BAD_REQUEST, format!("Content-Encoding is gzip but the body is not valid gzip: {e}"))
        })?;
        if out.len() as u64 > max {
            return Err(too_large(max, "the gzip body after inflation"));
        }
        if out.len() == before {
            return Ok(Bytes::from(out));
        }
    }
}

/// Inflates gzip, reading at most `max + 1` bytes of output.
pub fn inflate(compressed: &[u8], max: u64) -> Result<Bytes, BodyError> {
    let mut out = Vec::with_capacity((compressed.len() * 4).min(max as usize));
    let mut decoder = flate2::read::MultiGzDecoder::new(compressed).take(max + 1);
    decoder.read_to_end(&mut out).map_err(|e| {
        err(StatusCode::BAD_REQUEST, format!("Content-Encoding is gzip but the body is not valid gzip: {e}"))
    })?;
    if out.len() as u64 > max {
        return Err(too_large(max, "the gzip body after inflation"));
    }
    Ok(Bytes::from(out))
}

fn too_large(max: u64, what: &str) -> BodyError {
    err(StatusCode::PAYLOAD_TOO_LARGE, format!("{what} exceeds server.max_body_bytes ({max} bytes)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn headers(ct: &str, ce: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
        if let Some(ce) = ce {
            h.insert(header::CONTENT_ENCODING, ce.parse().unwrap());
        }
        h
    }

    #[test]
    fn content_type_and_encoding() {
        assert_eq!(check_headers(&headers("application/json", None)), Ok(false));
        assert_eq!(check_headers(&headers("application/json; charset=utf-8", Some("gzip"))), Ok(true));
        let e = check_headers(&headers("text/plain", None)).unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(e.message, "Content-Type must be application/json, got \"text/plain\"");
        assert_eq!(
            check_headers(&headers("application/json", Some("br"))).unwrap_err().status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert_eq!(
            check_headers(&HeaderMap::new()).unwrap_err().message,
            "Content-Type must be application/json, got none"
        );
    }

    #[test]
    fn gzip_bomb_is_refused() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![b' '; 10 * 1024 * 1024]).unwrap();
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 64 * 1024);
        let e = inflate(&bomb, 1024 * 1024).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(e.message.contains("after inflation"));
        assert_eq!(inflate(&bomb, 11 * 1024 * 1024).unwrap().len(), 10 * 1024 * 1024);
        assert_eq!(inflate(b"not gzip", 100).unwrap_err().status, StatusCode::BAD_REQUEST);
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[tokio::test]
    async fn a_body_is_charged_its_inflated_size_and_refused_503_when_the_budget_is_full() {
        use super::super::budget::Budget;
        let budget = Budget::new(8 * 1024 * 1024, std::time::Duration::from_millis(10));
        let plain = vec![b'x'; 3 * 1024 * 1024];
        let compressed = gzip(&plain);
        let mut h = headers("application/json", Some("gzip"));
        h.insert(header::CONTENT_LENGTH, compressed.len().into());
        let mut charge = budget.charge();
        let body = read(Body::from(compressed.clone()), &h, true, 32 << 20, &mut charge).await.unwrap();
        assert_eq!(body.len(), plain.len());
        assert_eq!(charge.held(), plain.len() as u64);

        // 5 MiB left: a 6 MiB body waits, then is refused with 503 naming the setting.
        let big = vec![b' '; 6 * 1024 * 1024];
        let mut h = headers("application/json", None);
        h.insert(header::CONTENT_LENGTH, big.len().into());
        let mut other = budget.charge();
        let e = read(Body::from(big.clone()), &h, false, 32 << 20, &mut other).await.unwrap_err();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.message.contains("server.memory_budget_bytes"), "{}", e.message);
        assert_eq!(budget.in_use(), plain.len() as u64);
        // Alone, a body larger than the whole budget is read.
        drop(charge);
        let huge = vec![b' '; 9 * 1024 * 1024];
        let mut other = budget.charge();
        assert_eq!(
            read(Body::from(huge), &headers("application/json", None), false, 32 << 20, &mut other)
                .await
                .unwrap()
                .len(),
            9 << 20
        );
        assert_eq!(other.held(), 8 << 20);
    }
}
