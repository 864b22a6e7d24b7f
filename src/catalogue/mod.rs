//! The catalogue: users, venues, concerts, schedules and seats, whose record is MySQL.

pub mod schedules;
pub mod users;
