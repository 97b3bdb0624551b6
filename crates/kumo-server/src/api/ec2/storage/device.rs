//! Device names of attached volumes ⇄ kumo volume slots, and EC2 volume types ⇄ kumo volume types
//! (pure).
//!
//! kumo gives an instance 8 volume slots (0–7), each its own PCIe hot-plug port; the guest sees a
//! virtio disk (`/dev/vdX`) whose serial is the volume id, whatever name EC2 used. EC2 names map
//! onto slots by letter: `/dev/sdf` … `/dev/sdm` (or `/dev/xvdf` … `/dev/xvdm`) are slots 0 … 7,
//! and the name the client gave is kept and shown back. A boot volume is the root device,
//! `/dev/xvda`.

use kumo_ec2::Ec2Error;

/// The root device name of every instance (as the compute actions report it).
pub const ROOT_DEVICE: &str = "/dev/xvda";
/// The attribute holding the device name an EC2 client attached a volume at.
pub const ATTR_DEVICE: &str = "device";
/// … and the instance and slot it was for (a later attach through `/v1` is not shown under it).
pub const ATTR_DEVICE_AT: &str = "device_at";

/// EC2's volume types. Each is a label: the volume gets the kumo volume type of the same name if
/// an operator made one (`kumo volume-type create --name gp3 …`), else kumo's default type.
pub const VOLUME_TYPES: [&str; 7] = ["gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"];
/// What a volume made without `VolumeType` is, as on EC2.
pub const DEFAULT_VOLUME_TYPE: &str = "gp2";

/// kumo provisions no IOPS or throughput: `InvalidParameterValue` for either, except the values a
/// gp3 volume has anyway (3000 IOPS, 125 MiB/s).
pub fn check_provisioned(
    volume_type: &str,
    iops: Option<i64>,
    throughput: Option<i64>,
) -> Result<(), Ec2Error> {
    let gp3 = volume_type == "gp3";
    if let Some(i) = iops.filter(|i| !(gp3 && *i == 3000)) {
        return Err(Ec2Error::invalid_parameter_value(
            "Iops",
            &i.to_string(),
            "kumo volumes have no provisioned IOPS (gp3's baseline, 3000, is accepted).",
        ));
    }
    if let Some(t) = throughput.filter(|t| !(gp3 && *t == 125)) {
        return Err(Ec2Error::invalid_parameter_value(
            "Throughput",
            &t.to_string(),
            "kumo volumes have no provisioned throughput (gp3's baseline, 125, is accepted).",
        ));
    }
    Ok(())
}

/// The kumo slot of device name `device`.
pub fn slot(device: &str) -> Result<u8, Ec2Error> {
    let letter = device
        .strip_prefix("/dev/sd")
        .or_else(|| device.strip_prefix("/dev/xvd"))
        .filter(|rest| rest.len() == 1)
        .and_then(|rest| rest.bytes().next());
    match letter {
        Some(l @ b'f'..=b'm') => Ok(l - b'f'),
        _ => Err(Ec2Error::invalid_parameter_value(
            "Device",
            device,
            "kumo attaches up to 8 volumes, at /dev/sdf to /dev/sdm (or /dev/xvdf to /dev/xvdm).",
        )),
    }
}

/// The device name kumo shows for `slot` when the client gave none.
pub fn default_name(slot: u8) -> String {
    format!("/dev/sd{}", char::from(b'f' + slot.min(20)))
}

/// The value of [`ATTR_DEVICE_AT`] for an attachment to `instance` in `slot`.
pub fn at(instance: &str, slot: u8) -> String {
    format!("{instance}/{slot}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_gp3_baselines_are_accepted_as_provisioned_figures() {
        assert!(check_provisioned("gp3", Some(3000), Some(125)).is_ok());
        assert!(check_provisioned("gp2", None, None).is_ok());
        assert!(check_provisioned("gp2", Some(3000), None).is_err());
        assert!(check_provisioned("gp3", Some(4000), None).is_err());
        assert!(check_provisioned("gp3", None, Some(250)).is_err());
    }

    #[test]
    fn device_names_map_onto_the_eight_slots() {
        assert_eq!(slot("/dev/sdf").ok(), Some(0));
        assert_eq!(slot("/dev/xvdf").ok(), Some(0));
        assert_eq!(slot("/dev/sdm").ok(), Some(7));
        for bad in ["/dev/sda", "/dev/sdn", "/dev/sdf1", "/dev/vdb", "sdf", ""] {
            assert!(slot(bad).is_err(), "{bad}");
        }
        for s in 0..8 {
            assert_eq!(slot(&default_name(s)).ok(), Some(s));
        }
    }
}
