//! Instance types: a built-in set (nano … 2xlarge) plus custom ones.

use kumo_store::{Compare, Op, Txn};
use kumo_types::{
    CreateInstanceTypeRequest, Error, InstanceType, Page, Result, builtin_instance_types, validate,
};

use super::App;
use crate::storeutil::{encode, get_json, keys, list_json, store_err};

pub async fn ensure_builtins(app: &App) -> Result<()> {
    for t in builtin_instance_types() {
        let key = keys::instance_type(&t.name);
        let txn = Txn {
            compare: vec![Compare::absent(&key)],
            success: vec![Op::put(&key, encode(&t)?)],
            failure: vec![],
        };
        app.kv().txn(txn).await.map_err(store_err)?;
    }
    Ok(())
}

pub async fn list(app: &App) -> Result<Page<InstanceType>> {
    let mut all: Vec<InstanceType> = list_json(app.kv(), keys::INSTANCE_TYPES).await?;
    all.sort_by(|a, b| (a.vcpus, a.memory_mib, &a.name).cmp(&(b.vcpus, b.memory_mib, &b.name)));
    Ok(Page {
        items: all,
        next_token: None,
    })
}

pub async fn get(app: &App, name: &str) -> Result<InstanceType> {
    get_json(app.kv(), &keys::instance_type(name))
        .await?
        .map(|(t, _)| t)
        .ok_or_else(|| Error::not_found("instance type", name))
}

pub async fn create(app: &App, req: CreateInstanceTypeRequest) -> Result<InstanceType> {
    validate::name("name", &req.name)?;
    if !(1..=256).contains(&req.vcpus) {
        return Err(Error::invalid("vcpus", "must be 1 to 256"));
    }
    if !(64..=4 * 1024 * 1024).contains(&req.memory_mib) {
        return Err(Error::invalid(
            "memory_mib",
            "must be 64 to 4194304 (4 TiB)",
        ));
    }
    if !(1..=65536).contains(&req.root_disk_gib) {
        return Err(Error::invalid("root_disk_gib", "must be 1 to 65536"));
    }
    if let Some(g) = &req.gpus {
        kumo_types::validate_gpu_request("gpus", g)?;
        gpu_count_fits(g)?;
    }
    let t = InstanceType {
        name: req.name,
        vcpus: req.vcpus,
        memory_mib: req.memory_mib,
        root_disk_gib: req.root_disk_gib,
        gpus: req.gpus,
        builtin: false,
    };
    let key = keys::instance_type(&t.name);
    let r = app
        .kv()
        .txn(Txn {
            compare: vec![Compare::absent(&key)],
            success: vec![Op::put(&key, encode(&t)?)],
            failure: vec![],
        })
        .await
        .map_err(store_err)?;
    if !r.succeeded {
        return Err(Error::conflict_field(
            "name",
            format!("instance type `{}` already exists", t.name),
        ));
    }
    Ok(t)
}

/// The most GPUs one instance can have passed through: each sits behind its own PCIe root port of
/// the q35 machine, whose root bus (30 usable slots) also carries the 16 hot-plug ports and the
/// instance's disks.
pub const MAX_GPUS_PER_INSTANCE: u32 = 8;

/// `gpus.count` within [`MAX_GPUS_PER_INSTANCE`] (pure).
pub fn gpu_count_fits(g: &kumo_types::GpuRequest) -> Result<()> {
    if g.count > MAX_GPUS_PER_INSTANCE {
        return Err(Error::invalid(
            "gpus.count",
            format!(
                "{}: must be 1 to {MAX_GPUS_PER_INSTANCE} (each passed-through GPU takes a PCIe \
                 slot of the instance's machine)",
                g.count
            ),
        ));
    }
    Ok(())
}

pub async fn delete(app: &App, name: &str) -> Result<()> {
    let (t, rev) = get_json::<InstanceType>(app.kv(), &keys::instance_type(name))
        .await?
        .ok_or_else(|| Error::not_found("instance type", name))?;
    if t.builtin {
        return Err(Error::conflict(format!(
            "instance type `{name}` is built in and cannot be deleted"
        )));
    }
    // Instances copy the type's vCPUs, memory and disk size at launch (as OpenStack flavors do), so a
    // type in use can still be deleted.
    let key = keys::instance_type(name);
    let done = app
        .kv()
        .txn(Txn {
            compare: vec![Compare::mod_revision(&key, rev)],
            success: vec![Op::delete(&key)],
            failure: vec![],
        })
        .await
        .map_err(store_err)?;
    if !done.succeeded {
        return Err(Error::conflict(format!(
            "instance type `{name}` changed concurrently; retry"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_requests_are_validated_precisely() {
        let g = |model: &str, count| kumo_types::GpuRequest {
            model: model.into(),
            count,
        };
        let check = |r: &kumo_types::GpuRequest| {
            kumo_types::validate_gpu_request("gpus", r).and_then(|()| gpu_count_fits(r))
        };
        for ok in [g("10de:2236", 1), g("10de:2236", 8), g("1002:740f", 2)] {
            assert!(check(&ok).is_ok(), "{ok:?}");
        }
        for bad in [g("10de:2236", 0), g("10de:2236", 9), g("10de:2236", 16)] {
            let e = check(&bad).expect_err("refused");
            assert_eq!(e.field(), Some("gpus.count"), "{bad:?}");
        }
        for bad in ["10de-2236", "nvidia", "10de:22", "10de:2236:1", ""] {
            let e = check(&g(bad, 1)).expect_err("refused");
            assert_eq!(e.field(), Some("gpus.model"), "{bad}");
            assert!(e.to_string().contains("10de:2236"), "{e}");
        }
    }
}
