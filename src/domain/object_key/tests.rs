use super::*;
use chrono::{NaiveDate, TimeZone};

#[test]
fn templates_and_log_types_that_climb_out_are_refused() {
    for template in [
        "{prefix}/../../escaped/{run_id}{ext}",
        "../{run_id}{ext}",
        "{prefix}/./{run_id}{ext}",
        "{prefix}/a/..{prefix}/{run_id}{ext}",
        "/{prefix}/{run_id}{ext}",
        "/etc/{run_id}",
    ] {
        assert!(KeyLayout::parse(template, "audit").is_err(), "{template}");
    }
    for template in [
        "{prefix}/{YYYY}/..{run_id}{ext}",
        "{prefix}/.hidden/{run_id}{ext}",
        "{prefix}/a..b/{run_id}{ext}",
    ] {
        assert!(KeyLayout::parse(template, "audit").is_ok(), "{template}");
    }
    let error = KeyLayout::parse("env0", "../x").unwrap_err();
    assert!(error.starts_with("env0_log_type "), "{error}");
    assert!(KeyLayout::parse("env0", "audit/logs").is_ok());
}

#[test]
fn key_paths_are_plain_segments() {
    for ok in ["", "exports", "audit logs/données", "a/b.c/..d"] {
        assert_eq!(check_key_path(ok), Ok(()), "{ok}");
    }
    for bad in ["..", "a/../b", "./a", "a/.", "a\nb", "a\u{7f}"] {
        assert!(check_key_path(bad).is_err(), "{bad:?}");
    }
    assert!(check_key_path(&"a".repeat(MAX_PREFIX_BYTES + 1)).is_err());
}

#[test]
fn test_and_reexport_keys_keep_the_layout_under_their_own_folder() {
    let p = parts("exports/eu");
    assert_eq!(
        side_key(&KeyLayout::Hive, SideFolder::Test, &p, None),
        "exports/eu/test/schema=audit_log/version=v1/year=2026/month=03/day=04/20260304T050607Z_0190b9a4-1111-7222-8333-444455556666.jsonl.gz"
    );
    assert_eq!(
        side_key(&KeyLayout::Hive, SideFolder::Reexport, &p, Some(2)),
        "exports/eu/reexport/schema=audit_log/version=v1/year=2026/month=03/day=04/20260304T050607Z_0190b9a4-1111-7222-8333-444455556666_part0002.jsonl.gz"
    );
    assert!(
        side_key(&KeyLayout::Hive, SideFolder::Reexport, &parts(""), None)
            .starts_with("reexport/schema=audit_log/version=v1/year=2026/")
    );
    let env0 = KeyLayout::parse("env0", "audit").unwrap();
    assert_eq!(
        side_key(&env0, SideFolder::Test, &parts("p"), None),
        "p/test/audit/2026/03/04/05:06:07_56666.jsonl.gz"
    );
    // A template whose {prefix} is not in front, or that has no {ext}: still under the
    // folder, and the parts of a split still differ.
    let template = KeyLayout::parse("{destination}/{prefix}/{run_id}", "audit").unwrap();
    assert_eq!(
        side_key(&template, SideFolder::Reexport, &parts("p"), Some(1)),
        "p/reexport/acme/0190b9a4-1111-7222-8333-444455556666_part0001"
    );
}

fn parts(prefix: &str) -> KeyParts<'_> {
    KeyParts {
        prefix,
        destination: "acme",
        window_end: Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap(),
        run_id: Uuid::parse_str("0190b9a4-1111-7222-8333-444455556666").unwrap(),
        extension: ".jsonl.gz",
        by_day: false,
    }
}

#[test]
fn hive_layout() {
    assert_eq!(
        KeyLayout::Hive.render(&parts("exports/eu")),
        "exports/eu/schema=audit_log/version=v1/year=2026/month=03/day=04/20260304T050607Z_0190b9a4-1111-7222-8333-444455556666.jsonl.gz"
    );
}

#[test]
fn empty_prefix_leaves_no_leading_slash() {
    assert!(
        KeyLayout::Hive
            .render(&parts(""))
            .starts_with("schema=audit_log/")
    );
}

#[test]
fn env0_layout_uses_log_type_and_five_chars_of_the_run() {
    let layout = KeyLayout::parse("env0", "deployment-logs").unwrap();
    assert_eq!(
        layout.render(&parts("p")),
        "p/deployment-logs/2026/03/04/05:06:07_56666.jsonl.gz"
    );
}

