//! Durable storage on SQLite (WAL). All writes go through one writer thread
//! that groups whatever is waiting into one transaction (group commit), so a
//! caller's future resolves only once its write is committed. Reads use a
//! small pool of read-only connections.

pub mod accounts;
pub mod audit;
pub mod carrier_stats;
pub mod compliance;
pub mod db;
pub mod inbound;
pub mod messages;
pub mod nodes;
pub mod numbers;
pub mod pacing;
pub mod pools;
pub mod queue;
pub mod reports;
pub mod retention;
pub mod rollups;
mod schema;
pub mod smpp;
#[cfg(test)]
pub(crate) mod testing;
pub mod twilio;
pub mod webhooks;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::OpenFlags;

pub use db::Connection;

pub use accounts::{AccountRecord, KeyRecord};
pub use inbound::{InboundRecord, NewInbound};
pub use messages::{
    CancelOutcome, EventRecord, Idempotency, InsertOutcome, ListFilter, MessageRecord, PartRecord,
};
pub use queue::{ClaimedPart, SubmitOutcome, SubmitResult};
pub use reports::{DeliveryReport, ReportOutcome, ReportState};

use crate::config::{StoreConfig, Synchronous};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database error: {}", db::describe_postgres(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("store.url (or PIGEON_DATABASE_URL): {0}")]
    Url(String),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("node id file {path}: {source}")]
    NodeId {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A query for one row found none ([`db::OptionalExtension`] makes it `None`).
    #[error("no row")]
    NoRow,
    #[error("the store is shut down")]
    Closed,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// SQLite's SQLITE_FULL: the disk (or `max_page_count`) is full.
    #[error("the disk holding the database is full")]
    Full,
    #[error("the database could not be written: {0}")]
    WriteFailed(String),
    #[error("the database could not be read: {0}")]
    ReadFailed(String),
    #[error(
        "{path} is empty: a database was expected there (truncated, or lost to a failed copy?). \
         Restore it from a backup, or set store.initialize_empty_file = true (or delete the file) \
         to start over as a fresh install"
    )]
    EmptyDatabase { path: PathBuf },
    #[error(
        "the database was written by a newer Pigeon (schema {found}, this build knows {known})"
    )]
    NewerSchema { found: i64, known: i64 },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// SQLite's error said as what failed: a full disk as such, anything
    /// else as `failed` (a failed write or a failed read).
    fn said_as(self, failed: fn(String) -> Self) -> Self {
        if self.is_full() {
            return Self::Full;
        }
        match self {
            Self::Sqlite(err) => failed(err.to_string()),
            Self::Postgres(err) => failed(db::describe_postgres(&err)),
            other => other,
        }
    }

    /// The engine said its disk is full (SQLITE_FULL; PostgreSQL's 53100).
    /// PostgreSQL aborted the transaction for a deadlock or a
    /// serialization conflict with another node's: it may simply run again.
    fn is_conflict(&self) -> bool {
        use tokio_postgres::error::SqlState;
        match self {
            Self::Postgres(err) => err.code().is_some_and(|code| {
                *code == SqlState::T_R_DEADLOCK_DETECTED
                    || *code == SqlState::T_R_SERIALIZATION_FAILURE
            }),
            _ => false,
        }
    }

    fn is_full(&self) -> bool {
        match self {
            Self::Full => true,
            Self::Sqlite(err) => err.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull),
            Self::Postgres(err) => err.code() == Some(&tokio_postgres::error::SqlState::DISK_FULL),
            _ => false,
        }
    }
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    database: Database,
    writer: writer::WriterHandle,
    readers: Mutex<Vec<Connection>>,
    max_idle_readers: usize,
    /// This process among the nodes sharing the database (`nodes.rs`).
    node_id: String,
    queue_depth: Arc<rollups::QueueDepth>,
}

pub const DB_FILE: &str = "pigeon.db";

/// Holds this node's id, made at its first start.
pub const NODE_ID_FILE: &str = "pigeon.node";

/// The id in `<data_dir>/pigeon.node`, made if there is none: a node keeps
/// its id across restarts, so a restart after a crash takes back its own
/// claims at once rather than after the lease.
fn node_id(data_dir: &Path) -> Result<String> {
    let path = data_dir.join(NODE_ID_FILE);
    let io = |source| StoreError::NodeId {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        Ok(_) => Err(io(std::io::Error::other("the file is empty"))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let id = crate::ids::new_id("node");
            std::fs::write(&path, format!("{id}\n")).map_err(io)?;
            Ok(id)
        }
        Err(err) => Err(io(err)),
    }
}

/// Where the database is, for opening more readers.
enum Database {
    Sqlite(PathBuf),
    Postgres(Box<db::PgTarget>),
}

impl Database {
    /// A new connection: on SQLite a read-only one (the writer's own is
    /// opened apart, with its pragmas); on PostgreSQL one that serves for
    /// anything, the writer's or a reader's.
    fn connect(&self) -> Result<Connection> {
        match self {
            Self::Sqlite(path) => open_reader(path),
            Self::Postgres(target) => Connection::postgres(target),
        }
    }
}

