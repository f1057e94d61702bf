//! Asking the running frame of a data dir, through its admin API: the address it wrote to
//! `serving.json` and the token in `admin-token`.

use crate::datadir::DataDir;
use anyhow::Context as _;
use http_body_util::BodyExt as _;

/// The running frame of a data dir.
pub struct FrameClient {
    address: String,
    token: String,
}

impl FrameClient {
    /// The frame running on `data`, or an error saying none is.
    pub fn of(data: &DataDir) -> anyhow::Result<Self> {
        let serving = std::fs::read(data.serving()).with_context(|| {
            format!(
                "no frame is running on {} (it writes {} while it serves); start one with `arkham serve`",
                data.root().display(),
                data.serving().display()
            )
        })?;
        let serving: serde_json::Value =
            serde_json::from_slice(&serving).context("reading the running frame's address")?;
        let address = serving["address"]
            .as_str()
            .and_then(|a| a.strip_prefix("http://"))
            .context("the running frame's address file names no address")?
            .to_string();
        let token = std::fs::read_to_string(data.admin_token())
            .context("reading the frame's admin token")?
            .trim()
            .to_string();
        Ok(Self { address, token })
    }

    /// `method path` (under the frame's root) with the admin token; the JSON answer of a 2xx,
    /// else an error with the frame's message.
    pub async fn call(
        &self,
        method: http::Method,
        path: &str,
    ) -> anyhow::Result<serde_json::Value> {
        let address = &self.address;
        let unreachable = || format!("asking the frame at http://{address} (is it still running?)");
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .with_context(unreachable)?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .with_context(unreachable)?;
        tokio::spawn(connection);
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, address.as_str())
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .context("building the request")?;
        let response = sender
            .send_request(request)
            .await
            .with_context(unreachable)?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .with_context(unreachable)?
            .to_bytes();
        if !status.is_success() {
            let said: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            anyhow::bail!(
                "the frame answered {status}: {}",
                said["error"]["message"]
                    .as_str()
                    .unwrap_or("no reason given")
            );
        }
        serde_json::from_slice(&body).context("reading the frame's answer")
    }
}
