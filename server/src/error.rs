//! OpenAI-style errors: `{"error": {"message", "type", "param", "code"}}` with a
//! matching HTTP status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `not_found_error`, `server_error` …
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), kind, param: None, code: None }
    }
    /// 400 invalid_request_error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }
    /// 400 about one request field.
    pub fn param(param: &str, message: impl Into<String>) -> Self {
        Self::invalid(message).with_param(param).with_code("invalid_value")
    }
    pub fn with_param(mut self, p: &str) -> Self {
        self.param = Some(p.to_owned());
        self
    }
    pub fn with_code(mut self, c: &'static str) -> Self {
        self.code = Some(c);
        self
    }
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "authentication_error", "invalid or missing API key (Authorization: Bearer KEY)")
            .with_code("invalid_api_key")
    }
    pub fn model_not_found(model: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", format!("the model '{model}' does not exist (see GET /v1/models)"))
            .with_param("model")
            .with_code("model_not_found")
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    pub fn body(&self) -> serde_json::Value {
        json!({ "error": { "message": self.message, "type": self.kind, "param": self.param, "code": self.code } })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<ember::Error> for ApiError {
    fn from(e: ember::Error) -> Self {
        match e {
            ember::Error::ContextFull { .. } => ApiError::invalid(e.to_string()).with_code("context_length_exceeded"),
            ember::Error::InvalidParam(_)
            | ember::Error::ChatTemplate(_)
            | ember::Error::TokenOutOfVocab { .. }
            | ember::Error::InvalidConstraint(_) => ApiError::invalid(e.to_string()),
            other => ApiError::internal(other.to_string()),
        }
    }
}
