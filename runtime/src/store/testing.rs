//! Databases for the store's unit tests, on each engine: SQLite in memory,
//! and a fresh database on this test process's PostgreSQL server.

use super::{Connection, schema};

#[path = "../../tests/common/postgres.rs"]
mod test_postgres;

/// A connection and, for PostgreSQL, the runtime its I/O runs on (dropped
/// after the connection).
pub(crate) struct TestDatabase {
    conn: Connection,
    _runtime: Option<tokio::runtime::Runtime>,
}

impl std::ops::Deref for TestDatabase {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

pub(crate) fn sqlite_empty() -> TestDatabase {
    TestDatabase {
        conn: Connection::open_in_memory().unwrap(),
        _runtime: None,
    }
}

pub(crate) fn postgres_empty() -> TestDatabase {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let url = test_postgres::new_database();
    TestDatabase {
        conn: Connection::postgres(&url, runtime.handle().clone()).unwrap(),
        _runtime: Some(runtime),
    }
}

/// A migrated SQLite database, for what only SQLite has (its query plans).
pub(crate) fn sqlite() -> TestDatabase {
    let db = sqlite_empty();
    schema::migrate(&db).unwrap();
    db
}

/// A migrated database on each engine: a store test runs on both.
pub(crate) fn both() -> [TestDatabase; 2] {
    [sqlite_empty(), postgres_empty()].map(|db| {
        schema::migrate(&db).unwrap();
        db
    })
}
