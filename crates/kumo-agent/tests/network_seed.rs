//! The NoCloud seed is a real ISO9660 image labelled `cidata` holding the rendered files, rebuilt only
//! when its content changes.

#![allow(clippy::unwrap_used)]

use kumo_agent::network::seed::{SeedSpec, build_seed};
use kumo_testutil::{require, run};

fn spec() -> SeedSpec {
    SeedSpec {
        instance_id: "i-0123456789abcdef0".into(),
        hostname: "web-1".into(),
        user_data: Some("#!/bin/sh\necho hello from user-data\n".into()),
        public_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKumo me@host".into()],
        network_config: None,
    }
}

/// A file of the image, read through its Rock Ridge name.
fn iso_file(iso: &std::path::Path, name: &str) -> String {
    run(
        "isoinfo",
        &["-R", "-i", iso.to_str().unwrap(), "-x", &format!("/{name}")],
    )
}

#[test]
fn seed_iso_has_label_files_and_is_rebuilt_only_on_change() {
    require("genisoimage", "genisoimage");
    require("isoinfo", "genisoimage");
    let tmp = tempfile::tempdir().unwrap();

    let iso = build_seed(tmp.path(), &spec()).unwrap();
    assert_eq!(iso, tmp.path().join("seed.iso"));
    let info = run("isoinfo", &["-d", "-i", iso.to_str().unwrap()]);
    assert!(info.contains("Volume id: cidata"), "{info}");
    assert!(info.contains("Rock Ridge"), "{info}");
    assert!(info.contains("Joliet"), "{info}");
    let listing = run("isoinfo", &["-R", "-f", "-i", iso.to_str().unwrap()]);
    let mut names: Vec<&str> = listing.lines().collect();
    names.sort();
    assert_eq!(names, ["/meta-data", "/user-data"]);
    assert_eq!(
        iso_file(&iso, "meta-data"),
        "instance-id: \"i-0123456789abcdef0\"\nlocal-hostname: \"web-1\"\npublic-keys:\n  \
         - \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKumo me@host\"\n"
    );
    assert_eq!(
        iso_file(&iso, "user-data"),
        "#!/bin/sh\necho hello from user-data\n"
    );
    assert!(!tmp.path().join("seed.iso.tmp").exists());

    // Same content: the image is kept as is.
    let before = std::fs::metadata(&iso).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    build_seed(tmp.path(), &spec()).unwrap();
    assert_eq!(std::fs::metadata(&iso).unwrap().modified().unwrap(), before);

    // Changed content: rebuilt, default user-data, network-config present.
    let changed = SeedSpec {
        user_data: None,
        network_config: Some("version: 2\nethernets: {}\n".into()),
        ..spec()
    };
    build_seed(tmp.path(), &changed).unwrap();
    assert_eq!(iso_file(&iso, "user-data"), "#cloud-config\n{}\n");
    assert_eq!(
        iso_file(&iso, "network-config"),
        "version: 2\nethernets: {}\n"
    );
    // A missing image is rebuilt even with an unchanged stamp.
    std::fs::remove_file(&iso).unwrap();
    build_seed(tmp.path(), &changed).unwrap();
    assert!(iso.is_file());
}
