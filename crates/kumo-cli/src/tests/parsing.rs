//! Argument parsing (clap `try_parse_from`).

use super::*;

#[test]
fn parses_instance_run_with_every_option() {
    let cli = parse(&[
        "instance",
        "run",
        "--name",
        "web",
        "--image",
        "tiny",
        "--type",
        "nano",
        "--user-data",
        "ud.sh",
        "--key-name",
        "me",
        "--root-disk-gib",
        "3",
        "--restart-policy",
        "never",
        "--network",
        "default",
        "--wait",
        "--timeout",
        "30",
        "--json",
    ])
    .expect("parses");
    assert!(cli.global.json);
    let Command::Instance(InstanceCmd::Run(a)) = cli.cmd else {
        panic!("wrong command: {:?}", cli.cmd)
    };
    assert_eq!(a.name, "web");
    assert_eq!(a.image, "tiny");
    assert_eq!(a.instance_type, "nano");
    assert_eq!(a.user_data, Some(PathBuf::from("ud.sh")));
    assert_eq!(a.root_disk_gib, Some(3));
    assert!(a.wait.wait);
    assert_eq!(a.wait.timeout, 30);
    let req = instance::run_request(&a, Some("#!/bin/sh\n".into()));
    assert_eq!(req.restart_policy, Some(RestartPolicy::Never));
    assert_eq!(req.start, None, "started unless --stopped");
    assert_eq!(req.user_data.as_deref(), Some("#!/bin/sh\n"));
    assert_eq!(req.network.as_deref(), Some("default"));
    assert!(req.root_volume.is_none(), "a root disk file unless asked");
}

#[test]
fn boot_volume_flags_make_a_root_volume_request() {
    let base = [
        "instance", "run", "--name", "a", "--image", "i", "--type", "t",
    ];
    let req = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let Command::Instance(InstanceCmd::Run(a)) = parse(&args).expect("parses").cmd else {
            panic!("not instance run")
        };
        instance::run_request(&a, None).root_volume
    };
    let rv = req(&["--boot-volume"]).expect("root volume");
    assert_eq!(
        (rv.volume_type, rv.delete_on_termination),
        (None, Some(true))
    );
    let rv = req(&["--boot-volume-type", "cinder-ssd", "--keep-boot-volume"]).expect("rv");
    assert_eq!(
        (rv.volume_type.as_deref(), rv.delete_on_termination),
        (Some("cinder-ssd"), Some(false))
    );
}

#[test]
fn run_stopped_asks_the_api_not_to_start() {
    let cli = parse(&[
        "instance",
        "run",
        "--name",
        "a",
        "--image",
        "i",
        "--type",
        "t",
        "--stopped",
    ])
    .expect("parses");
    let Command::Instance(InstanceCmd::Run(a)) = cli.cmd else {
        panic!("wrong command")
    };
    let req = instance::run_request(&a, None);
    assert_eq!(req.start, Some(false));
    assert!(!a.wait.wait);
    assert_eq!(a.wait.timeout, crate::wait::DEFAULT_TIMEOUT_SECS);
    let body = serde_json::to_value(&req).expect("serialises");
    assert_eq!(body["restart_policy"], serde_json::Value::Null);
}

#[test]
fn restart_policy_values_are_kebab_case() {
    let cli = parse(&[
        "instance",
        "run",
        "--name",
        "a",
        "--image",
        "i",
        "--type",
        "t",
        "--restart-policy",
        "on-failure",
    ])
    .expect("parses");
    let Command::Instance(InstanceCmd::Run(a)) = cli.cmd else {
        panic!("wrong command")
    };
    assert_eq!(
        instance::run_request(&a, None).restart_policy,
        Some(RestartPolicy::OnFailure)
    );
    assert!(
        parse(&[
            "instance",
            "run",
            "--name",
            "a",
            "--image",
            "i",
            "--type",
            "t",
            "--restart-policy",
            "sometimes"
        ])
        .is_err()
    );
}

#[test]
fn run_requires_name_image_and_type() {
    assert!(parse(&["instance", "run", "--image", "i", "--type", "t"]).is_err());
    assert!(parse(&["instance", "run", "--name", "a", "--type", "t"]).is_err());
    assert!(parse(&["instance", "run", "--name", "a", "--image", "i"]).is_err());
}

#[test]
fn timeout_needs_wait() {
    assert!(parse(&["instance", "start", "a", "--timeout", "5"]).is_err());
    let cli = parse(&["instance", "start", "a", "--wait", "--timeout", "5"]).expect("parses");
    assert!(
        matches!(cli.cmd, Command::Instance(InstanceCmd::Start { ref name, ref wait }) if name == "a" && wait.wait && wait.timeout == 5)
    );
}

