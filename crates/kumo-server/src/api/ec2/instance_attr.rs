//! `DescribeInstanceAttribute` and `ModifyInstanceAttribute`: termination and stop protection and
//! the shutdown behaviour (instance attributes, honoured by `app::instance::extras`), user data
//! (while stopped), and the read-only rest.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use kumo_ec2::xml::XmlWriter;
use kumo_ec2::{Ec2Error, Params};

use super::instances::check_id;
use super::render::{self, Row, World};
use super::{Ec2Ctx, Ec2Result, error};
use crate::app::attrs;
use crate::app::instance::{self, extras};

const ATTRIBUTES: &[&str] = &[
    "instanceType",
    "kernel",
    "ramdisk",
    "userData",
    "disableApiTermination",
    "instanceInitiatedShutdownBehavior",
    "rootDeviceName",
    "blockDeviceMapping",
    "productCodes",
    "sourceDestCheck",
    "groupSet",
    "ebsOptimized",
    "sriovNetSupport",
    "enaSupport",
    "enclaveOptions",
    "disableApiStop",
];

fn one_instance(params: &Params) -> Ec2Result<String> {
    let id = params.root().str("InstanceId")?;
    check_id(&id)?;
    Ok(id)
}

fn value(w: &mut XmlWriter, name: &str, v: &str) {
    w.node(name, |w| {
        w.text("value", v);
    });
}

fn bool_value(w: &mut XmlWriter, name: &str, v: bool) {
    w.node(name, |w| {
        w.bool("value", v);
    });
}

pub async fn describe(ctx: &Ec2Ctx, params: &Params) -> Ec2Result {
    let id = one_instance(params)?;
    let attribute = params.root().enum_value("Attribute", ATTRIBUTES)?;
    let (inst, _) = instance::find_in(&ctx.app, &ctx.scope, &id)
        .await
        .map_err(error::from_app)?;
    ctx.ready(params)?;
    let world = World::for_instances(ctx, &[&inst]).await?;
    let row = Row {
        status: instance::status(&ctx.app, &inst.id)
            .await
            .map_err(error::from_app)?,
        attrs: world.attrs.get(&inst.id).cloned().unwrap_or_default(),
        inst,
        deleted_at: None,
        tags: Default::default(),
    };
    let a = &row.attrs;
    ctx.respond(|w| {
        w.text("instanceId", &row.inst.id);
        match attribute {
            "instanceType" => value(w, "instanceType", &row.instance_type()),
            "userData" => match &row.inst.user_data {
                Some(u) => value(w, "userData", &B64.encode(u.as_bytes())),
                None => {
                    w.empty("userData");
                }
            },
            "disableApiTermination" => bool_value(
                w,
                "disableApiTermination",
                extras::flag(a, extras::TERMINATION_PROTECTION),
            ),
            "disableApiStop" => {
                bool_value(
                    w,
                    "disableApiStop",
                    extras::flag(a, extras::STOP_PROTECTION),
                );
            }
            "instanceInitiatedShutdownBehavior" => value(
                w,
                "instanceInitiatedShutdownBehavior",
                a.value(extras::SHUTDOWN_BEHAVIOR).unwrap_or("stop"),
            ),
            "rootDeviceName" => value(w, "rootDeviceName", render::ROOT_DEVICE),
            "blockDeviceMapping" => {
                let vols = world.volumes.get(&row.inst.id).cloned().unwrap_or_default();
                w.set("blockDeviceMapping", &vols, |w, v| {
                    let dot = v
                        .attachment
                        .as_ref()
                        .is_some_and(|x| x.delete_on_termination);
                    w.text("deviceName", &world.device(v)).node("ebs", |w| {
                        w.text("volumeId", &v.id)
                            .text("status", "attached")
                            .timestamp("attachTime", &row.launch_time())
                            .bool("deleteOnTermination", dot);
                    });
                });
            }
            "groupSet" => {
                w.set("groupSet", world.instance_groups(&row.inst), |w, g| {
                    w.text("groupId", &g);
                });
            }
            "sourceDestCheck" => bool_value(w, "sourceDestCheck", true),
            "ebsOptimized" => bool_value(w, "ebsOptimized", false),
            "enaSupport" => bool_value(w, "enaSupport", true),
            "sriovNetSupport" => value(w, "sriovNetSupport", "simple"),
            "enclaveOptions" => {
                w.node("enclaveOptions", |w| {
                    w.bool("enabled", false);
                });
            }
            "productCodes" => {
                w.empty("productCodes");
            }
            // kernel, ramdisk: EC2 answers them empty for HVM instances.
            other => {
                w.empty(other);
            }
        }
    })
}

