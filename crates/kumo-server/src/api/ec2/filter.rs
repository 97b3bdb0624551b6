//! `Filter.N.Name` / `Filter.N.Value.M` matching and `MaxResults` / `NextToken` pagination, for
//! every Describe action.
//!
//! Filters, as EC2 applies them: an item matches when it matches **every** filter, and it matches
//! a filter when **any** of the filter's values matches **any** of the item's values for that name.
//! Values may hold the wildcards `*` (any run of characters) and `?` (one character); `\*`, `\?`
//! and `\\` stand for the characters themselves. Tag filters come for free on resources that carry
//! tags: `tag:<key>` (the tag's value), `tag-key` (any key) and `tag-value` (any value). A filter
//! name the action does not support is an error (`InvalidParameterValue`), never ignored.
//!
//! Pagination: items sorted by a stable key; `NextToken` is an opaque token holding the last key
//! of the previous page. A token that does not decode is `InvalidPaginationToken`.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kumo_ec2::{Ec2Error, Filter, Params};

/// Tags of one resource (key → value).
pub type Tags = BTreeMap<String, String>;

/// The filters of a request, checked against the names an action supports.
#[derive(Debug, Clone, Default)]
pub struct Filters(Vec<Filter>);

impl Filters {
    /// Read `Filter.N` and check every name: one of `supported`, or (when `supported` contains
    /// `"tag:*"`) a tag filter. Every filter needs at least one value.
    pub fn read(params: &Params, supported: &[&str]) -> Result<Filters, Ec2Error> {
        Self::new(params.filters()?, supported)
    }

    /// [`Filters::read`] for filters already parsed.
    pub fn new(filters: Vec<Filter>, supported: &[&str]) -> Result<Filters, Ec2Error> {
        let tags = supported.contains(&"tag:*");
        for f in &filters {
            let tag_filter = f.name.starts_with("tag:") && f.name.len() > 4
                || f.name == "tag-key"
                || f.name == "tag-value";
            if !(supported.contains(&f.name.as_str()) || tags && tag_filter) {
                return Err(Ec2Error::invalid_parameter_value_message(format!(
                    "The filter '{}' is invalid",
                    f.name
                )));
            }
            if f.values.is_empty() {
                return Err(Ec2Error::invalid_parameter_value_message(format!(
                    "The filter '{}' needs at least one value",
                    f.name
                )));
            }
        }
        Ok(Filters(filters))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The values of filter `name`, if the request has it (e.g. to narrow a store read).
    pub fn values(&self, name: &str) -> Option<&[String]> {
        self.0
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.values.as_slice())
    }

    /// Whether an item matches every filter. `field(name)` gives the item's values for a
    /// non-tag filter name (empty: it has none); `tags` its tags.
    pub fn matches(&self, field: impl Fn(&str) -> Vec<String>, tags: &Tags) -> bool {
        self.0.iter().all(|f| {
            let have: Vec<&str> = if let Some(key) = f.name.strip_prefix("tag:") {
                tags.get(key).map(String::as_str).into_iter().collect()
            } else if f.name == "tag-key" {
                tags.keys().map(String::as_str).collect()
            } else if f.name == "tag-value" {
                tags.values().map(String::as_str).collect()
            } else {
                return any_match(&f.values, &field(&f.name));
            };
            f.values
                .iter()
                .any(|pattern| have.iter().any(|v| wildcard(pattern, v)))
        })
    }
}

fn any_match(patterns: &[String], have: &[String]) -> bool {
    patterns.iter().any(|p| have.iter().any(|v| wildcard(p, v)))
}

/// EC2 wildcard matching (`*`, `?`, with `\` escaping either and itself), whole-value.
pub fn wildcard(pattern: &str, value: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Tok {
        Lit(char),
        One,
        Any,
    }
    let mut toks = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        toks.push(match c {
            '\\' => Tok::Lit(chars.next().unwrap_or('\\')),
            '*' => Tok::Any,
            '?' => Tok::One,
            c => Tok::Lit(c),
        });
    }
    let v: Vec<char> = value.chars().collect();
    // Iterative matching with backtracking to the last `*`.
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < v.len() {
        match toks.get(p) {
            Some(Tok::Lit(c)) if *c == v[i] => {
                p += 1;
                i += 1;
            }
            Some(Tok::One) => {
                p += 1;
                i += 1;
            }
            Some(Tok::Any) => {
                star = Some((p, i));
                p += 1;
            }
            _ => match star {
                Some((sp, si)) => {
                    p = sp + 1;
                    i = si + 1;
                    star = Some((sp, si + 1));
                }
                None => return false,
            },
        }
    }
    toks[p..].iter().all(|t| *t == Tok::Any)
}

