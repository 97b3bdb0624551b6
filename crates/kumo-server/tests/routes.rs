//! Every operation in the OpenAPI document is routed: a documented handler that the router lost
//! answers 405 (wrong method) or the fallback's 404, which this test refuses. Requests carry the
//! bootstrap admin token (the authentication layer answers 401 before the router can say 405) and
//! name resources that do not exist, on a throw-away store.

#![allow(clippy::unwrap_used)]

mod support;

use axum::body::Body;
use tower::ServiceExt;

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let dir = tempfile::tempdir().unwrap();
    let app = support::app(dir.path());
    app.bootstrap().await.unwrap();
    kumo_server::auth::bootstrap(&app, dir.path())
        .await
        .unwrap();
    let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let router = kumo_server::api::router(app);
    let doc: serde_json::Value = serde_json::from_str(&kumo_server::api::openapi_json()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let mut checked = 0;
    let mut lost = Vec::new();
    for (path, ops) in paths {
        // Path parameters get a value no resource has.
        let mut uri = String::new();
        let mut in_param = false;
        for c in path.chars() {
            match c {
                '{' => {
                    in_param = true;
                    uri.push_str("no-such-thing");
                }
                '}' => in_param = false,
                _ if in_param => {}
                _ => uri.push(c),
            }
        }
        for method in ops.as_object().unwrap().keys() {
            let m = method.to_ascii_uppercase();
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&m.as_str()) {
                continue;
            }
            let req = axum::http::Request::builder()
                .method(m.as_str())
                .uri(&uri)
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {}", token.trim()))
                .body(Body::from("{}"))
                .unwrap();
            let resp = router.clone().oneshot(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            let body = String::from_utf8_lossy(&body);
            checked += 1;
            if status == 405 || (status == 404 && body.contains("`this path`")) {
                lost.push(format!("{m} {path} -> {status} {body}"));
            }
        }
    }
    assert!(checked > 50, "only {checked} operations in the document");
    assert!(
        lost.is_empty(),
        "documented but not routed:\n{}",
        lost.join("\n")
    );
}

/// Every handler annotated with `#[utoipa::path(...)]` under `src/api` is in the document (a
/// handler left out of `ApiDoc` would also escape the routing check above).
#[test]
fn every_annotated_handler_is_documented() {
    let doc: serde_json::Value = serde_json::from_str(&kumo_server::api::openapi_json()).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut files = vec![root];
    let mut annotated = Vec::new();
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if p.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        for chunk in text.split("#[utoipa::path(").skip(1) {
            let method = chunk.split(',').next().unwrap().trim().to_string();
            let Some(rest) = chunk.split("path = \"").nth(1) else {
                continue;
            };
            let path = rest.split('"').next().unwrap().to_string();
            annotated.push((p.display().to_string(), method, path));
        }
    }
    assert!(
        annotated.len() > 50,
        "found only {} annotations",
        annotated.len()
    );
    let missing: Vec<String> = annotated
        .iter()
        .filter(|(_, m, p)| doc["paths"][p.as_str()][m.as_str()].is_null())
        .map(|(f, m, p)| format!("{m} {p} ({f})"))
        .collect();
    assert!(
        missing.is_empty(),
        "annotated but missing from ApiDoc (add them to its paths(...)):\n{}",
        missing.join("\n")
    );
}
