//! A database outage under `run` is the process's, not a destination's: an export that failed
//! only because no connection could be had is neither counted as the destination's failure nor
//! backed off; `/readyz` shows the outage, and the export is tried again at the next check.

/// The database could not be reached; the cause names the server (see `store::connect_error`).
#[derive(Debug, thiserror::Error)]
#[error("the database cannot be reached: {0}")]
pub struct DatabaseDown(pub String);

/// Whether `error` says only that no connection to the database could be had (see
/// [`crate::store::unreachable`]).
pub fn is_outage(error: &anyhow::Error) -> bool {
    crate::store::unreachable(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_connection_is_an_outage() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        for error in [sqlx::Error::PoolTimedOut, sqlx::Error::Io(refused)] {
            let error = anyhow::Error::new(error).context("Failed to start the run");
            assert!(is_outage(&error), "{error:#}");
        }
        let answered = anyhow::Error::new(sqlx::Error::RowNotFound).context("reading");
        assert!(!is_outage(&answered));
        assert!(!is_outage(&anyhow::anyhow!("S3: access denied")));
    }
}
