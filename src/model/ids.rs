//! Id schemes. Reservation and payment ids are `scheduleId << 32 | sequence`, the sequence
//! counted per schedule in its Redis slot, so an id alone names the slot of its schedule.
//! Ledger ids are `sequence * WALLET_BUCKETS + bucket`, counted per wallet bucket.

use std::fmt;

/// Bits of an id below the schedule id.
const SEQUENCE_BITS: u32 = 32;

/// The highest schedule id whose reservation and payment ids the Lua scripts compute
/// exactly: Lua numbers are doubles, exact up to 2^53, and an id is the schedule id above 32
/// bits of sequence. Creating a schedule with a higher id is refused
/// ([`crate::model::Error::ScheduleIdsExhausted`]).
pub const MAX_SCHEDULE_ID: u64 = (1 << (f64::MANTISSA_DIGITS - SEQUENCE_BITS)) - 1;

macro_rules! schedule_scoped_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(u64);

        impl $name {
            /// The `sequence`-th id of `schedule`.
            pub const fn new(schedule: u64, sequence: u64) -> Self {
                Self(schedule << SEQUENCE_BITS | sequence)
            }

            /// An id as clients and MySQL know it.
            pub const fn from_u64(id: u64) -> Self {
                Self(id)
            }

            pub const fn get(self) -> u64 {
                self.0
            }

            /// The schedule the id belongs to.
            pub const fn schedule(self) -> u64 {
                self.0 >> SEQUENCE_BITS
            }

            /// Its place in the schedule's sequence.
            pub const fn sequence(self) -> u64 {
                self.0 & ((1 << SEQUENCE_BITS) - 1)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_u64(self.0)
            }
        }
    };
}

schedule_scoped_id!(
    /// A reservation (seat hold).
    ReservationId
);
schedule_scoped_id!(
    /// A payment, and while a hold is being paid, the attempt paying it.
    PaymentId
);

/// Wallet state is spread over this many buckets (`userId % WALLET_BUCKETS`): each user's
/// money lives in one Redis slot, and the flusher has a fixed set of outboxes to read.
pub const WALLET_BUCKETS: u64 = 64;

/// The bucket holding a user's wallet.
pub const fn wallet_bucket(user_id: u64) -> u64 {
    user_id % WALLET_BUCKETS
}

/// The lowest ledger sequence a wallet bucket may continue from when MySQL's ledger holds
/// ids up to `max_id`: any sequence above `max_id / WALLET_BUCKETS` gives ids above `max_id`
/// in every bucket.
pub const fn ledger_floor(max_id: u64) -> u64 {
    max_id / WALLET_BUCKETS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_split_into_their_schedule_and_sequence() {
        let id = ReservationId::new(12, 7);
        assert_eq!(id.get(), 12 * (1 << 32) + 7);
        assert_eq!((id.schedule(), id.sequence()), (12, 7));
        assert_eq!(ReservationId::from_u64(id.get()), id);
        let payment = PaymentId::new(3, u32::MAX as u64);
        assert_eq!(
            (payment.schedule(), payment.sequence()),
            (3, u32::MAX as u64)
        );
        assert!(ReservationId::new(1, 1) > ReservationId::new(0, u32::MAX as u64));
    }

    #[test]
    fn every_id_of_the_highest_schedule_is_exact_as_a_double() {
        assert_eq!(MAX_SCHEDULE_ID, (1 << 21) - 1);
        let last = ReservationId::new(MAX_SCHEDULE_ID, u32::MAX as u64).get();
        assert_eq!(last as f64 as u64, last);
        // One schedule further, neighbouring ids would be the same double.
        let beyond = ReservationId::new(MAX_SCHEDULE_ID + 1, 1).get();
        assert_eq!(beyond as f64, (beyond - 1) as f64);
    }

    #[test]
    fn ledger_ids_after_the_floor_lie_above_every_stored_id() {
        for max_id in [0, 1, 63, 64, 65, 6_400, 1_000_003] {
            for bucket in [0, 1, WALLET_BUCKETS - 1] {
                let next = (ledger_floor(max_id) + 1) * WALLET_BUCKETS + bucket;
                assert!(next > max_id, "max {max_id}, bucket {bucket}: {next}");
            }
        }
    }
}
