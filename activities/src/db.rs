//! One database handle for every engine.
//!
//! `DATABASE_URL` picks the engine at run time (`sqlite://...`, `postgres://...` or
//! `mysql://...`); sqlx's `Any` driver runs the statements, each written once and rendered for the
//! engine by [`crate::sql`]. BIGINT everywhere, no `NUMERIC`.
//!
//! On MySQL/MariaDB every connection runs its transactions at READ COMMITTED, PostgreSQL's
//! default, so the same statements lock the same way on both: InnoDB's REPEATABLE READ would add
//! gap locks (and deadlocks) to inserts and keep snapshot reads that a read-then-write would act
//! on stale. Stock and money move only in guarded single statements either way.
//!
//! Writes that move stock or money run in [`Db::begin_write`]: on SQLite that is
//! `BEGIN IMMEDIATE`, which takes the write lock up front. A plain `BEGIN` would start as a reader
//! and fail with `SQLITE_BUSY` when two of them try to upgrade at once, instead of queueing on the
//! busy timeout.
//!
//! SQLite has one writer at a time, so on SQLite those transactions take their connection from a
//! pool of one: writers in this process queue there, in order, and each starts the moment the one
//! before commits. Left to SQLite, eight connections would meet the lock and its busy handler
//! would put each to sleep for 1, 2, 5, 10… ms, however soon the lock came free — in a flash sale,
//! where every buyer writes, that sleeping was most of the time (bench/NOTES.md).

use crate::sql;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Executor, Transaction};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/orderflow.db";

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");
static MYSQL_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/mysql");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
    /// MySQL 8 or MariaDB ≥ 10.5.
    MySql,
}

impl Engine {
    pub const ALL: [Engine; 3] = [Engine::Sqlite, Engine::Postgres, Engine::MySql];

    /// The engine a connection (or, through `Deref`, a transaction) talks to.
    pub fn of(conn: &sqlx::AnyConnection) -> Engine {
        match conn.backend_name() {
            "PostgreSQL" => Engine::Postgres,
            "MySQL" => Engine::MySql,
            _ => Engine::Sqlite,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
            Engine::MySql => "mysql",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "unsupported DATABASE_URL {0:?}: expected sqlite://path/to/file.db, postgres://user@host/db or mysql://user@host:3306/db"
    )]
    UnsupportedUrl(String),
    #[error("cannot create the directory for the SQLite file {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("another process held the migration lock for 300 s")]
    MigrationLock,
    #[error("migrating the database failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A cheap-to-clone pool plus the engine it talks to.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    /// Where [`Db::begin_write`] takes its connection: on SQLite a pool of one (see the module
    /// docs), elsewhere the same pool as everything else.
    writer: AnyPool,
    engine: Engine,
}

