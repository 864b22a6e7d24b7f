//! Maps (method, path) to a [`Route`]. Paths are matched by segments; a path that exists with
//! another method is `405` with `Allow`, anything else `404`. Ids in paths are parsed here, so
//! handlers only see valid values.

use hyper::Method;

use super::pages::Asset;
use super::request::path_id;
use crate::model::{Error, ReservationId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Health,
    Ready,
    Metrics,
    OpenApi,
    Page(Asset),
    IssueToken,
    MyToken,
    LeaveQueue,
    TokenEvents,
    ListSchedules { concert_id: u64 },
    ListSeats { concert_id: u64, schedule_id: u64 },
    HoldSeats,
    Charge { user_id: u64 },
    Balance { user_id: u64 },
    UserReservations { user_id: u64 },
    GetReservation { reservation_id: ReservationId },
    CancelReservation { reservation_id: ReservationId },
    Pay,
    AdminCreateUser,
    AdminCreateVenue,
    AdminCreateConcert,
    AdminCreateSchedule { concert_id: u64 },
    AdminGetQueue { schedule_id: u64 },
    AdminPutQueue { schedule_id: u64 },
}

impl Route {
    /// Admin routes need `X-Admin-Key` before anything else is looked at.
    pub fn is_admin(self) -> bool {
        matches!(
            self,
            Route::AdminCreateUser
                | Route::AdminCreateVenue
                | Route::AdminCreateConcert
                | Route::AdminCreateSchedule { .. }
                | Route::AdminGetQueue { .. }
                | Route::AdminPutQueue { .. }
        )
    }
}

/// A path matched against the table: its template (the metrics label) and the outcome.
pub struct Matched {
    pub template: &'static str,
    pub route: Result<Route, Error>,
}

/// The templates of the waiting-room page: served, but not in the JSON API's document.
pub const PAGE_TEMPLATES: &[&str] = &[
    "/",
    "/waiting-room",
    "/waiting-room/{concertId}/{scheduleId}",
    "/waiting-room/waiting-room.js",
    "/waiting-room/waiting-room.css",
];

/// Template label for requests that matched nothing, so raw paths never become labels.
pub const UNMATCHED: &str = "unmatched";

