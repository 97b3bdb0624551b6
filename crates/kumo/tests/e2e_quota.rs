//! Projects and quotas against a real `kumo server`: another project's resources are invisible
//! (404 by ID and by name, absent from lists), a cloud admin lists every project, racing creates
//! over HTTP never overshoot a quota, `quota_exceeded` says which quota, and usage returns to zero
//! once deletes are done — also for instances, whose final delete comes from the agent.

mod common;

use std::time::{Duration, Instant};

use common::{Cloud, KUMO};
use serde_json::{Value, json};

/// Raw HTTP with any token: (status, JSON body or Null).
fn call(cloud: &Cloud, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    cloud.http_as(token, None, method, path, body.as_ref())
}

fn ok(r: (u16, Value)) -> Value {
    assert!((200..300).contains(&r.0), "{} {}", r.0, r.1);
    r.1
}

fn token_for(cloud: &Cloud, user: &str, project: &str) -> String {
    let v = cloud.json(&["--project", project, "token", "create", "--user", user]);
    let t = v["token"].as_str().unwrap_or_default().to_string();
    assert_eq!(t.len(), 64, "token for {user}: {v}");
    t
}

fn ids(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn usage(cloud: &Cloud, token: &str, what: &str) -> u64 {
    let q = ok(call(cloud, token, "GET", "/v1/quotas", None));
    q["usage"][what].as_u64().unwrap_or(u64::MAX)
}

#[test]
fn projects_see_only_their_own_and_quotas_hold_under_racing_creates() {
    let cloud = Cloud::start();
    cloud.import_tiny();
    let admin = cloud.token.clone();
    cloud.ok(&["project", "create", "team"]);
    cloud.ok(&["project", "create", "other"]);
    cloud.ok(&["user", "create", "mia", "--role", "team=member"]);
    cloud.ok(&["user", "create", "olga", "--role", "other=member"]);
    let mia = token_for(&cloud, "mia", "team");
    let olga = token_for(&cloud, "olga", "other");

    // Another project's group: 404 by ID and by name, for reads, changes and deletes.
    let web = ok(call(
        &cloud,
        &mia,
        "POST",
        "/v1/security-groups",
        Some(json!({"name": "web"})),
    ));
    let id = web["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(web["project"], "team");
    for (method, path) in [
        ("GET", format!("/v1/security-groups/{id}")),
        ("GET", "/v1/security-groups/web".to_string()),
        ("DELETE", format!("/v1/security-groups/{id}")),
    ] {
        let (s, e) = call(&cloud, &olga, method, &path, None);
        assert_eq!(
            (s, e["code"].as_str()),
            (404, Some("not_found")),
            "{method} {path}: {e}"
        );
    }
    let (s, e) = call(
        &cloud,
        &olga,
        "POST",
        &format!("/v1/security-groups/{id}/rules"),
        Some(json!({"direction": "ingress", "protocol": "tcp", "port_min": 22})),
    );
    assert_eq!(s, 404, "{e}");
    let listed = ok(call(&cloud, &olga, "GET", "/v1/security-groups", None));
    assert!(!ids(&listed).contains(&id), "{listed}");
    // Names are per project.
    ok(call(
        &cloud,
        &olga,
        "POST",
        "/v1/security-groups",
        Some(json!({"name": "web"})),
    ));
    // Every project: cloud admins only.
    let (s, e) = call(
        &cloud,
        &mia,
        "GET",
        "/v1/security-groups?all_projects=true",
        None,
    );
    assert_eq!(s, 403, "{e}");
    let all = ok(call(
        &cloud,
        &admin,
        "GET",
        "/v1/security-groups?all_projects=true",
        None,
    ));
    assert!(ids(&all).contains(&id), "{all}");
    let mine = ok(call(&cloud, &admin, "GET", "/v1/security-groups", None));
    assert!(
        !ids(&mine).contains(&id),
        "the admin's own list is its project's: {mine}"
    );
    // The public tiny image is everyone's; changing it is not.
    let images = ok(call(&cloud, &olga, "GET", "/v1/images", None));
    assert!(images.to_string().contains("\"tiny\""), "{images}");
    let (s, e) = call(
        &cloud,
        &olga,
        "PATCH",
        "/v1/images/tiny",
        Some(json!({"visibility": "private"})),
    );
    assert_eq!((s, e["code"].as_str()), (403, Some("forbidden")), "{e}");

    // Thirty racing creates against three free security groups.
    let used = usage(&cloud, &mia, "security_groups");
    let limit = used + 3;
    cloud.ok(&[
        "quota",
        "set",
        "team",
        "--security-groups",
        &limit.to_string(),
    ]);
    let results: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..30)
            .map(|i| {
                let (cloud, mia) = (&cloud, &mia);
                s.spawn(move || {
                    call(
                        cloud,
                        mia,
                        "POST",
                        "/v1/security-groups",
                        Some(json!({"name": format!("g{i}")})),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let made = results.iter().filter(|r| r.0 == 201).count();
    assert_eq!(made, 3, "{results:?}");
    for (s, e) in results.iter().filter(|r| r.0 != 201) {
        assert_eq!(
            (*s, e["code"].as_str()),
            (403, Some("quota_exceeded")),
            "{e}"
        );
        let m = e["message"].as_str().unwrap_or_default();
        assert!(
            m.contains("security_groups") && m.contains(&format!("may hold {limit}")),
            "{m}"
        );
    }
    assert_eq!(usage(&cloud, &mia, "security_groups"), limit);
    // The CLI shows it too.
    let (okay, shown, err) = kumo_as(&cloud, &mia, &["quota", "show"]);
    assert!(okay, "{err}");
    assert_eq!(shown["limits"]["security_groups"], limit, "{shown}");
    // Members do not change quotas.
    let (s, _) = call(
        &cloud,
        &mia,
        "PUT",
        "/v1/projects/team/quotas",
        Some(json!({"security_groups": -1})),
    );
    assert_eq!(s, 403);

    // Instances: two of them, stopped; the third is refused; deletes give them back.
    cloud.ok(&["quota", "set", "team", "--instances", "2"]);
    ok(call(
        &cloud,
        &mia,
        "POST",
        "/v1/networks",
        Some(json!({"name": "lan"})),
    ));
    ok(call(
        &cloud,
        &mia,
        "POST",
        "/v1/subnets",
        Some(json!({"name": "lan", "network": "lan", "cidr": "198.18.64.0/24"})),
    ));
    let run = |name: &str| {
        call(
            &cloud,
            &mia,
            "POST",
            "/v1/instances",
            Some(
                json!({"name": name, "image": "tiny", "instance_type": "nano",
                        "network": "lan", "start": false}),
            ),
        )
    };
    let a = ok(run("a"));
    ok(run("b"));
    let (s, e) = run("c");
    assert_eq!(
        (s, e["code"].as_str()),
        (403, Some("quota_exceeded")),
        "{e}"
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("may hold 2 instances; 2 in use, 1 more requested"),
        "{e}"
    );
    // Invisible to the other project, also in events.
    let a_id = a["id"].as_str().unwrap_or_default();
    assert_eq!(
        call(&cloud, &olga, "GET", &format!("/v1/instances/{a_id}"), None).0,
        404
    );
    let evs = ok(call(
        &cloud,
        &olga,
        "GET",
        &format!("/v1/events?resource={a_id}"),
        None,
    ));
    assert_eq!(evs["items"].as_array().map_or(1, Vec::len), 0, "{evs}");
    let evs = ok(call(
        &cloud,
        &mia,
        "GET",
        &format!("/v1/events?resource={a_id}"),
        None,
    ));
    assert!(evs.to_string().contains("instance.created"), "{evs}");
    for n in ["a", "b"] {
        ok(call(
            &cloud,
            &mia,
            "DELETE",
            &format!("/v1/instances/{n}"),
            None,
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while usage(&cloud, &mia, "instances") != 0 {
        assert!(Instant::now() < deadline, "instances never finally deleted");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(usage(&cloud, &mia, "vcpus"), 0);
    assert_eq!(usage(&cloud, &mia, "memory_mib"), 0);
    ok(run("c"));
}

/// The CLI with another token (and `--json`).
fn kumo_as(cloud: &Cloud, token: &str, args: &[&str]) -> (bool, Value, String) {
    let out = std::process::Command::new(KUMO)
        .arg("--json")
        .args(args)
        .env("KUMO_URL", cloud.url())
        .env("KUMO_TOKEN", token)
        .env_remove("KUMO_CONFIG")
        .env_remove("KUMO_PROJECT")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run kumo");
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
