//! The control plane on etcd instead of the embedded store: same API, same agent, a real guest.

mod common;

use common::Cloud;
use kumo_testutil::etcd::EtcdServer;

#[test]
fn server_on_etcd_runs_an_instance_and_survives_a_restart() {
    kumo_testutil::enter_private_netns();
    // etcd listens on this namespace's loopback; the server below joins the same namespace.
    let etcd = EtcdServer::start();
    let mut cloud = Cloud::start_with_in_current_netns(&[
        "--store",
        "etcd",
        "--etcd-endpoints",
        &etcd.endpoint,
    ]);
    cloud.import_tiny();
    cloud.ok(&[
        "instance", "run", "--name", "e1", "--image", "tiny", "--type", "nano", "--wait",
    ]);
    let v = cloud.json(&["instance", "show", "e1"]);
    let (id, ip) = (
        v["id"].as_str().expect("id").to_string(),
        v["ipv4"].as_str().expect("ip").to_string(),
    );
    let log = cloud.wait_console("e1", "KUMO-READY");
    assert!(log.contains(&format!("instance-id={id} ip={ip}")), "{log}");
    // No SQLite file: the state lives in etcd.
    assert!(!cloud.data_dir().join("store.db").exists());
    // Restart the server: state comes back from etcd and the VM is adopted, not restarted.
    let pid = v["pid"].as_u64().expect("pid");
    cloud.kill9();
    cloud.spawn_server();
    let v = cloud.wait_state("e1", "running");
    assert_eq!(v["pid"].as_u64(), Some(pid), "{v}");
    cloud.ok(&["instance", "delete", "e1", "--wait"]);
    assert!(cloud.qemu_pids().is_empty());
}
