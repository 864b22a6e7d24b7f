//! The `seatrush` binary itself: JSON logs carrying request ids and never a token, and a
//! SIGTERM that ends it cleanly.

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TestApp, eventually};
use hyper::Method;
use simd_json::prelude::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// Reads log lines until one satisfies `pick`, failing after `deadline`; returns it and
/// everything read on the way.
async fn read_until(
    lines: &mut Lines<BufReader<ChildStdout>>,
    deadline: Duration,
    what: &str,
    pick: impl Fn(&str) -> bool,
) -> (String, Vec<String>) {
    let until = Instant::now() + deadline;
    let mut seen = Vec::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let line = tokio::time::timeout(left, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no log line for {what} in {seen:#?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the log ended before {what}: {seen:#?}"));
        if pick(&line) {
            return (line, seen);
        }
        seen.push(line);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(port: u16) -> Child {
    start_on(port, &TestApp::config().redis_url, &[])
}

/// The binary on `port`, against the test database and the Redis at `redis_url`, with the
/// extra variables `env`.
fn start_on(port: u16, redis_url: &str, env: &[(&str, &str)]) -> Child {
    let config = TestApp::config();
    Command::new(env!("CARGO_BIN_EXE_seatrush"))
        .envs(env.iter().copied())
        .env("SEATRUSH_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("SEATRUSH_REDIS_URL", redis_url)
        .env("SEATRUSH_MYSQL_PRIMARY_URL", &config.mysql_primary_url)
        .env("SEATRUSH_MYSQL_REPLICA_URL", &config.mysql_replica_url)
        .env("SEATRUSH_LOG", "seatrush=debug")
        .env("SEATRUSH_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the seatrush binary starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_logs_json_with_request_ids_never_tokens_and_stops_on_sigterm() {
    let port = free_port();
    let mut child = start(port);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    read_until(&mut lines, Duration::from_secs(60), "listening", |l| {
        l.contains("seatrush listening")
    })
    .await;

    let token = uuid::Uuid::new_v4().to_string();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(
        format!(
            "GET /api/v1/queue/tokens/me HTTP/1.1\r\nhost: t\r\nqueue-token: {token}\r\n\
             x-request-id: log-test-1\r\nconnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
    assert!(reply.contains("x-request-id: log-test-1"), "{reply}");

    let (line, before) = read_until(&mut lines, Duration::from_secs(10), "the request", |l| {
        l.contains("log-test-1")
    })
    .await;
    let mut bytes = line.clone().into_bytes();
    let entry = simd_json::to_owned_value(&mut bytes).expect("a log line is one JSON object");
    let fields = &entry["fields"];
    assert_eq!(fields["message"].as_str(), Some("request"), "{line}");
    assert_eq!(fields["request_id"].as_str(), Some("log-test-1"));
    assert_eq!(fields["route"].as_str(), Some("/api/v1/queue/tokens/me"));
    assert_eq!(fields["status"].as_str(), Some("401"));
    assert_eq!(entry["level"].as_str(), Some("DEBUG"));

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let (_, after) = read_until(&mut lines, Duration::from_secs(30), "shutdown", |l| {
        l.contains("shutting down")
    })
    .await;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("seatrush exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    for line in before.iter().chain(&after).chain([&line]) {
        assert!(!line.contains(&token), "a token reached the log: {line}");
    }
}

/// Waits until the binary listens, then reads its log to the end in the background (so it
/// never blocks on a full pipe); the task returns how many lines there were.
async fn listening(child: &mut Child) -> tokio::task::JoinHandle<usize> {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    read_until(&mut lines, Duration::from_secs(60), "listening", |l| {
        l.contains("seatrush listening")
    })
    .await;
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok(Some(_)) = lines.next_line().await {
            n += 1;
        }
        n
    })
}

/// SIGTERM under write load: the server stops taking connections, finishes the
/// requests it has, flushes the outbox to MySQL and exits 0. The binary runs on the quiet Redis,
/// where no other app's flusher runs, so what reaches MySQL is its own doing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_requests_and_flushes_before_exiting() {
    let port = free_port();
    let redis_url = common::quiet_redis_url();
    let mut child = start_on(port, &redis_url, &[]);
    let drained = listening(&mut child).await;
    let app = TestApp::remote(([127, 0, 0, 1], port).into(), &redis_url).await;
    let (schedule, seats) = app.open_schedule(2000).await;
    let users = Arc::new(Mutex::new(app.create_users(1500).await));
    let seats = Arc::new(Mutex::new(seats));

    // Each task: a token for a new user, then a hold of one seat with it; until refused.
    // (when sent, status or why there was none, the hold's id)
    type Answers = Vec<(Instant, Result<u16, String>, Option<u64>)>;
    let answers: Arc<Mutex<Answers>> = Arc::default();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (app, users, seats, answers) =
                (app.clone(), users.clone(), seats.clone(), answers.clone());
            tokio::spawn(async move {
                loop {
                    let Some(user) = users.lock().unwrap().pop() else {
                        return;
                    };
                    let body = format!(r#"{{"userId":{user},"scheduleId":{schedule}}}"#);
                    let sent = Instant::now();
                    let issued = app
                        .try_request(Method::POST, "/api/v1/queue/tokens", &[], Some(body.into()))
                        .await;
                    let token = match &issued {
                        Ok(rsp) if rsp.status.is_success() => Some(rsp.str("token")),
                        _ => None,
                    };
                    let refused = issued.is_err();
                    answers
                        .lock()
                        .unwrap()
                        .push((sent, issued.map(|r| r.status.as_u16()), None));
                    if refused {
                        return; // the server no longer takes connections
                    }
                    let (Some(token), Some(seat)) = (token, seats.lock().unwrap().pop()) else {
                        continue;
                    };
                    let body = format!(
                        r#"{{"scheduleId":{schedule},"seatIds":[{seat}],"userId":{user}}}"#
                    );
                    let sent = Instant::now();
                    let held = app
                        .try_request(
                            Method::POST,
                            "/api/v1/reservations",
                            &[("queue-token", &token)],
                            Some(body.into()),
                        )
                        .await;
                    let id = match &held {
                        Ok(rsp) if rsp.status.is_success() => Some(rsp.u64("reservationId")),
                        _ => None,
                    };
                    answers
                        .lock()
                        .unwrap()
                        .push((sent, held.map(|r| r.status.as_u16()), id));
                }
            })
        })
        .collect();
    // `/ready` asked every 5 ms until the server refuses the connection: (when, status, reasons).
    let ready = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Ok(rsp) = app.try_request(Method::GET, "/ready", &[], None).await {
                let reasons = rsp.body["reasons"].as_array().map_or(String::new(), |r| {
                    r.iter()
                        .filter_map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                });
                seen.push((Instant::now(), rsp.status.as_u16(), reasons));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = child.id().unwrap().to_string();
    let signalled = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("seatrush exits after SIGTERM")
        .unwrap();
    let exited_after = signalled.elapsed();
    for task in tasks {
        task.await.unwrap();
    }
    let log_lines = drained.await.unwrap();
    assert!(status.success(), "{status}");
    // Ready until the signal; then, while it finishes, `503 SHUTTING_DOWN` for a balancer.
    let ready = ready.await.unwrap();
    let shutting_down = ready
        .iter()
        .filter(|(_, status, reasons)| *status == 503 && reasons == "SHUTTING_DOWN")
        .count();
    for (at, status, reasons) in &ready {
        assert!(
            (*status, reasons.as_str()) == (200, "")
                || (*at >= signalled && (*status, reasons.as_str()) == (503, "SHUTTING_DOWN")),
            "/ready answered {status} {reasons}"
        );
    }
    assert!(shutting_down > 0, "/ready said SHUTTING_DOWN: {ready:?}");

    let answers = std::mem::take(&mut *answers.lock().unwrap());
    let answered = |after: bool| {
        answers
            .iter()
            .filter(|(at, r, _)| r.is_ok() && (*at >= signalled) == after)
            .count()
    };
    let server_errors = answers
        .iter()
        .filter(|(_, r, _)| matches!(r, Ok(s) if *s >= 500))
        .count();
    let refused = answers.iter().filter(|(_, r, _)| r.is_err()).count();
    let holds: Vec<u64> = answers.iter().filter_map(|(_, _, id)| *id).collect();
    println!(
        "SIGTERM under load: {} requests sent before the signal, all answered; {} sent after it \
         still answered, {refused} refused; {server_errors} 5xx; /ready said SHUTTING_DOWN \
         {shutting_down} times; exited {exited_after:?} after it; {} holds, {log_lines} log lines",
        answered(false),
        answered(true),
        holds.len()
    );
    assert_eq!(server_errors, 0, "no 5xx while shutting down");
    // A request sent before the signal was in flight: it is answered. One sent after it
    // races the listener's close: refused, or reset if the kernel had just completed its
    // connection.
    for (sent, r, _) in &answers {
        if let Err(e) = r {
            assert!(*sent >= signalled, "a request in flight was cut off: {e}");
        }
    }
    assert!(answered(false) > 100, "the load ran");
    assert!(refused > 0, "new connections are refused after the signal");

    // Flushed before exit: nothing left in the schedule's outbox, every hold in MySQL.
    let outbox = seatrush::redis::keys::ScheduleKeys::new(schedule).outbox;
    let left: u64 = redis::AsyncCommands::xlen(&mut app.redis(), &outbox)
        .await
        .unwrap();
    assert_eq!(left, 0, "the outbox was flushed before exit");
    let mut db = app.app.db.primary.get_conn().await.unwrap();
    for id in &holds {
        let n: Option<u64> = mysql_async::prelude::Queryable::exec_first(
            &mut db,
            "SELECT COUNT(*) FROM reservations WHERE id = ?",
            (id,),
        )
        .await
        .unwrap();
        assert_eq!(n, Some(1), "hold {id} reached MySQL before exit");
    }
}

/// seatrush killed (`kill -9`) in the middle of payments and of its write-behind: the
/// restarted server's sweeper settles every saga the dead one left, and its flusher claims
/// the outbox entries the dead one had taken. Every reservation ends paid and debited once,
/// or unpaid and not debited; MySQL ends equal to Redis; the unpaid ones can then be paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_payment_the_restarted_server_settles_every_saga() {
    const FUNDS: u64 = 100_000;
    const PRICE: u64 = 50_000; // the harness's seat price
    let port = free_port();
    // Redis db 1 with the other tests: ledger ids are numbered per Redis, so a server on
    // another db would write ids that collide in the shared test database.
    let redis_url = TestApp::config().redis_url;
    // Settled and claimed after 1 s instead of 15 s and 30 s, so the test is short.
    let env = [
        ("SEATRUSH_PAYMENT_SAGA_TIMEOUT", "1"),
        ("SEATRUSH_OUTBOX_CLAIM_IDLE", "1"),
        ("SEATRUSH_LOG", "warn"),
    ];
    let mut first = start_on(port, &redis_url, &env);
    let _log = listening(&mut first).await;
    let app = TestApp::remote(([127, 0, 0, 1], port).into(), &redis_url).await;
    let (schedule, seats) = app.open_schedule(200).await;

    // 200 buyers: an ACTIVE token, 100 000 KRW, one seat held.
    let buyers = common::spawn_all(seats.into_iter().map(|seat| {
        let app = app.clone();
        async move {
            let (user, token) = app.active_user(schedule).await;
            let charged = app
                .post(
                    &format!("/api/v1/users/{user}/balance/charge"),
                    &[("queue-token", &token)],
                    &format!(r#"{{"amount":{FUNDS}}}"#),
                )
                .await;
            charged.assert_ok();
            let held = app.hold(&token, schedule, user, &[seat]).await;
            (user, token, held.u64("reservationId"))
        }
    }))
    .await;

    // Pay them all from 16 tasks; kill -9 the server in the middle.
    let queue = Arc::new(Mutex::new(buyers.clone()));
    let paid_before: Arc<Mutex<Vec<u64>>> = Arc::default();
    let cut = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (app, queue, paid_before, cut) =
                (app.clone(), queue.clone(), paid_before.clone(), cut.clone());
            tokio::spawn(async move {
                loop {
                    let Some((user, token, id)) = queue.lock().unwrap().pop() else {
                        return;
                    };
                    let body = format!(
                        r#"{{"reservationId":{id},"paymentMethod":"BALANCE","userId":{user}}}"#
                    );
                    let rsp = app
                        .try_request(
                            Method::POST,
                            "/api/v1/payments",
                            &[("queue-token", &token)],
                            Some(body.into()),
                        )
                        .await;
                    match rsp {
                        Ok(rsp) if rsp.status.as_u16() == 201 => {
                            paid_before.lock().unwrap().push(id)
                        }
                        Ok(rsp) => panic!("payment {id}: {:?}", rsp.body),
                        Err(_) => {
                            cut.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    eventually(Duration::from_secs(10), "the first payments", || {
        let paid_before = paid_before.clone();
        async move { (paid_before.lock().unwrap().len() >= 20).then_some(()) }
    })
    .await;
    first.start_kill().unwrap(); // SIGKILL
    first.wait().await.unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    let paid_before = std::mem::take(&mut *paid_before.lock().unwrap());
    let cut = cut.load(std::sync::atomic::Ordering::Relaxed);
    assert!(!paid_before.is_empty(), "payments ran before the kill");
    assert!(cut > 0, "the kill cut payments off");

    let mut second = start_on(port, &redis_url, &env);
    let _log = listening(&mut second).await;
    let restarted = Instant::now();
    let mut redis = app.redis();
    let keys = seatrush::redis::keys::ScheduleKeys::new(schedule);
    eventually(
        Duration::from_secs(30),
        "every saga settled and flushed",
        || {
            let (mut redis, keys) = (redis.clone(), keys.clone());
            async move {
                let sagas: u64 = redis::AsyncCommands::zcard(&mut redis, &keys.sagas)
                    .await
                    .unwrap();
                let outbox: u64 = redis::AsyncCommands::xlen(&mut redis, &keys.outbox)
                    .await
                    .unwrap();
                (sagas == 0 && outbox == 0).then_some(())
            }
        },
    )
    .await;
    let settled_after = restarted.elapsed();

    // Redis: paid and debited once, or unpaid and not debited; every 201 is PAID.
    let mut paid = Vec::new();
    for (user, _, id) in &buyers {
        let record: String = redis::AsyncCommands::hget(&mut redis, &keys.res, id)
            .await
            .unwrap();
        let status = record.split('|').nth(1).unwrap().to_string();
        let balance: String = redis::AsyncCommands::hget(
            &mut redis,
            seatrush::redis::keys::WalletKeys::of_user(*user).balances,
            user,
        )
        .await
        .unwrap();
        let balance = seatrush::model::Balance::parse(&balance).unwrap();
        match status.as_str() {
            "PAID" => {
                assert_eq!(
                    (balance.balance, balance.total_used),
                    (FUNDS - PRICE, PRICE)
                );
                paid.push(*id);
            }
            "RESERVED" => assert_eq!((balance.balance, balance.total_used), (FUNDS, 0)),
            other => panic!("reservation {id} is {other}"),
        }
    }
    for id in &paid_before {
        assert!(paid.contains(id), "{id} was answered 201, so it is PAID");
    }

    // MySQL, once drained: the same statuses, balances, one payment and one ledger line per
    // paid reservation, none for the others.
    let pool = app.app.db.primary.clone();
    let check = |paid: Vec<u64>| {
        let (pool, buyers) = (pool.clone(), buyers.clone());
        async move {
            let mut db = pool.get_conn().await.unwrap();
            for (user, _, id) in &buyers {
                let is_paid = paid.contains(id);
                let row: Option<(String, u64, u64, u64)> =
                    mysql_async::prelude::Queryable::exec_first(
                        &mut db,
                        "SELECT r.status, b.balance,
                       (SELECT COUNT(*) FROM payments p WHERE p.reservation_id = r.id),
                       (SELECT COUNT(*) FROM balance_transactions t
                        WHERE t.ref_id = r.id AND t.type = 'PAYMENT')
                     FROM reservations r JOIN user_balances b ON b.user_id = ?
                     WHERE r.id = ?",
                        (user, id),
                    )
                    .await
                    .unwrap();
                let want = if is_paid {
                    ("PAID".to_string(), FUNDS - PRICE, 1, 1)
                } else {
                    ("RESERVED".to_string(), FUNDS, 0, 0)
                };
                if row.as_ref() != Some(&want) {
                    return None;
                }
            }
            Some(())
        }
    };
    eventually(Duration::from_secs(30), "MySQL equal to Redis", || {
        check(paid.clone())
    })
    .await;

    // The reservations left unpaid can be paid now, once each.
    for (user, token, id) in buyers.iter().filter(|b| !paid.contains(&b.2)) {
        let body = format!(r#"{{"reservationId":{id},"paymentMethod":"BALANCE","userId":{user}}}"#);
        let rsp = app
            .post("/api/v1/payments", &[("queue-token", token)], &body)
            .await;
        rsp.assert_created();
    }
    let all: Vec<u64> = buyers.iter().map(|b| b.2).collect();
    eventually(Duration::from_secs(30), "every payment in MySQL", || {
        check(all.clone())
    })
    .await;
    println!(
        "killed mid-payment: {} paid before the kill, {cut} requests cut off; all sagas settled \
         and flushed {settled_after:?} after the restart; {} paid in all, {} left unpaid and \
         paid afterwards; every balance debited once",
        paid_before.len(),
        paid.len(),
        buyers.len() - paid.len()
    );
}

/// The binary run to completion with `args` and the extra variables `env` (and no inherited
/// `SEATRUSH_*` of the caller's); returns (succeeded, stdout, stderr).
fn run_binary(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_seatrush"));
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("SEATRUSH_")) {
        command.env_remove(name);
    }
    let out = command
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("the seatrush binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn production_refuses_dev_secrets_and_no_environment_takes_an_empty_admin_key() {
    let production = ("SEATRUSH_ENV", "production");
    let admin = ("SEATRUSH_ADMIN_KEY", "a-real-key");
    let auth = ("SEATRUSH_AUTH_SECRET", "a-real-secret");
    let tokens = ("SEATRUSH_TOKEN_SECRET", "another-real-secret");
    for (env, says) in [
        (
            vec![production, admin, tokens],
            "SEATRUSH_AUTH_SECRET must be set",
        ),
        (
            vec![production, auth, tokens],
            "SEATRUSH_ADMIN_KEY must be set",
        ),
        (
            vec![production, admin, auth],
            "SEATRUSH_TOKEN_SECRET must be set",
        ),
        (
            vec![("SEATRUSH_TOKEN_SECRET", "")],
            "SEATRUSH_TOKEN_SECRET must not be empty",
        ),
        (
            vec![("SEATRUSH_ADMIN_KEY", "")],
            "SEATRUSH_ADMIN_KEY must not be empty",
        ),
        (
            vec![("SEATRUSH_AUTH_SECRET", "")],
            "SEATRUSH_AUTH_SECRET must not be empty",
        ),
        (
            vec![("SEATRUSH_AUTH_SECRET", "one,,two")],
            "SEATRUSH_AUTH_SECRET must not be empty",
        ),
    ] {
        // The server stops before it connects to anything; sign-user-token reads the same
        // configuration.
        let (ok, stdout, stderr) = run_binary(&[], &env);
        assert!(!ok && (stdout + &stderr).contains(says), "{env:?}");
        let (ok, _, stderr) = run_binary(&["sign-user-token", "1"], &env);
        assert!(!ok && stderr.contains(says), "{env:?}: {stderr}");
    }
}

#[test]
fn sign_user_token_prints_identities_the_server_accepts() {
    let (ok, stdout, stderr) = run_binary(&["sign-user-token", "42", "--ttl-seconds", "60"], &[]);
    assert!(ok, "{stderr}");
    let identity = seatrush::identity::Identity::from_config(&TestApp::config()).unwrap();
    assert_eq!(identity.verify(stdout.trim()).unwrap().user_id(), 42);

    let (ok, stdout, _) = run_binary(&["sign-user-token", "7", "--count", "3"], &[]);
    assert!(ok);
    let users: Vec<u64> = stdout
        .lines()
        .map(|line| identity.verify(line).unwrap().user_id())
        .collect();
    assert_eq!(users, [7, 8, 9]);

    for bad in [
        &["sign-user-token"][..],
        &["sign-user-token", "0"],
        &["sign-user-token", "x"],
        &["sign-user-token", "1", "--ttl-seconds"],
        &["sign-user-token", "1", "--count", "0"],
    ] {
        let (ok, _, stderr) = run_binary(bad, &[]);
        assert!(!ok && stderr.contains("usage"), "{bad:?}: {stderr}");
    }
    // With a public key seatrush only verifies: the identity provider signs.
    let key = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE6aZB01n7z1P86Kny2aJDYbbXCnF2
7FkqxoCfv40YO+HgR8UDrc9Vv6yHMnhstJSWb0bH59Q/ooSuV8icGpPuQA==
-----END PUBLIC KEY-----
";
    let (ok, _, stderr) = run_binary(
        &["sign-user-token", "1"],
        &[("SEATRUSH_AUTH_PUBLIC_KEY", key)],
    );
    assert!(!ok && stderr.contains("cannot sign"), "{stderr}");
}

/// `seatrush dead-letters list` prints each dead letter as a JSON line; `replay <stream> <id>`
/// moves that one back into its outbox. Runs on the Redis no app of this binary uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_replayed_by_the_binary() {
    use redis::AsyncCommands;
    use seatrush::redis::keys::{SCHEDULES, ScheduleKeys};
    let url = common::own_redis_url();
    let mut redis = seatrush::redis::connect(&url).await.unwrap();
    let schedule = 900_000 + u64::from(std::process::id() % 10_000);
    let keys = ScheduleKeys::new(schedule);
    let _: () = redis
        .del(&[&keys.outbox, &keys.dead_letters])
        .await
        .unwrap();
    let _: u64 = redis.sadd(SCHEDULES, schedule).await.unwrap();
    let record = "7|WAITING|5|1790000000000|||";
    let letter: String = redis
        .xadd(
            &keys.dead_letters,
            "*",
            &[
                ("type", "tokens"),
                ("5", record),
                ("sourceId", "1-0"),
                ("error", "Server error: `ERROR 23000 (1452)`"),
            ],
        )
        .await
        .unwrap();
    let env = [("SEATRUSH_REDIS_URL", url.as_str())];

    let (ok, stdout, stderr) = run_binary(&["dead-letters", "list"], &env);
    assert!(ok, "{stderr}");
    let ours: Vec<simd_json::OwnedValue> = stdout
        .lines()
        .map(|line| simd_json::to_owned_value(&mut line.as_bytes().to_vec()).unwrap())
        .filter(|v| v["stream"].as_str() == Some(keys.dead_letters.as_str()))
        .collect();
    assert_eq!(ours.len(), 1, "{stdout}");
    assert_eq!(ours[0]["id"].as_str(), Some(letter.as_str()));
    assert_eq!(ours[0]["sourceId"].as_str(), Some("1-0"));
    assert!(ours[0]["error"].as_str().unwrap().contains("1452"));
    assert_eq!(ours[0]["fields"]["5"].as_str(), Some(record), "{stdout}");

    let (ok, stdout, stderr) = run_binary(
        &["dead-letters", "replay", &keys.dead_letters, &letter],
        &env,
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "replayed 1 dead letters");
    let dead: u64 = redis.xlen(&keys.dead_letters).await.unwrap();
    let back: redis::streams::StreamRangeReply = redis.xrange_all(&keys.outbox).await.unwrap();
    let _: () = redis
        .del(&[&keys.outbox, &keys.dead_letters])
        .await
        .unwrap();
    let _: u64 = redis.srem(SCHEDULES, schedule).await.unwrap();
    assert_eq!(dead, 0, "the replayed letter left the dead letters");
    assert_eq!(back.ids.len(), 1);
    let fields = &back.ids[0].map;
    assert_eq!(fields.len(), 2, "only the entry's own fields: {fields:?}");
    assert!(fields.contains_key("type") && fields.contains_key("5"));

    // Named again, it is not there any more: a failure that says so, not "replayed 0".
    let (ok, _, stderr) = run_binary(
        &["dead-letters", "replay", &keys.dead_letters, &letter],
        &env,
    );
    assert!(!ok && stderr.contains("no dead letter"), "{stderr}");

    let (ok, _, stderr) = run_binary(&["dead-letters", "burn"], &env);
    assert!(!ok && stderr.contains("usage"), "{stderr}");
}

/// `seatrush demo-data`, the first half of `make run`, loads the demo into an empty database
/// and prints, for each demo user, an identity and a link to the first schedule's waiting
/// room; the link opens the page, and the identity in its fragment is that user's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_data_prints_an_identity_and_a_waiting_room_link_per_demo_user() {
    let redis = common::own_redis::OwnRedis::start("everysec");
    let mut config = TestApp::config();
    common::own_database(&mut config, "seatrush_demo").await;
    config.redis_url = redis.url();
    let addr = format!("127.0.0.1:{}", free_port());
    let (ok, stdout, stderr) = run_binary(
        &["demo-data"],
        &[
            ("SEATRUSH_REDIS_URL", &config.redis_url),
            ("SEATRUSH_MYSQL_PRIMARY_URL", &config.mysql_primary_url),
            ("SEATRUSH_MYSQL_REPLICA_URL", &config.mysql_replica_url),
            ("SEATRUSH_HTTP_ADDR", &addr),
        ],
    );
    assert!(ok, "{stderr}");
    let links: Vec<(u64, String)> = stdout
        .lines()
        .filter_map(|line| {
            let (user, link) = line.trim().strip_prefix("user ")?.split_once(' ')?;
            let link = link.split_once("): ")?.1;
            link.starts_with("http://")
                .then(|| (user.parse().unwrap(), link.to_string()))
        })
        .collect();
    assert_eq!(links.len(), 5, "{stdout}");

    let app = TestApp::spawn_with(config).await;
    for (user, link) in links {
        let rest = link.strip_prefix(&format!("http://{addr}")).unwrap();
        let (path, identity) = rest.split_once("#identity=").expect("a fragment");
        let page = app.get(path, &[]).await;
        assert_eq!(page.status.as_u16(), 200, "{path}");
        assert!(String::from_utf8_lossy(&page.raw).contains("waiting-room.js"));
        let schedule = path.rsplit('/').next().unwrap();
        let issued = app
            .post(
                "/api/v1/queue/tokens",
                &[("authorization", &format!("Bearer {identity}"))],
                &format!(r#"{{"userId":{user},"scheduleId":{schedule}}}"#),
            )
            .await;
        issued.assert_ok();
    }
}
