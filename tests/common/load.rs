//! A write load for failure tests: tokens, holds and charges from 12 tasks (and, if asked,
//! payments of the acknowledged holds from 4 more), every answer recorded with its timing, so
//! a test can say what was acknowledged before a fault and what the service answered during
//! it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::TestApp;

/// What a write changed, when it was answered 2xx.
#[derive(Debug, Clone)]
pub enum Write {
    Token(String),
    Hold(u64),
    Charge,
    /// The reservation paid.
    Payment(u64),
}

#[derive(Debug)]
pub struct Answer {
    pub sent: Instant,
    pub answered: Instant,
    pub status: u16,
    pub retry_after: bool,
    pub write: Option<Write>,
    /// What was asked (token, hold or charge), and the error code of a refusal.
    pub kind: &'static str,
    pub error: String,
}

pub type Answers = Arc<Mutex<Vec<Answer>>>;

/// A running write load: `answers` fills as it goes; it runs until `stop` is set.
pub struct WriteLoad {
    pub stop: Arc<AtomicBool>,
    pub answers: Answers,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl WriteLoad {
    /// Starts sending tokens for the users in `users`, holds of the seats in `seats` and
    /// 1 KRW charges by `holder`, each kind from its own tasks, recording every answer.
    pub fn start(
        app: &TestApp,
        schedule: u64,
        users: Vec<u64>,
        holder: (u64, String),
        seats: Vec<u64>,
    ) -> Self {
        Self::start_kinds(app, schedule, users, holder, seats, 3)
    }

    /// As [`WriteLoad::start`], and payments (from the holder's balance) of the holds the
    /// load had acknowledged.
    pub fn start_with_payments(
        app: &TestApp,
        schedule: u64,
        users: Vec<u64>,
        holder: (u64, String),
        seats: Vec<u64>,
    ) -> Self {
        Self::start_kinds(app, schedule, users, holder, seats, 4)
    }

    fn start_kinds(
        app: &TestApp,
        schedule: u64,
        users: Vec<u64>,
        holder: (u64, String),
        seats: Vec<u64>,
        kinds: usize,
    ) -> Self {
        let (stop, answers): (Arc<AtomicBool>, Answers) = Default::default();
        let tasks = write_load(
            app,
            schedule,
            (users, seats),
            holder,
            kinds,
            stop.clone(),
            answers.clone(),
        );
        Self {
            stop,
            answers,
            tasks,
        }
    }

    /// Stops the load, waits for its last requests, and returns every answer.
    pub async fn finish(self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        std::mem::take(&mut *self.answers.lock().unwrap())
    }
}

/// The load's tasks: 4 per kind (`kinds`: 3, or 4 with payments).
fn write_load(
    app: &TestApp,
    schedule: u64,
    (users, seats): (Vec<u64>, Vec<u64>),
    holder: (u64, String),
    kinds: usize,
    stop: Arc<AtomicBool>,
    answers: Answers,
) -> Vec<tokio::task::JoinHandle<()>> {
    let users = Arc::new(Mutex::new(users));
    let seats = Arc::new(Mutex::new(seats));
    // Holds acknowledged and not yet paid (for the payment tasks).
    let held: Arc<Mutex<Vec<u64>>> = Arc::default();
    (0..4 * kinds)
        .map(|i| {
            let (app, users, seats, held, stop, answers) = (
                app.clone(),
                users.clone(),
                seats.clone(),
                held.clone(),
                stop.clone(),
                answers.clone(),
            );
            let (holder, token) = holder.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let (rsp, write) = match i % kinds {
                        0 => {
                            let Some(user) = users.lock().unwrap().pop() else {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                continue;
                            };
                            let rsp = app.issue(user, schedule).await;
                            let token = rsp.status.is_success().then(|| rsp.str("token"));
                            (rsp, token.map(Write::Token))
                        }
                        1 => {
                            let Some(seat) = seats.lock().unwrap().pop() else {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                continue;
                            };
                            let rsp = app.hold(&token, schedule, holder, &[seat]).await;
                            let id = rsp.status.is_success().then(|| rsp.u64("reservationId"));
                            if let Some(id) = id {
                                held.lock().unwrap().push(id);
                            }
                            (rsp, id.map(Write::Hold))
                        }
                        3 => {
                            let Some(id) = held.lock().unwrap().pop() else {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                continue;
                            };
                            let rsp = app.pay(&token, holder, id).await;
                            let ok = rsp.status.is_success();
                            (rsp, ok.then_some(Write::Payment(id)))
                        }
                        _ => {
                            let rsp = app
                                .post(
                                    &format!("/api/v1/users/{holder}/balance/charge"),
                                    &[("queue-token", &token)],
                                    r#"{"amount":1}"#,
                                )
                                .await;
                            let ok = rsp.status.is_success();
                            (rsp, ok.then_some(Write::Charge))
                        }
                    };
                    answers.lock().unwrap().push(Answer {
                        sent,
                        answered: Instant::now(),
                        status: rsp.status.as_u16(),
                        retry_after: rsp.headers.contains_key("retry-after"),
                        write,
                        kind: ["token", "hold", "charge", "payment"][i % kinds],
                        error: rsp.code().to_string(),
                    });
                }
            })
        })
        .collect()
}
