//! The connection the store's SQL runs on, on SQLite or PostgreSQL. The
//! store's functions see Pigeon's `Connection`, `Statement`, `Row` and
//! parameter traits, never an engine's, so one function serves both. The
//! calls mirror rusqlite's, which the store was written against, and on
//! SQLite cost nothing over them (a statement is rusqlite's cached one,
//! parameters are bound by reference). Values follow SQLite's model (null,
//! integer, real, text, blob); `postgres.rs` converts them to and from the
//! column's type. SQL is written once, with `?N` placeholders, in what both
//! engines take.

mod postgres;
mod postgres_tls;

use super::{Result, StoreError};
pub(super) use postgres::describe as describe_postgres;
use postgres::{PgConnection, PgParam, PgValue};
pub(super) use postgres_tls::{PgTarget, target as postgres_target};

/// A value that can be bound to a statement parameter.
pub trait ToSql: rusqlite::ToSql {}
impl<T: rusqlite::ToSql + ?Sized> ToSql for T {}

/// A value that can be read from a result column.
pub trait FromSql: rusqlite::types::FromSql {}
impl<T: rusqlite::types::FromSql> FromSql for T {}

/// A statement's parameters: `params![…]`, an array of one type, or `[]`.
pub trait Params {
    fn values(&self) -> impl Iterator<Item = &dyn ToSql>;
}

impl Params for &[&dyn ToSql] {
    fn values(&self) -> impl Iterator<Item = &dyn ToSql> {
        self.iter().copied()
    }
}

impl Params for [&dyn ToSql; 0] {
    fn values(&self) -> impl Iterator<Item = &dyn ToSql> {
        std::iter::empty()
    }
}

macro_rules! array_params {
    ($($n:literal)*) => {$(
        impl<T: ToSql> Params for [T; $n] {
            fn values(&self) -> impl Iterator<Item = &dyn ToSql> {
                self.iter().map(|value| value as &dyn ToSql)
            }
        }
    )*};
}
array_params!(1 2 3 4 5 6 7 8);

/// Parameters of different types, bound in order: `params![a, b]`.
#[macro_export]
macro_rules! sql_params {
    () => { &[] as &[&dyn $crate::store::db::ToSql] };
    ($($value:expr),+ $(,)?) => {
        &[$(&$value as &dyn $crate::store::db::ToSql),+] as &[&dyn $crate::store::db::ToSql]
    };
}
pub use crate::sql_params as params;

fn bind<P: Params>(
    params: &P,
) -> rusqlite::ParamsFromIter<impl Iterator<Item = &dyn rusqlite::ToSql>> {
    rusqlite::params_from_iter(params.values().map(|value| value as &dyn rusqlite::ToSql))
}

fn bind_pg<P: Params>(params: &P) -> Result<Vec<PgParam<'_>>> {
    params
        .values()
        .map(|value| PgParam::from_sqlite(value))
        .collect()
}

/// The database engine a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A connection to the database: the writer's, or one of the readers'.
pub struct Connection {
    engine: Backend,
}

enum Backend {
    Sqlite(rusqlite::Connection),
    Postgres(PgConnection),
}

impl Connection {
    pub(super) fn sqlite(conn: rusqlite::Connection) -> Self {
        Self {
            engine: Backend::Sqlite(conn),
        }
    }

    /// Connects to the PostgreSQL database `target` names. Neither this nor
    /// the connection's calls are to be made from an async task: they wait
    /// for the server.
    pub(super) fn postgres(target: &PgTarget) -> Result<Self> {
        Ok(Self {
            engine: Backend::Postgres(PgConnection::connect(target)?),
        })
    }

    /// The text of `key` at the top of the JSON text in `column`, as SQL.
    pub fn json_field(&self, column: &str, key: &str) -> String {
        match self.engine() {
            Engine::Sqlite => format!("json_extract({column}, '$.{key}')"),
            Engine::Postgres => format!("({column}::jsonb ->> '{key}')"),
        }
    }

    pub fn engine(&self) -> Engine {
        match &self.engine {
            Backend::Sqlite(_) => Engine::Sqlite,
            Backend::Postgres(_) => Engine::Postgres,
        }
    }

