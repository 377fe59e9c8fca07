//! Every worker and client call carries the cluster's shared token as
//! `authorization: Bearer TOKEN`; the coordinator refuses calls without it.

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Why a string cannot be the cluster's token. The messages name the flag
/// (every process takes it as --token or DREAMFARM_TOKEN) and never repeat
/// the token: they end up in logs.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum TokenError {
    /// Anyone could send it.
    #[error(
        "--token (DREAMFARM_TOKEN): the token is empty, and anyone can send an empty token. Fix: give the coordinator, its workers and its clients the same secret, e.g. from `openssl rand -hex 32`, as --token or DREAMFARM_TOKEN (or unset it for a coordinator started with --insecure-no-auth)"
    )]
    Empty,
    /// A space, tab or newline at an end: a token read from a file keeps
    /// its last newline, which no HTTP header carries.
    #[error(
        "--token (DREAMFARM_TOKEN): the token starts or ends with a space, tab or newline (as one read from a file with its last newline does), which an HTTP header cannot carry. Fix: set it without them, e.g. DREAMFARM_TOKEN=\"$(tr -d '[:space:]' < FILE)\""
    )]
    Padded,
    /// A character outside printable ASCII, which a header cannot carry.
    #[error(
        "--token (DREAMFARM_TOKEN): the token's character {position} is not printable ASCII, which an HTTP header cannot carry. Fix: use letters, digits and punctuation only, e.g. a token from `openssl rand -hex 32`"
    )]
    NotPrintable {
        /// Its position, from 1 (the character itself is not shown).
        position: usize,
    },
}

/// Checks that `token` can be the cluster's token: the coordinator checks
/// its own when it starts, and a worker or client its copy before it calls,
/// so a mistyped token fails at once with what to do, not as a stream of
/// refused calls (or, when empty, as an open door).
pub fn check_token(token: &str) -> Result<(), TokenError> {
    if token.is_empty() {
        return Err(TokenError::Empty);
    }
    if token.trim() != token {
        return Err(TokenError::Padded);
    }
    match token.chars().position(|c| !(' '..='~').contains(&c)) {
        Some(i) => Err(TokenError::NotPrintable { position: i + 1 }),
        None => Ok(()),
    }
}

/// Adds the token to every outgoing call (clients and workers).
#[derive(Clone)]
pub struct AttachToken {
    header: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl AttachToken {
    /// Attaches `token`, or nothing when `None` (a coordinator started
    /// without authentication).
    pub fn new(token: Option<&str>) -> Result<Self, Status> {
        let header = token
            .map(|t| {
                check_token(t).map_err(|e| Status::invalid_argument(e.to_string()))?;
                format!("Bearer {t}").parse().map_err(|_| {
                    Status::invalid_argument(
                        "--token (DREAMFARM_TOKEN): the token cannot go in an HTTP header",
                    )
                })
            })
            .transpose()?;
        Ok(Self { header })
    }
}

impl Interceptor for AttachToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(h) = &self.header {
            request.metadata_mut().insert("authorization", h.clone());
        }
        Ok(request)
    }
}

/// Refuses calls without the expected token (the coordinator).
#[derive(Clone)]
pub struct CheckToken {
    expected: Option<std::sync::Arc<str>>,
}

impl CheckToken {
    /// Checks for `expected`; `None` lets every call through.
    pub fn new(expected: Option<&str>) -> Self {
        Self {
            expected: expected.map(Into::into),
        }
    }
}

impl Interceptor for CheckToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            return Ok(request);
        };
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(t) if constant_time_eq(t.as_bytes(), expected.as_bytes()) => Ok(request),
            Some(_) => Err(Status::unauthenticated(
                "wrong token: pass the coordinator's --token (or DREAMFARM_TOKEN)",
            )),
            None => Err(Status::unauthenticated(
                "no token: pass --token (or set DREAMFARM_TOKEN) to the coordinator's token",
            )),
        }
    }
}

/// Compares without an early exit, so timing does not reveal the token
/// (also the web interface's check).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_token_passes() {
        let mut check = CheckToken::new(Some("s3cret"));
        let with = |t: Option<&str>| AttachToken::new(t).unwrap().call(Request::new(())).unwrap();
        assert!(check.call(with(Some("s3cret"))).is_ok());
        let wrong = check.call(with(Some("s3cre"))).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        assert!(wrong.message().contains("wrong token"));
        assert!(
            check
                .call(with(None))
                .unwrap_err()
                .message()
                .contains("no token")
        );
        assert!(CheckToken::new(None).call(with(None)).is_ok());
    }

    #[test]
    fn a_token_no_header_can_carry_or_anyone_could_send_is_refused_unrepeated() {
        for good in ["s3cret", "a b", "~!x", &"f".repeat(64)] {
            assert_eq!(check_token(good), Ok(()), "{good:?}");
            assert!(AttachToken::new(Some(good)).is_ok(), "{good:?}");
        }
        let cases = [
            ("", TokenError::Empty),
            ("s3cret\n", TokenError::Padded),
            (" s3cret", TokenError::Padded),
            ("s3cret\t", TokenError::Padded),
            ("s3\u{e9}cret", TokenError::NotPrintable { position: 3 }),
            ("s3\u{7f}", TokenError::NotPrintable { position: 3 }),
            ("a\nb", TokenError::NotPrintable { position: 2 }),
        ];
        for (bad, why) in cases {
            assert_eq!(check_token(bad), Err(why.clone()), "{bad:?}");
            let said = why.to_string();
            assert!(said.contains("Fix: "), "{said}");
            assert!(bad.is_empty() || !said.contains(bad.trim()), "{said}");
            let Err(refused) = AttachToken::new(Some(bad)) else {
                panic!("{bad:?} was attached");
            };
            assert_eq!(refused.message(), said);
        }
    }
}
