//! How an object is encoded: the event's shape, the JSON framing and the compression.

use serde::{Deserialize, Serialize};

/// The JSON framing of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// One event per line.
    #[default]
    Ndjson,
    /// One JSON array of events.
    Json,
    /// Typed columns in a Parquet file, compressed inside.
    Parquet,
}

/// The compression applied to the encoded object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Zstd,
}

/// The shape of each exported event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schema {
    /// The event as the database holds it (README, "Output").
    #[default]
    Native,
    /// An OCSF API Activity record (docs/ocsf.md).
    Ocsf,
}

impl Schema {
    pub const ALLOWED: &'static str = "native | ocsf";

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "native" => Some(Self::Native),
            "ocsf" => Some(Self::Ocsf),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Ocsf => "ocsf",
        }
    }
}

impl Encoding {
    pub const ALLOWED: &'static str = "ndjson | json | parquet";

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "ndjson" => Some(Self::Ndjson),
            "json" => Some(Self::Json),
            "parquet" => Some(Self::Parquet),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ndjson => "ndjson",
            Self::Json => "json",
            Self::Parquet => "parquet",
        }
    }
}

impl Compression {
    pub const ALLOWED: &'static str = "none | gzip | zstd";

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "none" => Some(Self::None),
            "gzip" => Some(Self::Gzip),
            "zstd" => Some(Self::Zstd),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        }
    }
}

/// Shape, encoding and compression together: what a reader of the object needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Format {
    pub encoding: Encoding,
    pub compression: Compression,
    pub schema: Schema,
}

impl Format {
    /// The file extension, e.g. `.jsonl.gz`; `.parquet` whatever the compression inside.
    pub fn extension(self) -> &'static str {
        match (self.encoding, self.compression) {
            (Encoding::Parquet, _) => ".parquet",
            (Encoding::Ndjson, Compression::None) => ".jsonl",
            (Encoding::Ndjson, Compression::Gzip) => ".jsonl.gz",
            (Encoding::Ndjson, Compression::Zstd) => ".jsonl.zst",
            (Encoding::Json, Compression::None) => ".json",
            (Encoding::Json, Compression::Gzip) => ".json.gz",
            (Encoding::Json, Compression::Zstd) => ".json.zst",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self.encoding {
            Encoding::Ndjson => "application/x-ndjson",
            Encoding::Json => "application/json",
            Encoding::Parquet => "application/vnd.apache.parquet",
        }
    }

    /// None for Parquet, whose compression is inside the file: the object is stored and
    /// served as it is.
    pub fn content_encoding(self) -> Option<&'static str> {
        if self.encoding == Encoding::Parquet {
            return None;
        }
        match self.compression {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for e in [Encoding::Ndjson, Encoding::Json, Encoding::Parquet] {
            assert_eq!(Encoding::parse(e.as_str()), Some(e));
        }
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            assert_eq!(Compression::parse(c.as_str()), Some(c));
        }
        for s in [Schema::Native, Schema::Ocsf] {
            assert_eq!(Schema::parse(s.as_str()), Some(s));
        }
        assert_eq!(Schema::parse("OCSF"), None);
        assert_eq!(Encoding::parse("NDJSON"), None);
        assert_eq!(Compression::parse("brotli"), None);
    }

    #[test]
    fn extension_and_headers_follow_the_format() {
        let f = Format {
            encoding: Encoding::Json,
            compression: Compression::Zstd,
            schema: Schema::Ocsf,
        };
        assert_eq!(f.extension(), ".json.zst");
        assert_eq!(f.content_type(), "application/json");
        assert_eq!(f.content_encoding(), Some("zstd"));
        assert_eq!(Format::default().extension(), ".jsonl");
        let parquet = Format {
            encoding: Encoding::Parquet,
            compression: Compression::Zstd,
            ..f
        };
        assert_eq!(parquet.extension(), ".parquet");
        assert_eq!(parquet.content_type(), "application/vnd.apache.parquet");
        assert_eq!(parquet.content_encoding(), None);
        assert_eq!(Format::default().content_encoding(), None);
    }
}
