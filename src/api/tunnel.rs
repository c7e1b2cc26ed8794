//! A local TCP endpoint for the API server behind the control plane: an SSH local forward over
//! the existing master connection onto a private Unix socket, and a loopback TCP listener in
//! front of it (so no local port has to be guessed free beforehand).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, UnixStream};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::ssh::Conn;

/// An open tunnel; closed when dropped.
pub struct Tunnel {
    /// Loopback address that reaches the remote API server.
    pub local: SocketAddr,
    socket: PathBuf,
    task: JoinHandle<()>,
}

impl Tunnel {
    /// Forwards a new loopback port to `host:port` as seen from the node behind `conn`.
    pub async fn open(conn: &Conn, dir: &Path, host: &str, port: u16) -> Result<Tunnel> {
        Self::open_on(conn, dir, host, port, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Like [`Tunnel::open`], listening on `bind` (a loopback address; port 0 = any free one).
    pub async fn open_on(
        conn: &Conn,
        dir: &Path,
        host: &str,
        port: u16,
        bind: SocketAddr,
    ) -> Result<Tunnel> {
        crate::fsutil::ensure_private_dir(dir)?;
        let socket = dir.join(format!(
            "api-{}-{:x}.sock",
            std::process::id(),
            rand_suffix()
        ));
        let _ = std::fs::remove_file(&socket);
        conn.forward(&socket, host, port).await?;
        let listener = TcpListener::bind(bind)
            .await
            .map_err(|e| Error::io("listen on", bind.to_string(), e))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::io("listen on", bind.to_string(), e))?;
        let target = socket.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(mut unix) = UnixStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                    }
                });
            }
        });
        tracing::debug!(%local, node = %conn.node, "API tunnel to {host}:{port}");
        Ok(Tunnel {
            local,
            socket,
            task,
        })
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish() & 0xffff_ffff
}
