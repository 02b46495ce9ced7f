//! The OCSF form of an event: an API Activity record (class 6003) of OCSF 1.1.0, written
//! straight into a reused buffer like the native form. docs/ocsf.md documents the mapping.
//!
//! Byte-deterministic: the fields come in a fixed order, and the stored JSON that is carried
//! over (the target, the metadata, an actor with fields of its own) is copied verbatim and
//! compact, never parsed and re-serialised, so no number loses a digit.

use serde_json::{Map, Value};

use super::{EventRef, Timestamp, json};

/// The OCSF version the records follow.
pub const VERSION: &str = "1.1.0";
pub const CLASS_UID: u32 = 6003;
pub const CATEGORY_UID: u32 = 6;

/// What an action does, from its verb: OCSF API Activity's `activity_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    Create = 1,
    Read = 2,
    Update = 3,
    Delete = 4,
    Other = 99,
}

impl Activity {
    /// The verb of `action`: its words (split at anything but letters and digits), read from the
    /// last one back, the first one found in the table below; `Other` when none is.
    /// `user.create` → Create, `api_key.deleted` → Delete, `user.login` → Other.
    pub fn of(action: &str) -> Self {
        action
            .split(|c: char| !c.is_ascii_alphanumeric())
            .rev()
            .find_map(|word| Self::verb(&word.to_ascii_lowercase()))
            .unwrap_or(Self::Other)
    }

