//! Parallel SSH: one multiplexed OpenSSH master per node (openssh crate, native mux), reused for
//! every command, with ecoboot's own known_hosts file and per-node command logs.

pub mod hostkeys;
mod options;
pub mod redact;
pub mod run;
pub mod script;
mod stream;
mod targets;
pub mod verified;

pub use options::Options;
pub use targets::{targets, targets_of};

use std::io::Write;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder, Stdio};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use crate::config::Role;
use crate::error::{Error, Result};
use crate::retry::{Backoff, Try, retry};

/// sshd's MaxSessions defaults to 10; stay below it on every connection.
pub const MAX_CHANNELS: usize = 8;
/// A killed run leaves no master behind for longer than this.
const CONTROL_PERSIST_SECS: usize = 60;

/// Where to reach one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Node name.
    pub node: String,
    /// Node role.
    pub role: Role,
    /// Host or IP.
    pub host: String,
    /// SSH port.
    pub port: u16,
    /// The node's EC2 instance, when `instances` recorded one (for out-of-band host keys).
    pub instance_id: Option<String>,
}

/// What one remote command did.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code (`None`: killed by a signal or timed out).
    pub code: Option<i32>,
    /// Standard output (redacted).
    pub stdout: String,
    /// Standard error (redacted).
    pub stderr: String,
}

impl Output {
    /// Exit code 0.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// The last `n` lines of stderr (or stdout when stderr is empty).
    pub fn tail(&self, n: usize) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let lines: Vec<&str> = text.trim_end().lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// One open connection.
pub struct Conn {
    /// Node name.
    pub node: String,
    /// Node role.
    pub role: Role,
    session: Session,
    channels: Semaphore,
    sudo: bool,
    log: Mutex<Option<std::fs::File>>,
}

impl Conn {
    /// Connects to `target`, retrying with backoff until `opts.connect_timeout`; a changed or
    /// (with `strict`) unknown host key fails at once. Then waits for cloud-init where present.
    // Long by design: the ssh options in one builder, then connect-with-retry and the
    // cloud-init wait, which share the host-key diagnosis.
    pub async fn connect(target: &Target, opts: &Options) -> Result<Conn> {
        crate::fsutil::ensure_private_dir(&opts.control_dir)?;
        crate::fsutil::ensure_private_dir(&opts.log_dir)?;
        let ssh_config = options::client_config_file(&opts.control_dir)?;
        let mut builder = SessionBuilder::default();
        builder
            .user(opts.user.clone())
            .port(target.port)
            .known_hosts_check(if opts.strict {
                KnownHosts::Strict
            } else {
                KnownHosts::Add
            })
            .user_known_hosts_file(&opts.known_hosts)
            .control_directory(&opts.control_dir)
            .control_persist(ControlPersist::IdleFor(
                NonZeroUsize::new(CONTROL_PERSIST_SECS).expect("non-zero"),
            ))
            .connect_timeout(Duration::from_secs(10))
            .server_alive_interval(Duration::from_secs(15))
            .config_file(&ssh_config);
        if let Some(key) = &opts.identity {
            builder.keyfile(key);
        }
        if let Some(bastion) = &opts.bastion {
            builder.jump_hosts([bastion]);
        }
        let pinned = std::sync::atomic::AtomicBool::new(
            !opts.pins.contains_key(&target.node)
                || hostkeys::known(target, &opts.known_hosts).await,
        );
        let backoff = Backoff::exponential(
            Duration::from_millis(250),
            Duration::from_secs(5),
            opts.connect_timeout,
        );
        let gave_up = |why: String| {
            Error::Ssh {
            node: target.node.clone(),
            message: format!(
                "cannot connect to {}:{} within {}s: {why}",
                target.host,
                target.port,
                opts.connect_timeout.as_secs()
            ),
            help: "check that the node is running, its address, the security group (port 22) and spec.ssh (user, identityFile); raise spec.ssh.connectTimeoutSeconds for slow boots".into(),
        }
        };
        let session = retry(&backoff, |_| {
            let gave_up = &gave_up;
            let (builder, pinned) = (&builder, &pinned);
            async move {
                if !pinned.load(Ordering::Relaxed) {
                    // First contact under `knownHosts: console`: record the key only if it is
                    // one the instance's console printed; the connection below is then strict.
                    let expected = &opts.pins[&target.node];
                    match hostkeys::pin(target, &opts.known_hosts, &opts.verified, expected).await {
                        Ok(hostkeys::Pinned::Yes) => pinned.store(true, Ordering::Relaxed),
                        Ok(hostkeys::Pinned::NoAnswer) => {
                            return Try::Again(gave_up(
                                "the node did not answer a host key scan".into(),
                            ));
                        }
                        Err(e) => return Try::Fail(e),
                    }
                }
                match builder.connect_mux(&target.host).await {
                    Ok(session) => Try::Done(session),
                    Err(e) => {
                        let detail = std::error::Error::source(&e)
                            .map(|s| s.to_string())
                            .unwrap_or_default();
                        let all = format!("{e}: {detail}");
                        if all.contains("Host key verification failed")
                            || all.contains("IDENTIFICATION HAS CHANGED")
                        {
                            return Try::Fail(hostkeys::diagnose(target, &opts.known_hosts).await);
                        }
                        tracing::debug!(node = %target.node, error = %all, "ssh connect failed; retrying");
                        Try::Again(gave_up(all))
                    }
                }
            }
        })
        .await?;
        let log = crate::fsutil::append_nofollow()
            .open(opts.log_dir.join(format!("{}.log", target.node)))
            .map_err(|e| Error::io("open", opts.log_dir.join(&target.node), e))?;
        let conn = Conn {
            node: target.node.clone(),
            role: target.role,
            session,
            channels: Semaphore::new(MAX_CHANNELS),
            sudo: opts.user != "root",
            log: Mutex::new(Some(log)),
        };
        let wait = "if command -v cloud-init >/dev/null 2>&1; then cloud-init status --wait >/dev/null 2>&1 || true; fi";
        conn.run("wait for cloud-init", wait, Duration::from_secs(600), false)
            .await?;
        Ok(conn)
    }

