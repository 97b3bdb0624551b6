//! Host registration is a compare-and-swap: racing first registrations of one name make one host,
//! and an operator's label change survives re-registrations racing it.

#![allow(clippy::unwrap_used)]

mod support;

use kumo_server::app::host;
use kumo_types::{HostInventory, UpdateHostRequest};

fn inv(name: &str) -> HostInventory {
    HostInventory {
        hostname: name.into(),
        cpus: 4,
        memory_mib: 4096,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_registrations_make_one_host_and_keep_labels() {
    let dir = tempfile::tempdir().unwrap();
    let app = support::app(dir.path());
    let regs: Vec<_> = (0..8)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { host::register(&app, inv("h1")).await.unwrap().id })
        })
        .collect();
    let mut ids = Vec::new();
    for r in regs {
        ids.push(r.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one host for one name: {ids:?}");
    assert_eq!(host::list(&app).await.unwrap().items.len(), 1);

    // Labels set while the agent re-registers over and over are never lost.
    let again = {
        let app = app.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                host::register(&app, inv("h1")).await.unwrap();
            }
        })
    };
    for i in 0..20 {
        let req: UpdateHostRequest =
            serde_json::from_value(serde_json::json!({"labels": {"round": i.to_string()}}))
                .unwrap();
        host::update(&app, "h1", req).await.unwrap();
    }
    again.await.unwrap();
    let h = host::get(&app, "h1").await.unwrap();
    assert_eq!(
        h.labels.get("round").map(String::as_str),
        Some("19"),
        "{h:?}"
    );
}