#[test]
fn template_layout() {
    let layout = KeyLayout::parse(
        "{prefix}/{destination}/{YYYY}-{MM}-{DD}/{HH}{mm}{ss}-{run_id}{ext}",
        "audit",
    )
    .unwrap();
    assert_eq!(
        layout.render(&parts("")),
        "acme/2026-03-04/050607-0190b9a4-1111-7222-8333-444455556666.jsonl.gz"
    );
}

#[test]
fn templates_are_checked() {
    assert!(
        KeyLayout::parse("{prefix}/{year}/{run_id}", "audit")
            .unwrap_err()
            .contains("unknown placeholder {year}")
    );
    assert!(
        KeyLayout::parse("{prefix}/{YYYY}{ext}", "audit")
            .unwrap_err()
            .contains("{run_id} or {rand5}")
    );
    assert!(KeyLayout::parse("{prefix/{run_id}", "audit").is_err());
    assert!(
        KeyLayout::parse("flat", "audit")
            .unwrap_err()
            .contains("hive | env0")
    );
}

#[test]
fn part_keys_follow_the_first() {
    assert_eq!(
        part_key("p/reexport/x_0190_part0001.jsonl.gz", 12),
        "p/reexport/x_0190_part0012.jsonl.gz"
    );
    assert_eq!(part_key("p/test/x_0190.jsonl", 1), "p/test/x_0190.jsonl");
    assert_eq!(
        with_part("p/x_0190.jsonl.gz", ".jsonl.gz", 1),
        "p/x_0190_part0001.jsonl.gz"
    );
    assert_eq!(with_part("p/x_0190", ".jsonl", 3), "p/x_0190_part0003");
}

#[test]
fn keys_by_event_day_keep_their_day_fields_until_each_object_fills_them() {
    let by_day = KeyParts {
        by_day: true,
        ..parts("exports/eu")
    };
    let planned = with_part(&KeyLayout::Hive.render(&by_day), ".jsonl.gz", 1);
    assert_eq!(
        planned,
        "exports/eu/schema=audit_log/version=v1/year={YYYY}/month={MM}/day={DD}/20260304T050607Z_0190b9a4-1111-7222-8333-444455556666_part0001.jsonl.gz"
    );
    let day = NaiveDate::from_ymd_opt(2025, 12, 31).unwrap();
    assert_eq!(
        part_key(&day_key(&planned, day), 3),
        "exports/eu/schema=audit_log/version=v1/year=2025/month=12/day=31/20260304T050607Z_0190b9a4-1111-7222-8333-444455556666_part0003.jsonl.gz"
    );
    // A template's date fields are its day fields; its times stay the window's end.
    let template =
        KeyLayout::parse("{prefix}/{YYYY}{MM}{DD}/{HH}{mm}_{run_id}{ext}", "audit").unwrap();
    assert_eq!(
        day_key(&template.render(&by_day), day),
        "exports/eu/20251231/0506_0190b9a4-1111-7222-8333-444455556666.jsonl.gz"
    );
    let env0 = KeyLayout::parse("env0", "audit").unwrap();
    assert_eq!(
        day_key(&env0.render(&by_day), day),
        "exports/eu/audit/2025/12/31/05:06:07_56666.jsonl.gz"
    );
}

#[test]
fn security_lake_layout() {
    let layout = KeyLayout::security_lake("123456789012", "eu-west-1").unwrap();
    let by_day = KeyParts {
        by_day: true,
        extension: ".parquet",
        ..parts("ext/audit-exporter")
    };
    let planned = with_part(&layout.render(&by_day), ".parquet", 1);
    assert_eq!(
        day_key(&planned, NaiveDate::from_ymd_opt(2026, 3, 2).unwrap()),
        "ext/audit-exporter/region=eu-west-1/accountId=123456789012/eventDay=20260302/20260304T050607Z_0190b9a4-1111-7222-8333-444455556666_part0001.parquet"
    );
    assert_eq!(layout.as_config(), "security-lake");
    for (account, region) in [
        ("12345678901", "eu-west-1"),
        ("12345678901a", "eu-west-1"),
        ("123456789012", "EU west"),
    ] {
        assert!(
            KeyLayout::security_lake(account, region).is_err(),
            "{account} {region}"
        );
    }
    assert!(
        KeyLayout::parse("security-lake", "audit")
            .unwrap_err()
            .contains("account_id")
    );
}
