//! A binary COPY on a connection of its own, which goes back to the pool only when the COPY was
//! read to its end.
//!
//! sqlx does not count a COPY's pending answer: a connection whose COPY stream is dropped half
//! way goes back to the pool while PostgreSQL still sends the rest, and every later statement on
//! it reads the answer meant for the one before (a poisoned connection). So the COPY runs on a
//! connection acquired for it, and unless its data and its closing `ReadyForQuery` were read, the
//! connection is closed instead of returned.
//!
//! In a `SQL_ASCII` database the COPY asks for the bytes as they are stored: PostgreSQL checks
//! every text it sends to a UTF8 client, and one byte that is not UTF-8 would fail the COPY
//! of its window on every attempt. The [`CopyDecoder`](super::CopyDecoder) mends such text
//! instead. That connection is closed afterwards, never returned: sqlx does not follow a change
//! of `client_encoding`, and a closed connection cannot carry it to another statement.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;
use sqlx::Postgres;
use sqlx::pool::PoolConnection;

use super::Store;
use super::copy::COLUMNS;

/// A COPY statement and the connection acquired for it.
#[derive(Debug)]
pub struct CopyOut {
    conn: PoolConnection<Postgres>,
    /// The query whose rows are copied, and the COPY of them.
    select: String,
    statement: String,
    /// Set once the stream ended without an error: the connection is ready for a statement.
    complete: bool,
    /// Whether the connection's `client_encoding` was changed to `SQL_ASCII` for the COPY.
    raw_text: bool,
}

/// Sets `client_encoding` to `SQL_ASCII` when the database's own encoding is `SQL_ASCII` (no
/// conversion happens, only PostgreSQL's check against UTF8, which would refuse stored bytes
/// that are not UTF-8); in any other encoding PostgreSQL's conversion to UTF8 stays. Whether it
/// was changed.
const RAW_TEXT: &str = "SELECT set_config('client_encoding', 'SQL_ASCII', false) IS NOT NULL
                        WHERE current_setting('server_encoding') = 'SQL_ASCII'";

impl Store {
    /// The rows `filter` selects, in `order`, as a binary COPY for a
    /// [`CopyDecoder`](super::CopyDecoder). COPY takes no parameters: callers build `filter`
    /// from integers, times and [`tenant_filter`](super::events::tenant_filter), so no value can
    /// change the statement.
    pub(super) async fn copy_events(&self, filter: String, order: &str) -> anyhow::Result<CopyOut> {
        let select = format!("SELECT {COLUMNS} FROM audit_events WHERE {filter} ORDER BY {order}");
        let statement = format!("COPY ({select}) TO STDOUT WITH (FORMAT binary)");
        let conn = self.pool.acquire().await?;
        let mut copy = CopyOut {
            conn,
            select,
            statement,
            complete: false,
            raw_text: false,
        };
        // Not complete until the COPY ends: a failure here closes the connection too.
        copy.raw_text = sqlx::query_scalar::<_, bool>(RAW_TEXT)
            .fetch_optional(&mut *copy.conn)
            .await?
            .is_some();
        Ok(copy)
    }
}

impl CopyOut {
    /// Starts the COPY: its messages, one row each (the header in front of the first).
    pub async fn rows(
        &mut self,
    ) -> anyhow::Result<impl Stream<Item = anyhow::Result<Bytes>> + Send + '_> {
        let Self {
            conn,
            statement,
            complete,
            ..
        } = self;
        let inner = conn.copy_out_raw(statement).await?;
        Ok(Rows {
            inner,
            complete,
            failed: false,
        })
    }
}

impl CopyOut {
    /// PostgreSQL's plan for the COPY's query (EXPLAIN's text), to check which index it reads
    /// by; asked on the COPY's connection, before the COPY starts.
    pub async fn plan(&mut self) -> anyhow::Result<String> {
        let explain = format!("EXPLAIN {}", self.select);
        let lines: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(explain))
            .fetch_all(&mut *self.conn)
            .await?;
        Ok(lines.join("\n"))
    }
}

impl Drop for CopyOut {
    fn drop(&mut self) {
        if !self.complete {
            tracing::debug!("A COPY was not read to its end: its connection is closed.");
            self.conn.close_on_drop();
        } else if self.raw_text {
            tracing::debug!("A COPY of a SQL_ASCII database's bytes: its connection is closed.");
            self.conn.close_on_drop();
        }
    }
}

/// The COPY's messages; marks the COPY complete when they end without an error.
struct Rows<'c> {
    inner: BoxStream<'c, sqlx::Result<Bytes>>,
    complete: &'c mut bool,
    failed: bool,
}

impl Stream for Rows<'_> {
    type Item = anyhow::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                *this.complete = !this.failed;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(message))) => Poll::Ready(Some(Ok(message))),
            Poll::Ready(Some(Err(e))) => {
                this.failed = true;
                Poll::Ready(Some(Err(e.into())))
            }
        }
    }
}