    fn verb(word: &str) -> Option<Self> {
        Some(match word {
            "create" | "created" | "add" | "added" | "insert" | "inserted" | "new" | "register"
            | "registered" | "invite" | "invited" | "upload" | "uploaded" => Self::Create,
            "read" | "get" | "view" | "viewed" | "list" | "listed" | "download" | "downloaded"
            | "search" | "searched" | "query" | "queried" | "fetch" | "fetched" | "access"
            | "accessed" | "show" | "describe" => Self::Read,
            "update" | "updated" | "edit" | "edited" | "modify" | "modified" | "change"
            | "changed" | "set" | "rename" | "renamed" | "patch" | "patched" | "enable"
            | "enabled" | "disable" | "disabled" | "grant" | "granted" | "revoke" | "revoked"
            | "assign" | "assigned" | "unassign" | "unassigned" | "reset" | "move" | "moved"
            | "restore" | "restored" => Self::Update,
            "delete" | "deleted" | "remove" | "removed" | "destroy" | "destroyed" | "purge"
            | "purged" | "erase" | "erased" => Self::Delete,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Create => "Create",
            Self::Read => "Read",
            Self::Update => "Update",
            Self::Delete => "Delete",
            Self::Other => "Other",
        }
    }
}

/// OCSF's user type of the actor's `type`: `user`, `admin`, `system`, any other value `Other`
/// (its text kept in `type`).
pub fn user_type_id(kind: &str) -> u32 {
    match kind.to_ascii_lowercase().as_str() {
        "user" => 1,
        "admin" => 2,
        "system" => 3,
        _ => 99,
    }
}

/// Milliseconds from the Unix epoch (OCSF's `timestamp_t`), rounded down; PostgreSQL's
/// infinities and years beyond i64 milliseconds are held at i64's ends.
pub fn epoch_millis(at: Timestamp) -> i64 {
    match at {
        Timestamp::Micros(m) => {
            let micros = i128::from(m) + i128::from(Timestamp::POSTGRES_EPOCH_MICROS);
            i64::try_from(micros.div_euclid(1000)).unwrap_or(i64::MAX)
        }
        Timestamp::Infinity => i64::MAX,
        Timestamp::MinusInfinity => i64::MIN,
    }
}

/// The actor's fields that have a place in the record; the others keep the actor in `unmapped`.
pub struct Actor {
    pub uid: Option<String>,
    pub name: Option<String>,
    pub kind: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Something in it has no place of its own (another field, a value that is no IP address).
    pub rest: bool,
}

impl Actor {
    pub fn parse(text: &str) -> Self {
        let mut actor = Self {
            uid: None,
            name: None,
            kind: None,
            ip: None,
            user_agent: None,
            rest: false,
        };
        let Ok(fields) = serde_json::from_str::<Map<String, Value>>(text) else {
            actor.rest = true;
            return actor;
        };
        for (key, value) in &fields {
            let text = match value {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Null => continue,
                _ => None,
            };
            let slot = match key.as_str() {
                "id" => &mut actor.uid,
                "name" => &mut actor.name,
                "type" => &mut actor.kind,
                "ip" => &mut actor.ip,
                "user_agent" => &mut actor.user_agent,
                _ => {
                    actor.rest = true;
                    continue;
                }
            };
            match text {
                Some(text) => *slot = Some(text),
                None => actor.rest = true,
            }
        }
        if let Some(ip) = &actor.ip
            && ip.parse::<std::net::IpAddr>().is_err()
        {
            actor.ip = None;
            actor.rest = true;
        }
        actor
    }
}

/// Appends the event as one compact OCSF API Activity record, without a trailing newline. The
/// same event always yields the same bytes, whatever the exporter's version: the product is
/// named without its version, so a run retried after an upgrade writes its object again byte
/// for byte.
pub fn write_record(event: &EventRef<'_>, out: &mut Vec<u8>) {
    let activity = Activity::of(&event.action);
    let id = activity as u32;
    let name = activity.name();
    // Writing into a Vec cannot fail.
    let _ = {
        use std::io::Write;
        write!(
            out,
            r#"{{"activity_id":{id},"activity_name":"{name}","category_uid":{CATEGORY_UID},"category_name":"Application Activity","class_uid":{CLASS_UID},"class_name":"API Activity","type_uid":{},"type_name":"API Activity: {name}","severity_id":1,"severity":"Informational","time":{},"#,
            CLASS_UID * 100 + id,
            epoch_millis(event.occurred_at),
        )
    };
    out.extend_from_slice(br#""metadata":{"version":""#);
    out.extend_from_slice(VERSION.as_bytes());
    out.extend_from_slice(
        br#"","product":{"name":"audit-exporter","vendor_name":"audit-exporter"},"uid":""#,
    );
    out.extend_from_slice(
        event
            .event_id
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer())
            .as_bytes(),
    );
    out.extend_from_slice(br#"","logged_time":"#);
    out.extend_from_slice(epoch_millis(event.recorded_at).to_string().as_bytes());
    if let Some(tenant) = &event.tenant_id {
        out.extend_from_slice(br#","tenant_uid":"#);
        json::write_string(tenant, out);
    }
    // The times as RFC 3339, when milliseconds could not hold them (PostgreSQL's infinities).
    if !event.occurred_at.is_rfc3339() {
        out.extend_from_slice(br#","original_time":""#);
        json::write_timestamp(event.occurred_at, out);
        out.push(b'"');
    }
    out.extend_from_slice(br#"},"api":{"operation":"#);
    json::write_string(&event.action, out);
    out.push(b'}');

    let actor = Actor::parse(&event.actor);
    out.extend_from_slice(br#","actor":{"#);
    if actor.uid.is_some() || actor.name.is_some() || actor.kind.is_some() {
        out.extend_from_slice(br#""user":{"#);
        let mut fields = Fields::new(out);
        if let Some(uid) = &actor.uid {
            fields.string("uid", uid);
        }
        if let Some(name) = &actor.name {
            fields.string("name", name);
        }
        if let Some(kind) = &actor.kind {
            fields.string("type", kind);
            fields.raw("type_id", user_type_id(kind).to_string().as_bytes());
        }
        out.push(b'}');
    }
    out.extend_from_slice(br#"},"src_endpoint":{"#);
    if let Some(ip) = &actor.ip {
        out.extend_from_slice(br#""ip":"#);
        json::write_string(ip, out);
    }
    out.push(b'}');
    if let Some(agent) = &actor.user_agent {
        out.extend_from_slice(br#","http_request":{"user_agent":"#);
        json::write_string(agent, out);
        out.push(b'}');
    }

    if let Some(target) = &event.target {
        write_resource(target, out);
    }

    out.extend_from_slice(br#","unmapped":{"#);
    if actor.rest {
        out.extend_from_slice(br#""actor":"#);
        json::write_compact(&event.actor, out);
        out.push(b',');
    }
    out.extend_from_slice(br#""metadata":"#);
    json::write_compact(&event.metadata, out);
    out.extend_from_slice(b"}}");
}

/// The target as the one resource of the record: its `id`, `name` and `type`, and the whole
/// target, verbatim, as the resource's `data` (under `value` when it is not an object).
pub struct Resource {
    /// `uid`, `name` and `type`, when the target has them as text or numbers.
    pub fields: [Option<String>; 3],
    /// Compact JSON.
    pub data: Vec<u8>,
}

impl Resource {
    pub const NAMES: [&str; 3] = ["uid", "name", "type"];

    pub fn parse(target: &str) -> Self {
        let parsed = serde_json::from_str::<Map<String, Value>>(target).ok();
        let mut fields = [None, None, None];
        if let Some(object) = &parsed {
            for (slot, key) in fields.iter_mut().zip(["id", "name", "type"]) {
                *slot = match object.get(key) {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                };
            }
        }
        let mut data = Vec::new();
        if parsed.is_some() {
            json::write_compact(target, &mut data);
        } else {
            data.extend_from_slice(br#"{"value":"#);
            json::write_compact(target, &mut data);
            data.push(b'}');
        }
        Self { fields, data }
    }
}

fn write_resource(target: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(br#","resources":[{"#);
    let resource = Resource::parse(target);
    let mut fields = Fields::new(out);
    for (name, value) in Resource::NAMES.iter().zip(&resource.fields) {
        if let Some(value) = value {
            fields.string(name, value);
        }
    }
    fields.raw("data", &resource.data);
    out.extend_from_slice(b"}]");
}

/// Writes an object's `"key":value` pairs with the commas between them.
struct Fields<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Fields<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out, first: true }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        json::write_string(key, self.out);
        self.out.push(b':');
    }

    fn string(&mut self, key: &str, value: &str) {
        self.key(key);
        json::write_string(value, self.out);
    }

    fn raw(&mut self, key: &str, value: &[u8]) {
        self.key(key);
        self.out.extend_from_slice(value);
    }
}

#[cfg(test)]
mod tests;
