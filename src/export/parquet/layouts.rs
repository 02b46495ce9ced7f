//! The two layouts of a Parquet object, `native` and `ocsf`, and how an event becomes a row of
//! each: pure functions, the same event always the same cells.

use super::{Cells, Column, Kind, Layout, unix_micros};
use crate::domain::ocsf::{self, Activity, Actor, Resource};
use crate::domain::{EventRef, json};

const fn required(kind: Kind) -> Column {
    Column {
        kind,
        max_def: 0,
        repeated: false,
    }
}

const fn optional(kind: Kind, max_def: i16) -> Column {
    Column {
        kind,
        max_def,
        repeated: false,
    }
}

/// Under the `resources` list.
const fn listed(kind: Kind, max_def: i16) -> Column {
    Column {
        kind,
        max_def,
        repeated: true,
    }
}

/// The native event: timestamps in microseconds from the Unix epoch, UTC; `actor`, `target`
/// and `metadata` JSON text. `event_id` is a string, as Athena reads no UUID column.
pub static NATIVE: Layout = Layout {
    schema: "message audit_event {
        required binary event_id (STRING);
        required int64 occurred_at (TIMESTAMP(MICROS,true));
        required int64 recorded_at (TIMESTAMP(MICROS,true));
        optional binary tenant_id (STRING);
        required binary action (STRING);
        required binary actor (JSON);
        optional binary target (JSON);
        required binary metadata (JSON);
    }",
    columns: &[
        required(Kind::Text),
        required(Kind::Int64),
        required(Kind::Int64),
        optional(Kind::Text, 1),
        required(Kind::Text),
        required(Kind::Text),
        optional(Kind::Text, 1),
        required(Kind::Text),
    ],
    dictionary: &["tenant_id", "action"],
};

/// Appends `event` as a row of [`NATIVE`].
pub fn frame_native(event: &EventRef<'_>, out: &mut Vec<u8>) {
    let mut cells = Cells(out);
    let id = event.event_id.hyphenated().to_string();
    cells.text(0, Some(id.as_bytes()));
    cells.int(0, Some(unix_micros(event.occurred_at)));
    cells.int(0, Some(unix_micros(event.recorded_at)));
    optional_text(&mut cells, 1, event.tenant_id.as_deref());
    cells.text(0, Some(event.action.as_bytes()));
    cells.text_with(0, |out| json::write_compact(&event.actor, out));
    match event.target.as_deref() {
        Some(target) => cells.text_with(1, |out| json::write_compact(target, out)),
        None => cells.text(0, None),
    }
    cells.text_with(0, |out| json::write_compact(&event.metadata, out));
}

fn optional_text(cells: &mut Cells<'_>, def: u8, value: Option<&str>) {
    match value {
        Some(value) => cells.text(def, Some(value.as_bytes())),
        None => cells.text(def - 1, None),
    }
}

/// The OCSF record of docs/ocsf.md as nested columns: the same fields and values as the JSON
/// form, times as timestamps in milliseconds (OCSF's `timestamp_t`), the JSON carried over
/// (`resources[].data`, `unmapped`) as JSON text.
pub static OCSF: Layout = Layout {
    schema: "message ocsf_api_activity {
        required int32 activity_id;
        required binary activity_name (STRING);
        required int32 category_uid;
        required binary category_name (STRING);
        required int32 class_uid;
        required binary class_name (STRING);
        required int64 type_uid;
        required binary type_name (STRING);
        required int32 severity_id;
        required binary severity (STRING);
        required int64 time (TIMESTAMP(MILLIS,true));
        required group metadata {
            required binary version (STRING);
            required group product {
                required binary name (STRING);
                required binary vendor_name (STRING);
            }
            required binary uid (STRING);
            required int64 logged_time (TIMESTAMP(MILLIS,true));
            optional binary tenant_uid (STRING);
            optional binary original_time (STRING);
        }
        required group api {
            required binary operation (STRING);
        }
        required group actor {
            optional group user {
                optional binary uid (STRING);
                optional binary name (STRING);
                optional binary type (STRING);
                optional int32 type_id;
            }
        }
        required group src_endpoint {
            optional binary ip (STRING);
        }
        optional group http_request {
            required binary user_agent (STRING);
        }
        optional group resources (LIST) {
            repeated group list {
                required group element {
                    optional binary uid (STRING);
                    optional binary name (STRING);
                    optional binary type (STRING);
                    required binary data (JSON);
                }
            }
        }
        required group unmapped {
            optional binary actor (JSON);
            required binary metadata (JSON);
        }
    }",
    columns: &[
        required(Kind::Int32),
        required(Kind::Text),
        required(Kind::Int32),
        required(Kind::Text),
        required(Kind::Int32),
        required(Kind::Text),
        required(Kind::Int64),
        required(Kind::Text),
        required(Kind::Int32),
        required(Kind::Text),
        required(Kind::Int64),
        // metadata
        required(Kind::Text),
        required(Kind::Text),
        required(Kind::Text),
        required(Kind::Text),
        required(Kind::Int64),
        optional(Kind::Text, 1),
        optional(Kind::Text, 1),
        // api
        required(Kind::Text),
        // actor.user
        optional(Kind::Text, 2),
        optional(Kind::Text, 2),
        optional(Kind::Text, 2),
        optional(Kind::Int32, 2),
        // src_endpoint
        optional(Kind::Text, 1),
        // http_request
        optional(Kind::Text, 1),
        // resources
        listed(Kind::Text, 3),
        listed(Kind::Text, 3),
        listed(Kind::Text, 3),
        listed(Kind::Text, 2),
        // unmapped
        optional(Kind::Text, 1),
        required(Kind::Text),
    ],
    dictionary: &[
        "activity_id",
        "activity_name",
        "category_uid",
        "category_name",
        "class_uid",
        "class_name",
        "type_uid",
        "type_name",
        "severity_id",
        "severity",
        "metadata.version",
        "metadata.product.name",
        "metadata.product.vendor_name",
        "metadata.tenant_uid",
        "api.operation",
        "actor.user.type",
        "actor.user.type_id",
        "resources.list.element.type",
    ],
};

