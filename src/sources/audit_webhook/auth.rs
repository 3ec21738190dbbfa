//! Who may post audit events: a verified client certificate (checked during the
//! TLS handshake), or a bearer token from `bearer_tokens_file`, compared in
//! constant time.

use std::path::Path;

use subtle::ConstantTimeEq;

use super::limits::ClientIdentity;
use crate::server::peer::Peer;

#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("server.bearer_tokens_file: cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("server.bearer_tokens_file: {path} has no tokens (one per line; # starts a comment)")]
    Empty { path: String },
    #[error("server.bearer_tokens_file: {path} line {line}: a token must be one word of visible ASCII")]
    Invalid { path: String, line: usize },
}

pub struct Tokens {
    tokens: Vec<Vec<u8>>,
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TokensError::Read { path: path.display().to_string(), source })?;
        let mut tokens = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if !line.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(TokensError::Invalid { path: path.display().to_string(), line: i + 1 });
            }
            tokens.push(line.as_bytes().to_vec());
        }
        if tokens.is_empty() {
            return Err(TokensError::Empty { path: path.display().to_string() });
        }
        Ok(Tokens { tokens })
    }

    /// The index of the matching token. Every token is compared, in constant
    /// time, so the time taken says nothing about which bytes matched.
    pub fn check(&self, presented: &[u8]) -> Option<usize> {
        let mut found = None;
        for (i, t) in self.tokens.iter().enumerate() {
            if bool::from(t.as_slice().ct_eq(presented)) {
                found = Some(i);
            }
        }
        found
    }
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// No credential at all.
    Missing,
    /// A bearer token that is not in the file.
    BadToken,
}

/// Decides who the request is from, or why it is refused. A verified client
/// certificate is enough on its own; otherwise a valid token is needed (when
/// tokens are configured), else `allow_unauthenticated` must be set.
pub fn authenticate(
    peer: &Peer,
    authorization: Option<&[u8]>,
    tokens: Option<&Tokens>,
    allow_unauthenticated: bool,
) -> Result<ClientIdentity, Denied> {
    if let Some(names) = &peer.certificate {
        let name = names.first().cloned().unwrap_or_else(|| "(no name)".into());
        return Ok(ClientIdentity::Certificate(name));
    }
    let bearer = authorization.and_then(|h| {
        let h = std::str::from_utf8(h).ok()?;
        let (scheme, token) = h.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().as_bytes())
    });
    match (tokens, bearer) {
        (Some(tokens), Some(token)) => tokens.check(token).map(ClientIdentity::Token).ok_or(Denied::BadToken),
        (Some(_), None) if !allow_unauthenticated => Err(Denied::Missing),
        (None, _) if !allow_unauthenticated => Err(Denied::Missing),
        _ => Ok(ClientIdentity::Address(peer.addr.ip())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> (tempfile::NamedTempFile, Tokens) {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "# kube-apiserver\nsecret-one\n\n  secret-two  \n").unwrap();
        let t = Tokens::load(f.path()).unwrap();
        (f, t)
    }

    fn peer(cert: Option<&str>) -> Peer {
        Peer { addr: "10.0.0.1:5555".parse().unwrap(), certificate: cert.map(|c| vec![c.to_string()]) }
    }

    #[test]
    fn certificate_token_and_refusals() {
        let (_f, t) = tokens();
        assert_eq!(
            authenticate(&peer(Some("kube-apiserver")), None, Some(&t), false),
            Ok(ClientIdentity::Certificate("kube-apiserver".into()))
        );
        assert_eq!(
            authenticate(&peer(None), Some(b"Bearer secret-two"), Some(&t), false),
            Ok(ClientIdentity::Token(1))
        );
        assert_eq!(
            authenticate(&peer(None), Some(b"bearer secret-one"), Some(&t), false),
            Ok(ClientIdentity::Token(0))
        );
        assert_eq!(authenticate(&peer(None), Some(b"Bearer secret-on"), Some(&t), false), Err(Denied::BadToken));
        assert_eq!(authenticate(&peer(None), Some(b"Basic c2VjcmV0"), Some(&t), false), Err(Denied::Missing));
        assert_eq!(authenticate(&peer(None), None, None, false), Err(Denied::Missing));
        assert!(matches!(authenticate(&peer(None), None, None, true), Ok(ClientIdentity::Address(_))));
    }

    #[test]
    fn token_file_errors_name_the_line() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "ok\nbad token\n").unwrap();
        let err = Tokens::load(f.path()).err().unwrap().to_string();
        assert!(err.contains("line 2"), "{err}");
        std::fs::write(f.path(), "# nothing\n").unwrap();
        assert!(matches!(Tokens::load(f.path()), Err(TokensError::Empty { .. })));
    }
}
