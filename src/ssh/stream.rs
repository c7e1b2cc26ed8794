//! Byte streams to and from a node over its SSH connection, for payloads too large or too
//! binary for [`Conn::run`] (etcd snapshots): a remote command's stdout streamed into a local
//! file created 0600 (never a world-readable temp file), or a local file streamed into a remote
//! command's stdin. The remote command is a fixed script passed as an argument (no secret in
//! it); the payload never touches the node log.

use std::path::Path;
use std::time::Duration;

use openssh::Stdio;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Conn, Output, redact};
use crate::error::{Error, Result};

impl Conn {
    fn stream_command(&self, script: &str) -> openssh::Command<'_> {
        let mut cmd = if self.sudo {
            let mut c = self.session.command("sudo");
            c.args(["-n", "bash", "-c"]);
            c
        } else {
            let mut c = self.session.command("bash");
            c.arg("-c");
            c
        };
        cmd.arg(format!("set -o pipefail\n{script}"));
        cmd
    }

    fn stream_error(&self, label: &str, message: String) -> Error {
        Error::Ssh {
            node: self.node.clone(),
            message: format!("`{label}`: {message}"),
            help: "the connection dropped or the command failed; rerun to try again".into(),
        }
    }

    /// Runs `script` (elevated) and streams its stdout into `dest`, created new with mode 0600.
    /// Returns the command's outcome (stdout empty) and the bytes' size and sha256.
    pub async fn download(
        &self,
        label: &str,
        script: &str,
        dest: &Path,
        timeout: Duration,
    ) -> Result<(Output, u64, String)> {
        let _permit = self.channels.acquire().await.expect("semaphore open");
        crate::lock_health::hold_or_park().await;
        let mut file = crate::fsutil::create_private(dest)?;
        let mut cmd = self.stream_command(script);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let run = async {
            let mut child = cmd
                .spawn()
                .await
                .map_err(|e| self.stream_error(label, e.to_string()))?;
            let mut stdout = child.stdout().take().expect("piped");
            let mut stderr = child.stderr().take().expect("piped");
            let err_task = async {
                let mut text = String::new();
                let _ = stderr.read_to_string(&mut text).await;
                text
            };
            let copy = async {
                let (mut size, mut hash, mut buf) = (0u64, Sha256::new(), vec![0u8; 1 << 16]);
                loop {
                    let n = stdout.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    std::io::Write::write_all(&mut file, &buf[..n])?;
                    hash.update(&buf[..n]);
                    size += n as u64;
                }
                file.sync_all()?;
                Ok::<_, std::io::Error>((size, hex::encode(hash.finalize())))
            };
            let (copied, stderr) = tokio::join!(copy, err_task);
            let status = child
                .wait()
                .await
                .map_err(|e| self.stream_error(label, e.to_string()))?;
            let (size, digest) = copied.map_err(|e| Error::io("write", dest, e))?;
            let out = Output {
                code: status.code(),
                stdout: String::new(),
                stderr: redact::redact(&stderr),
            };
            Ok::<_, Error>((out, size, digest))
        };
        let result = tokio::time::timeout(timeout, run).await;
        let (out, size, digest) = result.map_err(|_| {
            self.stream_error(label, format!("timed out after {}s", timeout.as_secs()))
        })??;
        let logged = Output {
            code: out.code,
            stdout: format!(
                "({size} bytes streamed to {}, sha256 {digest})",
                dest.display()
            ),
            stderr: out.stderr.clone(),
        };
        self.log(label, script, &logged);
        Ok((out, size, digest))
    }

    /// Runs `script` (elevated) with the bytes of `src` on its stdin.
    pub async fn upload(
        &self,
        label: &str,
        script: &str,
        src: &Path,
        timeout: Duration,
    ) -> Result<Output> {
        let _permit = self.channels.acquire().await.expect("semaphore open");
        crate::lock_health::hold_or_park().await;
        let mut cmd = self.stream_command(script);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let run = async {
            let mut child = cmd
                .spawn()
                .await
                .map_err(|e| self.stream_error(label, e.to_string()))?;
            let mut stdin = child.stdin().take().expect("piped");
            let mut file = tokio::fs::File::open(src)
                .await
                .map_err(|e| Error::io("read", src, e))?;
            tokio::io::copy(&mut file, &mut stdin)
                .await
                .map_err(|e| self.stream_error(label, e.to_string()))?;
            stdin
                .shutdown()
                .await
                .map_err(|e| self.stream_error(label, e.to_string()))?;
            drop(stdin);
            let out = child
                .wait_with_output()
                .await
                .map_err(|e| self.stream_error(label, e.to_string()))?;
            Ok::<_, Error>(Output {
                code: out.status.code(),
                stdout: redact::redact(&String::from_utf8_lossy(&out.stdout)),
                stderr: redact::redact(&String::from_utf8_lossy(&out.stderr)),
            })
        };
        let out = tokio::time::timeout(timeout, run).await.map_err(|_| {
            self.stream_error(label, format!("timed out after {}s", timeout.as_secs()))
        })??;
        self.log(label, script, &out);
        Ok(out)
    }
}
