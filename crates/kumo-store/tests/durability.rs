//! kill -9 durability of the SQLite backend.
//!
//! The test re-invokes its own binary as a child (selected by the `KUMO_STORE_DURABILITY_CHILD`
//! environment variable, which holds the database path). The child writes as fast as it can from 16
//! concurrent tasks and prints `ACK <key> <value> <revision>` after each acknowledged put. The parent
//! reads acknowledgements for about a second, SIGKILLs the child, reopens the database and checks
//! that every acknowledged write is there with its value and revision, and that the revision history
//! has no gaps.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kumo_store::{Kv, SqliteKv};

const CHILD_ENV: &str = "KUMO_STORE_DURABILITY_CHILD";
const TEST_NAME: &str = "kill9_keeps_every_acknowledged_write";

#[test]
fn kill9_keeps_every_acknowledged_write() {
    if let Some(db) = std::env::var_os(CHILD_ENV) {
        child(std::path::PathBuf::from(db));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("store.db");
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let mut guard = kumo_testutil::PidGuard::new();
    guard.add(i32::try_from(child.id()).expect("pid"));
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        // Only complete lines count: a line cut by the kill was never acknowledged to anyone.
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            if line.ends_with('\n') && line.starts_with("ACK ") {
                let _ = tx.send(line.trim_end().to_owned());
            }
            line.clear();
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("child acknowledged no write in 30 s");
    std::thread::sleep(Duration::from_secs(1));
    // SIGKILL by PID: no chance to flush or checkpoint anything.
    child.kill().expect("kill child");
    child.wait().expect("reap child");
    reader.join().expect("reader thread");
    let mut acks = vec![first];
    acks.extend(rx.try_iter());
    assert!(
        acks.len() > 10,
        "too few acknowledged writes to mean anything: {}",
        acks.len()
    );

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let kv = SqliteKv::open(&db).expect("reopen after kill -9");
        let mut max_rev = 0;
        for ack in &acks {
            let f: Vec<&str> = ack.split(' ').collect();
            assert_eq!(f.len(), 4, "bad ack line {ack:?}");
            let rev: i64 = f[3].parse().expect("revision");
            let got = kv
                .get(f[1])
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("acknowledged {ack:?} is lost"));
            assert_eq!(got.value, f[2].as_bytes(), "{ack}");
            assert_eq!(got.mod_revision, rev, "{ack}");
            max_rev = max_rev.max(rev);
        }
        let rev = kv.revision().await.unwrap();
        assert!(
            rev >= max_rev,
            "store revision {rev} is behind an acknowledged write {max_rev}"
        );
        // Every put made one new key at one revision: the revisions present are exactly 2..=rev.
        let all = kv.list("/dur/", None, 0).await.unwrap();
        let mut revs: Vec<i64> = all.kvs.iter().map(|k| k.mod_revision).collect();
        revs.sort_unstable();
        let expected: Vec<i64> = (2..=rev).collect();
        assert_eq!(revs, expected, "revision history has gaps or duplicates");
        assert!(all.kvs.len() >= acks.len());
        // The store keeps working after recovery.
        assert_eq!(kv.put("/after", b"x".to_vec()).await.unwrap(), rev + 1);
        eprintln!(
            "{} acknowledged writes, {} committed, all present after kill -9",
            acks.len(),
            all.kvs.len()
        );
    });
}

/// Write forever (until killed), printing each acknowledged write.
fn child(db: std::path::PathBuf) -> ! {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let kv: Arc<dyn Kv> = Arc::new(SqliteKv::open(&db).expect("open store"));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..16 {
            let kv = Arc::clone(&kv);
            tasks.push(tokio::spawn(async move {
                // Bounded in case the parent died without killing us.
                for i in 0u64.. {
                    if started.elapsed() > Duration::from_secs(60) {
                        break;
                    }
                    let key = format!("/dur/{t}/{i}");
                    let value = format!("v{t}-{i}");
                    let rev = kv.put(&key, value.clone().into_bytes()).await.expect("put");
                    println!("ACK {key} {value} {rev}");
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    std::process::exit(3)
}
