//! Helpers the EC2 network and storage actions share: tag specifications and tag sets, attribute
//! values, id lists, and errors for ids that do not exist.

use kumo_ec2::xml::XmlWriter;
use kumo_ec2::{Ec2Error, Node, Params, ResourceKind};

use crate::app::tags::Tags;

use super::super::error;

/// The app error as an EC2 error.
pub fn app(e: kumo_types::Error) -> Ec2Error {
    error::from_app(e)
}

/// Every page of an app-layer listing, one after the other (`list` gets each page's token).
pub async fn all_pages<T, F, Fut>(mut list: F) -> Result<Vec<T>, Ec2Error>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = kumo_types::Result<kumo_types::Page<T>>>,
{
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let mut page = list(token.take()).await.map_err(app)?;
        out.append(&mut page.items);
        match page.next_token {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

/// The tags of `TagSpecification.N` for an action that creates resources of `kind` (`vpc`,
/// `volume`, …). A specification for another resource type is refused, as EC2 does.
pub fn tag_specs(params: &Params, kind: &str) -> Result<Vec<(String, String)>, Ec2Error> {
    let mut out = Vec::new();
    for spec in params.tag_specifications()? {
        if let Some(t) = spec.resource_type.as_deref()
            && t != kind
        {
            return Err(Ec2Error::invalid_parameter_value_message(format!(
                "'{t}' is not a valid taggable resource type for this operation (it creates a {kind})"
            )));
        }
        for tag in spec.tags {
            out.push((tag.key, tag.value.unwrap_or_default()));
        }
    }
    Ok(out)
}

/// `<tagSet>` with one item per tag (an empty set when there are none).
pub fn tag_set(w: &mut XmlWriter, tags: Option<&Tags>) {
    w.set("tagSet", tags.into_iter().flatten(), |w, (k, v)| {
        w.text("key", k).text("value", v);
    });
}

/// An `AttributeBooleanValue` member: `Member.Value`.
pub fn attr_bool(node: &Node<'_>, member: &str) -> Result<Option<bool>, Ec2Error> {
    node.child(member).opt_bool("Value")
}

/// `true` / `false`.
pub fn bool_text(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// `<Kind>.NotFound` for the ids of `wanted` that are not in `found`, or `Ok` when all are.
pub fn all_found(kind: ResourceKind, wanted: &[String], found: &[&str]) -> Result<(), Ec2Error> {
    let missing: Vec<&str> = wanted
        .iter()
        .map(String::as_str)
        .filter(|w| !found.contains(w))
        .collect();
    match missing.as_slice() {
        [] => Ok(()),
        [one] => Err(Ec2Error::not_found(kind, one)),
        many => Err(Ec2Error::not_found_ids(kind, many)),
    }
}

/// An error with any code (400).
pub fn err(code: &'static str, message: impl Into<String>) -> Ec2Error {
    Ec2Error::new(code, message, 400)
}

/// `Unsupported` for a value kumo cannot honour, naming the parameter and why.
pub fn cannot(param: &str, value: &str, why: &str) -> Ec2Error {
    Ec2Error::invalid_parameter_value(param, value, why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().map(|(k, v)| (*k, *v))).expect("params")
    }

    #[test]
    fn tag_specifications_must_name_the_created_kind() {
        let p = params(&[
            ("TagSpecification.1.ResourceType", "vpc"),
            ("TagSpecification.1.Tag.1.Key", "Name"),
            ("TagSpecification.1.Tag.1.Value", "main"),
            ("TagSpecification.1.Tag.2.Key", "empty"),
        ]);
        assert_eq!(
            tag_specs(&p, "vpc").expect("tags"),
            vec![
                ("Name".into(), "main".into()),
                ("empty".into(), String::new())
            ]
        );
        let e = tag_specs(&p, "subnet").expect_err("wrong kind");
        assert_eq!(e.code(), "InvalidParameterValue");
    }

    #[test]
    fn missing_ids_are_named() {
        let wanted = vec!["vpc-1".to_string(), "vpc-2".to_string()];
        assert!(all_found(ResourceKind::Vpc, &wanted, &["vpc-1", "vpc-2"]).is_ok());
        let e = all_found(ResourceKind::Vpc, &wanted, &["vpc-1"]).expect_err("missing");
        assert_eq!(e.code(), "InvalidVpcID.NotFound");
        assert!(e.message().contains("vpc-2"));
    }
}