/// `MaxResults` and `NextToken` of a Describe request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paging {
    /// Items per page; `None`: everything at once (as EC2 does without `MaxResults`).
    pub max: Option<usize>,
    /// The last key of the previous page.
    pub after: Option<String>,
}

/// One page of items and the token for the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_token: Option<String>,
}

impl Paging {
    /// Read `MaxResults` (within `range`, EC2's bounds for the action) and `NextToken`.
    pub fn read(params: &Params, range: RangeInclusive<i64>) -> Result<Paging, Ec2Error> {
        let max = params
            .max_results(range)?
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        let after = params.next_token().map(|t| decode_token(&t)).transpose()?;
        Ok(Paging { max, after })
    }

    /// Whether the request paginates at all.
    pub fn is_set(&self) -> bool {
        self.max.is_some() || self.after.is_some()
    }

    /// The page of `items` (sorted by `key`, ascending and unique) after the token.
    pub fn page<T>(&self, items: Vec<T>, key: impl Fn(&T) -> String) -> Page<T> {
        let mut items: Vec<T> = match &self.after {
            Some(after) => items
                .into_iter()
                .filter(|x| key(x).as_str() > after.as_str())
                .collect(),
            None => items,
        };
        let next_token = match self.max {
            Some(max) if items.len() > max => {
                items.truncate(max);
                items.last().map(|x| encode_token(&key(x)))
            }
            _ => None,
        };
        Page { items, next_token }
    }
}

fn encode_token(key: &str) -> String {
    format!("k1.{}", URL_SAFE_NO_PAD.encode(key.as_bytes()))
}

fn decode_token(token: &str) -> Result<String, Ec2Error> {
    token
        .strip_prefix("k1.")
        .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            Ec2Error::new(
                "InvalidPaginationToken",
                format!("The pagination token '{token}' is not valid"),
                400,
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_like_ec2() {
        for (p, v) in [
            ("web", "web"),
            ("web*", "web-1"),
            ("*", ""),
            ("w?b", "wab"),
            ("*-1", "web-1"),
            ("a*b*c", "axxbyyc"),
            ("\\*", "*"),
            ("a\\?", "a?"),
            ("é*", "éa"),
        ] {
            assert!(wildcard(p, v), "{p} ~ {v}");
        }
        for (p, v) in [
            ("web", "web-1"),
            ("w?b", "wb"),
            ("\\*", "x"),
            ("a*b", "ac"),
            ("", "a"),
        ] {
            assert!(!wildcard(p, v), "{p} !~ {v}");
        }
    }

    fn f(name: &str, values: &[&str]) -> Filter {
        Filter {
            name: name.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn filters_and_across_names_or_across_values() {
        let fs = Filters::new(
            vec![
                f("instance-state-name", &["running", "pending"]),
                f("tag:Name", &["web*"]),
            ],
            &["instance-state-name", "tag:*"],
        )
        .expect("valid");
        let tags: Tags = [("Name".to_string(), "web-1".to_string())].into();
        let state = |s: &'static str| {
            move |n: &str| {
                assert_eq!(n, "instance-state-name");
                vec![s.to_string()]
            }
        };
        assert!(fs.matches(state("running"), &tags));
        assert!(!fs.matches(state("stopped"), &tags));
        assert!(!fs.matches(state("running"), &Tags::new()));
        let keys = Filters::new(vec![f("tag-key", &["Na*"])], &["tag:*"]).expect("valid");
        assert!(keys.matches(|_| vec![], &tags));
        assert!(!keys.matches(|_| vec![], &Tags::new()));
    }

    #[test]
    fn unsupported_or_empty_filters_are_refused() {
        let e = Filters::new(vec![f("owner-id", &["1"])], &["image-id"]).expect_err("bad");
        assert_eq!(e.code(), "InvalidParameterValue");
        assert!(e.message().contains("owner-id"));
        let e = Filters::new(vec![f("tag:Name", &["x"])], &["image-id"]).expect_err("no tags");
        assert!(e.message().contains("tag:Name"));
        assert!(Filters::new(vec![f("image-id", &[])], &["image-id"]).is_err());
    }

    #[test]
    fn pages_follow_tokens() {
        let items: Vec<u32> = (1..=7).collect();
        let key = |x: &u32| format!("{x:03}");
        let mut paging = Paging {
            max: Some(3),
            after: None,
        };
        let mut seen = Vec::new();
        loop {
            let p = paging.page(items.clone(), key);
            seen.extend(p.items);
            match p.next_token {
                Some(t) => paging.after = Some(decode_token(&t).expect("token")),
                None => break,
            }
        }
        assert_eq!(seen, items);
        assert_eq!(
            decode_token("garbage").expect_err("bad").code(),
            "InvalidPaginationToken"
        );
        let all = Paging::default().page(items.clone(), key);
        assert_eq!((all.items.len(), all.next_token), (7, None));
    }
}
