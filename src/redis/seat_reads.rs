//! Seat listings' reads of a schedule's seats, each batch one `seat_view` call. The seats
//! a call read are kept with the schedule's seat-state version (`lua/lib/holds.lua`: a new
//! value whenever a script changes which seats are AVAILABLE, held or SOLD), and the next
//! call passes that version: while nothing changed, Redis only checks the tokens and the
//! kept seats are answered, so a listing of 10 000 seats nobody touched costs no more than
//! one of 50. What is kept is forgotten whenever Redis may have been replaced (the fence
//! closed: [`super::Fence`]), so it is only ever matched against the Redis it was read
//! from. One entry per schedule listed, so bounded by the catalogue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use redis::RedisResult;

use super::RedisConn;
use super::scripts::{Scripts, SeatState, SeatViewOutcome};
use crate::model::SeatView;

pub struct SeatReads {
    scripts: Arc<Scripts>,
    /// Per schedule, the seats last read, and how often the fence had closed before.
    kept: Mutex<HashMap<u64, (u64, SeatState)>>,
}

impl SeatReads {
    pub fn new(scripts: Arc<Scripts>) -> Self {
        Self {
            scripts,
            kept: Mutex::default(),
        }
    }

    /// For each (token, user, view) of a batch, the schedule's seats if it is the user's
    /// ACTIVE token of the schedule, else the refusal.
    pub async fn seat_view(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        batch: &[(u64, u64, SeatView)],
    ) -> RedisResult<Vec<SeatViewOutcome>> {
        let map = batch.iter().any(|(_, _, view)| *view == SeatView::Map);
        let closes = conn.fence().closes();
        let known = {
            let kept = self.kept.lock().expect("seat reads lock");
            // Kept seats without the held ones cannot answer a map.
            kept.get(&schedule_id)
                .filter(|(at, s)| *at == closes && (!map || s.held.is_some()))
                .map(|(_, s)| s.clone())
        };
        let reply = self
            .scripts
            .seat_view(conn, schedule_id, batch, known.as_ref())
            .await?;
        if reply.read && reply.state.version.is_some() {
            // A concurrent batch may keep an older read after this one: that costs the next
            // call a read, never a stale answer (the versions differ).
            let mut kept = self.kept.lock().expect("seat reads lock");
            kept.insert(schedule_id, (closes, reply.state.clone()));
        }
        let state = reply.state;
        Ok(reply
            .tokens
            .into_iter()
            .map(|token| token.map(|()| state.clone()))
            .collect())
    }
}
