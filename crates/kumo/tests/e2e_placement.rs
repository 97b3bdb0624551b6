//! Placement on one host, through the real CLI and REST API: placement groups (hard spread refuses
//! a second member naming the group and the host it occupies; soft spread lets it through), host
//! selectors and host labels, the explanation in `instance show` and the event log, and groups with
//! members refusing deletion. Instances are created stopped: nothing here needs a guest to boot.
//! (Several hosts are covered by the app-level test `crates/kumo-server/tests/placement.rs` and the
//! scheduler's unit tests.)

mod common;

use common::Cloud;
use serde_json::{Value, json};

fn run(cloud: &Cloud, name: &str, extra: Value) -> (u16, Value) {
    let mut body = json!({"name": name, "image": "tiny", "instance_type": "nano", "start": false});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    cloud.http("POST", "/v1/instances", Some(&body.to_string()))
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn placement_groups_labels_and_explanations() {
    let cloud = Cloud::start();
    cloud.import_tiny();
    let host = cloud.json(&["host", "list"])["items"][0].clone();
    let host_name = host["name"].as_str().expect("host name").to_string();
    let host_id = host["id"].as_str().expect("host id").to_string();

    // A hard spread group: the first member is placed and says why.
    let g = cloud.json(&[
        "placement-group",
        "create",
        "--name",
        "web",
        "--strategy",
        "spread",
    ]);
    assert_eq!(g["strategy"], "spread", "{g}");
    assert_eq!(g["enforcement"], "hard", "{g}");
    cloud.ok(&[
        "instance",
        "run",
        "--name",
        "web-1",
        "--image",
        "tiny",
        "--type",
        "nano",
        "--placement-group",
        "web",
        "--stopped",
    ]);
    let v = cloud.json(&["instance", "show", "web-1"]);
    assert_eq!(v["placement_group"], "web", "{v}");
    assert_eq!(v["placement"]["host"], host_id.as_str(), "{v}");
    assert_eq!(v["placement"]["considered"], 1, "{v}");
    let reason = v["placement"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("spread policy: most free memory (")
            && reason.contains(
                "the only eligible host; hard spread group `web`: no other member on this host"
            ),
        "{reason}"
    );
    let shown = cloud.ok(&["instance", "show", "web-1"]);
    assert!(
        shown.contains(&format!("on {host_name}: spread policy")),
        "{shown}"
    );
    assert!(shown.contains("placement group"), "{shown}");
    let evs = cloud.json(&["events", "--resource", v["id"].as_str().unwrap_or_default()]);
    assert!(
        evs["items"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["kind"] == "instance.placed"
                && e["message"].as_str().is_some_and(
                    |m| m.starts_with(&format!("placed on {host_name}: spread policy"))
                ))),
        "{evs}"
    );
    let g = cloud.json(&["placement-group", "show", "web"]);
    assert_eq!(g["members"], json!([v["id"]]), "{g}");

    // The second member has nowhere to go: 503 naming the group and the host it occupies.
    let (s, e) = run(&cloud, "web-2", json!({"placement_group": "web"}));
    assert_eq!(s, 503, "{e}");
    assert_eq!(e["code"], "insufficient_capacity", "{e}");
    assert_eq!(e["field"], "placement_group", "{e}");
    assert_eq!(
        e["message"],
        format!(
            "insufficient capacity: placement_group: 1 host considered: 1 already holds a member \
             of hard spread group `web` ({host_name})"
        ),
        "{e}"
    );
    let out = cloud.kumo(&[
        "instance",
        "run",
        "--name",
        "web-2",
        "--image",
        "tiny",
        "--type",
        "nano",
        "--placement-group",
        "web",
        "--stopped",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("hard spread group `web`"),
        "{}",
        stderr(&out)
    );

    // Soft spread: a preference, so the second member shares the host and says so.
    cloud.ok(&[
        "placement-group",
        "create",
        "--name",
        "cache",
        "--strategy",
        "spread",
        "--enforcement",
        "soft",
    ]);
    for n in ["cache-1", "cache-2"] {
        let (s, v) = run(&cloud, n, json!({"placement_group": "cache"}));
        assert_eq!(s, 202, "{v}");
    }
    let v = cloud.json(&["instance", "show", "cache-2"]);
    assert!(
        v["placement"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("soft spread group `cache`: 1 other member on this host")),
        "{v}"
    );

    // A host selector nothing matches is refused naming the label; labelling the host fixes it.
    let (s, e) = run(&cloud, "racked", json!({"host_selector": {"rack": "a"}}));
    assert_eq!(s, 503, "{e}");
    assert_eq!(e["field"], "host_selector", "{e}");
    assert_eq!(
        e["message"],
        format!(
            "insufficient capacity: host_selector: 1 host considered: 1 lacks label rack=a \
             ({host_name}: no rack)"
        ),
        "{e}"
    );
    let h = cloud.json(&["host", "label", &host_name, "rack=a", "zone=z1"]);
    assert_eq!(h["labels"], json!({"rack": "a", "zone": "z1"}), "{h}");
    let h = cloud.json(&["host", "label", &host_name, "zone-"]);
    assert_eq!(h["labels"], json!({"rack": "a"}), "{h}");
    assert!(cloud.ok(&["host", "show", &host_name]).contains("rack=a"));
    cloud.ok(&[
        "instance",
        "run",
        "--name",
        "racked",
        "--image",
        "tiny",
        "--type",
        "nano",
        "--host-selector",
        "rack=a",
        "--stopped",
    ]);
    let v = cloud.json(&["instance", "show", "racked"]);
    assert_eq!(v["host_selector"], json!({"rack": "a"}), "{v}");
    assert!(
        v["placement"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("has rack=a")),
        "{v}"
    );
    // Label validation is precise.
    let (s, e) = cloud.http(
        "PATCH",
        &format!("/v1/hosts/{host_id}"),
        Some(&json!({"labels": {"rack": "a b"}}).to_string()),
    );
    assert_eq!((s, e["field"].clone()), (422, json!("labels.rack")), "{e}");
    let (s, e) = run(&cloud, "x", json!({"placement_group": "nope"}));
    assert_eq!(
        (s, e["field"].clone()),
        (422, json!("placement_group")),
        "{e}"
    );

    // A group with members cannot be deleted; an empty one can.
    let out = cloud.kumo(&["placement-group", "delete", "web"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("`web-1`"), "{}", stderr(&out));
    let (s, e) = cloud.http("DELETE", "/v1/placement-groups/web", None);
    assert_eq!((s, e["code"].clone()), (409, json!("conflict")), "{e}");
    cloud.ok(&["instance", "delete", "web-1", "--wait"]);
    let g = cloud.json(&["placement-group", "show", "web"]);
    assert_eq!(g["members"], json!([]), "{g}");
    cloud.ok(&["placement-group", "delete", "web"]);
    let list = cloud.json(&["placement-group", "list"]);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
}
