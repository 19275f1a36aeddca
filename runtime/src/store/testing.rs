//! Databases for the store's unit tests, on each engine: SQLite in memory,
//! and a fresh database on this test process's PostgreSQL server.

use super::{Connection, schema};

#[path = "../../tests/common/postgres.rs"]
mod test_postgres;

pub(crate) struct TestDatabase {
    conn: Connection,
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
    }
}

/// A new, empty database on this process's PostgreSQL server.
pub(crate) fn postgres_url() -> String {
    test_postgres::new_database()
}

/// The CA that signed the PostgreSQL server's certificate (for 127.0.0.1).
pub(crate) fn postgres_ca_file() -> std::path::PathBuf {
    test_postgres::server().ca_file()
}

pub(crate) fn postgres_empty() -> TestDatabase {
    let url = test_postgres::new_database();
    TestDatabase {
        conn: Connection::postgres(&super::db::postgres_target(&url).unwrap()).unwrap(),
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
