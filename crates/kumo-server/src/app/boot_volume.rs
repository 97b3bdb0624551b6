//! Boot from volume: `run` with `root_volume` makes a volume from the image (in any pool) and the
//! instance boots from it instead of a root disk file: the EBS-backed instance. The volume is written
//! in the instance's own creation transaction, so either both exist or neither. A kernel+initrd
//! image boots its kernel with a blank root volume (as its root disk file would be blank).

use kumo_store::{Compare, Op};
use kumo_types::{
    Error, Image, Result, RootVolumeRequest, Volume, VolumeAttachment, VolumeStatus, ids,
    now_rfc3339,
};

use super::App;
use crate::storeutil::{encode, keys};

/// A boot volume, checked and ready to be written with its instance.
pub struct Planned {
    volume: Volume,
}

/// Check `req` for instance `instance_name` of `project` booting `image` (errors name
/// `root_volume.*`).
pub async fn plan(
    app: &App,
    project: &str,
    req: &RootVolumeRequest,
    instance_name: &str,
    image: &Image,
    root_disk_gib: u64,
) -> Result<Planned> {
    let (volume_type, pool) = super::volume_type::resolve(app, req.volume_type.as_deref(), None)
        .await
        .map_err(|e| match e {
            Error::Invalid { message, .. } => Error::invalid("root_volume.volume_type", message),
            e => e,
        })?;
    let min_gib = image.virtual_size_bytes.div_ceil(1 << 30).max(1);
    let size_gib = req.size_gib.unwrap_or(root_disk_gib.max(min_gib));
    if !(min_gib..=65536).contains(&size_gib) {
        return Err(Error::invalid(
            "root_volume.size_gib",
            format!(
                "{size_gib} GiB: from image `{}`'s {min_gib} GiB to 65536",
                image.name
            ),
        ));
    }
    Ok(Planned {
        volume: Volume {
            id: ids::new_id(ids::VOLUME),
            name: format!("{instance_name}-root"),
            project: project.to_string(),
            size_gib,
            pool,
            volume_type,
            // A kernel image boots its kernel and initrd; its root volume starts blank, as a root
            // disk file does.
            image_id: (image.kind == kumo_types::ImageKind::Disk).then(|| image.id.clone()),
            snapshot_id: None,
            host: String::new(),
            attachment: Some(VolumeAttachment {
                instance_id: String::new(),
                delete_on_termination: req.delete_on_termination.unwrap_or(true),
                slot: 0,
                boot: true,
            }),
            deleting: false,
            created_at: now_rfc3339(),
        },
    })
}

impl Planned {
    /// The volume's ID.
    pub fn id(&self) -> &str {
        &self.volume.id
    }

    /// Its size, charged to the project's `volume_gib` quota with the instance.
    pub fn size_gib(&self) -> u64 {
        self.volume.size_gib
    }

    /// Its compares and ops in the transaction that creates instance `instance_id` on `host_id`.
    pub fn ops(&self, instance_id: &str, host_id: &str) -> Result<(Vec<Compare>, Vec<Op>)> {
        let mut v = self.volume.clone();
        v.host = host_id.to_string();
        if let Some(a) = &mut v.attachment {
            a.instance_id = instance_id.to_string();
        }
        let name_key = keys::name("volumes", &v.project, &v.name);
        Ok((
            vec![Compare::absent(&name_key)],
            vec![
                Op::put(keys::volume(&v.id), encode(&v)?),
                Op::put(
                    keys::volume_status(&v.id),
                    encode(&VolumeStatus::default())?,
                ),
                Op::put(&name_key, v.id.clone()),
            ],
        ))
    }

    /// The name its volume would take, if that is free (checked again in the transaction).
    pub async fn check_name(&self, app: &App) -> Result<()> {
        let key = keys::name("volumes", &self.volume.project, &self.volume.name);
        if app
            .kv()
            .get(&key)
            .await
            .map_err(crate::storeutil::store_err)?
            .is_some()
        {
            return Err(Error::conflict_field(
                "root_volume",
                format!(
                    "a volume named `{}` already exists (the boot volume is named after the instance)",
                    self.volume.name
                ),
            ));
        }
        Ok(())
    }
}
