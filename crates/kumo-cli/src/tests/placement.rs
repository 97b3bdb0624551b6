//! Placement: `placement-group` commands, `instance run --placement-group/--host-selector`,
//! `host label`, and the placement rows of `instance show`.

use super::*;
use crate::cmd::placement_group::{self, PlacementGroupCmd, parse_label, parse_label_change};
use kumo_types::{PlacementDecision, PlacementEnforcement, PlacementPolicy, PlacementStrategy};

#[test]
fn run_takes_a_placement_group_and_host_selectors() {
    let cli = parse(&[
        "instance",
        "run",
        "--name",
        "a",
        "--image",
        "i",
        "--type",
        "t",
        "--placement-group",
        "web",
        "--host-selector",
        "rack=a",
        "--host-selector",
        "zone=1",
    ])
    .expect("parses");
    let Command::Instance(InstanceCmd::Run(a)) = cli.cmd else {
        panic!("not instance run")
    };
    let req = instance::run_request(&a, None);
    assert_eq!(req.placement_group.as_deref(), Some("web"));
    let sel = req.host_selector.expect("selector");
    assert_eq!(sel.get("rack").map(String::as_str), Some("a"));
    assert_eq!(sel.get("zone").map(String::as_str), Some("1"));
    let plain = parse(&[
        "instance", "run", "--name", "a", "--image", "i", "--type", "t",
    ])
    .expect("parses");
    let Command::Instance(InstanceCmd::Run(a)) = plain.cmd else {
        panic!("not instance run")
    };
    let req = instance::run_request(&a, None);
    assert!(req.placement_group.is_none() && req.host_selector.is_none());
    let e = parse(&[
        "instance",
        "run",
        "--name",
        "a",
        "--image",
        "i",
        "--type",
        "t",
        "--host-selector",
        "rack",
    ])
    .expect_err("KEY=VALUE");
    assert!(e.to_string().contains("expected KEY=VALUE"), "{e}");
}

#[test]
fn label_syntax() {
    assert_eq!(parse_label("rack=a"), Ok(("rack".into(), "a".into())));
    assert_eq!(parse_label("gpu="), Ok(("gpu".into(), String::new())));
    assert!(parse_label("=a").is_err());
    assert_eq!(parse_label_change("rack-"), Ok(("rack".into(), None)));
    assert_eq!(
        parse_label_change("zone=eu-1"),
        Ok(("zone".into(), Some("eu-1".into())))
    );
    assert_eq!(
        parse_label_change("note=a-"),
        Ok(("note".into(), Some("a-".into())))
    );
    assert!(parse_label_change("-").is_err());
    assert!(parse_label_change("rack").is_err());
}

#[test]
fn host_label_and_placement_group_commands_parse() {
    let cli = parse(&["host", "label", "h1", "rack=a", "old-"]).expect("parses");
    let Command::Host(misc::HostCmd::Label { name, labels }) = cli.cmd else {
        panic!("not host label")
    };
    assert_eq!(name, "h1");
    assert_eq!(
        labels,
        vec![("rack".into(), Some("a".into())), ("old".into(), None)]
    );
    assert!(
        parse(&["host", "label", "h1"]).is_err(),
        "at least one label"
    );

    let cli = parse(&[
        "placement-group",
        "create",
        "--name",
        "web",
        "--strategy",
        "anti-affinity",
        "--enforcement",
        "soft",
    ])
    .expect("parses");
    let Command::PlacementGroup(PlacementGroupCmd::Create(a)) = cli.cmd else {
        panic!("not placement-group create")
    };
    let req = placement_group::create_request(&a);
    assert_eq!(req.strategy, PlacementStrategy::Spread);
    assert_eq!(req.enforcement, Some(PlacementEnforcement::Soft));
    let cli = parse(&[
        "placement-group",
        "create",
        "--name",
        "db",
        "--strategy",
        "affinity",
    ])
    .expect("parses");
    let Command::PlacementGroup(PlacementGroupCmd::Create(a)) = cli.cmd else {
        panic!("not placement-group create")
    };
    assert_eq!(
        placement_group::create_request(&a).enforcement,
        Some(PlacementEnforcement::Hard),
        "hard by default"
    );
}

#[test]
fn instance_show_explains_the_placement() {
    let mut v = view(InstanceState::Running, None);
    let plain = render::instance_detail(&v).to_string();
    assert!(!plain.contains("placement"), "{plain}");
    v.placement_group = Some("web".into());
    v.host_selector.insert("rack".into(), "a".into());
    v.gpu_devices = vec!["0000:65:00.0".into()];
    v.placement = Some(PlacementDecision {
        host: "host-a".into(),
        host_name: "h1".into(),
        policy: PlacementPolicy::Spread,
        reason: "spread policy: most free memory (3.2 GiB left after placing); the only eligible \
                 host"
            .into(),
        considered: 1,
        eligible: 1,
        at: "2026-11-21T00:00:01.000Z".into(),
    });
    let d = render::instance_detail(&v).to_string();
    for want in [
        "placement group",
        "web",
        "rack=a",
        "0000:65:00.0",
        "on h1: spread policy: most free memory",
        "2026-11-21T00:00:01.000Z",
    ] {
        assert!(d.contains(want), "{want} missing:\n{d}");
    }
}