impl Store {
    /// Opens the database (`store.url`'s PostgreSQL database, else
    /// `<data_dir>/pigeon.db`, created if needed), migrates it and starts
    /// the writer thread.
    pub fn open(data_dir: &Path, config: &StoreConfig) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let node_id = node_id(data_dir)?;
        if let Some(url) = &config.url {
            return Self::open_postgres(url, config, node_id);
        }
        let path = data_dir.join(DB_FILE);
        // SQLite takes an empty file for a new database: a truncated one
        // would start over with no accounts and no keys.
        if !config.initialize_empty_file
            && std::fs::metadata(&path).is_ok_and(|meta| meta.is_file() && meta.len() == 0)
        {
            return Err(StoreError::EmptyDatabase { path });
        }
        let conn = rusqlite::Connection::open(&path)?;
        configure_writer(&conn, config.synchronous)?;
        let conn = Connection::sqlite(conn);
        schema::migrate(&conn)?;
        let mut readers = Vec::with_capacity(config.readers);
        for _ in 0..config.readers {
            readers.push(open_reader(&path)?);
        }
        let queue_depth = Arc::new(rollups::QueueDepth::load(&conn)?);
        Ok(Self::start(
            conn,
            readers,
            Database::Sqlite(path),
            config,
            queue_depth,
            node_id,
        ))
    }

    fn open_postgres(url: &str, config: &StoreConfig, node_id: String) -> Result<Self> {
        let database =
            Database::Postgres(Box::new(db::postgres_target(url).map_err(StoreError::Url)?));
        // On a thread of its own: a caller's async thread may not wait.
        let (conn, readers, queue_depth) = std::thread::scope(|scope| {
            scope
                .spawn(|| -> Result<_> {
                    let conn = database.connect()?;
                    schema::migrate(&conn)?;
                    let readers = (0..config.readers)
                        .map(|_| database.connect())
                        .collect::<Result<Vec<_>>>()?;
                    let queue_depth = Arc::new(rollups::QueueDepth::load(&conn)?);
                    Ok((conn, readers, queue_depth))
                })
                .join()
                .map_err(|_| StoreError::Closed)?
        })?;
        Ok(Self::start(
            conn,
            readers,
            database,
            config,
            queue_depth,
            node_id,
        ))
    }

    fn start(
        conn: Connection,
        readers: Vec<Connection>,
        database: Database,
        config: &StoreConfig,
        queue_depth: Arc<rollups::QueueDepth>,
        node_id: String,
    ) -> Self {
        let writer = writer::spawn(conn, config.max_batch, queue_depth.clone());
        Self {
            inner: Arc::new(Inner {
                database,
                writer,
                readers: Mutex::new(readers),
                max_idle_readers: config.readers,
                node_id,
                queue_depth,
            }),
        }
    }

    /// This process's id among the nodes on the database.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// Whether other nodes may share the database (PostgreSQL): then
    /// claims are leased to the node, and caches follow other nodes' writes.
    pub fn is_shared(&self) -> bool {
        matches!(self.inner.database, Database::Postgres(_))
    }

    /// Runs `job` inside the writer's current transaction; resolves once the
    /// transaction has committed. A job's error rolls back that job only. A
    /// job may run more than once (when another job of its batch fails), so
    /// it is a plain function of the database.
    pub async fn write<R, F>(&self, job: F) -> Result<R>
    where
        R: Send + 'static,
        F: Fn(&Connection) -> Result<R> + Send + 'static,
    {
        self.inner
            .writer
            .submit(job)
            .await
            .map_err(|e| e.said_as(StoreError::WriteFailed))
    }

    /// Runs `query` on a read-only connection, off the async threads, on
    /// one snapshot of the database.
    pub async fn read<R, F>(&self, query: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner
                .readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => inner.database.connect()?,
            };
            let result = conn.snapshot(query);
            let mut pool = inner.readers.lock().unwrap_or_else(|p| p.into_inner());
            // A connection left in a transaction (its rollback failed) is
            // dropped rather than handed to the next reader.
            if pool.len() < inner.max_idle_readers && !conn.in_transaction() {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|_| StoreError::Closed)?
        .map_err(|e| e.said_as(StoreError::ReadFailed))
    }

    /// Parts in each state, as of the last commit.
    pub fn queue_depth(&self) -> &rollups::QueueDepth {
        &self.inner.queue_depth
    }

    /// Proves the database takes writes (for `/readyz`).
    pub async fn check_writable(&self) -> Result<()> {
        self.write(|conn| {
            conn.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'heartbeat'")?
                .execute([crate::time::now_ms().to_string()])?;
            Ok(())
        })
        .await
    }

    /// Finishes queued writes, checkpoints the log and closes the database.
    pub async fn close(&self) {
        self.inner.writer.close().await;
    }
}

