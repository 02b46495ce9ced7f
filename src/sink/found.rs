//! What a write that met an object at its key makes of it. Keys are never reused by another
//! run, so an object there is an earlier attempt's of the same run only if it holds the very
//! bytes this attempt wrote; anything else (a file someone put there, a truncated copy) is
//! refused rather than counted as delivered, which would lose the events of the object.

use anyhow::bail;

use super::{Found, Sink};

/// The way out of a key held by what is not the run's object.
const MOVE_IT_AWAY: &str = "move it away (it is not an object this exporter wrote for this run) \
     and run again; the run resumes and writes it";
/// The way out of a key held by what could not be read.
const GRANT_OR_MOVE: &str = "give the writing credentials read access to it (on S3, \
     s3:GetObject), or move it away and run again; the run resumes and writes it";

/// Reads the object at `key` back through the sink's own credentials, streamed (never whole in
/// memory, and hashed byte by byte: an S3 ETag says nothing of a multipart object's bytes), and
/// accepts it only if it is `bytes` long with SHA-256 `sha256`.
#[tracing::instrument(skip_all, fields(key = %key), err)]
pub async fn check_found(
    sink: &dyn Sink,
    key: &str,
    bytes: u64,
    sha256: &str,
) -> anyhow::Result<()> {
    let location = sink.location(key);
    // Boxed: the GetObject future is deep, and the pipeline that awaits this deeper still.
    let reader = sink.reader();
    match Box::pin(reader.read_back(key)).await {
        Ok(found) => judge(&location, found, bytes, sha256),
        Err(e) => Err(e.context(format!(
            "{location} already holds an object, which could not be read back to check that \
             it is this run's ({bytes} bytes with SHA-256 {sha256}): {GRANT_OR_MOVE}"
        ))),
    }
}

/// The verdict on what was read back at `location`.
fn judge(location: &str, found: Found, bytes: u64, sha256: &str) -> anyhow::Result<()> {
    match found {
        Found::Object {
            bytes: size,
            sha256: sha,
        } if size == bytes && sha == sha256 => Ok(()),
        Found::Object {
            bytes: size,
            sha256: sha,
        } => bail!(
            "{location} already holds {size} bytes with SHA-256 {sha}, where this run writes \
             {bytes} bytes with SHA-256 {sha256}: {MOVE_IT_AWAY}"
        ),
        // Never followed nor read (a link may point anywhere): named, and no more.
        Found::NotAnObject(what) => bail!("{location} is {what}, not an object: {MOVE_IT_AWAY}"),
        Found::Nothing => bail!(
            "{location} was taken when this run wrote it, yet holds no object when read back \
             to check it: run again; the run resumes and writes it"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

    fn object(bytes: u64, sha256: &str) -> Found {
        Found::Object {
            bytes,
            sha256: sha256.into(),
        }
    }

    #[test]
    fn the_same_bytes_are_the_runs_own_object() {
        assert!(judge("d/k", object(12, OWN), 12, OWN).is_ok());
    }

    #[test]
    fn other_bytes_are_refused_naming_both_and_the_way_out() {
        let error = judge("d/k", object(16, &"ab".repeat(32)), 12, OWN).unwrap_err();
        let said = error.to_string();
        assert!(
            said.starts_with("d/k already holds 16 bytes with SHA-256 abab")
                && said.contains(&format!("this run writes 12 bytes with SHA-256 {OWN}"))
                && said.contains("move it away"),
            "{said}"
        );
    }

    #[test]
    fn the_same_size_with_other_bytes_is_refused() {
        assert!(judge("d/k", object(12, &"00".repeat(32)), 12, OWN).is_err());
    }

    #[test]
    fn an_object_gone_when_read_back_is_refused() {
        let said = judge("d/k", Found::Nothing, 12, OWN)
            .unwrap_err()
            .to_string();
        assert!(said.contains("holds no object"), "{said}");
    }

    #[test]
    fn what_is_not_an_object_is_named_with_the_way_out() {
        let said = judge("d/k", Found::NotAnObject("a directory"), 12, OWN)
            .unwrap_err()
            .to_string();
        assert!(
            said.starts_with("d/k is a directory, not an object: move it away"),
            "{said}"
        );
    }
}
