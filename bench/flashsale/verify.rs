//! The checks after the drain: what MySQL and Redis say about the sale.

use std::collections::HashMap;

use mysql_async::prelude::*;

/// What MySQL and Redis say after the drain; every field must hold for the run to pass.
pub struct Verdict {
    pub seats_sold_twice: u64,
    pub sold_seats: u64,
    pub paid_without_one_payment: u64,
    pub paid_without_one_debit: u64,
    pub money_gap: i64,
    pub reservations_differing: u64,
    pub balances_differing: u64,
    /// Tokens WAITING, ACTIVE, ended and ever admitted: MySQL's counts against Redis's.
    pub tokens_differing: u64,
    /// The queue's limits, from MySQL's admission and end times.
    pub most_admitted_in_a_second: u64,
    pub most_active_at_once: u64,
}

/// The most admissions within one second (as the admission scripts count them: per whole
/// second of Redis's clock) and the most tokens ACTIVE at once (a token leaves at the instant
/// it ends; ends before admissions at the same instant, as the scripts run them), from each
/// admitted token's (activated, ended) times in ms.
pub fn queue_limits(tokens: &[(i64, Option<i64>)]) -> (u64, u64) {
    let mut per_second: HashMap<i64, u64> = HashMap::new();
    let mut changes: Vec<(i64, i64)> = Vec::with_capacity(tokens.len() * 2);
    for &(activated, ended) in tokens {
        *per_second.entry(activated.div_euclid(1000)).or_default() += 1;
        changes.push((activated, 1));
        changes.extend(ended.map(|at| (at, -1)));
    }
    changes.sort_unstable();
    let (mut active, mut most_active) = (0i64, 0i64);
    for (_, change) in changes {
        active += change;
        most_active = most_active.max(active);
    }
    let most_admitted = per_second.into_values().max().unwrap_or(0);
    (most_admitted, most_active as u64)
}

/// Charges of this sale's buyers since `since_ms` (a buyer may have charged in an earlier sale
/// of the same bench run).
pub async fn charge_lines(
    db: &mysql_async::Pool,
    schedule: u64,
    since_ms: i64,
) -> mysql_async::Result<u64> {
    let n: Option<u64> = db
        .get_conn()
        .await?
        .exec_first(
            "SELECT COUNT(*) FROM balance_transactions WHERE type = 'CHARGE' AND created_at >= ?
               AND user_id IN (SELECT user_id FROM reservations WHERE schedule_id = ?)",
            (seatrush::mysql::datetime_ms(since_ms), schedule),
        )
        .await?;
    Ok(n.unwrap_or(0))
}

