//! The PostgreSQL engine behind [`super::Connection`], on `tokio-postgres`.
//!
//! The store's functions are synchronous (they run on the writer thread or
//! a reader's blocking thread), so each connection has a current-thread
//! runtime that the waiting thread runs for each call. Values cross in
//! SQLite's model (null, integer, real, text, blob), converted to and from
//! the column's PostgreSQL type, so the store binds a `bool` or an `i64`
//! and reads an `i64` or a `String` the same way on both engines.

use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error;

use bytes::BytesMut;
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type};

use super::super::{Result, StoreError};
use super::postgres_tls::PgTarget;

/// Prepared statements kept per connection (the store has about 150).
const MAX_STATEMENTS: usize = 512;

/// A connection and the runtime its I/O runs on: a current-thread runtime
/// of its own, which runs on the thread that waits for an answer (as the
/// `postgres` crate does), so a statement costs no hand-off between
/// threads, and the store works whatever runtime, if any, its caller runs.
pub(super) struct PgConnection {
    client: tokio_postgres::Client,
    runtime: Option<tokio::runtime::Runtime>,
    /// Prepared statements by the SQL as the store wrote it.
    statements: RefCell<HashMap<String, tokio_postgres::Statement>>,
    in_transaction: std::cell::Cell<bool>,
}

impl Drop for PgConnection {
    fn drop(&mut self) {
        // Dropping a runtime waits for its tasks, which an async caller may
        // not do; the connection's task goes with it.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl PgConnection {
    /// Connects to `target`. Not to be called from an async task (it waits
    /// for the answer).
    pub(super) fn connect(target: &PgTarget) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| {
                StoreError::WriteFailed(format!("cannot start PostgreSQL's I/O: {err}"))
            })?;
        let (client, connection) = runtime.block_on(target.config.connect(target.tls.clone()))?;
        runtime.spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "a PostgreSQL connection ended");
            }
        });
        Ok(Self {
            client,
            runtime: Some(runtime),
            statements: RefCell::default(),
            in_transaction: std::cell::Cell::new(false),
        })
    }

    /// Runs `future` (and the connection's I/O) on this thread.
    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime
            .as_ref()
            .expect("a runtime until dropped")
            .block_on(future)
    }

    /// A statement prepared on the server; kept for the next call if
    /// `keep` (the cache is bounded: SQL built at run time varies).
    pub(super) fn prepare(&self, sql: &str, keep: bool) -> Result<tokio_postgres::Statement> {
        if let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.block_on(self.client.prepare(&placeholders(sql)))?;
        if keep {
            let mut statements = self.statements.borrow_mut();
            if statements.len() >= MAX_STATEMENTS {
                // Dropping them closes them on the server.
                statements.clear();
            }
            statements.insert(sql.to_owned(), statement.clone());
        }
        Ok(statement)
    }

    pub(super) fn execute(
        &self,
        statement: &tokio_postgres::Statement,
        params: &[PgParam<'_>],
    ) -> Result<usize> {
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        let changed = self.block_on(self.client.execute(statement, &params))?;
        Ok(changed as usize)
    }

    pub(super) fn query(
        &self,
        statement: &tokio_postgres::Statement,
        params: &[PgParam<'_>],
    ) -> Result<Vec<tokio_postgres::Row>> {
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        Ok(self.block_on(self.client.query(statement, &params))?)
    }

    pub(super) fn execute_batch(&self, sql: &str) -> Result<()> {
        Ok(self.block_on(self.client.batch_execute(sql))?)
    }

    pub(super) fn begin(&self) -> Result<()> {
        self.execute_batch("BEGIN")?;
        self.in_transaction.set(true);
        Ok(())
    }

    /// A read-only transaction whose statements share one snapshot.
    pub(super) fn begin_snapshot(&self) -> Result<()> {
        self.execute_batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        self.in_transaction.set(true);
        Ok(())
    }

    pub(super) fn end(&self, commit: bool) -> Result<()> {
        // Whatever happens, the transaction is over: a failed COMMIT
        // rolls back.
        self.in_transaction.set(false);
        self.execute_batch(if commit { "COMMIT" } else { "ROLLBACK" })
    }

    /// A transaction is open, possibly failed (then only ROLLBACK ends it).
    pub(super) fn in_transaction(&self) -> bool {
        self.in_transaction.get()
    }
}

/// The store's `?1`, `?2` (and bare `?`) as PostgreSQL's `$1`, `$2`;
/// string literals, quoted names and comments are left alone.
pub(super) fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut next_bare = 1;
    let mut quote = None;
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            out.push(c);
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                out.push(c);
            }
            '-' if chars.peek() == Some(&'-') => {
                // A comment runs to the end of the line.
                out.push(c);
                for c in chars.by_ref() {
                    out.push(c);
                    if c == '\n' {
                        break;
                    }
                }
            }
            '?' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                out.push('$');
                if digits.is_empty() {
                    out.push_str(&next_bare.to_string());
                    next_bare += 1;
                } else {
                    out.push_str(&digits);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// A parameter in SQLite's value model, written as the column's type.
#[derive(Debug)]
pub(super) enum PgParam<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    OwnedText(String),
    Blob(&'a [u8]),
    OwnedBlob(Vec<u8>),
}

impl<'a> PgParam<'a> {
    pub(super) fn from_sqlite(value: &'a dyn rusqlite::ToSql) -> Result<Self> {
        Ok(match value.to_sql()? {
            ToSqlOutput::Borrowed(value) => Self::from_ref(value)?,
            ToSqlOutput::Owned(Value::Null) => Self::Null,
            ToSqlOutput::Owned(Value::Integer(i)) => Self::Integer(i),
            ToSqlOutput::Owned(Value::Real(r)) => Self::Real(r),
            ToSqlOutput::Owned(Value::Text(t)) => Self::OwnedText(t),
            ToSqlOutput::Owned(Value::Blob(b)) => Self::OwnedBlob(b),
            other => {
                return Err(StoreError::Corrupt(format!(
                    "a parameter PostgreSQL cannot take: {other:?}"
                )));
            }
        })
    }

    fn from_ref(value: ValueRef<'a>) -> Result<Self> {
        Ok(match value {
            ValueRef::Null => Self::Null,
            ValueRef::Integer(i) => Self::Integer(i),
            ValueRef::Real(r) => Self::Real(r),
            ValueRef::Text(t) => {
                Self::Text(std::str::from_utf8(t).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            }
            ValueRef::Blob(b) => Self::Blob(b),
        })
    }
}

impl PgParam<'_> {
    fn text(&self) -> &str {
        match self {
            Self::Text(t) => t,
            Self::OwnedText(t) => t,
            _ => "",
        }
    }

    fn blob(&self) -> &[u8] {
        match self {
            Self::Blob(b) => b,
            Self::OwnedBlob(b) => b,
            _ => &[],
        }
    }
}

type BoxError = Box<dyn Error + Sync + Send>;

fn mismatch(value: &PgParam<'_>, ty: &Type) -> BoxError {
    format!("cannot write {value:?} as type {ty}").into()
}

/// What went wrong, said whole: `tokio_postgres::Error`'s own text is only
/// its kind ("db error"), with the server's message and any conversion
/// error behind it.
pub(in crate::store) fn describe(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        let mut text = format!("{} ({})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            text.push_str(": ");
            text.push_str(detail);
        }
        return text;
    }
    let text = match err.source() {
        Some(source) => format!("{err}: {source}"),
        None => err.to_string(),
    };
    if text.contains("invalid peer certificate") {
        return format!(
            "{text} (store.url's sslmode and sslrootcert: the server's certificate must be \
             signed by the CA in sslrootcert, or one Mozilla trusts, and for verify-full be \
             issued for the URL's host)"
        );
    }
    text
}