#[test]
fn parses_lifecycle_commands() {
    let cli = parse(&["instance", "stop", "web", "--force", "--wait"]).expect("parses");
    assert!(
        matches!(cli.cmd, Command::Instance(InstanceCmd::Stop { ref name, force: true, ref wait }) if name == "web" && wait.wait)
    );
    let cli = parse(&["instance", "delete", "web", "--wait"]).expect("parses");
    assert!(
        matches!(cli.cmd, Command::Instance(InstanceCmd::Delete { ref wait, .. }) if wait.wait)
    );
    let cli = parse(&["instance", "reboot", "web"]).expect("parses");
    assert!(matches!(
        cli.cmd,
        Command::Instance(InstanceCmd::Reboot { .. })
    ));
    let cli = parse(&["instance", "logs", "web", "--follow"]).expect("parses");
    assert!(matches!(
        cli.cmd,
        Command::Instance(InstanceCmd::Logs { follow: true, .. })
    ));
    let cli = parse(&["instance", "console", "web"]).expect("parses");
    assert!(
        matches!(cli.cmd, Command::Instance(InstanceCmd::Console { linger, .. }) if linger == 3.0)
    );
    let cli = parse(&["--json", "instance", "show", "web"]).expect("parses");
    assert!(cli.global.json);
    assert!(parse(&["instance", "show"]).is_err(), "show needs a name");
}

#[test]
fn global_flags_work_before_and_after_the_command() {
    let cli = parse(&["--url", "http://h:1", "host", "list", "--token", "t0k"]).expect("parses");
    assert_eq!(cli.global.url.as_deref(), Some("http://h:1"));
    assert_eq!(cli.global.token.as_deref(), Some("t0k"));
    assert!(matches!(cli.cmd, Command::Host(misc::HostCmd::List)));
}

#[test]
fn image_import_needs_exactly_one_source() {
    let cli = parse(&[
        "image",
        "import",
        "--name",
        "k",
        "--kernel",
        "vmlinuz",
        "--initrd",
        "initrd.img",
        "--cmdline",
        "console=ttyS0",
    ])
    .expect("kernel+initrd parses");
    let Command::Image(ImageCmd::Import(a)) = cli.cmd else {
        panic!("wrong command")
    };
    let req = image::import_request(&a).expect("request");
    assert!(
        req.kernel_path
            .as_deref()
            .is_some_and(|p| p.starts_with('/') && p.ends_with("/vmlinuz"))
    );
    assert!(
        req.initrd_path
            .as_deref()
            .is_some_and(|p| p.starts_with('/'))
    );
    assert_eq!(req.cmdline.as_deref(), Some("console=ttyS0"));
    assert_eq!(req.disk_path, None);

    let cli = parse(&[
        "image",
        "import",
        "--name",
        "d",
        "--disk",
        "/img/deb.qcow2",
        "--format",
        "qcow2",
    ])
    .expect("disk parses");
    let Command::Image(ImageCmd::Import(a)) = cli.cmd else {
        panic!("wrong command")
    };
    let req = image::import_request(&a).expect("request");
    assert_eq!(req.disk_path.as_deref(), Some("/img/deb.qcow2"));
    assert_eq!(req.format, Some(kumo_types::ImportFormat::Qcow2));

    assert!(
        parse(&["image", "import", "--name", "x"]).is_err(),
        "no source"
    );
    assert!(
        parse(&["image", "import", "--name", "x", "--kernel", "k"]).is_err(),
        "kernel without initrd"
    );
    assert!(
        parse(&[
            "image", "import", "--name", "x", "--kernel", "k", "--initrd", "i", "--disk", "d"
        ])
        .is_err()
    );
    assert!(
        parse(&[
            "image", "import", "--name", "x", "--kernel", "k", "--initrd", "i", "--format", "raw"
        ])
        .is_err()
    );
    assert!(
        parse(&["image", "import", "--disk", "d"]).is_err(),
        "name required"
    );
}

