//! The small HTTP/1.1 client the CLI uses to talk to a running node's
//! admin API.

use axum::http::{header, StatusCode};
use std::net::SocketAddr;

use super::ErrorBody;

/// Why a CLI call to the admin API failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node refused the request as bad input (HTTP 4xx).
    #[error("{0}")]
    Refused(String),
    /// The node could not be reached or failed (connection, HTTP 5xx).
    #[error("{0}")]
    Failed(String),
}

/// A minimal HTTP/1.1 client for the admin API, on hyper.
pub struct Client {
    pub addr: SocketAddr,
    pub token: String,
}

impl Client {
    /// Sends one request and returns the JSON body of a 2xx answer.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ClientError> {
        use http_body_util::{BodyExt, Full};
        use hyper::body::Bytes;
        let fail = |e: &dyn std::fmt::Display| {
            ClientError::Failed(format!("admin API at {}: {e}", self.addr))
        };
        let stream = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::net::TcpStream::connect(self.addr),
        )
        .await
        .map_err(|_| fail(&"connection timed out"))?
        .map_err(|e| fail(&format!("{e} (is the node running?)")))?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| fail(&e))?;
        let driver = tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.addr.to_string())
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| fail(&e))?;
        let resp =
            tokio::time::timeout(std::time::Duration::from_secs(60), sender.send_request(req))
                .await
                .map_err(|_| fail(&"request timed out"))?
                .map_err(|e| fail(&e))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| fail(&e))?
            .to_bytes()
            .to_vec();
        driver.abort();
        if status.is_success() {
            return Ok(bytes);
        }
        let msg = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|b| b.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        // A wrong token is a setup failure of the caller, not bad input.
        if status.is_client_error() && status != StatusCode::UNAUTHORIZED {
            Err(ClientError::Refused(msg))
        } else {
            Err(ClientError::Failed(format!(
                "node answered {status}: {msg}"
            )))
        }
    }
}
