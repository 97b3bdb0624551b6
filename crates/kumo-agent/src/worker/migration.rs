//! A worker's part in a migration (protocol: `kumo_types::migration`).
//!
//! - Live, target: launch QEMU with the instance's exact devices waiting for the stream on this
//!   host's migration address, report `ready`, then report `completed` as soon as the guest runs.
//! - Live, source: once the target is ready, `migrate` and poll until QEMU says completed (report
//!   the downtime it measured) or failed (QEMU resumes the guest here).
//! - Cold, source: stop the guest, serve its root disk file once to the target (which must present
//!   the migration's secret), report `ready`.
//! - Cold, target: fetch the root disk, point it at this host's copy of its image, report
//!   `completed`; the instance then starts here like any other.
//!
//! The worker of an instance that is neither ours nor coming to us does nothing (the agent drops it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use kumo_types::{
    Assignment, ImageKind, InstanceState, Migration, MigrationKind, MigrationPhase, MigrationReport,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Next, Worker};
use crate::runtime::{migrate, process};

/// How often the source polls `query-migrate`, and the target its guest's state.
const POLL: Duration = Duration::from_millis(100);
/// A live migration still running after this long is cancelled (the guest stays on the source).
const LIVE_LIMIT: Duration = Duration::from_secs(600);

