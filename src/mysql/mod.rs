//! MySQL / MariaDB: a pool for the primary (writes, migrations, the flusher) and one for the
//! replica (catalogue reads), both with a 10 s bound on every call, and the loaders of the
//! records the write-behind writes.

pub mod migrate;
pub mod records;

use std::future::Future;
use std::time::Duration;

use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};

use crate::model::Error;

impl From<mysql_async::Error> for Error {
    fn from(e: mysql_async::Error) -> Self {
        match fault(&e) {
            Fault::Refused => Error::Internal(format!("mysql: {e}")),
            Fault::Unavailable | Fault::LockConflict => Error::Unavailable(format!("mysql: {e}")),
        }
    }
}

/// What a MySQL error says about the statement that got it, and so what to do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A deadlock victim (1213) or a lock wait that timed out (1205): the statement did
    /// nothing and succeeds when tried again at once.
    LockConflict,
    /// The content itself is refused (a constraint, a value out of range, …): trying it
    /// again changes nothing. Only these are [`REFUSED_CODES`].
    Refused,
    /// MySQL cannot take it now: unreachable, timed out, read-only (1290, 1836), out of
    /// connections (1040), shutting down (1053), the query or connection killed (1317,
    /// 1927), a full disk, missing privileges or tables, or any error not known to refuse
    /// the content. Tried again later, for as long as it lasts: the data is not at fault.
    Unavailable,
}

/// Server errors that refuse the content of a statement rather than the moment: NULL where
/// none may be (1048), a duplicate key (1062), values out of range or of the wrong shape
/// (1264, 1265, 1292, 1366, 1406, 1690), a missing or still-referenced parent row (1451,
/// 1452), a failed CHECK constraint (MariaDB 4025, MySQL 3819).
pub const REFUSED_CODES: [u16; 12] = [
    1048, 1062, 1264, 1265, 1292, 1366, 1406, 1451, 1452, 1690, 3819, 4025,
];

pub fn fault(e: &mysql_async::Error) -> Fault {
    match e {
        mysql_async::Error::Server(s) if s.code == 1213 || s.code == 1205 => Fault::LockConflict,
        mysql_async::Error::Server(s) if REFUSED_CODES.contains(&s.code) => Fault::Refused,
        _ => Fault::Unavailable,
    }
}

/// Every MySQL call gives up after ten seconds (README, "Failure behaviour").
pub const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Db {
    pub primary: Pool,
    pub replica: Pool,
}

fn pool(url: &str) -> Result<Pool, mysql_async::Error> {
    let opts =
        OptsBuilder::from_opts(Opts::from_url(url)?)
            .pool_opts(PoolOpts::default().with_constraints(
                PoolConstraints::new(1, 32).expect("1 <= 32 is a valid pool range"),
            ))
            // Every DATETIME is UTC; a reservation's seat list (GROUP_CONCAT, the flusher's
            // conflict check) is never cut at the default 1 024 bytes.
            .init(vec![
                "SET time_zone = '+00:00', group_concat_max_len = 1048576",
            ]);
    Ok(Pool::new(opts))
}

impl Db {
    pub fn new(primary_url: &str, replica_url: &str) -> Result<Self, mysql_async::Error> {
        Ok(Self {
            primary: pool(primary_url)?,
            replica: pool(replica_url)?,
        })
    }
}

impl Db {
    /// A connection from the primary's pool.
    pub async fn primary_conn(&self) -> Result<Conn, mysql_async::Error> {
        conn(&self.primary, PRIMARY).await
    }

    /// A connection from the replica's pool.
    pub async fn replica_conn(&self) -> Result<Conn, mysql_async::Error> {
        conn(&self.replica, REPLICA).await
    }
}