/// One change `ModifyInstanceAttribute` was asked for.
#[derive(Debug, Clone, PartialEq)]
enum Change {
    Flag(&'static str, bool),
    Shutdown(String),
    UserData(Option<String>),
}

fn read_change(params: &Params) -> Ec2Result<Change> {
    let root = params.root();
    let mut changes = Vec::new();
    // The legacy form: Attribute=<name>&Value=<value>.
    if let Some(attr) = root.opt_enum(
        "Attribute",
        &[
            "disableApiTermination",
            "disableApiStop",
            "instanceInitiatedShutdownBehavior",
            "userData",
        ],
    )? {
        let v = root.str("Value")?;
        let flag = |name| match v.as_str() {
            "true" => Ok(Change::Flag(name, true)),
            "false" => Ok(Change::Flag(name, false)),
            _ => Err(Ec2Error::invalid_parameter_value(
                "Value",
                &v,
                "Expected true or false.",
            )),
        };
        changes.push(match attr {
            "disableApiTermination" => flag(extras::TERMINATION_PROTECTION)?,
            "disableApiStop" => flag(extras::STOP_PROTECTION)?,
            "instanceInitiatedShutdownBehavior" => Change::Shutdown(v.clone()),
            _ => Change::UserData(Some(
                String::from_utf8(B64.decode(v.trim()).map_err(|_| {
                    Ec2Error::invalid_parameter_value("Value", &v, "Expected base64.")
                })?)
                .map_err(|_| Ec2Error::unsupported("user data that is not UTF-8 text"))?,
            )),
        });
    }
    if let Some(b) = root.child("DisableApiTermination").opt_bool("Value")? {
        changes.push(Change::Flag(extras::TERMINATION_PROTECTION, b));
    }
    if let Some(b) = root.child("DisableApiStop").opt_bool("Value")? {
        changes.push(Change::Flag(extras::STOP_PROTECTION, b));
    }
    if let Some(v) = root
        .child("InstanceInitiatedShutdownBehavior")
        .opt_str("Value")
    {
        changes.push(Change::Shutdown(v));
    }
    if root.has("UserData") {
        let data = root.child("UserData").opt_blob("Value")?;
        let text = match data {
            Some(b) if !b.is_empty() => Some(
                String::from_utf8(b)
                    .map_err(|_| Ec2Error::unsupported("user data that is not UTF-8 text"))?,
            ),
            _ => None,
        };
        changes.push(Change::UserData(text));
    }
    for (m, why) in [
        (
            "InstanceType",
            "kumo cannot resize an instance: launch a new one",
        ),
        ("Kernel", "kumo instances boot their image's kernel"),
        ("Ramdisk", "kumo instances boot their image's initrd"),
        (
            "BlockDeviceMapping",
            "change a volume's DeleteOnTermination with kumo volume update",
        ),
        (
            "GroupId",
            "change the groups of the instance's network interface",
        ),
    ] {
        if root.has(m) {
            return Err(Ec2Error::unsupported(format!("{m}: {why}")));
        }
    }
    if let Some(v) = root.child("SourceDestCheck").opt_bool("Value")?
        && !v
    {
        return Err(Ec2Error::unsupported(
            "SourceDestCheck=false: kumo always enforces the source and destination check",
        ));
    }
    if root.child("EbsOptimized").opt_bool("Value")? == Some(true) {
        return Err(Ec2Error::unsupported("EbsOptimized=true"));
    }
    if root.child("EnaSupport").opt_bool("Value")? == Some(false) {
        return Err(Ec2Error::unsupported("EnaSupport=false"));
    }
    if let Some(Change::Shutdown(v)) = changes.iter().find(|c| matches!(c, Change::Shutdown(_)))
        && v != "stop"
        && v != "terminate"
    {
        return Err(Ec2Error::invalid_parameter_value(
            "InstanceInitiatedShutdownBehavior",
            v,
            "Allowed values: stop, terminate.",
        ));
    }
    match changes.len() {
        1 => Ok(changes.remove(0)),
        0 => Err(Ec2Error::missing_parameter("Attribute")),
        _ => Err(Ec2Error::invalid_parameter_combination_message(
            "Only one attribute can be modified at a time",
        )),
    }
}

pub async fn modify(ctx: &Ec2Ctx, params: &Params) -> Ec2Result {
    let id = one_instance(params)?;
    let change = read_change(params)?;
    let (inst, _) = instance::find_in(&ctx.app, &ctx.scope, &id)
        .await
        .map_err(error::from_app)?;
    ctx.ready(params)?;
    ctx.target(&inst.id);
    match change {
        Change::Flag(name, on) => {
            attrs::update(&ctx.app, &inst.id, |a| {
                if on {
                    a.set(name, "true");
                } else {
                    a.values.remove(name);
                }
                Ok(())
            })
            .await
            .map_err(error::from_app)?;
        }
        Change::Shutdown(v) => {
            attrs::update(&ctx.app, &inst.id, |a| {
                a.set(extras::SHUTDOWN_BEHAVIOR, v.clone());
                Ok(())
            })
            .await
            .map_err(error::from_app)?;
        }
        Change::UserData(data) => {
            instance::set_user_data(&ctx.app, &ctx.scope, &inst.id, data)
                .await
                .map_err(|e| match e {
                    kumo_types::Error::Conflict { .. } => {
                        Ec2Error::incorrect_instance_state(&inst.id, "modified")
                    }
                    e => error::from_app(e),
                })?;
        }
    }
    ctx.respond(|w| {
        w.bool("return", true);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().copied()).expect("params")
    }

    #[test]
    fn one_change_in_either_form() {
        assert_eq!(
            read_change(&p(&[("DisableApiTermination.Value", "true")])).expect("ok"),
            Change::Flag(extras::TERMINATION_PROTECTION, true)
        );
        assert_eq!(
            read_change(&p(&[
                ("Attribute", "instanceInitiatedShutdownBehavior"),
                ("Value", "terminate")
            ]))
            .expect("ok"),
            Change::Shutdown("terminate".into())
        );
        assert_eq!(
            read_change(&p(&[("UserData.Value", "aGk=")])).expect("ok"),
            Change::UserData(Some("hi".into()))
        );
        let both = read_change(&p(&[
            ("DisableApiTermination.Value", "true"),
            ("DisableApiStop.Value", "true"),
        ]));
        assert_eq!(both.expect_err("two").code(), "InvalidParameterCombination");
        assert_eq!(
            read_change(&p(&[])).expect_err("none").code(),
            "MissingParameter"
        );
        assert_eq!(
            read_change(&p(&[("InstanceType.Value", "t3.large")]))
                .expect_err("resize")
                .code(),
            "Unsupported"
        );
        assert_eq!(
            read_change(&p(&[(
                "InstanceInitiatedShutdownBehavior.Value",
                "hibernate"
            )]))
            .expect_err("bad")
            .code(),
            "InvalidParameterValue"
        );
    }
}
