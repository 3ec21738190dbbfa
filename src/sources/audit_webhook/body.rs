//! Reading a request body within limits: the declared length, the bytes on the
//! wire, and — for gzip — the inflated size, so a small compressed "bomb" cannot
//! make us allocate gigabytes.

use std::io::Read;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;

#[derive(Debug, PartialEq, Eq)]
pub struct BodyError {
    pub status: StatusCode,
    pub message: String,
}

fn err(status: StatusCode, message: impl Into<String>) -> BodyError {
    BodyError { status, message: message.into() }
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

/// Reads the whole body, refusing with 413 past `max` bytes on the wire or,
/// for gzip, after inflation.
pub async fn read(body: Body, headers: &HeaderMap, gzip: bool, max: u64) -> Result<Bytes, BodyError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    // A refused body is left unread: the server discards what is left of it
    // (server.refusal_drain_bytes) so that the client gets to read the 413.
    if declared.is_some_and(|len| len > max) {
        return Err(too_large(max, "Content-Length"));
    }
    let mut body = body;
    // Sized from Content-Length up front: growing a multi-megabyte buffer by
    // doubling costs a copy of everything read so far, every time.
    let mut wire = bytes::BytesMut::with_capacity(declared.unwrap_or(64 * 1024).min(max) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| err(StatusCode::BAD_REQUEST, format!("reading the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if (wire.len() + data.len()) as u64 > max {
                return Err(too_large(max, "the body"));
            }
            wire.extend_from_slice(&data);
        }
    }
    let wire = wire.freeze();
    if !gzip {
        return Ok(wire);
    }
    inflate(&wire, max)
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
}
