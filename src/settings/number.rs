//! Integer keys, read strictly. The `config` crate converts freely between kinds (`0.5` rounds
//! to an integer, `true` becomes 1, `"1e3"` parses as a float); here a number key takes a
//! whole number from a file, or from the environment the plain decimal text of one, and
//! anything else is kept as written so validation refuses it naming the key and its range.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// An integer key as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Int {
    Whole(i64),
    /// Not a whole number: what was written, for the error message.
    Not(String),
}

impl Int {
    /// The whole number, or `"{key}: {written} is not a whole number; allowed: {allowed}"`.
    pub(super) fn whole(&self, key: &str, allowed: &str) -> Result<i64, String> {
        self.get()
            .map_err(|e| format!("{key}: {e}; allowed: {allowed}"))
    }

    /// The whole number, or `"{written} is not a whole number"`.
    pub(super) fn get(&self) -> Result<i64, String> {
        match self {
            Self::Whole(n) => Ok(*n),
            Self::Not(written) => Err(format!("{written} is not a whole number")),
        }
    }

    /// Decimal digits with an optional leading minus, as an environment variable carries an
    /// integer; no sign `+`, exponent, fraction or space.
    fn parse(text: &str) -> Self {
        let digits = text.strip_prefix('-').unwrap_or(text);
        if !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && let Ok(n) = text.parse()
        {
            return Self::Whole(n);
        }
        Self::Not(format!("{text:?}"))
    }
}

impl From<i64> for Int {
    fn from(n: i64) -> Self {
        Self::Whole(n)
    }
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(IntVisitor)
    }
}

struct IntVisitor;

impl Visitor<'_> for IntVisitor {
    type Value = Int;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a whole number")
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Int, E> {
        Ok(Int::Whole(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Int, E> {
        Ok(i64::try_from(n).map_or_else(|_| Int::Not(n.to_string()), Int::Whole))
    }

    fn visit_i128<E: de::Error>(self, n: i128) -> Result<Int, E> {
        Ok(i64::try_from(n).map_or_else(|_| Int::Not(n.to_string()), Int::Whole))
    }

    fn visit_u128<E: de::Error>(self, n: u128) -> Result<Int, E> {
        Ok(i64::try_from(n).map_or_else(|_| Int::Not(n.to_string()), Int::Whole))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Int, E> {
        Ok(Int::Not(format!("{n:?}")))
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Int, E> {
        Ok(Int::Not(b.to_string()))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Int, E> {
        Ok(Int::parse(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_a_whole_number_only_in_plain_decimal() {
        for (text, n) in [("6", 6), ("0", 0), ("-3", -3), ("0024", 24)] {
            assert_eq!(Int::parse(text), Int::Whole(n), "{text}");
        }
        for text in [
            "1e3",
            "+5",
            "6.0",
            " 6",
            "6 ",
            "",
            "-",
            "true",
            "0x10",
            "99999999999999999999",
        ] {
            assert_eq!(Int::parse(text), Int::Not(format!("{text:?}")), "{text}");
        }
    }

    #[test]
    fn a_file_value_is_whole_only_as_an_integer() {
        let read = |toml: &str| -> Int {
            #[derive(serde::Deserialize)]
            struct Doc {
                n: Int,
            }
            let config = config::Config::builder()
                .add_source(config::File::from_str(toml, config::FileFormat::Toml))
                .build()
                .unwrap();
            config.try_deserialize::<Doc>().unwrap().n
        };
        assert_eq!(read("n = 6"), Int::Whole(6));
        assert_eq!(read("n = 0.5"), Int::Not("0.5".into()));
        assert_eq!(read("n = 2.7"), Int::Not("2.7".into()));
        assert_eq!(read("n = 3.0"), Int::Not("3.0".into()));
        assert_eq!(read("n = true"), Int::Not("true".into()));
        assert_eq!(read("n = \"6\""), Int::Whole(6));
        assert_eq!(
            Int::Not("0.5".into()).whole("defaults.every_hours", "1..=24"),
            Err("defaults.every_hours: 0.5 is not a whole number; allowed: 1..=24".into())
        );
    }
}
