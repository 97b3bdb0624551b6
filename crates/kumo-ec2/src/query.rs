//! The EC2 query wire format: form-encoded parameters, read through a typed
//! accessor that remembers what was read.
//!
//! # The format
//!
//! A request's parameters are the URL query (GET) and the
//! `application/x-www-form-urlencoded` body (POST; what every SDK sends),
//! merged. Both are `name=value` pairs joined by `&`, percent-encoded, with `+`
//! meaning a space. `Action` and `Version` name the operation; everything
//! else is the operation's input, flattened into dotted names. botocore's
//! `ec2` protocol serializer (`EC2Serializer`, a variant of the `query` one)
//! produces:
//!
//! * **Scalars** — `ImageId=ami-1`. Booleans are `true` / `false`; timestamps
//!   ISO 8601 (`2026-11-25T18:00:00Z`, with `.ffffffZ` only when there are
//!   microseconds); blobs base64 (`UserData`, which botocore base64-encodes
//!   for the caller).
//! * **Lists** — `Name.1`, `Name.2`, …, 1-based, with no `.member` level
//!   (that is the plain `query` protocol). `Name` is the member's
//!   `queryName`, else its `locationName` with the first letter capitalised,
//!   else the member name: `InstanceIds` travels as `InstanceId.N`, `Filters`
//!   as `Filter.N`. An **empty list is not sent at all** (the plain `query`
//!   protocol sends `Name=`; this parser accepts that too).
//! * **Structures** — `Parent.Member`: `BlockDeviceMapping.1.Ebs.VolumeSize=20`.
//! * **Nested lists** — `Filter.1.Value.2`, `TagSpecification.1.Tag.3.Key`.
//!
//! Indexes are ordered numerically, not by arrival, and may be sparse
//! (`InstanceId.1`, `InstanceId.3`); an index that is not a positive decimal
//! without leading zeros is not a list index at all and is left for
//! [`Params::finish`] to reject.
//!
//! # Consumed-parameter tracking
//!
//! Every getter marks the parameters it reads. When the handler has read all
//! it supports it calls [`Params::finish`], which fails with EC2's
//! `UnknownParameter` ("The parameter X is not recognized") naming the first
//! parameter nobody read — so a parameter kumo does not implement is never
//! silently ignored.
//!
//! Duplicate names (in the query, the body, or across both) are rejected, as
//! is anything that does not decode to UTF-8.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine as _;
use chrono::{DateTime, Utc};

use crate::Request;
use crate::error::Ec2Error;

/// Values longer than this are shortened in error messages.
const MAX_ECHO: usize = 64;

// ----------------------------------------------------------------------- decoding

/// The `name`, `value` slices of a raw `a=b&c=d` string, still encoded. Empty
/// pieces (`a=b&&c`) are skipped; a piece without `=` has an empty value.
pub(crate) fn raw_pairs(raw: &str) -> impl Iterator<Item = (&str, &str)> {
    raw.split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| piece.split_once('=').unwrap_or((piece, "")))
}

/// Decode one form component: `+` is a space, `%XX` a byte. A `%` not followed
/// by two hex digits is an error rather than being passed through.
pub(crate) fn decode_component(s: &str) -> Result<Vec<u8>, Ec2Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|b| char::from(*b).to_digit(16));
                let lo = bytes.get(i + 2).and_then(|b| char::from(*b).to_digit(16));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(Ec2Error::malformed_query_string(format!(
                        "Invalid percent-encoding in '{}'",
                        shorten(s)
                    )));
                };
                out.push(u8::try_from(hi << 4 | lo).unwrap_or(b'?'));
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn decode_utf8(s: &str) -> Result<String, Ec2Error> {
    String::from_utf8(decode_component(s)?).map_err(|_| {
        Ec2Error::malformed_query_string(format!(
            "The parameter '{}' is not valid UTF-8 once decoded",
            shorten(s)
        ))
    })
}

fn shorten(s: &str) -> String {
    if s.chars().count() <= MAX_ECHO {
        s.to_owned()
    } else {
        let head: String = s.chars().take(MAX_ECHO).collect();
        format!("{head}…")
    }
}

fn invalid(name: &str, value: &str, reason: &str) -> Ec2Error {
    Ec2Error::invalid_parameter_value(name, &shorten(value), reason)
}