/// What a worker remembers of its migration.
#[derive(Default)]
pub(super) struct MigState {
    /// Target: where our waiting QEMU listens.
    incoming_addr: Option<String>,
    /// Source: the migration QEMU was told to send.
    sending: Option<String>,
    /// The migration whose end this host has reported.
    reported: Option<String>,
    /// Cold source: the disk server (migration ID, address); aborted on drop.
    serving: Option<(String, String, AbortOnDrop)>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Worker {
    /// Migration duties come before the ordinary decision: `Some` when this turn was about one.
    pub(super) async fn migration_turn(&mut self, a: &Assignment) -> Option<Next> {
        let me = self.ctx.host_id.clone();
        let ours = a.instance.host.as_deref() == Some(me.as_str());
        let m = match &a.instance.migration {
            Some(m) => m.clone(),
            None if ours => {
                self.mig.serving = None;
                return None;
            }
            // Neither ours nor coming here: the agent drops this worker with the next snapshot.
            None => return Some(Next::Wait),
        };
        if m.target_host == me && !ours {
            return Some(match m.kind {
                MigrationKind::Live => self.receive_live(a, &m).await,
                MigrationKind::Cold => self.receive_cold(a, &m).await,
            });
        }
        if !ours {
            return Some(Next::Wait);
        }
        match (m.kind, m.phase) {
            // The guest runs on here while the target prepares.
            (MigrationKind::Live, MigrationPhase::Preparing) => None,
            (MigrationKind::Live, MigrationPhase::Ready) => Some(self.send_live(&m).await),
            (MigrationKind::Cold, MigrationPhase::Preparing) => Some(self.serve_cold(a, &m).await),
            // The target copies; nothing starts here meanwhile.
            (MigrationKind::Cold, MigrationPhase::Ready) => Some(Next::Wait),
        }
    }

    /// Tell the control plane; on failure try again shortly. True if it went through.
    async fn tell(&mut self, report: MigrationReport) -> bool {
        let done = matches!(
            report,
            MigrationReport::Completed { .. } | MigrationReport::Failed { .. }
        );
        let id = report.migration_id().to_string();
        match self
            .ctx
            .cp
            .report_migration(&self.id, &self.ctx.host_id, report)
            .await
        {
            Ok(()) => {
                if done {
                    self.mig.reported = Some(id);
                }
                true
            }
            Err(e) => {
                tracing::warn!(instance = %self.id, error = %e, "could not report migration");
                self.retry_at = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                false
            }
        }
    }

    fn reported(&self, m: &Migration) -> bool {
        self.mig.reported.as_deref() == Some(m.id.as_str())
    }

    async fn fail(&mut self, m: &Migration, error: String) -> Next {
        tracing::warn!(instance = %self.id, migration = %m.id, "{error}");
        self.tell(MigrationReport::Failed {
            migration_id: m.id.clone(),
            error,
        })
        .await;
        Next::Wait
    }

    fn migration_addr(&self) -> Result<std::net::Ipv4Addr, String> {
        self.ctx.migration_ip.ok_or_else(|| {
            format!(
                "host {} has no migration address: start its agent with --migration-ip (or \
                 --vxlan-local-ip)",
                self.ctx.host_id
            )
        })
    }

    async fn receive_live(&mut self, a: &Assignment, m: &Migration) -> Next {
        if self.reported(m) {
            return Next::Wait;
        }
        if let Some(vm) = &self.vm {
            if let Some(exit) = vm.exit_info() {
                self.vm = None;
                return self
                    .fail(m, format!("the target's QEMU exited ({:?})", exit.kind))
                    .await;
            }
            match m.phase {
                MigrationPhase::Preparing => {
                    let Some(address) = self.mig.incoming_addr.clone() else {
                        return self
                            .fail(m, "the target's agent restarted while preparing".into())
                            .await;
                    };
                    self.tell(MigrationReport::Ready {
                        migration_id: m.id.clone(),
                        address,
                    })
                    .await;
                }
                MigrationPhase::Ready => match vm.qmp().query_status().await {
                    Ok(s) if s.running => {
                        let pid = vm.pid();
                        self.tell(MigrationReport::Completed {
                            migration_id: m.id.clone(),
                            downtime_ms: None,
                            total_ms: None,
                            transferred_bytes: None,
                        })
                        .await;
                        let _ = self
                            .ctx
                            .cp
                            .event(
                                &self.id,
                                "instance.migration_arrived",
                                &format!("runs on host {} (QEMU pid {pid})", self.ctx.host_id),
                            )
                            .await;
                    }
                    _ => self.retry_at = Some(tokio::time::Instant::now() + POLL),
                },
            }
            return Next::Wait;
        }
        if m.phase == MigrationPhase::Ready {
            return self
                .fail(m, "the target's QEMU is gone (agent restart?)".into())
                .await;
        }
        match self.launch_incoming(a).await {
            Ok((vm, address)) => {
                self.vm = Some(vm);
                // Launched with every NIC the source has: none to hot-plug once it is ours.
                self.set_attached(
                    a.instance
                        .nics
                        .iter()
                        .map(|n| (n.slot, n.mac.clone()))
                        .collect(),
                );
                self.mig.incoming_addr = Some(address.clone());
                self.tell(MigrationReport::Ready {
                    migration_id: m.id.clone(),
                    address,
                })
                .await;
                Next::Wait
            }
            Err(e) => self.fail(m, format!("preparing the target: {e}")).await,
        }
    }

    /// Launch the instance's QEMU waiting for the stream; its address.
    async fn launch_incoming(
        &self,
        a: &Assignment,
    ) -> Result<(process::RunningVm, String), String> {
        let ip = self.migration_addr()?;
        let mut cfg = super::prepare(&self.ctx, a)
            .await
            .map_err(|e| e.to_string())?;
        cfg.incoming = true;
        // A free port on the migration address (QEMU binds it right after).
        let port = std::net::TcpListener::bind((ip, 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port on {ip}: {e}"))?
            .port();
        let address = format!("{ip}:{port}");
        let vm = process::launch(&cfg).await.map_err(|e| e.to_string())?;
        if let Err(e) = migrate::listen(&vm, &address).await {
            let _ = vm.force_stop().await;
            return Err(format!("migrate-incoming on {address}: {e}"));
        }
        Ok((vm, address))
    }

    async fn send_live(&mut self, m: &Migration) -> Next {
        if self.reported(m) {
            return Next::Wait;
        }
        let Some(address) = m.address.clone() else {
            return self.fail(m, "the target named no address".into()).await;
        };
        let Some(vm) = &self.vm else {
            return self
                .fail(m, "the guest is not running on the source".into())
                .await;
        };
        if self.mig.sending.as_deref() != Some(m.id.as_str()) {
            if let Err(e) = migrate::send(vm, &address).await {
                return self.fail(m, format!("migrate to {address}: {e}")).await;
            }
            self.mig.sending = Some(m.id.clone());
            let _ = self
                .ctx
                .cp
                .event(
                    &self.id,
                    "instance.migration_sending",
                    &format!("sending the guest to {address}"),
                )
                .await;
        }
        let started = tokio::time::Instant::now();
        loop {
            let info = match migrate::query(vm).await {
                Ok(i) => i,
                Err(e) => return self.fail(m, format!("query-migrate: {e}")).await,
            };
            if info.completed() {
                // QEMU can answer `completed` a moment before it has filled in its figures.
                let mut info = info;
                for _ in 0..20 {
                    if info.total_ms.unwrap_or(0) > 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    match migrate::query(vm).await {
                        Ok(i) => info = i,
                        Err(_) => break,
                    }
                }
                self.tell(MigrationReport::Completed {
                    migration_id: m.id.clone(),
                    downtime_ms: info.downtime_ms,
                    total_ms: info.total_ms,
                    transferred_bytes: info.transferred_bytes,
                })
                .await;
                return Next::Wait;
            }
            if info.failed() || info.idle() {
                let why = info.error.unwrap_or_else(|| info.status.clone());
                return self.fail(m, format!("QEMU: {why}")).await;
            }
            if started.elapsed() > LIVE_LIMIT {
                let _ = migrate::cancel(vm).await;
                return self
                    .fail(
                        m,
                        format!(
                            "still copying after {LIVE_LIMIT:?} (a guest dirtying memory faster \
                             than the network carries it); cancelled"
                        ),
                    )
                    .await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn serve_cold(&mut self, a: &Assignment, m: &Migration) -> Next {
        if let Some((id, address, _)) = &self.mig.serving
            && id == &m.id
        {
            let address = address.clone();
            self.tell(MigrationReport::Ready {
                migration_id: m.id.clone(),
                address,
            })
            .await;
            return Next::Wait;
        }
        if let Some(vm) = self.vm.take() {
            self.report(InstanceState::Stopping, None, Some(vm.pid() as u32))
                .await;
            if let Err(e) = vm.shutdown(self.ctx.stop_timeout).await {
                tracing::warn!(instance = %self.id, error = %e, "stop for migration failed");
            }
            self.report(
                InstanceState::Stopped,
                Some("stopped for a cold migration".into()),
                None,
            )
            .await;
        }
        let root = self.ctx.pool.root_disk(&self.id);
        let address = if a.instance.boot_volume_id.is_none() && root.exists() {
            let ip = match self.migration_addr() {
                Ok(ip) => ip,
                Err(e) => return self.fail(m, e).await,
            };
            let listener = match tokio::net::TcpListener::bind((ip, 0)).await {
                Ok(l) => l,
                Err(e) => return self.fail(m, format!("disk server on {ip}: {e}")).await,
            };
            let address = match listener.local_addr() {
                Ok(a) => a.to_string(),
                Err(e) => return self.fail(m, format!("disk server address: {e}")).await,
            };
            let task = tokio::spawn(serve_disk(listener, root, m.secret.clone()));
            self.mig.serving = Some((m.id.clone(), address.clone(), AbortOnDrop(task)));
            address
        } else {
            String::new()
        };
        self.tell(MigrationReport::Ready {
            migration_id: m.id.clone(),
            address,
        })
        .await;
        Next::Wait
    }

    async fn receive_cold(&mut self, a: &Assignment, m: &Migration) -> Next {
        if m.phase != MigrationPhase::Ready || self.reported(m) {
            return Next::Wait;
        }
        let address = m.address.clone().unwrap_or_default();
        if !address.is_empty()
            && let Err(e) = self.fetch_root(a, &address, &m.secret).await
        {
            return self
                .fail(m, format!("copying the root disk from {address}: {e}"))
                .await;
        }
        self.tell(MigrationReport::Completed {
            migration_id: m.id.clone(),
            downtime_ms: None,
            total_ms: None,
            transferred_bytes: None,
        })
        .await;
        Next::Wait
    }

    /// Copy the root disk from the source and point it at this host's copy of its image.
    async fn fetch_root(&self, a: &Assignment, address: &str, secret: &str) -> Result<(), String> {
        crate::imagecache::ensure_local(self.ctx.cp.as_ref(), &self.ctx.pool, &a.image)
            .await
            .map_err(|e| format!("image {}: {e}", a.image.id))?;
        let dest = self.ctx.pool.root_disk(&self.id);
        let part = dest.with_extension("qcow2.part");
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        let bytes = fetch_disk(address, secret, &part).await?;
        let fmt = a.image.format.unwrap_or(kumo_types::DiskFormat::Qcow2);
        if a.image.kind == ImageKind::Disk && fmt != kumo_types::DiskFormat::Iso {
            let base = self.ctx.pool.image_disk(&a.image.id, fmt);
            rebase(&part, &base, fmt.as_str()).await?;
        }
        std::fs::rename(&part, &dest).map_err(|e| e.to_string())?;
        let _ = self
            .ctx
            .cp
            .event(
                &self.id,
                "instance.migration_copied",
                &format!(
                    "root disk copied from {address} ({:.1} MiB)",
                    bytes as f64 / 1048576.0
                ),
            )
            .await;
        Ok(())
    }
}

/// Serve `file` to the first client that presents `secret`: an 8-byte big-endian length, then the
/// bytes.
async fn serve_disk(listener: tokio::net::TcpListener, file: PathBuf, secret: String) {
    loop {
        let Ok((mut conn, peer)) = listener.accept().await else {
            return;
        };
        let mut got = vec![0u8; secret.len() + 1];
        let ok = tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut got))
            .await
            .is_ok_and(|r| r.is_ok())
            && constant_time_eq(&got[..secret.len()], secret.as_bytes())
            && got[secret.len()] == b'\n';
        if !ok {
            tracing::warn!(%peer, "disk server: wrong or missing secret; closed");
            continue;
        }
        match send_file(&mut conn, &file).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(%peer, error = %e, "disk server: sending failed"),
        }
    }
}

async fn send_file(conn: &mut tokio::net::TcpStream, file: &Path) -> std::io::Result<()> {
    let mut f = tokio::fs::File::open(file).await?;
    let len = f.metadata().await?.len();
    conn.write_all(&len.to_be_bytes()).await?;
    let sent = tokio::io::copy(&mut f, conn).await?;
    if sent != len {
        return Err(std::io::Error::other(format!(
            "sent {sent} of {len} bytes (the file changed)"
        )));
    }
    conn.flush().await?;
    conn.shutdown().await
}

/// Fetch a file from a disk server into `dest` (synced); its length.
async fn fetch_disk(address: &str, secret: &str, dest: &Path) -> Result<u64, String> {
    let mut conn = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    conn.write_all(format!("{secret}\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut len = [0u8; 8];
    conn.read_exact(&mut len)
        .await
        .map_err(|e| format!("no answer (wrong secret?): {e}"))?;
    let len = u64::from_be_bytes(len);
    let mut f = tokio::fs::File::create(dest)
        .await
        .map_err(|e| format!("{}: {e}", dest.display()))?;
    let got = tokio::io::copy(&mut (&mut conn).take(len), &mut f)
        .await
        .map_err(|e| e.to_string())?;
    if got != len {
        return Err(format!("received {got} of {len} bytes"));
    }
    f.sync_all().await.map_err(|e| e.to_string())?;
    Ok(len)
}

/// Point a copied qcow2 overlay at this host's copy of its backing image (metadata only).
async fn rebase(file: &Path, base: &Path, fmt: &str) -> Result<(), String> {
    let out = tokio::process::Command::new("qemu-img")
        .args(["rebase", "-u", "-f", "qcow2", "-F", fmt, "-b"])
        .arg(base)
        .arg(file)
        .output()
        .await
        .map_err(|e| format!("qemu-img (package qemu-utils): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "qemu-img rebase: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn disk_server_hands_the_file_only_to_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("root.qcow2");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(serve_disk(listener, src, "s3cret".into()));
        let dest = dir.path().join("copy");
        let e = fetch_disk(&addr, "wrong!", &dest).await.unwrap_err();
        assert!(e.contains("wrong secret"), "{e}");
        let n = fetch_disk(&addr, "s3cret", &dest).await.unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        // One successful copy, then the server is done.
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