    /// The SQLite connection, for that engine's own set-up.
    pub(super) fn as_sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.engine {
            Backend::Sqlite(conn) => Some(conn),
            Backend::Postgres(_) => None,
        }
    }

    /// A fresh SQLite database in memory, for unit tests.
    #[cfg(test)]
    pub(super) fn open_in_memory() -> Result<Self> {
        Ok(Self::sqlite(rusqlite::Connection::open_in_memory()?))
    }

    /// A statement, prepared once per connection and kept.
    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        Ok(Statement {
            engine: match &self.engine {
                Backend::Sqlite(conn) => SqlStatement::SqliteCached(conn.prepare_cached(sql)?),
                Backend::Postgres(conn) => SqlStatement::Postgres(conn, conn.prepare(sql, true)?),
            },
        })
    }

    /// A statement for SQL built at run time: on SQLite not cached, so that
    /// its variants do not push the hot statements out of the cache.
    pub fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        Ok(Statement {
            engine: match &self.engine {
                Backend::Sqlite(conn) => SqlStatement::Sqlite(conn.prepare(sql)?),
                Backend::Postgres(conn) => SqlStatement::Postgres(conn, conn.prepare(sql, false)?),
            },
        })
    }

    pub fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    pub fn query_row<T, P, F>(&self, sql: &str, params: P, f: F) -> Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    /// Runs several statements with no parameters.
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match &self.engine {
            Backend::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Backend::Postgres(conn) => conn.execute_batch(sql),
        }
    }

    /// Opens the writer's transaction (on SQLite, taking the write lock now).
    pub(super) fn begin(&self) -> Result<()> {
        match &self.engine {
            Backend::Sqlite(conn) => {
                conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
                Ok(())
            }
            Backend::Postgres(conn) => conn.begin(),
        }
    }

    /// Runs `query` on one snapshot of the database, so that its
    /// statements see the same commits (a message's parts agree with its
    /// events). The snapshot is read-only and rolled back after.
    pub(super) fn snapshot<R>(&self, query: impl FnOnce(&Self) -> Result<R>) -> Result<R> {
        match &self.engine {
            Backend::Sqlite(conn) => {
                conn.prepare_cached("BEGIN DEFERRED")?.execute([])?;
            }
            Backend::Postgres(conn) => conn.begin_snapshot()?,
        }
        let result = query(self);
        let ended = self.end(false);
        let value = result?;
        ended?;
        Ok(value)
    }

    /// Commits (or rolls back) the open transaction.
    pub(super) fn end(&self, commit: bool) -> Result<()> {
        match &self.engine {
            Backend::Sqlite(conn) => {
                conn.prepare_cached(if commit { "COMMIT" } else { "ROLLBACK" })?
                    .execute([])?;
                Ok(())
            }
            Backend::Postgres(conn) => conn.end(commit),
        }
    }

    /// A transaction is open (some errors, as a full disk on SQLite, end
    /// it by themselves).
    pub(super) fn in_transaction(&self) -> bool {
        match &self.engine {
            Backend::Sqlite(conn) => !conn.is_autocommit(),
            Backend::Postgres(conn) => conn.in_transaction(),
        }
    }

    /// Closes the connection; on SQLite the log is checkpointed first.
    pub(super) fn close(self) {
        match self.engine {
            Backend::Sqlite(conn) => {
                if let Err(err) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
                    tracing::warn!(error = %err, "final checkpoint failed");
                }
                if let Err((_, err)) = conn.close() {
                    tracing::warn!(error = %err, "closing the database failed");
                }
            }
            Backend::Postgres(conn) => drop(conn),
        }
    }
}

pub struct Statement<'conn> {
    engine: SqlStatement<'conn>,
}