// ----------------------------------------------------------------------- Params

#[derive(Debug)]
struct Slot {
    value: String,
    used: AtomicBool,
}

/// A request's decoded parameters (without `Action` and `Version`), with
/// consumed-parameter tracking.
///
/// Getters take `&self` and mark parameters read through an atomic flag, so
/// `Params` is `Send + Sync` and can be held across `.await` in a handler.
#[derive(Debug, Default)]
pub struct Params {
    entries: BTreeMap<String, Slot>,
}

impl Params {
    /// Build from decoded pairs; a name given twice is an error.
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self, Ec2Error>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut entries = BTreeMap::new();
        for (name, value) in pairs {
            let name = name.into();
            if entries.contains_key(&name) {
                return Err(Ec2Error::invalid_parameter_value_message(format!(
                    "The parameter {name} is specified more than once"
                )));
            }
            let slot = Slot {
                value: value.into(),
                used: AtomicBool::new(false),
            };
            entries.insert(name, slot);
        }
        Ok(Self { entries })
    }

    /// The parameters of `req`: its query string merged with its form body.
    /// The presigned-URL authentication parameters (`X-Amz-Signature`, …) are
    /// left out; `Action` and `Version` are kept (see [`Params::take`]).
    pub fn from_request(req: &Request) -> Result<Self, Ec2Error> {
        let mut pairs = Vec::new();
        for (k, v) in raw_pairs(&req.query) {
            let name = decode_utf8(k)?;
            if !crate::sigv4::PRESIGN_PARAMS.contains(&name.as_str()) {
                pairs.push((name, decode_utf8(v)?));
            }
        }
        if !req.body.is_empty() {
            if let Some(ct) = req.header("content-type") {
                check_form_content_type(ct)?;
            }
            let body = std::str::from_utf8(&req.body).map_err(|_| {
                Ec2Error::malformed_query_string("The request body is not valid UTF-8")
            })?;
            for (k, v) in raw_pairs(body.trim_end_matches(['\r', '\n'])) {
                pairs.push((decode_utf8(k)?, decode_utf8(v)?));
            }
        }
        Self::from_pairs(pairs)
    }

    /// Remove a parameter and return its value, without it ever counting as
    /// unread. For `Action` and `Version`.
    pub fn take(&mut self, name: &str) -> Option<String> {
        self.entries.remove(name).map(|slot| slot.value)
    }

    /// The accessor for top-level parameters.
    pub fn root(&self) -> Node<'_> {
        Node {
            params: self,
            prefix: String::new(),
        }
    }

    /// Whether no parameters are left.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Names no getter has read yet, in sorted order.
    pub fn unread(&self) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(_, slot)| !slot.used.load(Ordering::Relaxed))
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Fail with `UnknownParameter` for the first parameter no getter read.
    /// Call it after reading everything the action supports and before acting.
    pub fn finish(&self) -> Result<(), Ec2Error> {
        match self.unread().first() {
            Some(name) => Err(Ec2Error::unknown_parameter(name)),
            None => Ok(()),
        }
    }

    fn read(&self, name: &str) -> Option<&str> {
        self.entries.get(name).map(|slot| {
            slot.used.store(true, Ordering::Relaxed);
            slot.value.as_str()
        })
    }

    /// Names under `prefix.` (or equal to `prefix`), without marking them.
    fn names_under<'s>(&'s self, prefix: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.entries
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .map(|(name, _)| name.as_str())
            .take_while(move |name| name.starts_with(prefix))
            .filter(move |name| name.len() == prefix.len() || name[prefix.len()..].starts_with('.'))
    }

    // ------------------------------------------------------------------- helpers

    /// `Filter.N.Name` / `Filter.N.Value.M`.
    pub fn filters(&self) -> Result<Vec<Filter>, Ec2Error> {
        self.root().filters("Filter")
    }

    /// `TagSpecification.N.ResourceType` / `TagSpecification.N.Tag.M.{Key,Value}`.
    pub fn tag_specifications(&self) -> Result<Vec<TagSpecification>, Ec2Error> {
        self.root().tag_specifications("TagSpecification")
    }

    /// `Tag.N.Key` / `Tag.N.Value` (CreateTags, DeleteTags).
    pub fn tags(&self) -> Result<Vec<Tag>, Ec2Error> {
        self.root().tags("Tag")
    }

    /// `DryRun`, false when absent.
    pub fn dry_run(&self) -> Result<bool, Ec2Error> {
        Ok(self.root().opt_bool("DryRun")?.unwrap_or(false))
    }

    /// `ClientToken`: at most 64 ASCII characters.
    pub fn client_token(&self) -> Result<Option<String>, Ec2Error> {
        let Some(token) = self.root().opt_str("ClientToken") else {
            return Ok(None);
        };
        if token.len() > 64 || !token.is_ascii() {
            return Err(invalid(
                "ClientToken",
                &token,
                "A client token is at most 64 ASCII characters.",
            ));
        }
        Ok(Some(token))
    }

    /// `MaxResults`, checked against the action's range.
    pub fn max_results(&self, range: RangeInclusive<i64>) -> Result<Option<i64>, Ec2Error> {
        self.root().opt_i64("MaxResults", range)
    }

    /// `NextToken`.
    pub fn next_token(&self) -> Option<String> {
        self.root().opt_str("NextToken")
    }

    /// A top-level list of ids, e.g. `id_list("InstanceId")` for `InstanceId.N`.
    pub fn id_list(&self, name: &str) -> Result<Vec<String>, Ec2Error> {
        self.root().strings(name)
    }
}