pub fn resolve(method: &Method, path: &str) -> Matched {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    let put = method == Method::PUT;
    let (template, route) = match segments.as_slice() {
        ["health"] => ("/health", one(get, "GET", Route::Health)),
        ["ready"] => ("/ready", one(get, "GET", Route::Ready)),
        ["metrics"] => ("/metrics", one(get, "GET", Route::Metrics)),
        ["openapi.json"] => ("/openapi.json", one(get, "GET", Route::OpenApi)),
        [""] => ("/", one(get, "GET", Route::Page(Asset::Html))),
        ["waiting-room"] => ("/waiting-room", one(get, "GET", Route::Page(Asset::Html))),
        ["waiting-room", "waiting-room.js"] => (
            "/waiting-room/waiting-room.js",
            one(get, "GET", Route::Page(Asset::Script)),
        ),
        ["waiting-room", "waiting-room.css"] => (
            "/waiting-room/waiting-room.css",
            one(get, "GET", Route::Page(Asset::Style)),
        ),
        ["waiting-room", concert, schedule] => (
            "/waiting-room/{concertId}/{scheduleId}",
            allow(get, "GET").and_then(|()| {
                path_id(concert, "concertId")?;
                path_id(schedule, "scheduleId")?;
                Ok(Route::Page(Asset::Html))
            }),
        ),
        ["api", "v1", "queue", "tokens"] => {
            ("/api/v1/queue/tokens", one(post, "POST", Route::IssueToken))
        }
        ["api", "v1", "queue", "tokens", "me"] => (
            "/api/v1/queue/tokens/me",
            allow(get || method == Method::DELETE, "GET, DELETE").map(|()| {
                if get {
                    Route::MyToken
                } else {
                    Route::LeaveQueue
                }
            }),
        ),
        ["api", "v1", "queue", "tokens", "me", "events"] => (
            "/api/v1/queue/tokens/me/events",
            one(get, "GET", Route::TokenEvents),
        ),
        ["api", "v1", "concerts", id, "schedules"] => (
            "/api/v1/concerts/{concertId}/schedules",
            allow(get, "GET").and_then(|()| {
                Ok(Route::ListSchedules {
                    concert_id: path_id(id, "concertId")?,
                })
            }),
        ),
        [
            "api",
            "v1",
            "concerts",
            concert,
            "schedules",
            schedule,
            "seats",
        ] => (
            "/api/v1/concerts/{concertId}/schedules/{scheduleId}/seats",
            allow(get, "GET").and_then(|()| {
                Ok(Route::ListSeats {
                    concert_id: path_id(concert, "concertId")?,
                    schedule_id: path_id(schedule, "scheduleId")?,
                })
            }),
        ),
        ["api", "v1", "reservations"] => {
            ("/api/v1/reservations", one(post, "POST", Route::HoldSeats))
        }
        ["api", "v1", "reservations", id] => (
            "/api/v1/reservations/{reservationId}",
            allow(get || method == Method::DELETE, "GET, DELETE").and_then(|()| {
                let reservation_id = ReservationId::from_u64(path_id(id, "reservationId")?);
                Ok(if get {
                    Route::GetReservation { reservation_id }
                } else {
                    Route::CancelReservation { reservation_id }
                })
            }),
        ),
        ["api", "v1", "payments"] => ("/api/v1/payments", one(post, "POST", Route::Pay)),
        ["api", "v1", "users", id, "balance", "charge"] => (
            "/api/v1/users/{userId}/balance/charge",
            allow(post, "POST").and_then(|()| {
                Ok(Route::Charge {
                    user_id: path_id(id, "userId")?,
                })
            }),
        ),
        ["api", "v1", "users", id, "balance"] => (
            "/api/v1/users/{userId}/balance",
            allow(get, "GET").and_then(|()| {
                Ok(Route::Balance {
                    user_id: path_id(id, "userId")?,
                })
            }),
        ),
        ["api", "v1", "users", id, "reservations"] => (
            "/api/v1/users/{userId}/reservations",
            allow(get, "GET").and_then(|()| {
                Ok(Route::UserReservations {
                    user_id: path_id(id, "userId")?,
                })
            }),
        ),
        ["api", "v1", "admin", "users"] => (
            "/api/v1/admin/users",
            one(post, "POST", Route::AdminCreateUser),
        ),
        ["api", "v1", "admin", "venues"] => (
            "/api/v1/admin/venues",
            one(post, "POST", Route::AdminCreateVenue),
        ),
        ["api", "v1", "admin", "concerts"] => (
            "/api/v1/admin/concerts",
            one(post, "POST", Route::AdminCreateConcert),
        ),
        ["api", "v1", "admin", "concerts", id, "schedules"] => (
            "/api/v1/admin/concerts/{concertId}/schedules",
            allow(post, "POST").and_then(|()| {
                Ok(Route::AdminCreateSchedule {
                    concert_id: path_id(id, "concertId")?,
                })
            }),
        ),
        ["api", "v1", "admin", "schedules", id, "queue"] => (
            "/api/v1/admin/schedules/{scheduleId}/queue",
            allow(get || put, "GET, PUT").and_then(|()| {
                let schedule_id = path_id(id, "scheduleId")?;
                Ok(if put {
                    Route::AdminPutQueue { schedule_id }
                } else {
                    Route::AdminGetQueue { schedule_id }
                })
            }),
        ),
        _ => (UNMATCHED, Err(Error::NotFound)),
    };
    Matched { template, route }
}

fn allow(method_ok: bool, allow: &'static str) -> Result<(), Error> {
    if method_ok {
        Ok(())
    } else {
        Err(Error::MethodNotAllowed { allow })
    }
}

fn one(method_ok: bool, allowed: &'static str, route: Route) -> Result<Route, Error> {
    allow(method_ok, allowed).map(|()| route)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_resolve_with_their_ids() {
        let m = resolve(&Method::PUT, "/api/v1/admin/schedules/12/queue");
        assert_eq!(m.template, "/api/v1/admin/schedules/{scheduleId}/queue");
        assert_eq!(m.route.unwrap(), Route::AdminPutQueue { schedule_id: 12 });
    }

    #[test]
    fn wrong_method_is_405_with_allow_and_unknown_path_404() {
        match resolve(&Method::DELETE, "/api/v1/queue/tokens").route {
            Err(Error::MethodNotAllowed { allow }) => assert_eq!(allow, "POST"),
            other => panic!("{other:?}"),
        }
        let m = resolve(&Method::GET, "/api/v1/nope/42");
        assert_eq!(m.template, UNMATCHED);
        assert!(matches!(m.route, Err(Error::NotFound)));
    }

    #[test]
    fn bad_path_ids_name_the_parameter() {
        match resolve(&Method::POST, "/api/v1/admin/concerts/x1/schedules").route {
            Err(Error::InvalidRequest { field, .. }) => assert_eq!(field, "concertId"),
            other => panic!("{other:?}"),
        }
    }
}
