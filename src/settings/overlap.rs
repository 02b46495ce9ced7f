//! Destinations that can never be told apart: two that write to the same bucket and prefix (or
//! the same directory) mix their objects, another tenant's events among them.

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
                ("c", "s3://bucket"),
            ],
            &[(
                "AUDIT_EXPORTER__DESTINATIONS__B__ENDPOINT",
                "http://127.0.0.1:9000",
            )],
        ));
        assert!(found.is_empty(), "{found:?}");
    }
}