fn check_form_content_type(content_type: &str) -> Result<(), Ec2Error> {
    let mut parts = content_type.split(';').map(str::trim);
    let media = parts.next().unwrap_or_default();
    if !media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(Ec2Error::malformed_query_string(format!(
            "Unsupported Content-Type '{}': send parameters as application/x-www-form-urlencoded",
            shorten(content_type)
        )));
    }
    for param in parts {
        if let Some((k, v)) = param.split_once('=')
            && k.trim().eq_ignore_ascii_case("charset")
        {
            let v = v.trim().trim_matches('"');
            if !v.eq_ignore_ascii_case("utf-8") && !v.eq_ignore_ascii_case("utf8") {
                return Err(Ec2Error::malformed_query_string(format!(
                    "Unsupported charset '{}': parameters must be UTF-8",
                    shorten(v)
                )));
            }
        }
    }
    Ok(())
}

// ----------------------------------------------------------------------- Node

/// A position in the parameter tree: the top level, a list element
/// (`Filter.2`) or a structure (`BlockDeviceMapping.1.Ebs`). Getters take the
/// member name relative to it and report errors with the full dotted name.
#[derive(Debug, Clone)]
pub struct Node<'a> {
    params: &'a Params,
    prefix: String,
}

impl<'a> Node<'a> {
    /// The full dotted name of `member` under this node.
    pub fn path(&self, member: &str) -> String {
        if self.prefix.is_empty() {
            member.to_owned()
        } else {
            format!("{}.{member}", self.prefix)
        }
    }

    /// This node's own dotted name (empty at the top level).
    pub fn name(&self) -> &str {
        &self.prefix
    }

