//! Tables and `--json` output.

use super::*;

#[test]
fn tables_show_the_important_columns() {
    let t = render::instances_table(&[view(InstanceState::Running, None)]).to_string();
    for s in [
        "NAME",
        "STATE",
        "IPV4",
        "web",
        "i-0123",
        "running",
        "198.18.0.10",
        "host-a",
        "nano",
    ] {
        assert!(t.contains(s), "missing {s} in\n{t}");
    }
    let d = render::instance_detail(&view(InstanceState::Failed, Some("qemu exited"))).to_string();
    assert!(
        d.contains("failed") && d.contains("qemu exited") && d.contains("on-failure"),
        "{d}"
    );
    let t = render::images_table(&[image_value("ab")]).to_string();
    assert!(
        t.contains("kernel_initrd") && t.contains("3.0 MiB") && t.contains("tiny"),
        "{t}"
    );
    let mut importing = image_value("");
    importing.state = kumo_types::ImageState::Importing;
    importing.source_url = Some("https://h/deb.qcow2".into());
    importing.progress = Some(kumo_types::ImportProgress {
        bytes_done: 1 << 20,
        bytes_total: Some(4 << 20),
    });
    let t = render::images_table(&[importing.clone()]).to_string();
    assert!(t.contains("importing 25%"), "{t}");
    let d = render::image_detail(&importing).to_string();
    assert!(
        d.contains("https://h/deb.qcow2") && d.contains("1.0 MiB of 4.0 MiB (25%)"),
        "{d}"
    );
    let mut failed = importing;
    failed.state = kumo_types::ImageState::Error;
    failed.status_message = Some("sha256 mismatch".into());
    let d = render::image_detail(&failed).to_string();
    assert!(d.contains("error") && d.contains("sha256 mismatch"), "{d}");
    let t = render::instance_types_table(&kumo_types::builtin_instance_types()).to_string();
    assert!(t.contains("2xlarge") && t.contains("16384"), "{t}");
}

#[test]
fn wire_names_and_sizes() {
    assert_eq!(render::wire(&InstanceState::Running), "running");
    assert_eq!(render::wire(&RestartPolicy::OnFailure), "on-failure");
    assert_eq!(render::bytes(512), "512 B");
    assert_eq!(render::bytes(1536), "1.5 KiB");
    assert_eq!(render::bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
}

#[test]
fn json_list_output_keeps_items_verbatim() {
    let raw = [r#"{"name":"b","id":"x","z":1}"#, r#"{"name":"a"}"#];
    let l: client::List<serde_json::Value> = client::List {
        items: raw
            .iter()
            .map(|r| serde_json::from_str(r).expect("json"))
            .collect(),
        raw_items: raw
            .iter()
            .map(|r| serde_json::value::RawValue::from_string((*r).to_string()).expect("raw"))
            .collect(),
    };
    assert_eq!(
        l.raw(),
        r#"{"items":[{"name":"b","id":"x","z":1},{"name":"a"}]}"#
    );
    let page: kumo_types::Page<serde_json::Value> =
        serde_json::from_str(&l.raw()).expect("is a Page");
    assert_eq!(page.items.len(), 2);
    let empty: client::List<serde_json::Value> = client::List {
        items: vec![],
        raw_items: vec![],
    };
    assert_eq!(empty.raw(), r#"{"items":[]}"#);
}