pub async fn verify(
    db: &mysql_async::Pool,
    redis: &mut seatrush::redis::RedisConn,
    schedule: u64,
) -> Result<Verdict, Box<dyn std::error::Error>> {
    let mut conn = db.get_conn().await?;
    // Read each time: a killed instance's last holds reach MySQL only once another instance
    // claims its outbox entries.
    let buyers: Vec<u64> = conn
        .exec(
            "SELECT DISTINCT user_id FROM reservations WHERE schedule_id = ?",
            (schedule,),
        )
        .await?;
    let seats_sold_twice: u64 = conn
        .exec_first(
            "SELECT COUNT(*) FROM (SELECT rs.seat_id FROM reservation_seats rs
               JOIN reservations r ON r.id = rs.reservation_id
               WHERE r.schedule_id = ? AND r.status = 'PAID'
               GROUP BY rs.seat_id HAVING COUNT(*) > 1) twice",
            (schedule,),
        )
        .await?
        .unwrap_or(0);
    let sold_seats: u64 = conn
        .exec_first(
            "SELECT COUNT(*) FROM seats WHERE schedule_id = ? AND status = 'SOLD'",
            (schedule,),
        )
        .await?
        .unwrap_or(0);
    let paid_without_one_payment: u64 = conn
        .exec_first(
            "SELECT COUNT(*) FROM reservations r
             WHERE r.schedule_id = ? AND r.status = 'PAID'
               AND (SELECT COUNT(*) FROM payments p WHERE p.reservation_id = r.id
                      AND p.amount = r.total_amount) <> 1",
            (schedule,),
        )
        .await?
        .unwrap_or(0);
    let paid_without_one_debit: u64 = conn
        .exec_first(
            "SELECT COUNT(*) FROM reservations r
             WHERE r.schedule_id = ? AND r.status = 'PAID'
               AND (SELECT COUNT(*) FROM balance_transactions t WHERE t.type = 'PAYMENT'
                      AND t.ref_id = r.id AND t.amount = r.total_amount) <> 1",
            (schedule,),
        )
        .await?
        .unwrap_or(0);
    // The buyers' ledger (charges in, payments out) against their balances.
    let money_gap: i64 = conn
        .exec_first(
            "SELECT CAST(
               COALESCE((SELECT SUM(IF(type = 'CHARGE', amount, -amount))
                         FROM balance_transactions WHERE user_id IN
                           (SELECT user_id FROM reservations WHERE schedule_id = ?)), 0)
               - COALESCE((SELECT SUM(balance) FROM user_balances WHERE user_id IN
                           (SELECT user_id FROM reservations WHERE schedule_id = ?)), 0)
               AS SIGNED)",
            (schedule, schedule),
        )
        .await?
        .unwrap_or(0);
    // Reservations: Redis's statuses (PAYING is RESERVED to MySQL) against MySQL's.
    let res_key = seatrush::redis::keys::ScheduleKeys::new(schedule).res;
    let in_redis: HashMap<u64, String> = redis::cmd("HGETALL")
        .arg(&res_key)
        .query_async::<HashMap<u64, String>>(redis)
        .await?;
    let in_mysql: HashMap<u64, String> = conn
        .exec::<(u64, String), _, _>(
            "SELECT id, status FROM reservations WHERE schedule_id = ?",
            (schedule,),
        )
        .await?
        .into_iter()
        .collect();
    let mut reservations_differing = (in_redis.len() as i64 - in_mysql.len() as i64).unsigned_abs();
    for (id, record) in &in_redis {
        let status = record.split('|').nth(1).unwrap_or_default();
        let status = if status == "PAYING" {
            "RESERVED"
        } else {
            status
        };
        if in_mysql.get(id).map(String::as_str) != Some(status) {
            reservations_differing += 1;
        }
    }
    // Balances: one pipelined read from Redis (none before MySQL has a reservation: the
    // write-behind may still be holding back), one query to MySQL.
    let mut pipe = redis::pipe();
    for &user in &buyers {
        pipe.hget(
            seatrush::redis::keys::WalletKeys::of_user(user).balances,
            user,
        );
    }
    let records: Vec<Option<String>> = if buyers.is_empty() {
        Vec::new()
    } else {
        pipe.query_async(redis).await?
    };
    let rows: HashMap<u64, (u64, u64, u64)> = conn
        .exec::<(u64, u64, u64, u64), _, _>(
            "SELECT user_id, balance, total_charged, total_used FROM user_balances
             WHERE user_id IN (SELECT user_id FROM reservations WHERE schedule_id = ?)",
            (schedule,),
        )
        .await?
        .into_iter()
        .map(|(user, b, c, u)| (user, (b, c, u)))
        .collect();
    let mut balances_differing = 0;
    for (user, record) in buyers.iter().zip(records) {
        // No record in Redis: the balance was never used there, so MySQL's stands.
        let Some(record) = record else { continue };
        let f: Vec<u64> = record
            .split('|')
            .take(3)
            .filter_map(|v| v.parse().ok())
            .collect();
        if f.len() != 3 || rows.get(user) != Some(&(f[0], f[1], f[2])) {
            balances_differing += 1;
        }
    }
    // Tokens: the paused queue's counts in both stores, then the limits from MySQL.
    let k = seatrush::redis::keys::ScheduleKeys::new(schedule);
    let (waiting, active, ended, admitted): (u64, u64, u64, Option<u64>) = redis::pipe()
        .zcard(&k.waiting)
        .zcard(&k.active)
        .zcard(&k.ended)
        .hget(&k.stats, "admitted")
        .query_async(redis)
        .await?;
    let (mysql_waiting, mysql_active, mysql_ended, mysql_admitted): (u64, u64, u64, u64) = conn
        .exec_first(
            "SELECT CAST(COALESCE(SUM(status = 'WAITING'), 0) AS UNSIGNED),
                    CAST(COALESCE(SUM(status = 'ACTIVE'), 0) AS UNSIGNED),
                    CAST(COALESCE(SUM(status IN ('EXPIRED', 'USED', 'LEFT')), 0) AS UNSIGNED),
                    COUNT(activated_at)
             FROM queue_tokens WHERE schedule_id = ?",
            (schedule,),
        )
        .await?
        .unwrap_or_default();
    let tokens_differing = [
        (waiting, mysql_waiting),
        (active, mysql_active),
        (ended, mysql_ended),
        (admitted.unwrap_or(0), mysql_admitted),
    ]
    .iter()
    .map(|&(a, b)| a.abs_diff(b))
    .sum();
    let admitted_tokens: Vec<(i64, Option<i64>)> = conn
        .exec(
            "SELECT TIMESTAMPDIFF(MICROSECOND, '1970-01-01', activated_at) DIV 1000,
                    TIMESTAMPDIFF(MICROSECOND, '1970-01-01', ended_at) DIV 1000
             FROM queue_tokens WHERE schedule_id = ? AND activated_at IS NOT NULL",
            (schedule,),
        )
        .await?;
    let (most_admitted_in_a_second, most_active_at_once) = queue_limits(&admitted_tokens);
    Ok(Verdict {
        tokens_differing,
        most_admitted_in_a_second,
        most_active_at_once,
        seats_sold_twice,
        sold_seats,
        paid_without_one_payment,
        paid_without_one_debit,
        money_gap,
        reservations_differing,
        balances_differing,
    })
}

#[cfg(test)]
mod tests {
    use super::queue_limits;

    #[test]
    fn queue_limits_count_per_second_and_at_once() {
        // Two admitted in second 1 and three in second 2; at 2 000 ms the first ends as the
        // fourth is admitted (ends count first), so at most three are ACTIVE at once.
        let tokens = [
            (1_000, Some(2_000)),
            (1_999, None),
            (2_000, Some(2_500)),
            (2_100, None),
            (2_999, Some(3_000)),
        ];
        assert_eq!(queue_limits(&tokens), (3, 3));
        assert_eq!(queue_limits(&[]), (0, 0));
        // Back to back: one ends exactly when the next starts.
        assert_eq!(queue_limits(&[(0, Some(10)), (10, Some(20))]), (2, 1));
    }
}