    /// The structure member `member`.
    pub fn child(&self, member: &str) -> Node<'a> {
        Node {
            params: self.params,
            prefix: self.path(member),
        }
    }

    /// Whether `member` or anything under it was sent. Does not mark it read.
    pub fn has(&self, member: &str) -> bool {
        let path = self.path(member);
        self.params.names_under(&path).next().is_some()
    }

    /// The scalar value at this node itself (for list elements that are
    /// strings: `InstanceId.1`).
    pub fn value(&self) -> Option<String> {
        self.params.read(&self.prefix).map(str::to_owned)
    }

    /// An optional string.
    pub fn opt_str(&self, member: &str) -> Option<String> {
        self.params.read(&self.path(member)).map(str::to_owned)
    }

    /// A required string (`MissingParameter` when absent; may be empty).
    pub fn str(&self, member: &str) -> Result<String, Ec2Error> {
        self.opt_str(member)
            .ok_or_else(|| Ec2Error::missing_parameter(&self.path(member)))
    }

    /// An optional integer within `range`.
    pub fn opt_i64(
        &self,
        member: &str,
        range: RangeInclusive<i64>,
    ) -> Result<Option<i64>, Ec2Error> {
        let name = self.path(member);
        let Some(raw) = self.params.read(&name) else {
            return Ok(None);
        };
        let expected = || {
            format!(
                "Expected an integer from {} to {}.",
                range.start(),
                range.end()
            )
        };
        let n: i64 = raw
            .trim()
            .parse()
            .map_err(|_| invalid(&name, raw, &expected()))?;
        if !range.contains(&n) {
            return Err(invalid(&name, raw, &expected()));
        }
        Ok(Some(n))
    }

    /// A required integer within `range`.
    pub fn i64(&self, member: &str, range: RangeInclusive<i64>) -> Result<i64, Ec2Error> {
        self.opt_i64(member, range)?
            .ok_or_else(|| Ec2Error::missing_parameter(&self.path(member)))
    }

    /// An optional boolean: `true` or `false` (any letter case).
    pub fn opt_bool(&self, member: &str) -> Result<Option<bool>, Ec2Error> {
        let name = self.path(member);
        match self.params.read(&name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(invalid(&name, v, "Expected true or false.")),
        }
    }

    /// An optional value from a fixed set; returns the matching `&'static str`.
    pub fn opt_enum(
        &self,
        member: &str,
        allowed: &[&'static str],
    ) -> Result<Option<&'static str>, Ec2Error> {
        let name = self.path(member);
        let Some(raw) = self.params.read(&name) else {
            return Ok(None);
        };
        match allowed.iter().find(|a| **a == raw) {
            Some(a) => Ok(Some(*a)),
            None => Err(invalid(
                &name,
                raw,
                &format!("Allowed values: {}.", allowed.join(", ")),
            )),
        }
    }

    /// A required value from a fixed set.
    pub fn enum_value(
        &self,
        member: &str,
        allowed: &[&'static str],
    ) -> Result<&'static str, Ec2Error> {
        self.opt_enum(member, allowed)?
            .ok_or_else(|| Ec2Error::missing_parameter(&self.path(member)))
    }

    /// An optional ISO 8601 timestamp (`2026-11-25T18:00:00Z`, fractional
    /// seconds and offsets accepted).
    pub fn opt_timestamp(&self, member: &str) -> Result<Option<DateTime<Utc>>, Ec2Error> {
        let name = self.path(member);
        let Some(raw) = self.params.read(&name) else {
            return Ok(None);
        };
        DateTime::parse_from_rfc3339(raw.trim())
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| {
                invalid(
                    &name,
                    raw,
                    "Expected an ISO 8601 timestamp such as 2026-11-25T19:00:00Z.",
                )
            })
    }

    /// An optional base64 blob (`UserData`), decoded.
    pub fn opt_blob(&self, member: &str) -> Result<Option<Vec<u8>>, Ec2Error> {
        let name = self.path(member);
        let Some(raw) = self.params.read(&name) else {
            return Ok(None);
        };
        base64::engine::general_purpose::STANDARD
            .decode(raw.trim())
            .map(Some)
            .map_err(|_| invalid(&name, raw, "Expected base64."))
    }

    /// The elements of list `member` (`member.1`, `member.2`, …) in index
    /// order. A bare `member=` (how the plain query protocol sends an empty
    /// list) is read as an empty list.
    pub fn list(&self, member: &str) -> Result<Vec<Node<'a>>, Ec2Error> {
        let base = self.path(member);
        if let Some(v) = self.params.read(&base)
            && !v.is_empty()
        {
            return Err(invalid(
                &base,
                v,
                &format!("{base} is a list: send {base}.1, {base}.2, …"),
            ));
        }
        let mut indexes = BTreeSet::new();
        for name in self.params.names_under(&base) {
            let Some(rest) = name.get(base.len() + 1..) else {
                continue;
            };
            let segment = rest.split('.').next().unwrap_or_default();
            if let Some(n) = list_index(segment) {
                indexes.insert(n);
            }
        }
        Ok(indexes
            .into_iter()
            .map(|n| Node {
                params: self.params,
                prefix: format!("{base}.{n}"),
            })
            .collect())
    }

    /// A list of strings, `member.N`.
    pub fn strings(&self, member: &str) -> Result<Vec<String>, Ec2Error> {
        Ok(self.list(member)?.iter().filter_map(Node::value).collect())
    }

    /// `InvalidParameterCombination` when both `a` and `b` were sent.
    pub fn not_both(&self, a: &str, b: &str) -> Result<(), Ec2Error> {
        if self.has(a) && self.has(b) {
            return Err(Ec2Error::invalid_parameter_combination(
                &self.path(a),
                &self.path(b),
            ));
        }
        Ok(())
    }

    /// A list of filters: `member.N.Name` (required) and `member.N.Value.M`.
    pub fn filters(&self, member: &str) -> Result<Vec<Filter>, Ec2Error> {
        self.list(member)?
            .iter()
            .map(|f| {
                Ok(Filter {
                    name: f.str("Name")?,
                    values: f.strings("Value")?,
                })
            })
            .collect()
    }

    /// A list of tags: `member.N.Key` (required) and `member.N.Value`.
    pub fn tags(&self, member: &str) -> Result<Vec<Tag>, Ec2Error> {
        self.list(member)?
            .iter()
            .map(|t| {
                Ok(Tag {
                    key: t.str("Key")?,
                    value: t.opt_str("Value"),
                })
            })
            .collect()
    }

    /// A list of tag specifications: `member.N.ResourceType` and
    /// `member.N.Tag.M.{Key,Value}`.
    pub fn tag_specifications(&self, member: &str) -> Result<Vec<TagSpecification>, Ec2Error> {
        self.list(member)?
            .iter()
            .map(|s| {
                Ok(TagSpecification {
                    resource_type: s.opt_str("ResourceType"),
                    tags: s.tags("Tag")?,
                })
            })
            .collect()
    }
}

