//! The conformance suite: one async function per property of the [`Kv`] contract (see the crate
//! docs). Each takes a fresh store and panics on a violation. Backends run all of them with
//! [`conformance_suite!`](crate::conformance_suite), one `#[tokio::test]` per function.
//!
//! Only relative revision properties are checked (absolute numbers differ between backends).
//! Waiting-based checks (leases, watches) use generous timeouts and never gate on speed.

// A test suite: a panic (from unwrap or assert) is how it reports a violation.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::{
    Compare, CompareOp, CompareTarget, EventKind, Kv, Op, OpResult, StoreError, Txn, WatchEvent,
    WatchStream,
};

/// Longest wait for anything asynchronous (watch events, lease expiry).
const WAIT: Duration = Duration::from_secs(10);

/// Expands to one `#[tokio::test]` per conformance function. `$setup` is an async fn returning
/// `(Arc<dyn Kv>, guard)`; the guard (e.g. a temp dir or an etcd process) lives until the test ends.
#[macro_export]
macro_rules! conformance_suite {
    ($setup:path) => {
        $crate::conformance_suite!(@tests $setup;
            get_put_delete, revision_advances_once_per_write, create_mod_revision_and_version,
            cas_absent_key, cas_mod_revision, cas_value, delete_prefix, list_order_and_pagination,
            watch_replays_then_streams, watch_from_now, watch_slow_consumer_loses_nothing, watch_compacted_errors, lease_expiry_deletes_keys,
            lease_keepalive_keeps_keys, lease_revoke_deletes_keys, concurrent_cas_increments);
    };
    (@tests $setup:path; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let (kv, _guard) = $setup().await;
                $crate::conformance::$name(kv).await;
            }
        )*
    };
}

fn put_txn(key: &str, value: &str) -> Txn {
    Txn {
        success: vec![Op::put(key, value)],
        ..Default::default()
    }
}

async fn next_event(w: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(WAIT, w.next()).await {
        Ok(Some(Ok(ev))) => ev,
        Ok(Some(Err(e))) => panic!("watch yielded an error: {e}"),
        Ok(None) => panic!("watch stream ended"),
        Err(_) => panic!("no watch event within {WAIT:?}"),
    }
}

/// Assert that no event arrives for a short while.
async fn no_event(w: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(300), w.next()).await {
        panic!("unexpected watch item: {item:?}");
    }
}

pub async fn get_put_delete(kv: Arc<dyn Kv>) {
    assert_eq!(kv.get("/gpd/a").await.unwrap(), None);
    kv.put("/gpd/a", b"one".to_vec()).await.unwrap();
    let got = kv.get("/gpd/a").await.unwrap().expect("key after put");
    assert_eq!(
        (got.key.as_str(), got.value.as_slice(), got.lease),
        ("/gpd/a", &b"one"[..], 0)
    );
    kv.put("/gpd/a", b"two".to_vec()).await.unwrap();
    assert_eq!(kv.get("/gpd/a").await.unwrap().unwrap().value, b"two");
    assert!(
        kv.delete("/gpd/a").await.unwrap(),
        "delete of an existing key reports it"
    );
    assert_eq!(kv.get("/gpd/a").await.unwrap(), None);
    assert!(
        !kv.delete("/gpd/a").await.unwrap(),
        "delete of a missing key reports false"
    );
    // Empty values are values.
    kv.put("/gpd/empty", Vec::new()).await.unwrap();
    assert_eq!(kv.get("/gpd/empty").await.unwrap().unwrap().value, b"");
}