impl ToSql for PgParam<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Self::Null => Ok(IsNull::Yes),
            Self::Integer(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::FLOAT4 => (*i as f32).to_sql(ty, out),
                _ => Err(mismatch(self, ty)),
            },
            Self::Real(r) => match *ty {
                Type::FLOAT8 => r.to_sql(ty, out),
                Type::FLOAT4 => (*r as f32).to_sql(ty, out),
                _ => Err(mismatch(self, ty)),
            },
            Self::Text(_) | Self::OwnedText(_) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    self.text().to_sql(ty, out)
                }
                _ => Err(mismatch(self, ty)),
            },
            Self::Blob(_) | Self::OwnedBlob(_) => match *ty {
                Type::BYTEA => self.blob().to_sql(ty, out),
                _ => Err(mismatch(self, ty)),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        // Checked per value in `to_sql`, with the column's type.
        true
    }

    fn to_sql_checked(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        self.to_sql(ty, out)
    }
}

/// A column read in SQLite's value model.
pub(super) enum PgValue<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl<'a> PgValue<'a> {
    pub(super) fn as_sqlite(&self) -> ValueRef<'a> {
        match self {
            Self::Null => ValueRef::Null,
            Self::Integer(i) => ValueRef::Integer(*i),
            Self::Real(r) => ValueRef::Real(*r),
            Self::Text(t) => ValueRef::Text(t.as_bytes()),
            Self::Blob(b) => ValueRef::Blob(b),
        }
    }
}

impl<'a> FromSql<'a> for PgValue<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(match *ty {
            Type::INT8 => Self::Integer(i64::from_sql(ty, raw)?),
            Type::INT4 => Self::Integer(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Self::Integer(i16::from_sql(ty, raw)?.into()),
            Type::BOOL => Self::Integer(bool::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Self::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Self::Real(f32::from_sql(ty, raw)?.into()),
            Type::BYTEA => Self::Blob(raw),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                Self::Text(<&str>::from_sql(ty, raw)?)
            }
            _ => {
                return Err(format!(
                    "a column of type {ty} has no SQLite counterpart: cast it in the query"
                )
                .into());
            }
        })
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Self::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQL built at run time (list filters) must not grow a connection's
    /// prepared statements without end, on it or on the server.
    #[test]
    fn the_statement_cache_is_bounded() {
        let conn = PgConnection::connect(
            &super::super::postgres_tls::target(&crate::store::testing::postgres_url()).unwrap(),
        )
        .unwrap();
        for i in 0..MAX_STATEMENTS + 10 {
            conn.prepare(&format!("SELECT {i}"), true).unwrap();
        }
        assert!(conn.statements.borrow().len() <= MAX_STATEMENTS);
        conn.prepare("SELECT 'once'", false).unwrap();
        assert!(!conn.statements.borrow().contains_key("SELECT 'once'"));
    }

    #[test]
    fn placeholders_are_renumbered_outside_literals() {
        assert_eq!(
            placeholders("SELECT a FROM t WHERE b = ?1 AND c = ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = $12"
        );
        assert_eq!(placeholders("VALUES (?, ?)"), "VALUES ($1, $2)");
        assert_eq!(
            placeholders("SELECT '?1', \"q?\" -- why?\n, ?2"),
            "SELECT '?1', \"q?\" -- why?\n, $2"
        );
    }
}
