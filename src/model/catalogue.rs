//! The catalogue as the public reads show it: concerts with their schedules, and seats with
//! their numbers and prices (MySQL is their record).

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule {
    pub schedule_id: u64,
    pub concert_id: u64,
    pub concert_title: String,
    pub venue_id: u64,
    pub venue_name: String,
    /// `YYYY-MM-DD`
    pub performance_date: String,
    /// `HH:mm:ss`
    pub performance_time: String,
    pub booking_open_ms: i64,
    pub booking_close_ms: i64,
    pub cancelled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concert {
    pub title: String,
    /// By performance date and time.
    pub schedules: Vec<Schedule>,
}

/// A seat of a schedule as the seat listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedSeat {
    pub seat_id: u64,
    pub seat_number: u64,
    pub price: u64,
    /// The seat's JSON in the listing while AVAILABLE, rendered once per catalogue read.
    pub listed_json: Box<str>,
}

impl ListedSeat {
    pub fn new(seat_id: u64, seat_number: u64, price: u64) -> Self {
        Self {
            seat_id,
            seat_number,
            price,
            listed_json: format!(
                r#"{{"seatId":{seat_id},"seatNumber":{seat_number},"price":{price},"status":"AVAILABLE"}}"#
            )
            .into(),
        }
    }
}

/// The status a client sees: CANCELLED, UPCOMING (booking not open), CLOSED, SOLD_OUT or OPEN.
pub fn schedule_status(schedule: &Schedule, available: u64, now_ms: i64) -> &'static str {
    if schedule.cancelled {
        "CANCELLED"
    } else if now_ms < schedule.booking_open_ms {
        "UPCOMING"
    } else if now_ms >= schedule.booking_close_ms {
        "CLOSED"
    } else if available == 0 {
        "SOLD_OUT"
    } else {
        "OPEN"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cancelled: bool, open: i64, close: i64) -> Schedule {
        Schedule {
            schedule_id: 1,
            concert_id: 1,
            concert_title: "Show".into(),
            venue_id: 1,
            venue_name: "Hall".into(),
            performance_date: "2026-12-24".into(),
            performance_time: "19:00:00".into(),
            booking_open_ms: open,
            booking_close_ms: close,
            cancelled,
        }
    }

    #[test]
    fn status_follows_cancellation_window_and_availability() {
        assert_eq!(schedule_status(&schedule(true, 0, 10), 5, 5), "CANCELLED");
        assert_eq!(schedule_status(&schedule(false, 10, 20), 5, 5), "UPCOMING");
        assert_eq!(schedule_status(&schedule(false, 0, 10), 5, 10), "CLOSED");
        assert_eq!(schedule_status(&schedule(false, 0, 10), 0, 5), "SOLD_OUT");
        assert_eq!(schedule_status(&schedule(false, 0, 10), 5, 5), "OPEN");
    }

    #[test]
    fn listed_seats_render_their_json_once() {
        let seat = ListedSeat::new(3, 1, 50_000);
        assert_eq!(
            &*seat.listed_json,
            r#"{"seatId":3,"seatNumber":1,"price":50000,"status":"AVAILABLE"}"#
        );
    }
}
