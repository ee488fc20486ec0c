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
    /// The token was refused (HTTP 401): wrong, or its officer removed.
    #[error("{0}")]
    Unauthorized(String),
    /// The caller's role does not allow the request (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// Nothing answered at the admin address (the node is not running).
    #[error("{0}")]
    Unreachable(String),
    /// The node failed or the exchange broke off (HTTP 5xx, a connection
    /// lost mid-answer).
    #[error("{0}")]
    Failed(String),
}

/// A minimal HTTP/1.1 client for the admin API, on hyper.
pub struct Client {
    pub addr: SocketAddr,
    pub token: String,
}

impl Client {
    /// A failure to talk to the node.
    fn fail(&self, e: &dyn std::fmt::Display) -> ClientError {
        ClientError::Failed(format!("admin API at {}: {e}", self.addr))
    }

    /// No node at the address.
    fn unreachable(&self, e: &dyn std::fmt::Display) -> ClientError {
        ClientError::Unreachable(format!("admin API at {}: {e}", self.addr))
    }

    /// Connects, sends `body` to `path` with the token and waits (up to
    /// `limit`) for the answer's head. The connection's driver runs until
    /// the returned handle is aborted.
    async fn send<B>(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: B,
        limit: std::time::Duration,
    ) -> Result<
        (
            hyper::Response<hyper::body::Incoming>,
            tokio::task::JoinHandle<()>,
        ),
        ClientError,
    >
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let stream = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::net::TcpStream::connect(self.addr),
        )
        .await
        .map_err(|_| self.unreachable(&"connection timed out"))?
        .map_err(|e| self.unreachable(&format!("{e} (is the node running?)")))?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| self.fail(&e))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.addr.to_string())
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let req = req.body(body).map_err(|e| self.fail(&e))?;
        let resp = tokio::time::timeout(limit, sender.send_request(req))
            .await
            .map_err(|_| self.fail(&"request timed out"))?
            .map_err(|e| self.fail(&e))?;
        Ok((resp, driver))
    }

    /// Sends one request and returns the JSON body of a 2xx answer.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ClientError> {
        use http_body_util::{BodyExt, Full};
        let (resp, driver) = self
            .send(
                method,
                path,
                &[("content-type", "application/json")],
                Full::new(hyper::body::Bytes::from(body.unwrap_or_default())),
                std::time::Duration::from_secs(60),
            )
            .await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await;
        driver.abort();
        let bytes = bytes.map_err(|e| self.fail(&e))?.to_bytes().to_vec();
        if status.is_success() {
            return Ok(bytes);
        }
        Err(refusal(status, &bytes))
    }
}

impl Client {
    /// Sends a GET and streams a 2xx answer's body into `out`, as it
    /// comes; returns the value of `header` (if any) and the bytes
    /// written. A body of any size passes through bounded memory.
    pub async fn download(
        &self,
        path: &str,
        header: &str,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<(Option<String>, u64), ClientError> {
        use http_body_util::{BodyExt, Empty};
        use tokio::io::AsyncWriteExt;
        let (resp, driver) = self
            .send(
                "GET",
                path,
                &[],
                Empty::<hyper::body::Bytes>::new(),
                std::time::Duration::from_secs(600),
            )
            .await?;
        let status = resp.status();
        let value = resp
            .headers()
            .get(header)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = resp.into_body();
        if !status.is_success() {
            let bytes = body.collect().await.map_err(|e| self.fail(&e))?.to_bytes();
            driver.abort();
            return Err(refusal(status, &bytes));
        }
        let mut written = 0u64;
        let result = async {
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| self.fail(&e))?;
                if let Ok(data) = frame.into_data() {
                    out.write_all(&data)
                        .await
                        .map_err(|e| self.fail(&format!("writing the answer: {e}")))?;
                    written += data.len() as u64;
                }
            }
            Ok::<_, ClientError>(())
        }
        .await;
        driver.abort();
        result?;
        Ok((value, written))
    }
}

