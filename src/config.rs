//! Typed settings from `SEATRUSH_*` environment variables; every one has a default that points
//! at the dev stack, and `seatrush --help` prints them all from [`VARIABLES`].

use std::net::SocketAddr;
use std::time::Duration;

/// The admin key the dev stack uses; refused when `SEATRUSH_ENV=production`.
pub const DEV_ADMIN_KEY: &str = "dev-admin-key";

/// The secret that signs callers' identities on the dev stack; refused in production.
pub const DEV_AUTH_SECRET: &str = "dev-auth-secret";

/// The secret that signs Queue-Tokens on the dev stack; refused in production.
pub const DEV_TOKEN_SECRET: &str = "dev-token-secret";

/// (name, default, meaning) of every variable, in `--help` order.
pub const VARIABLES: &[(&str, &str, &str)] = &[
    (
        "SEATRUSH_HTTP_ADDR",
        "127.0.0.1:8080",
        "address the HTTP server listens on",
    ),
    (
        "SEATRUSH_REDIS_URL",
        "redis://127.0.0.1:6390/0",
        "Redis holding the hot state",
    ),
    (
        "SEATRUSH_MYSQL_PRIMARY_URL",
        "mysql://seatrush:seatrush@127.0.0.1:3316/seatrush",
        "MySQL/MariaDB primary (writes, migrations)",
    ),
    (
        "SEATRUSH_MYSQL_REPLICA_URL",
        "mysql://seatrush:seatrush@127.0.0.1:3317/seatrush",
        "MySQL/MariaDB replica (catalogue reads)",
    ),
    (
        "SEATRUSH_ADMIN_KEY",
        DEV_ADMIN_KEY,
        "X-Admin-Key accepted by the admin API",
    ),
    (
        "SEATRUSH_AUTH_SECRET",
        DEV_AUTH_SECRET,
        "HS256 secrets of callers' identity tokens, comma-separated: the first signs, all verify",
    ),
    (
        "SEATRUSH_AUTH_PUBLIC_KEY",
        "",
        "RS256/ES256 public key (PEM, or a PEM file's path) verifying identities instead",
    ),
    (
        "SEATRUSH_TOKEN_SECRET",
        DEV_TOKEN_SECRET,
        "secrets of the MACs in Queue-Tokens, comma-separated: the first signs, all verify",
    ),
    (
        "SEATRUSH_ENV",
        "development",
        "`production` refuses the dev admin key and the dev secrets",
    ),
    (
        "SEATRUSH_FLUSH_MAX_LAG",
        "10",
        "seconds the write-behind may fall behind while the server is busy",
    ),
    (
        "SEATRUSH_OUTBOX_CLAIM_IDLE",
        "30",
        "seconds an outbox entry may stay with a silent instance before another claims it",
    ),
    (
        "SEATRUSH_ENDED_RECORD_KEEP",
        "600",
        "seconds records of ended tokens and holds stay in Redis once MySQL has them",
    ),
    (
        "SEATRUSH_PAYMENT_SAGA_TIMEOUT",
        "15",
        "seconds after which a payment left unfinished (its request died) is settled",
    ),
    (
        "SEATRUSH_MAX_EVENT_STREAMS",
        "100000",
        "queue event streams one instance keeps open at once (more are refused with 503)",
    ),
    (
        "SEATRUSH_LOG",
        "info",
        "log filter (tracing env-filter syntax)",
    ),
    (
        "SEATRUSH_LOG_FORMAT",
        "text",
        "`json` logs one JSON object per line",
    ),
];

