//! What a user reads when the database cannot be reached or refuses the schema: the server and
//! the cause in one line, never the password, never PostgreSQL's internal source line.

use std::io::ErrorKind;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// Opens and closes one connection within `timeout`, so an unreachable server is reported at
/// once rather than after the pool's own retries.
pub(super) async fn probe(options: &PgConnectOptions, timeout: Duration) -> anyhow::Result<()> {
    match tokio::time::timeout(timeout, options.connect()).await {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(describe(options, &e, timeout)),
        Err(_) => Err(anyhow::anyhow!(
            "cannot connect to PostgreSQL {}: no answer within {} s (database.connect_timeout_secs)",
            server(options),
            timeout.as_secs()
        )),
    }
}

/// The connection error as one line naming the server.
pub(super) fn describe(
    options: &PgConnectOptions,
    error: &sqlx::Error,
    timeout: Duration,
) -> anyhow::Error {
    let cause = match error {
        sqlx::Error::PoolTimedOut => format!(
            "no answer within {} s (database.connect_timeout_secs)",
            timeout.as_secs()
        ),
        other => cause(other, options.get_host()),
    };
    anyhow::anyhow!("cannot connect to PostgreSQL {}: {cause}", server(options))
}

/// The URL's IPv6 literal host (`[::1]`) as an address: sqlx keeps the brackets, and would
/// look the bracketed text up as a host name.
pub(super) fn unbracket(options: PgConnectOptions) -> PgConnectOptions {
    match options
        .get_host()
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
    {
        Some(address) => {
            let address = address.to_owned();
            options.host(&address)
        }
        None => options,
    }
}

/// Where the server is, as the user configured it: host and port (or socket), database, user.
fn server(options: &PgConnectOptions) -> String {
    let at = match options.get_socket() {
        Some(socket) => format!("socket {}", socket.display()),
        None if options.get_host().contains(':') => {
            format!("[{}]:{}", options.get_host(), options.get_port())
        }
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    format!(
        "at {at} (database {}, user {})",
        options.get_database().unwrap_or(options.get_username()),
        options.get_username()
    )
}

/// The cause, said once: the server's own message without its source line, or what the
/// network said.
pub(super) fn cause(error: &sqlx::Error, host: &str) -> String {
    match error {
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::Io(io) => match io.kind() {
            ErrorKind::ConnectionRefused => {
                "connection refused (is PostgreSQL running and listening there?)".into()
            }
            ErrorKind::TimedOut => "the connection timed out".into(),
            _ if io.to_string().contains("lookup address") => {
                format!("the host name {host} does not resolve (DNS: {io})")
            }
            _ => io.to_string(),
        },
        sqlx::Error::Tls(e) => format!("TLS: {e}"),
        other => other.to_string(),
    }
}

/// The server's message when applying the migrations was refused for lack of a privilege.
pub(super) fn permission_denied(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(sqlx::Error::Database(db)) = e.downcast_ref::<sqlx::Error>()
            && db.code().as_deref() == Some("42501")
        {
            return Some(db.message().to_owned());
        }
        next = e.source();
    }
    None
}

/// An error that came from the server, said once: every context above it, then the server's
/// message without its internal source line ("at line N"), which sqlx otherwise prints twice.
/// A refused privilege (42501) names the role and the GRANT README's "Database roles" gives.
/// Any other error is returned as it is.
/// Whether `error` says only that no connection to the database could be had: the pool gave
/// up waiting for one, was closed, or the network failed under it. A server's answer (a
/// refused privilege, a constraint) is not.
pub fn unreachable(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        matches!(
            e.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_))
        )
    })
}

pub fn explain(error: anyhow::Error, role: &str) -> anyhow::Error {
    let mut said = Vec::new();
    for e in error.chain() {
        if let Some(sqlx::Error::Database(db)) = e.downcast_ref::<sqlx::Error>() {
            let mut text = db.message().to_owned();
            if db.code().as_deref() == Some("42501") {
                text = format!("{text} (role {role}); {}", grant_for(db.message(), role));
            }
            said.push(text);
            return anyhow::anyhow!("{}", said.join(": "));
        }
        said.push(e.to_string());
    }
    error
}

/// The grant README's "Database roles" section gives for what `message` says was refused.
fn grant_for(message: &str, role: &str) -> String {
    let object = message.rsplit(' ').next().unwrap_or("");
    let grant = match object {
        "audit_events" => format!("GRANT SELECT ON audit_events TO {role}"),
        "export_destinations" | "export_runs" => {
            format!("GRANT SELECT, INSERT, UPDATE ON export_destinations, export_runs TO {role}")
        }
        "_sqlx_migrations" => format!("GRANT SELECT ON _sqlx_migrations TO {role}"),
        _ if message.contains("for schema") => {
            return format!(
                "the role needs USAGE on the schema (GRANT USAGE ON SCHEMA {object} TO {role}), \
                 and CREATE only to migrate (README: Database roles)"
            );
        }
        _ => return "see README: Database roles for what each role needs".to_owned(),
    };
    format!("as the owner of the tables: {grant} (README: Database roles)")
}

/// The grant a role lacks to create the schema, and the way around it.
pub(super) fn migration_denied(user: &str, message: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot apply the migrations as role {user}: {message}; grant it CREATE on the schema \
         (GRANT CREATE ON SCHEMA public TO {user}), or set database.migrate_on_start = false and \
         run `audit-exporter migrate` as the role that owns the schema (README: Database roles)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_error_names_the_server_and_the_cause_without_the_password() {
        let options: PgConnectOptions = "postgres://app:s3cret@db.internal:6543/audit"
            .parse()
            .unwrap();
        let refused = sqlx::Error::Io(std::io::Error::from(ErrorKind::ConnectionRefused));
        let text = describe(&options, &refused, Duration::from_secs(5)).to_string();
        assert_eq!(
            text,
            "cannot connect to PostgreSQL at db.internal:6543 (database audit, user app): \
             connection refused (is PostgreSQL running and listening there?)"
        );
        let timed_out = describe(&options, &sqlx::Error::PoolTimedOut, Duration::from_secs(5));
        assert!(
            timed_out
                .to_string()
                .ends_with("no answer within 5 s (database.connect_timeout_secs)")
        );
        for text in [text, timed_out.to_string()] {
            assert!(!text.contains("s3cret"), "{text}");
        }
    }

    #[tokio::test]
    async fn an_ipv6_literal_host_is_an_address_not_a_name() {
        let url = "postgres://a:b@[::1]:1/app";
        let options = super::super::connect_options(url, super::super::Access::ReadWrite).unwrap();
        assert_eq!(options.get_host(), "::1");
        let text = probe(&options, Duration::from_secs(5))
            .await
            .unwrap_err()
            .to_string();
        // Refused (or, without IPv6 on the machine, unreachable): never a DNS failure.
        assert!(
            text.starts_with("cannot connect to PostgreSQL at [::1]:1 (database app, user a): ")
                && !text.contains("resolve")
                && !text.contains("lookup"),
            "{text}"
        );
    }

    #[test]
    fn a_refused_migration_names_the_grant_and_migrate_on_start() {
        let text = migration_denied("exporter", "permission denied for schema public").to_string();
        assert!(
            text.contains("GRANT CREATE ON SCHEMA public TO exporter")
                && text.contains("database.migrate_on_start = false"),
            "{text}"
        );
    }
}
