//! Pure types and arithmetic: no I/O below this module.

mod digest;
mod event;
mod format;
pub(crate) mod json;
mod object_key;
pub mod ocsf;
mod retention;
mod schedule;
mod signing;
mod start;

pub use digest::{
    DIGEST_FOLDER, DIGEST_VERSION, DigestDoc, DigestKind, DigestObject, DigestRange, DigestWindow,
    PreviousDigest, SIGNATURE_ALGORITHM, SIGNATURE_SUFFIX, digest_folder, digest_key, digest_time,
    sha256_hex,
};
pub use event::{Event, EventRef, HEARTBEAT_ACTION, TEST_ACTION, Timestamp};
pub use format::{Compression, Encoding, Format, Schema};
pub use object_key::{
    KeyLayout, KeyParts, PartitionTime, SideFolder, check_key_path, day_key, part_key, side_key,
    with_part,
};
pub use retention::{Hold, StreamKnown, hold_of, parse_older_than, prune_due};
pub use schedule::{Schedule, TimeOfDay};
pub use signing::{PRIVATE_KEY_ALLOWED, PUBLIC_KEY_ALLOWED, PublicKey, Signer};
pub use start::Start;
