//! The catalogue: users, venues, concerts, schedules and seats, whose record is MySQL, and
//! the public reads over them (schedules of a concert, seats of a schedule).

pub mod handlers;
pub mod reads;
pub mod schedules;
pub mod users;
