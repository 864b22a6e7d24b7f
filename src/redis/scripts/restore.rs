//! The scripts that move Redis forwards to what MySQL already holds, when Redis came back
//! older than MySQL (see `crate::reconcile`).

use redis::RedisResult;

use super::{Observe, Scripts};
use crate::model::Shuffle;
use crate::redis::RedisConn;
use crate::redis::keys::{ScheduleKeys, WalletKeys};

impl Scripts {
    /// Puts MySQL's reservation `records` (id, record; ended ones first) in where Redis is
    /// behind them (`reached`: the reservation sequence Redis had reached before it was
    /// raised); returns how many were made PAID, restored as holds, ended, and found in
    /// conflict.
    pub async fn restore_reservations(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        now_ms: i64,
        reached: u64,
        records: &[(u64, String)],
    ) -> RedisResult<[u64; 4]> {
        let k = ScheduleKeys::new(schedule_id);
        let mut call = self.restore_reservations.prepare_invoke();
        for key in [
            &k.res,
            &k.avail,
            &k.holds,
            &k.sagas,
            &k.rended,
            &k.userseats,
            &k.userholds,
            &k.stats,
            &k.seat,
        ] {
            call.key(key);
        }
        call.arg(now_ms).arg(reached);
        for (id, record) in records {
            call.arg(id).arg(record);
        }
        call.invoke_observed("restore_reservations", conn).await
    }

    /// Puts MySQL's token `records` (sequence, record) in where Redis is behind them
    /// (`reached`: the token sequence Redis had reached before it was raised); returns how
    /// many were restored, admitted, ended, and found in conflict.
    pub async fn restore_tokens(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        reached: u64,
        records: &[(u64, String)],
    ) -> RedisResult<[u64; 4]> {
        let k = ScheduleKeys::new(schedule_id);
        let mut call = self.restore_tokens.prepare_invoke();
        for key in [&k.tokens, &k.waiting, &k.active, &k.users, &k.ended] {
            call.key(key);
        }
        call.arg(reached);
        for (token, record) in records {
            call.arg(token).arg(record);
        }
        call.invoke_observed("restore_tokens", conn).await
    }

    /// Puts MySQL's `shuffle` of the schedule's pre-queue back in force where Redis does not
    /// have it (the admission tick then applies its places again); whether it had to.
    pub async fn restore_shuffle(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        shuffle: &Shuffle,
    ) -> RedisResult<bool> {
        let restored: u8 = self
            .restore_shuffle
            .key(ScheduleKeys::new(schedule_id).cfg)
            .arg(shuffle.seed_hex())
            .arg(shuffle.first)
            .arg(shuffle.last)
            .invoke_observed("restore_shuffle", conn)
            .await?;
        Ok(restored == 1)
    }

    /// Puts MySQL's balance `records` (user, record) of one wallet bucket in where Redis has
    /// an older one; returns how many.
    pub async fn restore_balances(
        &self,
        conn: &mut RedisConn,
        bucket: u64,
        records: &[(u64, String)],
    ) -> RedisResult<u64> {
        let mut call = self.restore_balances.prepare_invoke();
        call.key(WalletKeys::bucket(bucket).balances);
        for (user, record) in records {
            call.arg(user).arg(record);
        }
        call.invoke_observed("restore_balances", conn).await
    }
}
