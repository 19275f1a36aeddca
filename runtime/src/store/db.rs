//! The connection the store's SQL runs on. Everything outside this file
//! (and the SQLite engine's own set-up: `schema`, `writer`, `mod`) sees
//! Pigeon's `Connection`, `Statement`, `Row` and parameter traits, never
//! rusqlite's, so that a second engine can stand behind the same store
//! functions (issue 15: PostgreSQL). The calls mirror rusqlite's, which the
//! store was written against, and cost nothing over them: a statement is
//! rusqlite's cached statement, parameters are bound by reference.

use super::{Result, StoreError};

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

/// A connection to the database, inside the writer's transaction or one of
/// the read-only pool's.
pub struct Connection {
    sqlite: rusqlite::Connection,
}

impl Connection {
    pub(super) fn sqlite(conn: rusqlite::Connection) -> Self {
        Self { sqlite: conn }
    }

    /// The SQLite connection, for the engine's own set-up and transactions.
    pub(super) fn as_sqlite(&self) -> &rusqlite::Connection {
        &self.sqlite
    }

    /// A fresh database in memory, for unit tests.
    #[cfg(test)]
    pub(super) fn open_in_memory() -> Result<Self> {
        Ok(Self::sqlite(rusqlite::Connection::open_in_memory()?))
    }

    pub(super) fn into_sqlite(self) -> rusqlite::Connection {
        self.sqlite
    }

    /// A statement, prepared once per connection and kept.
    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        Ok(Statement {
            sqlite: SqliteStatement::Cached(self.sqlite.prepare_cached(sql)?),
        })
    }

    /// A statement for SQL built at run time: not cached, so that its
    /// variants do not push the hot statements out of the cache.
    pub fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        Ok(Statement {
            sqlite: SqliteStatement::Fresh(self.sqlite.prepare(sql)?),
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
        Ok(self.sqlite.execute_batch(sql)?)
    }

    /// The rowid of the last row inserted on this connection.
    pub fn last_insert_rowid(&self) -> i64 {
        self.sqlite.last_insert_rowid()
    }
}

pub struct Statement<'conn> {
    sqlite: SqliteStatement<'conn>,
}

enum SqliteStatement<'conn> {
    Cached(rusqlite::CachedStatement<'conn>),
    Fresh(rusqlite::Statement<'conn>),
}

impl<'conn> Statement<'conn> {
    fn inner(&mut self) -> &mut rusqlite::Statement<'conn> {
        match &mut self.sqlite {
            SqliteStatement::Cached(stmt) => stmt,
            SqliteStatement::Fresh(stmt) => stmt,
        }
    }

    /// Rows changed.
    pub fn execute<P: Params>(&mut self, params: P) -> Result<usize> {
        Ok(self.inner().execute(bind(&params))?)
    }

    /// The first row, or [`StoreError::NoRow`] (see [`OptionalExtension`]).
    pub fn query_row<T, P, F>(&mut self, params: P, f: F) -> Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> Result<T>,
    {
        let mut rows = self.inner().query(bind(&params))?;
        match rows.next()? {
            Some(row) => f(&Row { sqlite: row }),
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
            rows: self.inner().query(bind(&params))?,
            f,
        })
    }

    /// Every row, one by one.
    pub fn query<P: Params>(&mut self, params: P) -> Result<Rows<'_>> {
        Ok(Rows {
            sqlite: self.inner().query(bind(&params))?,
        })
    }
}

pub struct Rows<'stmt> {
    sqlite: rusqlite::Rows<'stmt>,
}

impl Rows<'_> {
    #[allow(clippy::should_implement_trait)] // a row borrows from the cursor: not an Iterator
    pub fn next(&mut self) -> Result<Option<Row<'_>>> {
        Ok(self.sqlite.next()?.map(|row| Row { sqlite: row }))
    }
}

pub struct MappedRows<'stmt, F> {
    rows: rusqlite::Rows<'stmt>,
    f: F,
}

impl<T, F> Iterator for MappedRows<'_, F>
where
    F: FnMut(&Row<'_>) -> Result<T>,
{
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        match self.rows.next() {
            Ok(Some(row)) => Some((self.f)(&Row { sqlite: row })),
            Ok(None) => None,
            Err(err) => Some(Err(err.into())),
        }
    }
}

/// A result row.
pub struct Row<'stmt> {
    sqlite: &'stmt rusqlite::Row<'stmt>,
}

/// A column, by position or by name.
pub trait RowIndex: rusqlite::RowIndex {}
impl<T: rusqlite::RowIndex> RowIndex for T {}

impl Row<'_> {
    pub fn get<I: RowIndex, T: FromSql>(&self, index: I) -> Result<T> {
        Ok(self.sqlite.get(index)?)
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