pub async fn revision_advances_once_per_write(kv: Arc<dyn Kv>) {
    let r0 = kv.revision().await.unwrap();
    let r1 = kv.put("/rev/a", b"1".to_vec()).await.unwrap();
    assert_eq!(r1, r0 + 1, "one put = one revision");
    assert_eq!(kv.revision().await.unwrap(), r1);

    let two = Txn {
        success: vec![Op::put("/rev/b", "1"), Op::put("/rev/c", "1")],
        ..Default::default()
    };
    let r = kv.txn(two).await.unwrap();
    assert_eq!(r.revision, r1 + 1, "a txn with two puts is one revision");
    let b = kv.get("/rev/b").await.unwrap().unwrap();
    let c = kv.get("/rev/c").await.unwrap().unwrap();
    assert_eq!((b.mod_revision, c.mod_revision), (r.revision, r.revision));

    let failed = Txn {
        compare: vec![Compare::absent("/rev/a")],
        success: vec![Op::put("/rev/a", "x")],
        failure: vec![],
    };
    let f = kv.txn(failed).await.unwrap();
    assert!(!f.succeeded);
    assert_eq!(f.revision, r.revision, "a failed txn does not write");
    let read = kv
        .txn(Txn {
            success: vec![Op::get("/rev/a")],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(read.revision, r.revision, "a read-only txn does not write");
    assert!(!kv.delete("/rev/missing").await.unwrap());
    assert_eq!(
        kv.revision().await.unwrap(),
        r.revision,
        "deleting nothing does not write"
    );
    assert!(kv.delete("/rev/a").await.unwrap());
    assert_eq!(
        kv.revision().await.unwrap(),
        r.revision + 1,
        "a delete is one revision"
    );
}

pub async fn create_mod_revision_and_version(kv: Arc<dyn Kv>) {
    let r1 = kv.put("/cmv/k", b"a".to_vec()).await.unwrap();
    let k = kv.get("/cmv/k").await.unwrap().unwrap();
    assert_eq!((k.create_revision, k.mod_revision, k.version), (r1, r1, 1));
    kv.put("/cmv/other", b"x".to_vec()).await.unwrap();
    let r3 = kv.put("/cmv/k", b"b".to_vec()).await.unwrap();
    let k = kv.get("/cmv/k").await.unwrap().unwrap();
    assert_eq!((k.create_revision, k.mod_revision, k.version), (r1, r3, 2));
    // A put returns the previous value.
    let r = kv.txn(put_txn("/cmv/k", "c")).await.unwrap();
    match &r.results[..] {
        [OpResult::Put { prev: Some(p) }] => {
            assert_eq!((p.value.as_slice(), p.version), (&b"b"[..], 2))
        }
        other => panic!("unexpected put result {other:?}"),
    }
    // Delete then re-create starts a new life: new create revision, version 1.
    kv.delete("/cmv/k").await.unwrap();
    let r6 = kv.put("/cmv/k", b"d".to_vec()).await.unwrap();
    let k = kv.get("/cmv/k").await.unwrap().unwrap();
    assert_eq!((k.create_revision, k.mod_revision, k.version), (r6, r6, 1));
}

pub async fn cas_absent_key(kv: Arc<dyn Kv>) {
    let create = || Txn {
        compare: vec![Compare::absent("/cas/a")],
        success: vec![Op::put("/cas/a", "first")],
        failure: vec![Op::get("/cas/a")],
    };
    let r = kv.txn(create()).await.unwrap();
    assert!(r.succeeded, "create-if-absent on a missing key succeeds");
    assert!(matches!(&r.results[..], [OpResult::Put { prev: None }]));
    let r2 = kv.txn(create()).await.unwrap();
    assert!(!r2.succeeded, "create-if-absent on an existing key fails");
    match &r2.results[..] {
        [OpResult::Get { kv: Some(k) }] => assert_eq!(k.value, b"first"),
        other => panic!("failure branch should return the current value, got {other:?}"),
    }
    assert_eq!(kv.get("/cas/a").await.unwrap().unwrap().value, b"first");
    // Version compare on a missing key sees 0.
    let v0 = Compare {
        key: "/cas/none".into(),
        op: CompareOp::Equal,
        target: CompareTarget::Version(0),
    };
    let r = kv
        .txn(Txn {
            compare: vec![v0],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(r.succeeded);
}

pub async fn cas_mod_revision(kv: Arc<dyn Kv>) {
    let rev = kv.put("/cas/m", b"1".to_vec()).await.unwrap();
    let stale = Txn {
        compare: vec![Compare::mod_revision("/cas/m", rev - 1)],
        success: vec![Op::put("/cas/m", "stale")],
        failure: vec![],
    };
    assert!(!kv.txn(stale).await.unwrap().succeeded);
    let fresh = Txn {
        compare: vec![Compare::mod_revision("/cas/m", rev)],
        success: vec![Op::put("/cas/m", "2")],
        failure: vec![],
    };
    let r = kv.txn(fresh).await.unwrap();
    assert!(r.succeeded);
    assert_eq!(r.revision, rev + 1);
    assert_eq!(kv.get("/cas/m").await.unwrap().unwrap().value, b"2");
    let newer = Compare {
        key: "/cas/m".into(),
        op: CompareOp::Greater,
        target: CompareTarget::ModRevision(rev),
    };
    let older = Compare {
        key: "/cas/m".into(),
        op: CompareOp::Less,
        target: CompareTarget::ModRevision(rev),
    };
    assert!(
        kv.txn(Txn {
            compare: vec![newer.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .succeeded
    );
    assert!(
        !kv.txn(Txn {
            compare: vec![older],
            ..Default::default()
        })
        .await
        .unwrap()
        .succeeded
    );
    // All compares must hold.
    let mixed = Txn {
        compare: vec![newer, Compare::absent("/cas/m")],
        ..Default::default()
    };
    assert!(!kv.txn(mixed).await.unwrap().succeeded);
}

pub async fn cas_value(kv: Arc<dyn Kv>) {
    kv.put("/cas/v", b"blue".to_vec()).await.unwrap();
    let cmp = |op, v: &str| Compare {
        key: "/cas/v".into(),
        op,
        target: CompareTarget::Value(v.into()),
    };
    let swap = |c: Compare, to: &str| Txn {
        compare: vec![c],
        success: vec![Op::put("/cas/v", to)],
        failure: vec![Op::get("/cas/v")],
    };
    assert!(
        !kv.txn(swap(cmp(CompareOp::Equal, "red"), "green"))
            .await
            .unwrap()
            .succeeded
    );
    assert!(
        kv.txn(swap(cmp(CompareOp::Equal, "blue"), "green"))
            .await
            .unwrap()
            .succeeded
    );
    assert!(
        kv.txn(swap(cmp(CompareOp::NotEqual, "blue"), "yellow"))
            .await
            .unwrap()
            .succeeded
    );
    assert!(
        kv.txn(swap(cmp(CompareOp::Greater, "a"), "zz"))
            .await
            .unwrap()
            .succeeded
    );
    assert!(
        !kv.txn(swap(cmp(CompareOp::Less, "zz"), "q"))
            .await
            .unwrap()
            .succeeded
    );
    assert_eq!(kv.get("/cas/v").await.unwrap().unwrap().value, b"zz");
    // A value compare on a missing key never holds.
    for op in [CompareOp::Equal, CompareOp::NotEqual] {
        let c = Compare {
            key: "/cas/missing".into(),
            op,
            target: CompareTarget::Value(Vec::new()),
        };
        assert!(
            !kv.txn(Txn {
                compare: vec![c],
                ..Default::default()
            })
            .await
            .unwrap()
            .succeeded,
            "{op:?}"
        );
    }
}

pub async fn delete_prefix(kv: Arc<dyn Kv>) {
    for k in ["/dp/a/1", "/dp/a/2", "/dp/a/3/x", "/dp/ab", "/dp/b/1"] {
        kv.put(k, b"v".to_vec()).await.unwrap();
    }
    let before = kv.revision().await.unwrap();
    let t = Txn {
        success: vec![Op::DeletePrefix {
            prefix: "/dp/a/".into(),
        }],
        ..Default::default()
    };
    let r = kv.txn(t).await.unwrap();
    assert!(
        matches!(&r.results[..], [OpResult::Delete { deleted: 3 }]),
        "{:?}",
        r.results
    );
    assert_eq!(r.revision, before + 1, "a prefix delete is one revision");
    let left: Vec<String> = kv
        .list("/dp/", None, 0)
        .await
        .unwrap()
        .kvs
        .into_iter()
        .map(|k| k.key)
        .collect();
    assert_eq!(left, ["/dp/ab", "/dp/b/1"]);
    let none = Txn {
        success: vec![Op::DeletePrefix {
            prefix: "/dp/zzz/".into(),
        }],
        ..Default::default()
    };
    let r = kv.txn(none).await.unwrap();
    assert!(matches!(&r.results[..], [OpResult::Delete { deleted: 0 }]));
    assert_eq!(r.revision, before + 1);
}

pub async fn list_order_and_pagination(kv: Arc<dyn Kv>) {
    // Inserted out of order; one key outside the prefix on each side.
    for k in ["/ls/c", "/ls/a", "/ls/e", "/ls/b", "/ls/d", "/lr", "/lt"] {
        kv.put(k, k.as_bytes().to_vec()).await.unwrap();
    }
    let rev = kv.revision().await.unwrap();
    let all = kv.list("/ls/", None, 0).await.unwrap();
    let keys: Vec<&str> = all.kvs.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys, ["/ls/a", "/ls/b", "/ls/c", "/ls/d", "/ls/e"]);
    assert!(!all.more);
    assert_eq!(all.revision, rev);
    assert_eq!(all.kvs[0].value, b"/ls/a");

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = kv.list("/ls/", after.as_deref(), 2).await.unwrap();
        pages += 1;
        assert!(page.kvs.len() <= 2);
        seen.extend(page.kvs.iter().map(|k| k.key.clone()));
        after = page.kvs.last().map(|k| k.key.clone());
        if !page.more {
            break;
        }
        assert!(pages < 10, "pagination does not terminate");
    }
    assert_eq!(seen, keys);
    assert_eq!(pages, 3);
    let page = kv.list("/ls/", Some("/ls/b"), 0).await.unwrap();
    assert_eq!(
        page.kvs.first().map(|k| k.key.as_str()),
        Some("/ls/c"),
        "start_after is exclusive"
    );
    let exact = kv.list("/ls/", Some("/ls/c"), 2).await.unwrap();
    assert_eq!(exact.kvs.len(), 2);
    assert!(!exact.more, "no key follows /ls/e");
    assert!(kv.list("/none/", None, 0).await.unwrap().kvs.is_empty());
    // The empty prefix lists everything.
    assert_eq!(kv.list("", None, 0).await.unwrap().kvs.len(), 7);
}

pub async fn watch_replays_then_streams(kv: Arc<dyn Kv>) {
    let r1 = kv.put("/wr/a/1", b"x".to_vec()).await.unwrap();
    kv.put("/wr/b/1", b"other".to_vec()).await.unwrap();
    let r3 = kv.put("/wr/a/1", b"y".to_vec()).await.unwrap();
    let mut w = kv.watch("/wr/a/", r1).await.unwrap();
    let e1 = next_event(&mut w).await;
    assert_eq!(
        (e1.kind, e1.kv.key.as_str(), e1.kv.mod_revision),
        (EventKind::Put, "/wr/a/1", r1)
    );
    assert_eq!(e1.kv.value, b"x");
    let e2 = next_event(&mut w).await;
    assert_eq!(
        (e2.kv.mod_revision, e2.kv.value.as_slice(), e2.kv.version),
        (r3, &b"y"[..], 2)
    );
    assert_eq!(
        e2.prev.as_ref().map(|p| p.value.as_slice()),
        Some(&b"x"[..]),
        "puts carry the previous value"
    );

    // Live events: only the prefix, in order, deletes included.
    kv.put("/wr/b/2", b"ignored".to_vec()).await.unwrap();
    let r5 = kv.put("/wr/a/2", b"z".to_vec()).await.unwrap();
    kv.delete("/wr/a/1").await.unwrap();
    let e3 = next_event(&mut w).await;
    assert_eq!(
        (e3.kind, e3.kv.key.as_str(), e3.kv.mod_revision),
        (EventKind::Put, "/wr/a/2", r5)
    );
    let e4 = next_event(&mut w).await;
    assert_eq!(
        (e4.kind, e4.kv.key.as_str(), e4.kv.mod_revision),
        (EventKind::Delete, "/wr/a/1", r5 + 1)
    );
    assert!(e4.kv.value.is_empty());
    no_event(&mut w).await;

    // Many writes in a burst all arrive, in revision order.
    let mut last = r5 + 1;
    for i in 0..200 {
        kv.put(&format!("/wr/a/burst{}", i % 7), i.to_string().into_bytes())
            .await
            .unwrap();
    }
    for _ in 0..200 {
        let e = next_event(&mut w).await;
        assert_eq!(
            e.kv.mod_revision,
            last + 1,
            "events arrive once each, in order"
        );
        last = e.kv.mod_revision;
    }
}

pub async fn watch_slow_consumer_loses_nothing(kv: Arc<dyn Kv>) {
    // More writes than any internal buffer holds, while the watcher reads nothing.
    const N: i64 = 1500;
    let start = kv.revision().await.unwrap();
    let mut w = kv.watch("/ws/", start + 1).await.unwrap();
    for i in 0..N {
        kv.put(&format!("/ws/{}", i % 10), i.to_string().into_bytes())
            .await
            .unwrap();
    }
    for i in 0..N {
        let e = next_event(&mut w).await;
        assert_eq!(
            e.kv.mod_revision,
            start + 1 + i,
            "event {i} missing, repeated or out of order"
        );
        assert_eq!(e.kv.value, i.to_string().into_bytes());
    }
    no_event(&mut w).await;
}

pub async fn watch_from_now(kv: Arc<dyn Kv>) {
    kv.put("/wn/old", b"1".to_vec()).await.unwrap();
    let mut w = kv.watch("/wn/", 0).await.unwrap();
    let r = kv.put("/wn/new", b"2".to_vec()).await.unwrap();
    let e = next_event(&mut w).await;
    assert_eq!(
        (e.kv.key.as_str(), e.kv.mod_revision),
        ("/wn/new", r),
        "from 0 = only new events"
    );
    // Several concurrent watchers each see the event.
    let mut w2 = kv.watch("/wn/", 0).await.unwrap();
    let r2 = kv.put("/wn/x", b"3".to_vec()).await.unwrap();
    assert_eq!(next_event(&mut w).await.kv.mod_revision, r2);
    assert_eq!(next_event(&mut w2).await.kv.mod_revision, r2);
}

pub async fn watch_compacted_errors(kv: Arc<dyn Kv>) {
    let r1 = kv.put("/wc/k", b"1".to_vec()).await.unwrap();
    kv.put("/wc/k", b"2".to_vec()).await.unwrap();
    let r3 = kv.put("/wc/k", b"3".to_vec()).await.unwrap();
    kv.compact(r3).await.unwrap();
    let mut w = kv.watch("/wc/", r1).await.unwrap();
    match tokio::time::timeout(WAIT, w.next()).await {
        Ok(Some(Err(StoreError::Compacted { oldest, .. }))) => {
            assert!(oldest > r1, "oldest {oldest}")
        }
        other => panic!("watch from a compacted revision should yield Compacted, got {other:?}"),
    }
    // From the compaction point itself history is still there.
    let mut ok = kv.watch("/wc/", r3).await.unwrap();
    let e = next_event(&mut ok).await;
    assert_eq!((e.kv.mod_revision, e.kv.value.as_slice()), (r3, &b"3"[..]));
    assert_eq!(
        kv.get("/wc/k").await.unwrap().unwrap().value,
        b"3",
        "compaction keeps current values"
    );
}

pub async fn lease_expiry_deletes_keys(kv: Arc<dyn Kv>) {
    let lease = kv.lease_grant(2).await.unwrap();
    let mut w = kv.watch("/le/", 0).await.unwrap();
    let put = Txn {
        success: vec![
            Op::Put {
                key: "/le/a".into(),
                value: b"1".to_vec(),
                lease,
            },
            Op::Put {
                key: "/le/b".into(),
                value: b"1".to_vec(),
                lease,
            },
        ],
        ..Default::default()
    };
    kv.txn(put).await.unwrap();
    kv.put("/le/keep", b"no lease".to_vec()).await.unwrap();
    assert_eq!(kv.get("/le/a").await.unwrap().unwrap().lease, lease);
    for _ in 0..3 {
        assert_eq!(next_event(&mut w).await.kind, EventKind::Put);
    }
    let mut deleted = Vec::new();
    while deleted.len() < 2 {
        let e = next_event(&mut w).await;
        assert_eq!(
            e.kind,
            EventKind::Delete,
            "expiry emits delete events: {e:?}"
        );
        deleted.push(e.kv.key);
    }
    deleted.sort();
    assert_eq!(deleted, ["/le/a", "/le/b"]);
    assert_eq!(kv.get("/le/a").await.unwrap(), None);
    assert!(
        kv.get("/le/keep").await.unwrap().is_some(),
        "keys without the lease stay"
    );
    assert!(
        matches!(kv.lease_keepalive(lease).await, Err(StoreError::LeaseNotFound(id)) if id == lease)
    );
}

pub async fn lease_keepalive_keeps_keys(kv: Arc<dyn Kv>) {
    let lease = kv.lease_grant(2).await.unwrap();
    let put = Txn {
        success: vec![Op::Put {
            key: "/lk/a".into(),
            value: b"1".to_vec(),
            lease,
        }],
        ..Default::default()
    };
    kv.txn(put).await.unwrap();
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < until {
        let ttl = kv.lease_keepalive(lease).await.unwrap();
        assert!(ttl >= 2, "keepalive returns the TTL, got {ttl}");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(
        kv.get("/lk/a").await.unwrap().is_some(),
        "a kept-alive lease keeps its keys"
    );
    kv.lease_revoke(lease).await.unwrap();
}

pub async fn lease_revoke_deletes_keys(kv: Arc<dyn Kv>) {
    let lease = kv.lease_grant(60).await.unwrap();
    let put = |k: &str| Txn {
        success: vec![Op::Put {
            key: k.into(),
            value: b"1".to_vec(),
            lease,
        }],
        ..Default::default()
    };
    kv.txn(put("/lr/a")).await.unwrap();
    kv.txn(put("/lr/b")).await.unwrap();
    let before = kv.revision().await.unwrap();
    let mut w = kv.watch("/lr/", before + 1).await.unwrap();
    kv.lease_revoke(lease).await.unwrap();
    assert_eq!(kv.get("/lr/a").await.unwrap(), None);
    assert_eq!(kv.get("/lr/b").await.unwrap(), None);
    for _ in 0..2 {
        let e = next_event(&mut w).await;
        assert_eq!(e.kind, EventKind::Delete);
        assert_eq!(e.kv.mod_revision, before + 1, "one revoke is one revision");
    }
    assert!(matches!(
        kv.lease_revoke(lease).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    assert!(
        matches!(
            kv.txn(put("/lr/c")).await,
            Err(StoreError::LeaseNotFound(_))
        ),
        "put with a dead lease"
    );
    assert_eq!(kv.get("/lr/c").await.unwrap(), None);
    assert_eq!(kv.revision().await.unwrap(), before + 1);
}

pub async fn concurrent_cas_increments(kv: Arc<dyn Kv>) {
    const TASKS: usize = 64;
    const EACH: usize = 5;
    let key = "/cc/counter";
    kv.put(key, b"0".to_vec()).await.unwrap();
    let start = kv.revision().await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let kv = Arc::clone(&kv);
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while done < EACH {
                let cur = kv.get(key).await.unwrap().unwrap();
                let n: u64 = String::from_utf8_lossy(&cur.value).parse().unwrap();
                let t = Txn {
                    compare: vec![Compare::mod_revision(key, cur.mod_revision)],
                    success: vec![Op::put(key, (n + 1).to_string())],
                    failure: vec![],
                };
                if kv.txn(t).await.unwrap().succeeded {
                    done += 1;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = (TASKS * EACH) as i64;
    let end = kv.get(key).await.unwrap().unwrap();
    assert_eq!(String::from_utf8_lossy(&end.value), total.to_string());
    assert_eq!(end.version, total + 1);
    assert_eq!(
        kv.revision().await.unwrap(),
        start + total,
        "only successful CAS writes advance the revision"
    );
}
