//! Objects under the prefix that no verified digest names: an extra object is a finding, unless
//! the run log (online) accounts for it, or (offline) it was written before the chain began.

use chrono::{DateTime, Utc};

use super::{Finding, Verification};
use crate::sink::Listed;
use crate::store::{ChainRecord, RunFate, Written};

/// What tells an object older than the chain from one slipped in.
pub(super) enum Began<'a> {
    /// Online: the run log knows every object each run wrote, and when the chain began.
    RunLog(&'a ChainRecord),
    /// Offline: the modification time of the chain's first digest, when the listing has one.
    Modified(Option<DateTime<Utc>>),
}

/// Reports each of `unnamed` as a finding or a note; the notes name each object, except the
/// objects of runs the run log says were committed before the chain began, which are counted.
pub(super) fn report_unnamed(
    unnamed: &[&Listed],
    began: &Began,
    location: &impl Fn(&str) -> String,
    report: &mut Verification,
) {
    let extra = |why: String| format!("extra object: no digest names it{why}");
    let mut before_chain = 0;
    for item in unnamed {
        let at = location(&item.key);
        match began {
            Began::RunLog(record) => match record.written.get(&item.key) {
                None => report.findings.push(Finding {
                    subject: at,
                    problem: extra(String::new()),
                }),
                // Its digest is outside the span, or missing (reported with the digest).
                Some(Written {
                    fate: RunFate::Signed,
                    ..
                }) => {}
                Some(Written {
                    fate: RunFate::BeforeChain,
                    ..
                }) => before_chain += 1,
                Some(Written {
                    run_id,
                    fate: RunFate::Unsigned,
                }) => report.findings.push(Finding {
                    subject: at,
                    problem: extra(format!(
                        " (run {run_id} committed it without a signing key, after the chain began)"
                    )),
                }),
                Some(Written {
                    run_id,
                    fate: RunFate::Pending,
                }) => report.notes.push(format!(
                    "{at}: written by run {run_id}, still pending (the database knows it); its digest names it when the run commits"
                )),
                Some(Written {
                    run_id,
                    fate: RunFate::Abandoned,
                }) => report.notes.push(format!(
                    "{at}: written by a run that was then abandoned (run {run_id}; the database knows it); not part of the chain"
                )),
            },
            Began::Modified(began) => match (item.modified, began) {
                (Some(written), Some(began)) if written < *began => report.notes.push(format!(
                    "{at}: written ({written}) before the chain's first digest ({began}): not checked; offline, nothing tells a run from before signing began from an object slipped in with an old time"
                )),
                _ => report.findings.push(Finding {
                    subject: at,
                    problem: extra(String::new()),
                }),
            },
        }
    }
    if before_chain > 0 {
        report.notes.push(format!(
            "{before_chain} object(s) of runs committed before the chain began (the run log records them) were not checked"
        ));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::TimeZone;
    use uuid::Uuid;

    use super::*;

    fn listed(key: &str, hour: u32) -> Listed {
        Listed {
            key: key.into(),
            size: 1,
            modified: Utc.with_ymd_and_hms(2026, 11, 29, hour, 0, 0).single(),
        }
    }

    fn run(unnamed: &[Listed], began: &Began) -> (Vec<String>, Vec<String>) {
        let mut report = Verification::default();
        let unnamed: Vec<&Listed> = unnamed.iter().collect();
        report_unnamed(&unnamed, began, &|k: &str| k.to_owned(), &mut report);
        let found = report
            .findings
            .iter()
            .map(|f| format!("{}: {}", f.subject, f.problem))
            .collect();
        (found, report.notes)
    }

    #[test]
    fn offline_only_objects_older_than_the_chain_are_notes_and_each_is_named() {
        let objects = [listed("old", 3), listed("new", 6)];
        let began = Utc.with_ymd_and_hms(2026, 11, 29, 5, 0, 0).single();
        let (found, notes) = run(&objects, &Began::Modified(began));
        assert_eq!(found, ["new: extra object: no digest names it"]);
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].starts_with(
                "old: written (2026-11-29 03:00:00 UTC) before the chain's first digest"
            ),
            "{notes:?}"
        );
        // No digest to date the chain by: every object is extra.
        let (found, notes) = run(&objects, &Began::Modified(None));
        assert_eq!((found.len(), notes.len()), (2, 0));
    }

    #[test]
    fn online_the_run_log_tells_what_each_object_is() {
        let id = Uuid::nil();
        let written = |fate| Written { run_id: id, fate };
        let record = ChainRecord {
            written: BTreeMap::from([
                ("signed".into(), written(RunFate::Signed)),
                ("before".into(), written(RunFate::BeforeChain)),
                ("unsigned".into(), written(RunFate::Unsigned)),
                ("pending".into(), written(RunFate::Pending)),
                ("abandoned".into(), written(RunFate::Abandoned)),
            ]),
            ..ChainRecord::default()
        };
        // An old modification time does not matter online: only the run log does.
        let objects: Vec<Listed> = [
            "signed",
            "before",
            "unsigned",
            "pending",
            "abandoned",
            "stray",
        ]
        .iter()
        .map(|k| listed(k, 1))
        .collect();
        let (found, notes) = run(&objects, &Began::RunLog(&record));
        assert_eq!(
            found,
            [
                format!(
                    "unsigned: extra object: no digest names it (run {id} committed it without a signing key, after the chain began)"
                ),
                "stray: extra object: no digest names it".into(),
            ]
        );
        assert_eq!(
            notes,
            [
                format!(
                    "pending: written by run {id}, still pending (the database knows it); its digest names it when the run commits"
                ),
                format!(
                    "abandoned: written by a run that was then abandoned (run {id}; the database knows it); not part of the chain"
                ),
                "1 object(s) of runs committed before the chain began (the run log records them) were not checked".into(),
            ]
        );
    }
}