fn configure_writer(conn: &rusqlite::Connection, synchronous: Synchronous) -> Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let sync = match synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", -16384)?;
    configure_statements(conn)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

/// Cached statements stay prepared: enough cache slots for every statement
/// the store uses, and a stable query plan, since otherwise SQLite re-prepares
/// a statement whenever some bound values (a LIMIT, a value tested against a
/// partial index) change.
fn configure_statements(conn: &rusqlite::Connection) -> Result<()> {
    conn.set_prepared_statement_cache_capacity(64);
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

fn open_reader(path: &Path) -> Result<Connection> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "cache_size", -16384)?;
    configure_statements(&conn)?;
    Ok(Connection::sqlite(conn))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(conn: &rusqlite::Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        // Unbound parameters are fine for a plan.
        let mut rows = stmt.raw_query();
        let mut details = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            details.push(row.get::<_, String>(3).unwrap());
        }
        details.join("; ")
    }

    /// The hot queries use their indexes rather than scanning a table.
    #[test]
    fn hot_queries_use_their_indexes() {
        let conn = Connection::sqlite(rusqlite::Connection::open_in_memory().unwrap());
        schema::migrate(&conn).unwrap();
        let conn = conn.as_sqlite().unwrap();
        configure_statements(conn).unwrap();
        let due = plan(conn, queue::DUE_PARTS);
        assert!(due.contains("parts_due"), "{due}");
        let by_id = plan(conn, reports::PART_BY_CARRIER_ID);
        assert!(by_id.contains("parts_by_carrier_id"), "{by_id}");
    }
}

#[cfg(test)]
mod fault_tests {
    use super::*;

    #[test]
    fn an_empty_database_file_is_refused_unless_told_to_start_over() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), b"").unwrap();
        let config = StoreConfig::default();
        let err = Store::open(dir.path(), &config).err().unwrap();
        assert!(matches!(err, StoreError::EmptyDatabase { .. }), "{err}");
        assert!(err.to_string().contains("initialize_empty_file"), "{err}");
        let config = StoreConfig {
            initialize_empty_file: true,
            ..StoreConfig::default()
        };
        assert!(Store::open(dir.path(), &config).is_ok());
    }

    #[tokio::test]
    async fn a_full_disk_is_said_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        // SQLite answers SQLITE_FULL past max_page_count, as on a full disk.
        store
            .write(|c| {
                let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                c.as_sqlite()
                    .unwrap()
                    .pragma_update(None, "max_page_count", pages)?;
                Ok(())
            })
            .await
            .unwrap();
        let err = store
            .write(|c| {
                c.execute_batch("CREATE TABLE filler (x BLOB)")?;
                c.execute("INSERT INTO filler VALUES (zeroblob(1000000))", [])?;
                Ok(())
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Full), "{err:?}");
        let answer = crate::api::ApiError::from(err);
        assert_eq!(answer.status, hyper::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.code, "storage_full");
        store.close().await;
    }

    /// The store on PostgreSQL, from a single-threaded runtime as tests
    /// have: writes commit, reads see them, a failed job fails alone, and
    /// a second store (a second node) finds the schema in place.
    #[tokio::test]
    async fn a_store_on_postgres_writes_and_reads() {
        let config = StoreConfig {
            url: Some(testing::postgres_url()),
            readers: 1,
            ..StoreConfig::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &config).unwrap();
        store.check_writable().await.unwrap();
        let set = |value: &'static str| {
            let store = store.clone();
            async move {
                store
                    .write(move |c| {
                        accounts::set_meta_value(c, "test", value)?;
                        Ok(())
                    })
                    .await
            }
        };
        let failing = store.write(|c| {
            c.execute_batch("SELECT no_such_column FROM meta")?;
            Ok(())
        });
        let (ok, failed) = tokio::join!(set("one"), failing);
        ok.unwrap();
        assert!(
            matches!(failed, Err(StoreError::WriteFailed(_))),
            "{failed:?}"
        );
        let read = |store: Store| async move {
            store
                .read(|c| accounts::meta_value(c, "test"))
                .await
                .unwrap()
        };
        assert_eq!(read(store.clone()).await.as_deref(), Some("one"));
        let second = Store::open(dir.path(), &config).unwrap();
        set("two").await.unwrap();
        // More reads at once than the pool keeps: new connections open.
        let (a, b) = tokio::join!(read(second.clone()), read(second.clone()));
        assert_eq!((a.as_deref(), b.as_deref()), (Some("two"), Some("two")));
        store.close().await;
        second.close().await;
    }

    #[tokio::test]
    async fn a_failed_read_is_not_called_a_failed_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let err = store
            .read(|c| c.execute_batch("SELECT * FROM no_such_table"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::ReadFailed(_)), "{err:?}");
        let answer = crate::api::ApiError::from(err);
        assert_eq!(answer.code, "storage_error");
        assert!(!answer.message.contains("stored;"), "{}", answer.message);
        assert!(answer.message.contains("read"), "{}", answer.message);
        store.close().await;
    }
}
