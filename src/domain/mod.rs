//! Pure types and arithmetic: no I/O below this module.

mod event;
mod format;
pub(crate) mod json;
mod object_key;
pub mod ocsf;
mod schedule;
mod start;

pub use event::{Event, EventRef, HEARTBEAT_ACTION, TEST_ACTION, Timestamp};
pub use format::{Compression, Encoding, Format, Schema};
pub use object_key::{
    KeyLayout, KeyParts, SideFolder, check_key_path, part_key, side_key, with_part,
};
pub use schedule::{Schedule, TimeOfDay};
pub use start::Start;