enum SqlStatement<'conn> {
    SqliteCached(rusqlite::CachedStatement<'conn>),
    Sqlite(rusqlite::Statement<'conn>),
    Postgres(&'conn PgConnection, tokio_postgres::Statement),
}

impl<'conn> Statement<'conn> {
    /// Rows changed.
    pub fn execute<P: Params>(&mut self, params: P) -> Result<usize> {
        match &mut self.engine {
            SqlStatement::SqliteCached(stmt) => Ok(stmt.execute(bind(&params))?),
            SqlStatement::Sqlite(stmt) => Ok(stmt.execute(bind(&params))?),
            SqlStatement::Postgres(conn, stmt) => conn.execute(stmt, &bind_pg(&params)?),
        }
    }

    /// The first row, or [`StoreError::NoRow`] (see [`OptionalExtension`]).
    pub fn query_row<T, P, F>(&mut self, params: P, f: F) -> Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> Result<T>,
    {
        let mut rows = self.query(params)?;
        match rows.next()? {
            Some(row) => f(&row),
            None => Err(StoreError::NoRow),
        }
    }

    /// Every row, through `f`.
    pub fn query_map<T, P, F>(&mut self, params: P, f: F) -> Result<MappedRows<'_, F>>
    where
        P: Params,
        F: FnMut(&Row<'_>) -> Result<T>,
    {
        Ok(MappedRows {
            rows: self.query(params)?,
            f,
        })
    }

    /// Every row, one by one.
    pub fn query<P: Params>(&mut self, params: P) -> Result<Rows<'_>> {
        Ok(Rows {
            engine: match &mut self.engine {
                SqlStatement::SqliteCached(stmt) => SqlRows::Sqlite(stmt.query(bind(&params))?),
                SqlStatement::Sqlite(stmt) => SqlRows::Sqlite(stmt.query(bind(&params))?),
                SqlStatement::Postgres(conn, stmt) => {
                    let rows = conn.query(stmt, &bind_pg(&params)?)?;
                    SqlRows::Postgres(rows.into_iter(), None)
                }
            },
        })
    }
}

pub struct Rows<'stmt> {
    engine: SqlRows<'stmt>,
}

enum SqlRows<'stmt> {
    Sqlite(rusqlite::Rows<'stmt>),
    /// The rows left, and the one last handed out.
    Postgres(
        std::vec::IntoIter<tokio_postgres::Row>,
        Option<tokio_postgres::Row>,
    ),
}

impl Rows<'_> {
    #[allow(clippy::should_implement_trait)] // a row borrows from the cursor: not an Iterator
    pub fn next(&mut self) -> Result<Option<Row<'_>>> {
        Ok(match &mut self.engine {
            SqlRows::Sqlite(rows) => rows.next()?.map(|row| Row {
                engine: SqlRow::Sqlite(row),
            }),
            SqlRows::Postgres(rest, current) => {
                *current = rest.next();
                current.as_ref().map(|row| Row {
                    engine: SqlRow::Postgres(row),
                })
            }
        })
    }
}

pub struct MappedRows<'stmt, F> {
    rows: Rows<'stmt>,
    f: F,
}

impl<T, F> Iterator for MappedRows<'_, F>
where
    F: FnMut(&Row<'_>) -> Result<T>,
{
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        match self.rows.next() {
            Ok(Some(row)) => Some((self.f)(&row)),
            Ok(None) => None,
            Err(err) => Some(Err(err)),
        }
    }
}

/// A result row.
pub struct Row<'stmt> {
    engine: SqlRow<'stmt>,
}

enum SqlRow<'stmt> {
    Sqlite(&'stmt rusqlite::Row<'stmt>),
    Postgres(&'stmt tokio_postgres::Row),
}

/// A column's position (columns are read by position, as the SQL lists them).
pub trait RowIndex: Copy {
    fn position(self) -> usize;
}

impl RowIndex for usize {
    fn position(self) -> usize {
        self
    }
}

impl Row<'_> {
    pub fn get<I: RowIndex, T: FromSql>(&self, index: I) -> Result<T> {
        let index = index.position();
        match &self.engine {
            SqlRow::Sqlite(row) => Ok(row.get(index)?),
            SqlRow::Postgres(row) => {
                let value: PgValue<'_> = row.try_get(index)?;
                T::column_result(value.as_sqlite()).map_err(|err| {
                    StoreError::Corrupt(format!(
                        "column {index} ({}): {err}",
                        row.columns()[index].name()
                    ))
                })
            }
        }
    }
}