/// Runs `load` on the replica when it is readable (else the primary); a miss on the replica
/// (`None`) is tried again on the primary, which has every committed row. Each read the
/// primary serves instead is counted in `seatrush_replica_fallbacks_total`.
pub async fn read_replica_first<T, F, Fut>(
    db: &Db,
    replica_readable: bool,
    load: F,
) -> Result<Option<T>, mysql_async::Error>
where
    F: Fn(Pool, &'static str) -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, mysql_async::Error>>,
{
    let reason = if !replica_readable {
        "replica_unreadable"
    } else {
        match load(db.replica.clone(), REPLICA).await {
            Ok(Some(found)) => return Ok(Some(found)),
            Ok(None) => "missing_on_replica",
            Err(e) => {
                tracing::warn!(error = %e, "replica read failed; reading the primary");
                "replica_error"
            }
        }
    };
    metrics::counter!("seatrush_replica_fallbacks_total", "reason" => reason).increment(1);
    load(db.primary.clone(), PRIMARY).await
}

/// Pool names in metrics.
pub const PRIMARY: &str = "primary";
pub const REPLICA: &str = "replica";

/// A connection from `pool` (named `name` in metrics) under [`TIMEOUT`], recording how long
/// the pool made the caller wait.
pub async fn conn(pool: &Pool, name: &'static str) -> Result<Conn, mysql_async::Error> {
    let started = std::time::Instant::now();
    let conn = timed(pool.get_conn()).await;
    metrics::histogram!("seatrush_mysql_pool_wait_seconds", "pool" => name)
        .record(started.elapsed().as_secs_f64());
    conn
}

#[derive(Debug, thiserror::Error)]
#[error("mysql call took longer than {TIMEOUT:?}")]
pub struct Timeout;

/// Runs a MySQL call under [`TIMEOUT`]; a timeout reads as a driver-level failure.
pub async fn timed<T>(
    fut: impl Future<Output = Result<T, mysql_async::Error>>,
) -> Result<T, mysql_async::Error> {
    match tokio::time::timeout(TIMEOUT, fut).await {
        Ok(result) => result,
        Err(_) => Err(mysql_async::Error::Io(mysql_async::IoError::Io(
            std::io::Error::new(std::io::ErrorKind::TimedOut, Timeout),
        ))),
    }
}

/// See [`Fault::LockConflict`].
pub fn is_lock_conflict(e: &mysql_async::Error) -> bool {
    fault(e) == Fault::LockConflict
}

/// Runs `op` again (up to three times in all) while MySQL picks it as a deadlock victim.
pub async fn retry_lock_conflicts<T, F, Fut>(mut op: F) -> Result<T, mysql_async::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, mysql_async::Error>>,
{
    let mut tries = 0;
    loop {
        match op().await {
            Err(e) if is_lock_conflict(&e) && tries < 2 => tries += 1,
            other => return other,
        }
    }
}

/// `n` copies of `one` (e.g. `"(?, ?)"`), comma-separated: the placeholders of a multi-row
/// statement. Values always travel as parameters, never inside the SQL text.
pub fn placeholders(n: usize, one: &str) -> String {
    vec![one; n].join(", ")
}

/// Row counts multi-row statements are cut into. Each distinct statement text is prepared
/// once and then found in the connection's statement cache, so only a few shapes are used.
const STATEMENT_SHAPES: [usize; 4] = [500, 50, 5, 1];

/// Splits `items` into chunks whose sizes are all in [`STATEMENT_SHAPES`], largest first.
pub fn shaped_chunks<T>(mut items: &[T]) -> Vec<&[T]> {
    let mut chunks = Vec::new();
    for shape in STATEMENT_SHAPES {
        while items.len() >= shape {
            let (chunk, rest) = items.split_at(shape);
            chunks.push(chunk);
            items = rest;
        }
    }
    chunks
}

/// Milliseconds since the epoch as a DATETIME(3) value.
pub fn datetime_ms(ms: i64) -> mysql_async::Value {
    use chrono::{Datelike, Timelike};
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    mysql_async::Value::Date(
        t.year() as u16,
        t.month() as u8,
        t.day() as u8,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
        t.timestamp_subsec_micros(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shaped_chunks_cover_everything_in_few_sizes() {
        let items: Vec<u32> = (0..1234).collect();
        let chunks = shaped_chunks(&items);
        let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        assert_eq!(
            sizes,
            [500, 500, 50, 50, 50, 50, 5, 5, 5, 5, 5, 5, 1, 1, 1, 1]
        );
        assert_eq!(chunks.concat(), items);
        assert!(shaped_chunks::<u32>(&[]).is_empty());
    }

    fn server(code: u16, message: &str) -> mysql_async::Error {
        mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: message.into(),
            state: "HY000".into(),
        })
    }

    #[test]
    fn only_errors_about_the_content_refuse_it() {
        let read_only = server(
            1290,
            "The MariaDB server is running with the --read-only option",
        );
        for (e, expected) in [
            (read_only, Fault::Unavailable),
            (server(1040, "Too many connections"), Fault::Unavailable),
            (
                server(1053, "Server shutdown in progress"),
                Fault::Unavailable,
            ),
            (server(1927, "Connection was killed"), Fault::Unavailable),
            (server(1146, "Table doesn't exist"), Fault::Unavailable),
            (server(1213, "Deadlock found"), Fault::LockConflict),
            (
                server(1205, "Lock wait timeout exceeded"),
                Fault::LockConflict,
            ),
            (server(1062, "Duplicate entry"), Fault::Refused),
            (server(4025, "CONSTRAINT failed"), Fault::Refused),
            (
                server(1452, "a foreign key constraint fails"),
                Fault::Refused,
            ),
        ] {
            assert_eq!(fault(&e), expected, "{e}");
        }
        let dropped = mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert_eq!(fault(&dropped), Fault::Unavailable);
        assert!(matches!(
            Error::from(server(1290, "read-only")),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            Error::from(server(1062, "Duplicate entry")),
            Error::Internal(_)
        ));
    }
}
