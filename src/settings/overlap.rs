//! Destinations that can never be told apart: two that write to the same bucket and prefix (or
//! the same directory) mix their objects, another tenant's events among them; one that writes
//! inside another's prefix (or directory) puts its objects among the other's for every reader.

use std::collections::BTreeMap;
use std::path::{Component, PathBuf};

use super::{Destination, Target};

impl Target {
    /// Where the objects go, as a user writes it: `s3://bucket/prefix` or `file:///dir`.
    pub fn location(&self) -> String {
        match self {
            Target::S3(s3) if s3.prefix.is_empty() => format!("s3://{}", s3.bucket),
            Target::S3(s3) => format!("s3://{}/{}", s3.bucket, s3.prefix),
            Target::File(path) => format!("file://{}", path.display()),
        }
    }

    /// What identifies the place written to: the store (endpoint), bucket and prefix, or the
    /// directory with `.` and trailing slashes taken out.
    fn place(&self) -> String {
        match self {
            Target::S3(s3) => format!(
                "{} {} {}",
                s3.endpoint.as_deref().unwrap_or("aws"),
                s3.bucket,
                s3.prefix.trim_matches('/')
            ),
            Target::File(path) => {
                let path: PathBuf = path
                    .components()
                    .filter(|c| *c != Component::CurDir)
                    .collect();
                format!("file {}", path.display())
            }
        }
    }
}

impl Target {
    /// The store and the path within it, one segment each: `(store, segments)`.
    fn segments(&self) -> (String, Vec<String>) {
        let place = self.place();
        let (store, path) = match self {
            Target::S3(s3) => (
                format!(
                    "s3 {} {}",
                    s3.endpoint.as_deref().unwrap_or("aws"),
                    s3.bucket
                ),
                s3.prefix.clone(),
            ),
            Target::File(_) => ("file".to_owned(), place["file ".len()..].to_owned()),
        };
        let segments = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        (store, segments)
    }
}

/// Every pair of destinations of which the first writes strictly inside the second's prefix or
/// directory: `(inner name, inner location, outer name, outer location)`.
pub fn nested_locations(destinations: &[Destination]) -> Vec<(String, String, String, String)> {
    // Each destination's segments once: with hundreds of destinations the pairs are many.
    let segments: Vec<(String, Vec<String>)> =
        destinations.iter().map(|d| d.target.segments()).collect();
    let mut found = Vec::new();
    for (inner, (store, path)) in destinations.iter().zip(&segments) {
        for (outer, (outer_store, outer_path)) in destinations.iter().zip(&segments) {
            if outer_store == store && outer_path.len() < path.len() && path.starts_with(outer_path)
            {
                found.push((
                    inner.name.clone(),
                    inner.target.location(),
                    outer.name.clone(),
                    outer.target.location(),
                ));
            }
        }
    }
    found
}

/// Every place more than one destination writes to: its location and the destinations' names.
pub fn shared_locations(destinations: &[Destination]) -> Vec<(String, Vec<String>)> {
    let mut by_place: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for d in destinations {
        by_place
            .entry(d.target.place())
            .or_insert_with(|| (d.target.location(), Vec::new()))
            .1
            .push(d.name.clone());
    }
    by_place
        .into_values()
        .filter(|(_, names)| names.len() > 1)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    fn destinations(urls: &[(&str, &str)], extra: &[(&str, &str)]) -> Vec<Destination> {
        let env = urls
            .iter()
            .map(|(name, url)| {
                (
                    format!("AUDIT_EXPORTER__DESTINATIONS__{}__URL", name.to_uppercase()),
                    (*url).to_owned(),
                )
            })
            .chain(
                extra
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            )
            .collect::<Vec<_>>();
        Settings::load_with_env(None, env).unwrap().destinations
    }

    #[test]
    fn destinations_writing_to_one_place_are_found() {
        let found = shared_locations(&destinations(
            &[
                ("a", "s3://bucket/logs"),
                ("b", "s3://bucket/logs/"),
                ("c", "s3://bucket/other"),
                ("d", "file:///var/audit/"),
                ("e", "file:///var/./audit"),
                ("f", "file:///var/audit2"),
            ],
            &[],
        ));
        assert_eq!(
            found,
            vec![
                (
                    "s3://bucket/logs".to_owned(),
                    vec!["a".to_owned(), "b".to_owned()]
                ),
                (
                    "file:///var/audit/".to_owned(),
                    vec!["d".to_owned(), "e".to_owned()]
                ),
            ]
        );
    }

    #[test]
    fn another_store_or_prefix_is_another_place() {
        let found = shared_locations(&destinations(
            &[
                ("a", "s3://bucket/logs"),
                ("b", "s3://bucket/logs"),
                ("c", "s3://bucket/logs2"),
            ],
            &[(
                "AUDIT_EXPORTER__DESTINATIONS__B__ENDPOINT",
                "http://127.0.0.1:9000",
            )],
        ));
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_destination_inside_another_is_found() {
        let all = destinations(
            &[
                ("out", "file:///out"),
                ("archive", "file:///out/./archive/"),
                ("sibling", "file:///out2"),
                ("exports", "s3://bkt-b/exports"),
                ("acme", "s3://bkt-b/exports/acme"),
                ("bucket", "s3://bkt-c"),
                ("deep", "s3://bkt-c/x/y"),
                ("elsewhere", "s3://bkt-b/exports/acme"),
            ],
            &[(
                "AUDIT_EXPORTER__DESTINATIONS__ELSEWHERE__ENDPOINT",
                "http://127.0.0.1:9000",
            )],
        );
        let mut found: Vec<String> = nested_locations(&all)
            .into_iter()
            .map(|(inner, _, outer, _)| format!("{inner} in {outer}"))
            .collect();
        found.sort();
        assert_eq!(
            found,
            ["acme in exports", "archive in out", "deep in bucket"]
        );
        assert!(shared_locations(&all).is_empty());
    }
}
