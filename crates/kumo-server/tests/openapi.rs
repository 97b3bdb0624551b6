//! The committed OpenAPI document (`docs/openapi.json`) must match what the handlers generate.
//! Regenerate with `KUMO_UPDATE_OPENAPI=1 cargo nextest run -p kumo-server openapi`.

use std::path::PathBuf;

#[test]
fn openapi_document_is_committed_and_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let generated = kumo_server::api::openapi_json() + "\n";
    if std::env::var_os("KUMO_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write docs/openapi.json");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is out of date with the handlers; regenerate it with \
         `KUMO_UPDATE_OPENAPI=1 cargo nextest run -p kumo-server openapi` and commit it"
    );
    // Every /v1 route is documented.
    for p in [
        "/v1/instances",
        "/v1/instances/{id}/console",
        "/v1/images",
        "/v1/hosts",
        "/v1/events",
        "/v1/key-pairs",
        "/v1/instance-types",
        "/v1/networks",
    ] {
        assert!(
            generated.contains(&format!("\"{p}\"")),
            "{p} missing from the OpenAPI document"
        );
    }
}
