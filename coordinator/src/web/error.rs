//! Why a web request was refused, as an HTTP status and a page that says
//! what to do; never a panic.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::pages;
use crate::cluster::jobs::JobError;

/// A refused request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebError {
    /// The request names something malformed (a frame number, a priority).
    #[error("{0}")]
    BadRequest(String),
    /// No such job, frame or file.
    #[error("{0}")]
    NotFound(String),
    /// The job is not in a state that allows the action.
    #[error("{0}")]
    Conflict(String),
    /// This server does not offer the action (a single-machine render).
    #[error("{0}")]
    NotAvailable(String),
    /// Something on the server failed.
    #[error("{0}")]
    Internal(String),
}

impl WebError {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::NotAvailable(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<JobError> for WebError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Invalid(m) => Self::BadRequest(m),
            JobError::NotFound(id) => Self::NotFound(format!("no job {id:?}")),
            JobError::Conflict(m) => Self::Conflict(m),
            e @ (JobError::Full(_) | JobError::Storage(_) | JobError::Store(_)) => {
                Self::Internal(e.to_string())
            }
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!("web request failed: {self}");
        }
        (status, pages::error(status, &self.to_string())).into_response()
    }
}
