//! Schema migrations: the plain SQL files of `migrations/`, compiled in, applied in order at
//! start-up under a named lock (so instances starting together apply each once) and recorded
//! with a checksum (so an edited, already-applied file is reported, not silently skipped).

use mysql_async::prelude::*;

use super::timed;

const MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "0001_schema.sql",
        include_str!("../../migrations/0001_schema.sql"),
    ),
    (
        2,
        "0002_signed_queue_tokens.sql",
        include_str!("../../migrations/0002_signed_queue_tokens.sql"),
    ),
    (
        3,
        "0003_user_request_rate.sql",
        include_str!("../../migrations/0003_user_request_rate.sql"),
    ),
    (
        4,
        "0004_queue_token_left.sql",
        include_str!("../../migrations/0004_queue_token_left.sql"),
    ),
    (
        5,
        "0005_reservations_by_user.sql",
        include_str!("../../migrations/0005_reservations_by_user.sql"),
    ),
    (
        6,
        "0006_fair_opening.sql",
        include_str!("../../migrations/0006_fair_opening.sql"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("migration {0} was changed after it was applied")]
    Changed(String),
    #[error("could not take the migration lock within 60 s")]
    Locked,
    #[error("migration {name}: {source}")]
    Sql {
        name: String,
        source: mysql_async::Error,
    },
}

impl From<mysql_async::Error> for MigrateError {
    fn from(source: mysql_async::Error) -> Self {
        Self::Sql {
            name: "bookkeeping".into(),
            source,
        }
    }
}

/// FNV-1a, enough to notice an edited file.
fn checksum(sql: &str) -> String {
    let hash = sql.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// The statements of a file: comment lines dropped, split at `;` ending a line.
fn statements(sql: &str) -> Vec<String> {
    let body: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    body.split(";\n")
        .chain(std::iter::once(""))
        .map(|s| s.trim().trim_end_matches(';').trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Applies every migration not yet recorded; returns how many were applied.
pub async fn run(pool: &mysql_async::Pool) -> Result<usize, MigrateError> {
    let mut conn = timed(pool.get_conn()).await?;
    let locked: Option<i64> = timed(conn.query_first("SELECT GET_LOCK('seatrush_migrate', 60)"))
        .await?
        .flatten();
    if locked != Some(1) {
        return Err(MigrateError::Locked);
    }
    let result = apply_pending(&mut conn).await;
    timed(conn.query_drop("DO RELEASE_LOCK('seatrush_migrate')")).await?;
    result
}

async fn apply_pending(conn: &mut mysql_async::Conn) -> Result<usize, MigrateError> {
    timed(conn.query_drop(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
           version INT UNSIGNED NOT NULL PRIMARY KEY,
           name VARCHAR(200) NOT NULL,
           checksum CHAR(16) NOT NULL,
           applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
         ) ENGINE=InnoDB",
    ))
    .await?;
    let applied: Vec<(u32, String)> =
        timed(conn.query("SELECT version, checksum FROM schema_migrations")).await?;
    let mut count = 0;
    for (version, name, sql) in MIGRATIONS {
        let sum = checksum(sql);
        if let Some((_, recorded)) = applied.iter().find(|(v, _)| v == version) {
            if *recorded != sum {
                return Err(MigrateError::Changed((*name).to_string()));
            }
            continue;
        }
        for statement in statements(sql) {
            timed(conn.query_drop(statement))
                .await
                .map_err(|source| MigrateError::Sql {
                    name: (*name).to_string(),
                    source,
                })?;
        }
        timed(conn.exec_drop(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (?, ?, ?)",
            (version, name, &sum),
        ))
        .await?;
        tracing::info!(migration = name, "applied");
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_at_line_ending_semicolons_and_drop_comments() {
        let sql = "-- a comment; with a semicolon\nCREATE TABLE a (x INT);\n\nCREATE TABLE b (\n  y INT\n);\n";
        assert_eq!(
            statements(sql),
            vec!["CREATE TABLE a (x INT)", "CREATE TABLE b (\n  y INT\n)"]
        );
    }

    #[test]
    fn every_migration_has_statements_and_a_distinct_checksum() {
        for (_, name, sql) in MIGRATIONS {
            assert!(!statements(sql).is_empty(), "{name}");
        }
        assert_ne!(checksum("a"), checksum("b"));
    }
}