/// A list index: a positive decimal without leading zeros.
fn list_index(segment: &str) -> Option<u32> {
    if segment.is_empty()
        || segment.starts_with('0')
        || !segment.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    segment.parse().ok()
}

/// One `Filter.N`: a name and the values it matches (any of).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// e.g. `instance-state-name`, `tag:Name`.
    pub name: String,
    /// May be empty; whether that is allowed is the action's call.
    pub values: Vec<String>,
}

/// One `Tag.N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// The tag key.
    pub key: String,
    /// The value; `None` when not sent (DeleteTags: "any value"; when
    /// creating, treat it as empty).
    pub value: Option<String>,
}

/// One `TagSpecification.N`: tags to put on the resources an action creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagSpecification {
    /// e.g. `instance`, `volume`; may be absent for actions with one kind.
    pub resource_type: Option<String>,
    /// The tags.
    pub tags: Vec<Tag>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().map(|(k, v)| (*k, *v))).unwrap()
    }

    #[test]
    fn decode_component_handles_plus_percent_and_errors() {
        assert_eq!(decode_component("a+b%20c").unwrap(), b"a b c");
        assert_eq!(decode_component("%2B%2b").unwrap(), b"++");
        assert_eq!(decode_component("%C3%A9").unwrap(), "é".as_bytes());
        for bad in ["%", "%2", "%zz", "a%g0"] {
            assert_eq!(
                decode_component(bad).unwrap_err().code(),
                "MalformedQueryString",
                "{bad}"
            );
        }
    }

    #[test]
    fn raw_pairs_split_on_first_equals_and_skip_empties() {
        let got: Vec<_> = raw_pairs("a=1&&b&c=x=y&").collect();
        assert_eq!(got, [("a", "1"), ("b", ""), ("c", "x=y")]);
    }

    #[test]
    fn list_index_rules() {
        assert_eq!(list_index("1"), Some(1));
        assert_eq!(list_index("42"), Some(42));
        for bad in ["", "0", "01", "x", "-1", "1a", "99999999999"] {
            assert_eq!(list_index(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_under_does_not_match_longer_names() {
        let p = params(&[
            ("Tag", ""),
            ("Tag.1.Key", "k"),
            ("TagSpecification.1.ResourceType", "x"),
        ]);
        let got: Vec<_> = p.names_under("Tag").collect();
        assert_eq!(got, ["Tag", "Tag.1.Key"]);
    }

    #[test]
    fn content_type_must_be_form_utf8() {
        assert!(
            check_form_content_type("application/x-www-form-urlencoded; charset=utf-8").is_ok()
        );
        assert!(check_form_content_type("Application/X-WWW-Form-Urlencoded").is_ok());
        assert!(check_form_content_type("application/json").is_err());
        assert!(
            check_form_content_type("application/x-www-form-urlencoded; charset=latin1").is_err()
        );
    }
}