#[derive(Debug, Clone)]
pub struct Config {
    pub http_addr: SocketAddr,
    pub redis_url: String,
    pub mysql_primary_url: String,
    pub mysql_replica_url: String,
    pub admin_key: String,
    /// HS256 secrets that verify callers' identities (the first also signs)…
    pub auth_secrets: Vec<String>,
    /// …or, when set, the public key (PEM or a path) that verifies them instead.
    pub auth_public_key: Option<String>,
    /// Secrets of the MACs in Queue-Tokens (the first signs; every instance must share them).
    pub token_secrets: Vec<String>,
    /// How often each instance runs the admission tick (about every 100 ms).
    pub admission_interval: Duration,
    /// How often the flusher polls the outbox streams when they were empty.
    pub flush_interval: Duration,
    /// Outbox entries pending this long with a consumer are presumed abandoned and claimed.
    pub outbox_claim_idle: Duration,
    /// From this many HTTP requests per second the flusher holds back for the hot path…
    pub flush_busy_rps: u64,
    /// …as long as the oldest outbox entry is younger than this.
    pub flush_max_lag: Duration,
    /// Records of ended tokens, and of cancelled or expired holds, stay in Redis this long
    /// (and until MySQL has them), then leave it: reads of them then come from MySQL.
    pub ended_record_keep: Duration,
    /// A payment saga still PAYING after this long lost its request (a crash, a timeout);
    /// the sweeper then finishes or rolls it back. Longer than a request can take with its
    /// Redis (1 s) and MySQL (10 s) timeouts.
    pub payment_saga_timeout: Duration,
    /// Queue event streams this instance keeps open at once.
    pub max_event_streams: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not a valid socket address: {1}")]
    BadAddr(&'static str, String),
    #[error("{0} must be a number of seconds, not {1:?}")]
    BadSeconds(&'static str, String),
    #[error("SEATRUSH_ADMIN_KEY must be set to a non-default value when SEATRUSH_ENV=production")]
    DevKeyInProduction,
    #[error("SEATRUSH_ADMIN_KEY must not be empty")]
    EmptyAdminKey,
    #[error("{0} must be a positive whole number, not {1:?}")]
    BadCount(&'static str, String),
    #[error("{0} must not be empty or hold an empty secret")]
    EmptySecret(&'static str),
    #[error(
        "SEATRUSH_TOKEN_SECRET must be set to a non-default value when SEATRUSH_ENV=production"
    )]
    DevTokenSecretInProduction,
    #[error(
        "SEATRUSH_AUTH_SECRET must be set to a non-default value (or SEATRUSH_AUTH_PUBLIC_KEY \
         used) when SEATRUSH_ENV=production"
    )]
    DevAuthSecretInProduction,
}

fn var(name: &'static str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        let (_, default, _) = VARIABLES
            .iter()
            .find(|(n, _, _)| *n == name)
            .expect("every variable read is listed in VARIABLES");
        (*default).to_string()
    })
}

/// The comma-separated secrets of the variable `name`, none of them empty.
fn secrets(name: &'static str) -> Result<Vec<String>, ConfigError> {
    let secrets: Vec<String> = var(name).split(',').map(|s| s.trim().to_string()).collect();
    if secrets.iter().any(String::is_empty) {
        return Err(ConfigError::EmptySecret(name));
    }
    Ok(secrets)
}

/// A variable holding a positive whole number.
fn count(name: &'static str) -> Result<usize, ConfigError> {
    let value = var(name);
    value
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or(ConfigError::BadCount(name, value))
}