/// The error an answer that is not 2xx stands for.
fn refusal(status: StatusCode, body: &[u8]) -> ClientError {
    let msg = serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned());
    // A wrong token is a setup failure of the caller, not bad input; a
    // request outside the officer's role is refused as such.
    match status {
        StatusCode::FORBIDDEN => ClientError::Forbidden(msg),
        StatusCode::UNAUTHORIZED => {
            ClientError::Unauthorized(format!("node answered {status}: {msg}"))
        }
        s if s.is_client_error() => ClientError::Refused(msg),
        _ => ClientError::Failed(format!("node answered {status}: {msg}")),
    }
}

/// One server-sent event as `vigil watch` reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseMessage {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

/// Longest line of an event stream accepted (an event is a few hundred
/// bytes; this bounds what a broken server can make the client hold).
const MAX_SSE_LINE: usize = 64 * 1024;

/// Splits an event stream (text/event-stream) into events as bytes
/// arrive. Comments (keep-alives) and unknown fields are skipped.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    current: SseMessage,
    has_data: bool,
}

impl SseParser {
    /// Feeds bytes; returns the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseMessage>, ClientError> {
        let mut out = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                if self.line.len() >= MAX_SSE_LINE {
                    return Err(ClientError::Failed(format!(
                        "event stream line longer than {MAX_SSE_LINE} bytes"
                    )));
                }
                self.line.push(b);
                continue;
            }
            let line = std::mem::take(&mut self.line);
            let line = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(&line));
            if line.is_empty() {
                if self.has_data {
                    out.push(std::mem::take(&mut self.current));
                }
                self.current = SseMessage::default();
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_ref(), ""),
            };
            match field {
                "event" => self.current.event = value.to_string(),
                "id" => self.current.id = Some(value.to_string()),
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

impl Client {
    /// Follows `GET /v1/events`, resuming after `last_id`, calling `each`
    /// for every event until the node ends the stream (then `Ok`: the
    /// caller reconnects) or the request is refused.
    pub async fn events(
        &self,
        last_id: Option<&str>,
        mut each: impl FnMut(SseMessage),
    ) -> Result<(), ClientError> {
        use http_body_util::{BodyExt, Empty};
        let mut headers = vec![("accept", "text/event-stream")];
        if let Some(id) = last_id {
            headers.push(("last-event-id", id));
        }
        let (resp, driver) = self
            .send(
                "GET",
                "/v1/events",
                &headers,
                Empty::<hyper::body::Bytes>::new(),
                std::time::Duration::from_secs(30),
            )
            .await?;
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            let bytes = body
                .collect()
                .await
                .map(|b| b.to_bytes().to_vec())
                .unwrap_or_default();
            driver.abort();
            return Err(refusal(status, &bytes));
        }
        let mut parser = SseParser::default();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| self.fail(&e))?;
            if let Some(data) = frame.data_ref() {
                for m in parser.push(data)? {
                    each(m);
                }
            }
        }
        driver.abort();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_reads() {
        let mut p = SseParser::default();
        let text = b": keep-alive\n\nevent: hit_received\nid: r-1\ndata: {\"a\":1}\n\nevent: peer_up\r\ndata: x\r\ndata: y\r\n\r\n";
        let mut got = Vec::new();
        for chunk in text.chunks(5) {
            got.extend(p.push(chunk).unwrap());
        }
        assert_eq!(
            got,
            vec![
                SseMessage {
                    event: "hit_received".into(),
                    id: Some("r-1".into()),
                    data: "{\"a\":1}".into()
                },
                SseMessage {
                    event: "peer_up".into(),
                    id: None,
                    data: "x\ny".into()
                },
            ]
        );
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut p = SseParser::default();
        let long = vec![b'a'; MAX_SSE_LINE + 1];
        assert!(p.push(&long).is_err());
    }
}
