//! Every worker and client call carries the cluster's shared token as
//! `authorization: Bearer TOKEN`; the coordinator refuses calls without it.

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

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
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| Status::invalid_argument("the token must be printable ASCII"))
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
}
