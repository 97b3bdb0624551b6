//! A throwaway single-member etcd for tests and benchmarks.
//!
//! [`EtcdServer::start`] launches Debian's `etcd` (package `etcd-server`) on free 127.0.0.1 ports
//! with a fresh data directory, waits until `/health` reports healthy, and on drop kills that one
//! process by PID, reaps it and deletes the data directory. Nothing listens beyond loopback.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A running etcd; killed when dropped.
pub struct EtcdServer {
    /// `http://127.0.0.1:<port>`, the client URL.
    pub endpoint: String,
    /// The data directory (removed on drop); `etcd.log` inside holds etcd's output.
    pub dir: PathBuf,
    child: Child,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind 127.0.0.1:0: {e}"));
    l.local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"))
        .port()
}

/// True if GET /health on `port` answers `"health":"true"`.
fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /health HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

impl EtcdServer {
    /// Start etcd and wait (up to 30 s) until it is healthy. Panics naming the Debian package if
    /// `etcd` is missing, and with etcd's log if it does not come up.
    pub fn start() -> EtcdServer {
        crate::require("etcd", "etcd-server");
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "kumo-etcd-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log =
            std::fs::File::create(dir.join("etcd.log")).unwrap_or_else(|e| panic!("etcd log: {e}"));
        let log2 = log.try_clone().unwrap_or_else(|e| panic!("etcd log: {e}"));
        let child = Command::new("etcd")
            .arg("--name=kumo-test")
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=kumo-test={peer_url}"))
            .arg("--initial-cluster-state=new")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn etcd: {e}"));
        let mut server = EtcdServer {
            endpoint: client_url,
            dir,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !healthy(client) {
            let exited = server.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(server.dir.join("etcd.log")).unwrap_or_default();
                let tail: String = log
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                panic!("etcd did not become healthy (exit: {exited:?}); log tail:\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// etcd's PID.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(i32::MAX)
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this child's PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A throwaway etcd cluster of several members on 127.0.0.1, each its own process and data
/// directory; members can be killed one by one. Dropped: all killed by PID, directories removed.
pub struct EtcdCluster {
    /// Client URLs, one per member.
    pub endpoints: Vec<String>,
    members: Vec<(String, Child, PathBuf)>,
}

impl EtcdCluster {
    /// Start `n` members and wait until each reports healthy.
    pub fn start(n: usize) -> EtcdCluster {
        crate::require("etcd", "etcd-server");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
            .collect();
        let token = format!("kumo-test-{}-{nanos}", std::process::id());
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let dir =
                std::env::temp_dir().join(format!("kumo-etcd-{}-{nanos}-m{i}", std::process::id()));
            std::fs::create_dir_all(&dir)
                .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
            let log = std::fs::File::create(dir.join("etcd.log"))
                .unwrap_or_else(|e| panic!("etcd log: {e}"));
            let log2 = log.try_clone().unwrap_or_else(|e| panic!("etcd log: {e}"));
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let child = Command::new("etcd")
                .arg(format!("--name=m{i}"))
                .arg(format!("--data-dir={}", dir.join("data").display()))
                .arg(format!("--listen-client-urls={client_url}"))
                .arg(format!("--advertise-client-urls={client_url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster={}", initial.join(",")))
                .arg(format!("--initial-cluster-token={token}"))
                .arg("--initial-cluster-state=new")
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn etcd: {e}"));
            members.push((client_url, child, dir));
        }
        let c = EtcdCluster {
            endpoints: members.iter().map(|(u, _, _)| u.clone()).collect(),
            members,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        for (client, _) in &ports {
            while !healthy(*client) {
                assert!(
                    Instant::now() < deadline,
                    "etcd member on port {client} did not become healthy"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        c
    }

    /// Kill member `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        let _ = self.members[i].1.kill();
        let _ = self.members[i].1.wait();
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for (_, child, dir) in &mut self.members {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&*dir);
        }
    }
}
