//! Error bodies, stderr text and exit codes.

use super::*;

fn api_err(status: u16, code: &str, field: Option<&str>) -> CliError {
    CliError::Api {
        status,
        body: ErrorBody {
            code: code.into(),
            message: "bad thing".into(),
            field: field.map(str::to_string),
        },
    }
}

#[test]
fn exit_codes() {
    assert_eq!(api_err(404, "not_found", None).exit_code(), 1);
    assert_eq!(
        api_err(503, "insufficient_capacity", Some("memory")).exit_code(),
        1
    );
    assert_eq!(CliError::usage("x").exit_code(), 1);
    assert_eq!(CliError::Other(anyhow::anyhow!("x")).exit_code(), 1);
    assert_eq!(
        CliError::Connect {
            url: "http://h".into(),
            message: "refused".into()
        }
        .exit_code(),
        2
    );
}

#[test]
fn error_text_carries_code_message_and_field() {
    let e = api_err(422, "invalid_value", Some("name"));
    let human = error::render(&e, false);
    assert!(
        human.starts_with("error: invalid_value")
            && human.contains("bad thing")
            && human.contains("name"),
        "{human}"
    );
    let json: ErrorBody =
        serde_json::from_str(&error::render(&e, true)).expect("JSON on stderr with --json");
    assert_eq!(
        json,
        ErrorBody {
            code: "invalid_value".into(),
            message: "bad thing".into(),
            field: Some("name".into())
        }
    );
    let c: ErrorBody = serde_json::from_str(&error::render(
        &CliError::Connect {
            url: "u".into(),
            message: "m".into(),
        },
        true,
    ))
    .expect("json");
    assert_eq!(c.code, "unreachable");
}

#[test]
fn error_bodies_are_decoded() {
    let b = client::error_body(
        409,
        r#"{"code":"conflict","message":"name taken","field":"name"}"#,
    );
    assert_eq!(
        (b.code.as_str(), b.message.as_str(), b.field.as_deref()),
        ("conflict", "name taken", Some("name"))
    );
    let b = client::error_body(502, "<html>bad gateway</html>");
    assert_eq!(
        (b.code.as_str(), b.message.as_str()),
        ("http_502", "<html>bad gateway</html>")
    );
    assert_eq!(client::error_body(500, "").message, "HTTP status 500");
    assert!(client::is_not_found(&api_err(404, "not_found", None)));
    assert!(!client::is_not_found(&api_err(409, "conflict", None)));
}

#[test]
fn unreachable_server_exits_2() {
    // A port that was just free on loopback: connection refused, no traffic leaves the machine.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port();
    let cfg = config::Config {
        url: format!("http://127.0.0.1:{port}"),
        token: "t".into(),
        token_source: "test".into(),
        ca_file: None,
    };
    let c = client::Client::new(&cfg).expect("client");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let err = rt
        .block_on(c.get::<serde_json::Value>("hosts"))
        .expect_err("nothing listens");
    assert!(matches!(err, CliError::Connect { .. }), "{err:?}");
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn https_takes_a_readable_pem_ca_file() {
    let mut cfg = config::Config {
        url: "https://h:1".into(),
        token: "t".into(),
        token_source: "t".into(),
        ca_file: None,
    };
    client::Client::new(&cfg).expect("https without a CA file: built-in roots");
    cfg.ca_file = Some("/nonexistent/ca.pem".into());
    let err = client::Client::new(&cfg).expect_err("missing CA file");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("ca.pem");
    std::fs::write(&bad, "not a certificate").expect("write");
    cfg.ca_file = Some(bad);
    let err = client::Client::new(&cfg).expect_err("not PEM");
    assert!(
        err.to_string().contains("not a PEM CA certificate"),
        "{err}"
    );
}

#[test]
fn urls_and_encoding() {
    let cfg = config::Config {
        url: "http://127.0.0.1:8470".into(),
        token: "t".into(),
        token_source: "t".into(),
        ca_file: None,
    };
    let c = client::Client::new(&cfg).expect("client");
    assert_eq!(
        c.ws_url("instances/web/console"),
        "ws://127.0.0.1:8470/v1/instances/web/console"
    );
    assert_eq!(client::seg("a b/c"), "a%20b%2Fc");
    assert_eq!(client::encode_query("i-0Ab_.~"), "i-0Ab_.~");
}
