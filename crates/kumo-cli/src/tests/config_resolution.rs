//! Config resolution and its precedence.

use super::*;

fn sources() -> Sources {
    Sources {
        config_path: Some("/home/u/.config/kumo/config.json".into()),
        ..Sources::default()
    }
}

#[test]
fn flag_or_env_beats_config_file_and_admin_token() {
    let src = Sources {
        url: Some("http://10.0.0.1:8470/".into()),
        token: Some("flag".into()),
        config_text: Some(r#"{"url": "http://file:1", "token": "file"}"#.into()),
        admin_token: Some("admin\n".into()),
        ..sources()
    };
    let c = config::resolve(&src).expect("resolves");
    assert_eq!(c.url, "http://10.0.0.1:8470", "trailing slash trimmed");
    assert_eq!(c.token, "flag");
    assert_eq!(c.token_source, "--token/KUMO_TOKEN");
}

#[test]
fn config_file_beats_admin_token_and_default_url() {
    let src = Sources {
        config_text: Some(r#"{"url": "http://127.0.0.1:9000", "token": "file"}"#.into()),
        admin_token: Some("admin".into()),
        ..sources()
    };
    let c = config::resolve(&src).expect("resolves");
    assert_eq!(
        (c.url.as_str(), c.token.as_str()),
        ("http://127.0.0.1:9000", "file")
    );
    // Only the URL in the file: the token still comes from the flag.
    let src = Sources {
        token: Some("t".into()),
        config_text: Some(r#"{"url": "http://x:1"}"#.into()),
        ..sources()
    };
    assert_eq!(config::resolve(&src).expect("resolves").url, "http://x:1");
}

#[test]
fn admin_token_is_the_last_resort_for_loopback_urls_only() {
    let src = Sources {
        admin_token: Some("  s3cret\n".into()),
        ..sources()
    };
    let c = config::resolve(&src).expect("resolves");
    assert_eq!(c.url, crate::DEFAULT_URL);
    assert_eq!(c.token, "s3cret");
    assert_eq!(c.token_source, config::ADMIN_TOKEN_PATH);

    let remote = Sources {
        url: Some("http://cloud.example:8470".into()),
        admin_token: Some("s3cret".into()),
        ..sources()
    };
    let err = config::resolve(&remote).expect_err("must not send the local admin token elsewhere");
    assert_eq!(err.exit_code(), 1);
}

#[test]
fn missing_token_says_how_to_set_it() {
    let err = config::resolve(&sources()).expect_err("no token anywhere");
    let msg = err.to_string();
    assert!(
        msg.contains("--token")
            && msg.contains("KUMO_TOKEN")
            && msg.contains("/home/u/.config/kumo/config.json"),
        "{msg}"
    );
    assert!(msg.contains(config::ADMIN_TOKEN_PATH), "{msg}");
    assert!(matches!(err, CliError::Usage(_)));
}

#[test]
fn bad_config_files_are_reported() {
    let bad = Sources {
        config_text: Some("{not json".into()),
        token: Some("t".into()),
        ..sources()
    };
    assert!(
        config::resolve(&bad)
            .expect_err("invalid")
            .to_string()
            .contains("not valid")
    );
    let unknown = Sources {
        config_text: Some(r#"{"tokn": "x"}"#.into()),
        token: Some("t".into()),
        ..sources()
    };
    assert!(
        config::resolve(&unknown).is_err(),
        "typos in the config file are errors"
    );
    let explicit_missing = Sources {
        config_explicit: true,
        token: Some("t".into()),
        ..sources()
    };
    assert!(
        config::resolve(&explicit_missing)
            .expect_err("missing")
            .to_string()
            .contains("KUMO_CONFIG")
    );
    let bad_url = Sources {
        url: Some("ftp://x".into()),
        token: Some("t".into()),
        ..sources()
    };
    assert!(config::resolve(&bad_url).is_err());
}

#[test]
fn config_path_follows_xdg() {
    assert_eq!(
        config::default_config_path(Some("/x/cfg".into()), Some("/home/u".into())),
        Some(PathBuf::from("/x/cfg/kumo/config.json"))
    );
    assert_eq!(
        config::default_config_path(Some("relative".into()), Some("/home/u".into())),
        Some(PathBuf::from("/home/u/.config/kumo/config.json")),
        "a relative XDG_CONFIG_HOME is ignored, as the spec says"
    );
    assert_eq!(config::default_config_path(None, None), None);
}

#[test]
fn loopback_detection() {
    for u in [
        "http://127.0.0.1:8470",
        "http://localhost",
        "http://[::1]:80/x",
        "http://127.1.2.3",
        "http://u:p@127.0.0.1:1",
    ] {
        assert!(config::is_loopback_url(u), "{u}");
    }
    for u in [
        "http://10.0.0.1:8470",
        "http://example.com",
        "http://127.0.0.1.example.com",
        "127.0.0.1",
    ] {
        assert!(!config::is_loopback_url(u), "{u}");
    }
}

#[test]
fn ca_file_flag_beats_config_file_beats_the_data_dirs_cluster_ca() {
    let base = Sources {
        url: Some("https://198.19.0.1:8471".into()),
        token: Some("t".into()),
        data_dir_ca: Some("/var/lib/kumo/tls/ca.pem".into()),
        ..sources()
    };
    let c = config::resolve(&base).expect("resolves");
    assert_eq!(c.ca_file, Some("/var/lib/kumo/tls/ca.pem".into()));
    let file = Sources {
        config_text: Some(r#"{"ca_file": "/etc/kumo/ca.pem"}"#.into()),
        ..base.clone()
    };
    assert_eq!(
        config::resolve(&file).expect("resolves").ca_file,
        Some("/etc/kumo/ca.pem".into())
    );
    let flag = Sources {
        ca_file: Some("/tmp/ca.pem".into()),
        ..file
    };
    assert_eq!(
        config::resolve(&flag).expect("resolves").ca_file,
        Some("/tmp/ca.pem".into())
    );
}
