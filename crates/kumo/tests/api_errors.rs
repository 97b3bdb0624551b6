//! Bad input gets a precise error (status, code, field) and creates nothing.

mod common;

use common::Cloud;
use serde_json::{Value, json};

fn assert_err(r: (u16, Value), status: u16, code: &str, field: Option<&str>) {
    assert_eq!(r.0, status, "{}", r.1);
    assert_eq!(r.1["code"], code, "{}", r.1);
    assert!(
        r.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        r.1
    );
    if let Some(f) = field {
        assert_eq!(r.1["field"], f, "{}", r.1);
    }
}

fn instance_count(c: &Cloud) -> usize {
    c.http("GET", "/v1/instances", None).1["items"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(usize::MAX)
}

#[test]
fn bad_input_is_precise_and_creates_nothing() {
    let cloud = Cloud::start();
    cloud.import_tiny();
    let run = |body: Value| cloud.http("POST", "/v1/instances", Some(&body.to_string()));

    // Authentication.
    let (s, v) = cloud.http_raw_noauth("/v1/instances");
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["code"], "unauthenticated");

    // Malformed JSON, wrong content type, wrong field types, unknown fields.
    assert_err(
        cloud.http("POST", "/v1/instances", Some("{\"name\": ")),
        400,
        "malformed_request",
        None,
    );
    assert_err(
        cloud.http_raw(
            "POST",
            "/v1/instances",
            Some(b"{}".to_vec()),
            Some("text/plain"),
        ),
        400,
        "malformed_request",
        None,
    );
    assert_err(
        run(json!({"name": "x", "image": "tiny"})),
        422,
        "invalid_value",
        Some("instance_type"),
    );
    assert_err(
        run(json!({"name": "x", "image": "tiny", "instance_type": "nano", "root_disk_gib": "big"})),
        422,
        "invalid_value",
        Some("root_disk_gib"),
    );
    assert_err(
        run(json!({"name": "x", "image": "tiny", "instance_type": "nano", "colour": "red"})),
        422,
        "invalid_value",
        None,
    );

    // Unknown references and invalid names.
    assert_err(
        run(json!({"name": "x", "image": "nope", "instance_type": "nano"})),
        422,
        "invalid_value",
        Some("image"),
    );
    assert_err(
        run(json!({"name": "x", "image": "tiny", "instance_type": "huge"})),
        422,
        "invalid_value",
        Some("instance_type"),
    );
    assert_err(
        run(json!({"name": "x", "image": "tiny", "instance_type": "nano", "key_name": "k"})),
        422,
        "invalid_value",
        Some("key_name"),
    );
    for bad in ["", "Web", "-a", "a_b", "a-"] {
        assert_err(
            run(json!({"name": bad, "image": "tiny", "instance_type": "nano"})),
            422,
            "invalid_value",
            Some("name"),
        );
    }
    assert_err(
        run(
            json!({"name": "x", "image": "tiny", "instance_type": "nano", "user_data": "x".repeat(20_000)}),
        ),
        422,
        "invalid_value",
        Some("user_data"),
    );

    // A request larger than the host: 503 naming what ran out.
    let ct = cloud.http(
        "POST",
        "/v1/instance-types",
        Some(
            &json!({"name": "giant", "vcpus": 2, "memory_mib": 4_000_000, "root_disk_gib": 1})
                .to_string(),
        ),
    );
    assert_eq!(ct.0, 201, "{}", ct.1);
    assert_err(
        run(json!({"name": "x", "image": "tiny", "instance_type": "giant"})),
        503,
        "insufficient_capacity",
        Some("memory"),
    );
    let ct = cloud.http(
        "POST",
        "/v1/instance-types",
        Some(
            &json!({"name": "wide", "vcpus": 256, "memory_mib": 64, "root_disk_gib": 1})
                .to_string(),
        ),
    );
    assert_eq!(ct.0, 201, "{}", ct.1);
    assert_err(
        run(json!({"name": "x", "image": "tiny", "instance_type": "wide"})),
        503,
        "insufficient_capacity",
        Some("vcpus"),
    );

    // Oversized body: 413.
    let big = format!(
        "{{\"name\":\"x\",\"image\":\"tiny\",\"instance_type\":\"nano\",\"user_data\":\"{}\"}}",
        "x".repeat(300 * 1024)
    );
    assert_err(
        cloud.http("POST", "/v1/instances", Some(&big)),
        413,
        "payload_too_large",
        None,
    );
    assert_eq!(
        instance_count(&cloud),
        0,
        "a rejected request created something"
    );

    // Duplicate names: 409, and still only one.
    assert_eq!(
        run(json!({"name": "dup", "image": "tiny", "instance_type": "nano", "start": false})).0,
        202
    );
    assert_err(
        run(json!({"name": "dup", "image": "tiny", "instance_type": "nano"})),
        409,
        "conflict",
        Some("name"),
    );
    assert_eq!(instance_count(&cloud), 1);

    // Not found, conflicts on other resources.
    assert_err(
        cloud.http("GET", "/v1/instances/i-00000000000000000", None),
        404,
        "not_found",
        None,
    );
    assert_err(
        cloud.http("POST", "/v1/instances/dup/reboot", None),
        409,
        "conflict",
        None,
    );
    assert_err(
        cloud.http("DELETE", "/v1/images/tiny", None),
        409,
        "conflict",
        None,
    );
    assert_err(
        cloud.http("DELETE", "/v1/instance-types/nano", None),
        409,
        "conflict",
        None,
    );
    assert_err(
        cloud.http(
            "POST",
            "/v1/key-pairs",
            Some(&json!({"name": "k", "public_key": "ssh-rsa garbage"}).to_string()),
        ),
        422,
        "invalid_value",
        Some("public_key"),
    );
    assert_err(
        cloud.http(
            "POST",
            "/v1/images",
            Some(&json!({"name": "img", "disk_path": "/nonexistent.qcow2"}).to_string()),
        ),
        422,
        "invalid_value",
        Some("disk_path"),
    );
    assert_err(
        cloud.http(
            "POST",
            "/v1/images",
            Some(&json!({"name": "img", "kernel_path": "/x"}).to_string()),
        ),
        422,
        "invalid_value",
        Some("initrd_path"),
    );
    assert_err(cloud.http("GET", "/v1/nope", None), 404, "not_found", None);

    // The CLI maps errors to a non-zero exit and prints the field.
    let out = cloud.kumo(&[
        "instance", "run", "--name", "Bad_Name", "--image", "tiny", "--type", "nano",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("name"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn refuses_plain_http_on_a_public_address() {
    let out = std::process::Command::new(common::KUMO)
        .args([
            "server",
            "--data-dir",
            "/nonexistent-kumo-test",
            "--listen",
            "0.0.0.0:8470",
        ])
        .output()
        .expect("run kumo");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:8470 without TLS"),
        "{err}"
    );
}