    /// Runs `script` with bash (through `sudo -n` for non-root users when `elevate`), the script
    /// sent on stdin so nothing secret shows in a process list. Logs it all (redacted).
    pub async fn run(
        &self,
        label: &str,
        script: &str,
        timeout: Duration,
        elevate: bool,
    ) -> Result<Output> {
        self.exec(label, script, timeout, elevate, true).await
    }

    /// Runs `script` elevated and returns its stdout, or a [`Error::StageFailed`] of `stage`
    /// naming this node, the step and the last lines it printed, with `help`.
    pub async fn run_ok(
        &self,
        stage: &str,
        label: &str,
        script: &str,
        timeout: Duration,
        help: &str,
    ) -> Result<String> {
        let out = self.run(label, script, timeout, true).await?;
        if out.ok() {
            return Ok(out.stdout);
        }
        Err(Error::StageFailed {
            stage: stage.into(),
            message: format!(
                "{}: `{label}` failed (exit {:?}): {}",
                self.node,
                out.code,
                out.tail(5)
            ),
            help: help.into(),
        })
    }

    /// Like [`Conn::run`], for commands whose output is secret (a kubeconfig with client keys,
    /// a join command): the output is returned unredacted but never written to the node log.
    pub async fn run_secret(
        &self,
        label: &str,
        script: &str,
        timeout: Duration,
        elevate: bool,
    ) -> Result<Output> {
        self.exec(label, script, timeout, elevate, false).await
    }

    async fn exec(
        &self,
        label: &str,
        script: &str,
        timeout: Duration,
        elevate: bool,
        log_output: bool,
    ) -> Result<Output> {
        let _permit = self.channels.acquire().await.expect("semaphore open");
        crate::lock_health::hold_or_park().await;
        let mut cmd = if elevate && self.sudo {
            let mut c = self.session.command("sudo");
            c.args(["-n", "bash", "-s"]);
            c
        } else {
            let mut c = self.session.command("bash");
            c.arg("-s");
            c
        };
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let ssh_err = |e: openssh::Error| Error::Ssh {
            node: self.node.clone(),
            message: format!("`{label}`: {e}"),
            help: "the connection dropped; rerun to continue where it stopped".into(),
        };
        let run = async {
            let mut child = cmd.spawn().await.map_err(ssh_err)?;
            if let Some(mut stdin) = child.stdin().take() {
                let body = format!("set -o pipefail\n{script}\n");
                stdin
                    .write_all(body.as_bytes())
                    .await
                    .map_err(|e| ssh_err(openssh::Error::ChildIo(e)))?;
                drop(stdin);
            }
            child.wait_with_output().await.map_err(ssh_err)
        };
        let out = match tokio::time::timeout(timeout, run).await {
            Ok(result) => {
                let out = result?;
                Output {
                    code: out.status.code(),
                    stdout: if log_output {
                        redact::redact(&String::from_utf8_lossy(&out.stdout))
                    } else {
                        String::from_utf8_lossy(&out.stdout).into_owned()
                    },
                    stderr: redact::redact(&String::from_utf8_lossy(&out.stderr)),
                }
            }
            Err(_) => Output {
                code: None,
                stdout: String::new(),
                stderr: format!("timed out after {}s", timeout.as_secs()),
            },
        };
        if log_output {
            self.log(label, script, &out);
        } else {
            let hidden = Output {
                code: out.code,
                stdout: "(secret output, not logged)".into(),
                stderr: out.stderr.clone(),
            };
            self.log(label, script, &hidden);
        }
        Ok(out)
    }

    fn log(&self, label: &str, script: &str, out: &Output) {
        let mut guard = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = guard.as_mut() {
            let code = out.code.map_or("none".to_string(), |c| c.to_string());
            let _ = writeln!(
                file,
                "== {} {label} (exit {code})\n-- script\n{}\n-- stdout\n{}\n-- stderr\n{}",
                crate::clock::now(),
                redact::redact(&script::elide_payloads(script.trim_end())),
                out.stdout.trim_end(),
                out.stderr.trim_end()
            );
        }
    }

    /// Forwards the local Unix socket `listen` to `host:port` as seen from the node (an SSH
    /// local forward over the existing master connection).
    pub async fn forward(&self, listen: &Path, host: &str, port: u16) -> Result<()> {
        self.session
            .request_port_forward(
                openssh::ForwardType::Local,
                openssh::Socket::UnixSocket {
                    path: listen.into(),
                },
                openssh::Socket::TcpSocket {
                    host: host.into(),
                    port,
                },
            )
            .await
            .map_err(|e| Error::Ssh {
                node: self.node.clone(),
                message: format!("cannot forward to {host}:{port} on the node: {e}"),
                help: "check that the SSH server allows TCP forwarding (AllowTcpForwarding)".into(),
            })
    }

    /// Closes the master connection.
    pub async fn close(self) {
        let _ = self.session.close().await;
    }
}
