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

/// What a seat listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeatView {
    /// The AVAILABLE seats.
    Available,
    /// Every seat, each AVAILABLE, HELD (in an open hold) or SOLD: a seat map.
    Map,
}

impl ListedSeat {
    /// Appends the seat's JSON with `status` (`AVAILABLE`, `HELD` or `SOLD`) to `out`.
    pub fn write_with_status(&self, status: &str, out: &mut Vec<u8>) {
        const AVAILABLE: &str = r#"AVAILABLE"}"#;
        let head = &self.listed_json[..self.listed_json.len() - AVAILABLE.len()];
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(status.as_bytes());
        out.extend_from_slice(br#""}"#);
    }

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

    #[test]
    fn a_seat_is_written_with_the_status_asked() {
        let seat = ListedSeat::new(7, 3, 50_000);
        let mut out = Vec::new();
        seat.write_with_status("HELD", &mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"seatId":7,"seatNumber":3,"price":50000,"status":"HELD"}"#
        );
        out.clear();
        seat.write_with_status("AVAILABLE", &mut out);
        assert_eq!(out, seat.listed_json.as_bytes());
    }

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
