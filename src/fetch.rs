//! Pinned manifests (Calico, ArgoCD): read from a local path for air-gapped runs or downloaded
//! once, verified against the sha256 in the config, and cached in the state directory by digest.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::Manifest;
use crate::error::{Error, Result};
use crate::retry::{Backoff, Try, retry};

const ATTEMPTS: u32 = 3;

/// Where verified downloads are kept, by digest.
pub struct Cache {
    /// The cache directory.
    pub dir: PathBuf,
    /// Whether this run may write it (plan and status only read).
    pub writable: bool,
}

/// The manifest's text, verified against its pinned sha256: from `local` (the config's
/// `path:`, resolved) or its URL, through the cache. `what` names it in messages (e.g.
/// "Calico v3.32.1").
pub async fn manifest(
    cache: &Cache,
    m: &Manifest,
    local: Option<&Path>,
    what: &str,
    stage: &str,
) -> Result<String> {
    let want = m.sha256.value.to_ascii_lowercase();
    let cached = cache.dir.join(format!("{want}.yaml"));
    if let Ok(bytes) = std::fs::read(&cached)
        && digest(&bytes) == want
    {
        return text(bytes, what, stage);
    }
    let (bytes, source) = match local {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
            (bytes, path.display().to_string())
        }
        None => (download(&m.url, what, stage).await?, m.url.value.clone()),
    };
    let got = digest(&bytes);
    if got != want {
        return Err(Error::StageFailed {
            stage: stage.into(),
            message: format!(
                "{what} from {source} has sha256 {got}, but the config pins {want}"
            ),
            help: "the file is not the pinned release (changed upstream, truncated, or a proxy page): check the source; if you meant to upgrade, put the new digest in the config".into(),
        });
    }
    if cache.writable {
        let dir = &cache.dir;
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        crate::fsutil::write_atomic(&cached, &bytes, 0o644)?;
    }
    text(bytes, what, stage)
}

/// A short text answer from `url` (at most `max` bytes, UTF-8), with the download's retries.
pub async fn small_text(url: &str, max: usize, what: &str, stage: &str) -> Result<String> {
    let bytes = download(url, what, stage).await?;
    if bytes.len() > max {
        return Err(Error::StageFailed {
            stage: stage.into(),
            message: format!(
                "{what} from {url} is {} bytes, more than {max}",
                bytes.len()
            ),
            help: "point the URL at a service that answers with the short text expected".into(),
        });
    }
    text(bytes, what, stage)
}

fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn text(bytes: Vec<u8>, what: &str, stage: &str) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| Error::StageFailed {
        stage: stage.into(),
        message: format!("{what} is not UTF-8 text"),
        help: "check the manifest source".into(),
    })
}

async fn download(url: &str, what: &str, stage: &str) -> Result<Vec<u8>> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .user_agent(concat!("ecoboot/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("HTTP client");
    let backoff = Backoff {
        first: Duration::from_millis(500),
        max: Duration::from_secs(2),
        factor: 2,
        attempts: Some(ATTEMPTS),
        deadline: None,
        jitter: false,
    };
    let fetched = retry(&backoff, |attempt| {
        let client = &client;
        async move {
            tracing::debug!("downloading {what} from {url} (attempt {attempt})");
            match client
                .get(url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
            {
                Ok(resp) => match resp.bytes().await {
                    Ok(bytes) => Try::Done(bytes.to_vec()),
                    Err(e) => Try::Again(e.to_string()),
                },
                // 4xx: the URL is wrong, asking again will not help.
                Err(e) if e.status().is_some_and(|s| s.is_client_error()) => {
                    Try::Fail(describe(&e))
                }
                Err(e) => Try::Again(describe(&e)),
            }
        }
    })
    .await;
    let last = match fetched {
        Ok(bytes) => return Ok(bytes),
        Err(last) => last,
    };
    Err(Error::StageFailed {
        stage: stage.into(),
        message: format!("cannot download {what} from {url}: {last}"),
        help: "check the network (proxy, DNS) from this machine; for air-gapped runs download the file elsewhere and set `path:` next to `url:` in the config".into(),
    })
}

fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot HTTP server on loopback answering `status` with `body`.
    async fn serve(status: &'static str, body: &'static [u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body).await;
            }
        });
        format!("http://{addr}/install.yaml")
    }

    #[tokio::test]
    async fn downloads_and_names_http_failures() {
        let url = serve("200 OK", b"kind: List\n").await;
        let bytes = download(&url, "test manifest", "s").await.unwrap();
        assert_eq!(digest(&bytes), digest(b"kind: List\n"));
        let url = serve("404 Not Found", b"nope").await;
        let err = download(&url, "test manifest", "s").await.unwrap_err();
        assert!(err.to_string().contains("404"), "{err}");
    }
}