/// A variable holding a duration in (possibly fractional) seconds.
fn seconds(name: &'static str) -> Result<Duration, ConfigError> {
    let value = var(name);
    value
        .trim()
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or(ConfigError::BadSeconds(name, value))
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let addr = var("SEATRUSH_HTTP_ADDR");
        let http_addr = addr
            .parse()
            .map_err(|_| ConfigError::BadAddr("SEATRUSH_HTTP_ADDR", addr))?;
        let production = var("SEATRUSH_ENV") == "production";
        let admin_key = var("SEATRUSH_ADMIN_KEY");
        if admin_key.trim().is_empty() {
            return Err(ConfigError::EmptyAdminKey);
        }
        if production && admin_key == DEV_ADMIN_KEY {
            return Err(ConfigError::DevKeyInProduction);
        }
        let auth_public_key =
            Some(var("SEATRUSH_AUTH_PUBLIC_KEY")).filter(|k| !k.trim().is_empty());
        let auth_secrets = secrets("SEATRUSH_AUTH_SECRET")?;
        let token_secrets = secrets("SEATRUSH_TOKEN_SECRET")?;
        if production && token_secrets.iter().any(|s| s == DEV_TOKEN_SECRET) {
            return Err(ConfigError::DevTokenSecretInProduction);
        }
        if production
            && auth_public_key.is_none()
            && auth_secrets.iter().any(|s| s == DEV_AUTH_SECRET)
        {
            return Err(ConfigError::DevAuthSecretInProduction);
        }
        Ok(Self {
            http_addr,
            redis_url: var("SEATRUSH_REDIS_URL"),
            mysql_primary_url: var("SEATRUSH_MYSQL_PRIMARY_URL"),
            mysql_replica_url: var("SEATRUSH_MYSQL_REPLICA_URL"),
            admin_key,
            auth_secrets,
            auth_public_key,
            token_secrets,
            admission_interval: Duration::from_millis(100),
            flush_interval: Duration::from_millis(50),
            outbox_claim_idle: seconds("SEATRUSH_OUTBOX_CLAIM_IDLE")?,
            flush_busy_rps: 1000,
            flush_max_lag: seconds("SEATRUSH_FLUSH_MAX_LAG")?,
            ended_record_keep: seconds("SEATRUSH_ENDED_RECORD_KEEP")?,
            payment_saga_timeout: seconds("SEATRUSH_PAYMENT_SAGA_TIMEOUT")?,
            max_event_streams: count("SEATRUSH_MAX_EVENT_STREAMS")?,
        })
    }

    /// Keeps the event-stream limit within `open_files` (the process's limit): every stream
    /// is a connection, and a server out of files could not accept even a `/health` check.
    /// [`FILES_BESIDE_STREAMS`] are left for the pools, listeners and request connections.
    /// Returns whether the limit was lowered.
    pub fn fit_streams_to_open_files(&mut self, open_files: u64) -> bool {
        let room = open_files
            .saturating_sub(FILES_BESIDE_STREAMS)
            .max(open_files / 2);
        let room = usize::try_from(room).unwrap_or(usize::MAX);
        let lowered = room < self.max_event_streams;
        self.max_event_streams = self.max_event_streams.min(room);
        lowered
    }

    /// The `--help` text.
    pub fn help() -> String {
        let mut out = String::from(
            "seatrush: flash-sale ticket booking server\n\n\
             usage:\n  seatrush                migrate the database and serve\n  \
             seatrush demo-data      migrate and load demo data into an empty database\n  \
             seatrush rebuild-redis  rebuild Redis state from MySQL after Redis lost it\n  \
             seatrush sign-user-token <userId> [--ttl-seconds N] [--count N]\n                          \
             print an identity token for the user (for an hour by default;\n                          \
             --count: one line for each of N users from userId)\n  \
             seatrush dead-letters list\n                          \
             print each outbox entry MySQL refused, one JSON object per line\n  \
             seatrush dead-letters replay [<stream> <id>]\n                          \
             put them (or one) back into their outboxes to be flushed again\n  \
             seatrush --help         this text\n\nenvironment (default):\n",
        );
        for (name, default, meaning) in VARIABLES {
            out.push_str(&format!("  {name:<28} {meaning} ({default})\n"));
        }
        out
    }
}

/// Open files kept for everything but event streams (see
/// [`Config::fit_streams_to_open_files`]).
const FILES_BESIDE_STREAMS: u64 = 2048;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_streams_fit_within_the_open_files_limit() {
        let mut config = Config {
            max_event_streams: 100_000,
            ..Config::from_env().unwrap()
        };
        assert!(!config.fit_streams_to_open_files(1 << 19));
        assert_eq!(config.max_event_streams, 100_000);
        assert!(config.fit_streams_to_open_files(20_000));
        assert_eq!(config.max_event_streams, 20_000 - 2048);
        // A small limit keeps half for streams, half for the rest.
        assert!(config.fit_streams_to_open_files(1024));
        assert_eq!(config.max_event_streams, 512);
    }

    #[test]
    fn secrets_are_a_list_without_blanks() {
        let name = "SEATRUSH_TOKEN_SECRET";
        // SAFETY: no other test reads or writes this variable.
        unsafe { std::env::set_var(name, "a, b") };
        assert_eq!(secrets(name).unwrap(), ["a", "b"]);
        for bad in ["", "a,", ",a", "a, ,b"] {
            unsafe { std::env::set_var(name, bad) };
            assert!(
                matches!(secrets(name), Err(ConfigError::EmptySecret(_))),
                "{bad:?}"
            );
        }
        unsafe { std::env::remove_var(name) };
        assert_eq!(secrets(name).unwrap(), [DEV_TOKEN_SECRET]);
    }

    #[test]
    fn durations_are_seconds_and_refuse_anything_else() {
        let name = "SEATRUSH_FLUSH_MAX_LAG";
        // SAFETY: no other test reads or writes this variable.
        unsafe { std::env::set_var(name, "2.5") };
        assert_eq!(seconds(name).unwrap(), Duration::from_millis(2500));
        for bad in ["-1", "soon", "", "inf"] {
            unsafe { std::env::set_var(name, bad) };
            assert!(
                matches!(seconds(name), Err(ConfigError::BadSeconds(_, _))),
                "{bad:?}"
            );
        }
        unsafe { std::env::remove_var(name) };
        assert_eq!(
            seconds(name).unwrap(),
            Duration::from_secs(10),
            "the default"
        );
    }
}