#[test]
fn image_import_from_urls() {
    let cli = parse(&[
        "image",
        "import",
        "--name",
        "deb",
        "--disk-url",
        "https://h/deb.qcow2",
        "--sha256",
        "ab12",
        "--format",
        "vmdk",
        "--no-wait",
    ])
    .expect("disk URL parses");
    let Command::Image(ImageCmd::Import(a)) = cli.cmd else {
        panic!("wrong command")
    };
    assert!(a.no_wait);
    let req = image::import_request(&a).expect("request");
    assert_eq!(req.url.as_deref(), Some("https://h/deb.qcow2"));
    assert_eq!(req.sha256.as_deref(), Some("ab12"));
    assert_eq!(req.format, Some(kumo_types::ImportFormat::Vmdk));
    assert_eq!((req.disk_path, req.kernel_url), (None, None));

    let cli = parse(&[
        "image",
        "import",
        "--name",
        "k",
        "--kernel-url",
        "http://h/k",
        "--initrd-url",
        "http://h/i",
        "--cmdline",
        "console=ttyS0",
    ])
    .expect("kernel URLs parse");
    let Command::Image(ImageCmd::Import(a)) = cli.cmd else {
        panic!("wrong command")
    };
    assert!(!a.no_wait, "waits by default");
    let req = image::import_request(&a).expect("request");
    assert_eq!(
        (req.kernel_url.as_deref(), req.initrd_url.as_deref()),
        (Some("http://h/k"), Some("http://h/i"))
    );
    assert_eq!(req.cmdline.as_deref(), Some("console=ttyS0"));

    // The global --url (the API's address) still works next to --disk-url.
    let cli = parse(&[
        "--url",
        "http://api:1",
        "image",
        "import",
        "--name",
        "i",
        "--disk-url",
        "http://h/x.iso",
        "--format",
        "iso",
    ])
    .expect("global --url and --disk-url");
    assert_eq!(cli.global.url.as_deref(), Some("http://api:1"));

    let refused: &[&[&str]] = &[
        &["--disk-url", "http://h/x", "--disk", "/x"],
        &[
            "--disk-url",
            "http://h/x",
            "--kernel-url",
            "http://h/k",
            "--initrd-url",
            "http://h/i",
        ],
        &["--kernel-url", "http://h/k"],
        &["--initrd-url", "http://h/i"],
        &["--volume", "v", "--sha256", "ab"],
        &["--disk", "/x", "--no-wait"],
        &[
            "--kernel-url",
            "http://h/k",
            "--initrd-url",
            "http://h/i",
            "--format",
            "raw",
        ],
        &["--disk-url", "http://h/x", "--cmdline", "quiet"],
        &["--disk-url", "http://h/x", "--format", "vhd"],
    ];
    for extra in refused {
        let mut args = vec!["image", "import", "--name", "x"];
        args.extend_from_slice(extra);
        assert!(parse(&args).is_err(), "{extra:?} should be refused");
    }
}

#[test]
fn image_build_tiny_defaults_to_name_tiny() {
    let cli = parse(&["image", "build", "tiny"]).expect("parses");
    let Command::Image(ImageCmd::Build(image::BuildCmd::Tiny(a))) = cli.cmd else {
        panic!("wrong command")
    };
    assert_eq!(a.name, "tiny");
    assert_eq!(a.cache_dir, None);
    let cli = parse(&[
        "image",
        "build",
        "tiny",
        "--name",
        "t2",
        "--cache-dir",
        "/c",
        "--out-dir",
        "/o",
    ])
    .expect("parses");
    let Command::Image(ImageCmd::Build(image::BuildCmd::Tiny(a))) = cli.cmd else {
        panic!("wrong command")
    };
    assert_eq!(
        (a.name.as_str(), a.cache_dir, a.out_dir),
        ("t2", Some("/c".into()), Some("/o".into()))
    );
}

#[test]
fn parses_other_resources() {
    let cli = parse(&[
        "instance-type",
        "create",
        "--name",
        "big",
        "--vcpus",
        "4",
        "--memory-mib",
        "4096",
        "--root-disk-gib",
        "20",
    ])
    .expect("parses");
    assert!(matches!(
        cli.cmd,
        Command::InstanceType(misc::InstanceTypeCmd::Create {
            vcpus: 4,
            memory_mib: 4096,
            root_disk_gib: 20,
            ..
        })
    ));
    assert!(
        parse(&[
            "instance-type",
            "create",
            "--name",
            "big",
            "--vcpus",
            "many",
            "--memory-mib",
            "1",
            "--root-disk-gib",
            "1"
        ])
        .is_err()
    );
    let cli = parse(&[
        "key-pair",
        "import",
        "--name",
        "me",
        "--public-key-file",
        "/k.pub",
    ])
    .expect("parses");
    assert!(matches!(
        cli.cmd,
        Command::KeyPair(misc::KeyPairCmd::Import { .. })
    ));
    assert!(matches!(
        parse(&["network", "show", "default"]).expect("parses").cmd,
        Command::Network(crate::cmd::network::NetworkCmd::Show { .. })
    ));
    let cli = parse(&["events", "--resource", "i-1 2", "--limit", "5"]).expect("parses");
    let Command::Events(a) = cli.cmd else {
        panic!("wrong command")
    };
    assert_eq!(misc::events_path(&a), "events?resource=i-1%202");
    assert_eq!(
        misc::events_path(&EventsArgs {
            resource: None,
            limit: None
        }),
        "events"
    );
    assert!(parse(&["bogus"]).is_err());
}