/// Appends `event` as a row of [`OCSF`]: the values `ocsf::write_record` writes as JSON.
pub fn frame_ocsf(event: &EventRef<'_>, out: &mut Vec<u8>) {
    let activity = Activity::of(&event.action);
    let mut cells = Cells(out);
    let id = activity as i64;
    let name = activity.name();
    cells.int(0, Some(id));
    cells.text(0, Some(name.as_bytes()));
    cells.int(0, Some(i64::from(ocsf::CATEGORY_UID)));
    cells.text(0, Some(b"Application Activity"));
    cells.int(0, Some(i64::from(ocsf::CLASS_UID)));
    cells.text(0, Some(b"API Activity"));
    cells.int(0, Some(i64::from(ocsf::CLASS_UID) * 100 + id));
    cells.text(0, Some(format!("API Activity: {name}").as_bytes()));
    cells.int(0, Some(1));
    cells.text(0, Some(b"Informational"));
    cells.int(0, Some(ocsf::epoch_millis(event.occurred_at)));

    cells.text(0, Some(ocsf::VERSION.as_bytes()));
    cells.text(0, Some(b"audit-exporter"));
    cells.text(0, Some(b"audit-exporter"));
    cells.text(0, Some(event.event_id.hyphenated().to_string().as_bytes()));
    cells.int(0, Some(ocsf::epoch_millis(event.recorded_at)));
    optional_text(&mut cells, 1, event.tenant_id.as_deref());
    if event.occurred_at.is_rfc3339() {
        cells.text(0, None);
    } else {
        cells.text_with(1, |out| json::write_timestamp(event.occurred_at, out));
    }

    cells.text(0, Some(event.action.as_bytes()));

    let actor = Actor::parse(&event.actor);
    let user = actor.uid.is_some() || actor.name.is_some() || actor.kind.is_some();
    for value in [&actor.uid, &actor.name, &actor.kind] {
        match value {
            Some(value) => cells.text(2, Some(value.as_bytes())),
            None => cells.text(u8::from(user), None),
        }
    }
    match &actor.kind {
        Some(kind) => cells.int(2, Some(i64::from(ocsf::user_type_id(kind)))),
        None => cells.int(u8::from(user), None),
    }
    optional_text(&mut cells, 1, actor.ip.as_deref());
    optional_text(&mut cells, 1, actor.user_agent.as_deref());

    match event.target.as_deref().map(Resource::parse) {
        Some(resource) => {
            for value in &resource.fields {
                match value {
                    Some(value) => cells.text(3, Some(value.as_bytes())),
                    None => cells.text(2, None),
                }
            }
            cells.text(2, Some(&resource.data));
        }
        None => {
            for _ in 0..4 {
                cells.text(0, None);
            }
        }
    }

    if actor.rest {
        cells.text_with(1, |out| json::write_compact(&event.actor, out));
    } else {
        cells.text(0, None);
    }
    cells.text_with(0, |out| json::write_compact(&event.metadata, out));
}