impl Db {
    /// Connects to `url`. For SQLite the file (and its directory) is created if missing and the
    /// connection is put in WAL mode with a busy timeout, so concurrent writers wait their turn.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let engine = engine_of(url)?;
        let url = match engine {
            Engine::Sqlite => prepare_sqlite_url(url)?,
            Engine::Postgres | Engine::MySql => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url).map_err(DbError::Connect)?;
        let pool = pool_options(
            engine,
            match engine {
                Engine::Sqlite => 8,
                Engine::Postgres | Engine::MySql => 16,
            },
        )
        .connect_with(options.clone())
        .await
        .map_err(DbError::Connect)?;
        // An in-memory SQLite database is one per connection: a second pool would not see it.
        let writer = if engine == Engine::Sqlite && !url.contains(":memory:") {
            pool_options(engine, 1)
                .connect_with(options)
                .await
                .map_err(DbError::Connect)?
        } else {
            pool.clone()
        };
        Ok(Db {
            pool,
            writer,
            engine,
        })
    }

    /// Applies the engine's migrations (append-only files under `migrations/<engine>/`).
    ///
    /// PostgreSQL and MySQL serialise concurrent migrators with a lock of their own. SQLite has no such lock,
    /// so when the worker and the CLI start together one of them can trip over the other's
    /// half-applied migration; it then waits and tries again, and finds the work done.
    pub async fn migrate(&self) -> Result<(), DbError> {
        let migrator = match self.engine {
            Engine::Sqlite => &SQLITE_MIGRATIONS,
            Engine::Postgres => &POSTGRES_MIGRATIONS,
            Engine::MySql => &MYSQL_MIGRATIONS,
        };
        if self.engine == Engine::MySql {
            return self.migrate_mysql(migrator).await;
        }
        let mut attempt = 0;
        loop {
            // `run_direct` on a connection of our own: `run(&pool)` makes a future that is not
            // `Send` for every lifetime, which a spawned task cannot hold.
            let mut conn = self.pool.acquire().await.map_err(DbError::Connect)?;
            match migrator.run_direct(&mut *conn).await {
                Ok(()) => return Ok(()),
                Err(e) if self.engine == Engine::Sqlite && attempt < 10 => {
                    attempt += 1;
                    tracing::debug!(attempt, error = %e, "migration collided; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// MariaDB's `GET_LOCK` takes no negative ("wait forever") timeout, which is what sqlx's own
    /// migration lock asks for: it answers NULL at once, and two processes starting together
    /// (the worker and `orderflow db migrate`) would both apply migration 1. So the migrations
    /// run under a lock with a finite timeout that both servers honour, on the connection that
    /// holds it.
    async fn migrate_mysql(&self, migrator: &Migrator) -> Result<(), DbError> {
        let mut conn = self.pool.acquire().await.map_err(DbError::Connect)?;
        let locked: Option<i64> = sql!(
            "SELECT CAST(GET_LOCK(CONCAT('orderflow-migrate:', DATABASE()), 300) AS SIGNED)",
            only: [MySql]
        )
        .on(Engine::MySql)
        .fetch_one_scalar(&mut *conn)
        .await
        .map_err(DbError::Connect)?;
        if locked != Some(1) {
            return Err(DbError::MigrationLock);
        }
        let migrated = migrator.run_direct(&mut *conn).await;
        let released = sql!(
            "SELECT RELEASE_LOCK(CONCAT('orderflow-migrate:', DATABASE()))",
            only: [MySql]
        )
        .on(Engine::MySql)
        .execute(&mut *conn)
        .await;
        migrated?;
        released.map_err(DbError::Connect)?;
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Where a single write statement outside a transaction runs: on SQLite it queues with the
    /// write transactions for the one writer connection (never call it while holding one of
    /// those, it would wait for itself); elsewhere the shared pool.
    pub fn writes(&self) -> &AnyPool {
        &self.writer
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// A transaction that may write. See the module docs for why SQLite needs `BEGIN IMMEDIATE`.
    pub async fn begin_write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.engine {
            Engine::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await,
            Engine::Postgres | Engine::MySql => self.pool.begin().await,
        }
    }

    /// Cheap round trip for readiness checks.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sql!("SELECT 1")
            .on(&self.pool)
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

/// Creates the database `url` names when its server has none by that name (PostgreSQL, MySQL;
/// a SQLite file is created on connect anyway). Returns whether it created one.
pub async fn create_if_missing(url: &str) -> Result<bool, DbError> {
    use sqlx::migrate::MigrateDatabase;
    sqlx::any::install_default_drivers();
    if engine_of(url)? == Engine::Sqlite
        || Any::database_exists(url).await.map_err(DbError::Connect)?
    {
        return Ok(false);
    }
    Any::create_database(url).await.map_err(DbError::Connect)?;
    Ok(true)
}

/// The pool settings for `engine`, and SQLite's pragmas on every connection. No ping before each
/// use: it was a round trip per use (a sixth of the worker's CPU in the benchmark profile); a
/// connection that broke while idle fails its first statement instead, sqlx drops it, and the
/// step is retried — every step is idempotent and retried anyway.
fn pool_options(engine: Engine, max_connections: u32) -> AnyPoolOptions {
    let options = AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false);
    match engine {
        Engine::Postgres => return options,
        Engine::MySql => {
            return options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // Strict for every table (a value too long is an error, never cut short).
                    conn.execute(
                        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; \
                         SET SESSION sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES')",
                    )
                    .await?;
                    Ok(())
                })
            });
        }
        Engine::Sqlite => {}
    }
    options.after_connect(|conn, _meta| {
        Box::pin(async move {
            conn.execute(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                 PRAGMA busy_timeout = 30000; PRAGMA foreign_keys = ON;",
            )
            .await?;
            Ok(())
        })
    })
}

pub fn engine_of(url: &str) -> Result<Engine, DbError> {
    if url.starts_with("sqlite:") {
        Ok(Engine::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Engine::Postgres)
    } else if url.starts_with("mysql://") {
        Ok(Engine::MySql)
    } else {
        Err(DbError::UnsupportedUrl(url.to_owned()))
    }
}

/// Adds `mode=rwc` (create if missing) and creates the file's directory.
fn prepare_sqlite_url(url: &str) -> Result<String, DbError> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path != ":memory:"
        && let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|source| DbError::CreateDir {
            path: path.to_owned(),
            source,
        })?;
    }
    let query = if query.contains("mode=") {
        query.to_owned()
    } else if query.is_empty() {
        "mode=rwc".to_owned()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok(format!("sqlite://{path}?{query}"))
}

/// Wall-clock milliseconds for `*_at_ms` columns. Activities may read the clock; workflows may not.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_is_picked_by_url() {
        assert_eq!(engine_of("sqlite://data/x.db").unwrap(), Engine::Sqlite);
        assert_eq!(engine_of("sqlite::memory:").unwrap(), Engine::Sqlite);
        assert_eq!(
            engine_of("postgres://postgres@127.0.0.1/test").unwrap(),
            Engine::Postgres
        );
        assert_eq!(
            engine_of("mysql://root@127.0.0.1:3306/test").unwrap(),
            Engine::MySql
        );
        assert!(engine_of("mariadb://root@localhost/test").is_err());
    }

    #[test]
    fn sqlite_urls_create_the_file() {
        let dir = std::env::temp_dir().join(format!("orderflow-url-{}", std::process::id()));
        let url = format!("sqlite://{}/sub/x.db", dir.display());
        let prepared = prepare_sqlite_url(&url).unwrap();
        assert!(prepared.ends_with("x.db?mode=rwc"), "{prepared}");
        assert!(dir.join("sub").is_dir());
        assert_eq!(
            prepare_sqlite_url("sqlite://a.db?mode=ro").unwrap(),
            "sqlite://a.db?mode=ro"
        );
    }
}