/// `query_row`'s "no row" as `None`.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(StoreError::NoRow) => Ok(None),
            Err(err) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table of every kind of column the store uses, in each engine's DDL.
    fn create_table(conn: &Connection) {
        conn.execute_batch(match conn.engine() {
            Engine::Sqlite => {
                "CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER NOT NULL, flag INTEGER NOT NULL, \
                 note TEXT, ratio REAL, data BLOB)"
            }
            Engine::Postgres => {
                "CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT NOT NULL, flag BOOLEAN NOT NULL, \
                 note TEXT, ratio DOUBLE PRECISION, data BYTEA)"
            }
        })
        .unwrap();
    }

    /// What the store does with a connection, the same on both engines.
    fn statements_read_and_write(conn: &Connection) {
        create_table(conn);
        let insert =
            "INSERT INTO t (id, n, flag, note, ratio, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
        let none: Option<String> = None;
        let changed = conn
            .execute(
                insert,
                params!["a", 42_i64, true, none, 0.5_f64, vec![0_u8, 255, 7]],
            )
            .unwrap();
        assert_eq!(changed, 1);
        conn.prepare_cached(insert)
            .unwrap()
            .execute(params![
                "b",
                -7_i64,
                false,
                Some("é 漢"),
                2_f64,
                Vec::<u8>::new()
            ])
            .unwrap();

        let row: (String, i64, bool, Option<String>, f64, Vec<u8>) = conn
            .query_row(
                "SELECT id, n, flag, note, ratio, data FROM t WHERE id = ?1",
                ["a"],
                |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                    ))
                },
            )
            .unwrap();
        assert_eq!(row, ("a".into(), 42, true, None, 0.5, vec![0, 255, 7]));
        let note: Option<String> = conn
            .query_row("SELECT note FROM t WHERE id = ?1", ["b"], |row| row.get(0))
            .unwrap();
        assert_eq!(note.as_deref(), Some("é 漢"));

        // A placeholder used twice, and one left to the end.
        let ids: Vec<String> = conn
            .prepare("SELECT id FROM t WHERE n = ?1 OR n = ?1 + 49 OR flag = ?2 ORDER BY id")
            .unwrap()
            .query_map(params![-7_i64, true], |row| row.get(0))
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(ids, ["a", "b"]);
        let count: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(count, 2);
        let mut stmt = conn.prepare_cached("SELECT n FROM t ORDER BY n").unwrap();
        let mut rows = stmt.query([]).unwrap();
        let mut seen = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            seen.push(row.get::<_, i64>(0).unwrap());
        }
        assert_eq!(seen, [-7, 42]);

        let missing = conn
            .query_row("SELECT n FROM t WHERE id = ?1", ["zz"], |row| {
                row.get::<_, i64>(0)
            })
            .optional()
            .unwrap();
        assert_eq!(missing, None);
        let updated = conn
            .execute(
                "UPDATE t SET note = ?2 WHERE id = ?1 AND flag = ?3",
                params!["a", "x", true],
            )
            .unwrap();
        assert_eq!(updated, 1);
        // PostgreSQL refuses a value of the wrong kind (SQLite keeps it).
        if conn.engine() == Engine::Postgres {
            let err = conn
                .execute(
                    insert,
                    params!["c", "many", true, none, 0_f64, Vec::<u8>::new()],
                )
                .unwrap_err();
            assert!(err.to_string().contains("as type int8"), "{err}");
        }
    }

    /// The writer's transactions: a rollback leaves nothing, a failed
    /// statement leaves the transaction for the writer to roll back.
    fn transactions_commit_and_roll_back(conn: &Connection) {
        create_table(conn);
        let insert = "INSERT INTO t (id, n, flag) VALUES (?1, ?2, ?3)";
        conn.begin().unwrap();
        assert!(conn.in_transaction());
        conn.execute(insert, params!["gone", 1_i64, true]).unwrap();
        conn.end(false).unwrap();
        assert!(!conn.in_transaction());
        conn.begin().unwrap();
        conn.execute(insert, params!["kept", 2_i64, false]).unwrap();
        let err = conn
            .execute(insert, params!["kept", 3_i64, false])
            .unwrap_err();
        let said = err.to_string();
        assert!(
            said.contains("UNIQUE") || said.contains("duplicate key"),
            "{said}"
        );
        assert!(conn.in_transaction());
        conn.end(false).unwrap();
        conn.begin().unwrap();
        conn.execute(insert, params!["kept", 2_i64, false]).unwrap();
        conn.end(true).unwrap();
        let ids: Vec<String> = conn
            .prepare_cached("SELECT id FROM t")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(ids, ["kept"]);
    }

    fn on_both_engines(check: fn(&Connection)) {
        check(&crate::store::testing::sqlite_empty());
        check(&crate::store::testing::postgres_empty());
    }

    #[test]
    fn statements_read_and_write_on_both_engines() {
        on_both_engines(statements_read_and_write);
    }

    #[test]
    fn transactions_commit_and_roll_back_on_both_engines() {
        on_both_engines(transactions_commit_and_roll_back);
    }
}
