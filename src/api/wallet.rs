//! `POST /api/v1/users/{userId}/balance/charge` and `GET /api/v1/users/{userId}/balance`.

use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};
use serde::Serialize;

use super::request::{JsonObject, idempotency_key, queue_token};
use super::response::{self, Body};
use crate::app::App;
use crate::identity::Caller;
use crate::model::{Error, MAX_CHARGE, iso_ms};
use crate::wallet;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Charged {
    user_id: u64,
    charged_amount: u64,
    current_balance: u64,
    transaction_id: u64,
    charged_at: String,
}

/// `POST /api/v1/users/{userId}/balance/charge`: the caller's own balance.
pub async fn charge(
    app: &App,
    caller: Caller,
    headers: &HeaderMap,
    user_id: u64,
    body: Vec<u8>,
) -> Result<Response<Body>, Error> {
    let key = idempotency_key(headers)?;
    let amount = JsonObject::parse(body)?
        .opt_positive("amount", MAX_CHARGE)?
        .ok_or_else(|| Error::invalid("amount", "amount is required"))?;
    let token = queue_token(headers, &app.tokens)?;
    let charge = wallet::charge(&app.hot, &app.db, caller, token, user_id, amount, key).await?;
    Ok(response::ok(
        StatusCode::OK,
        &Charged {
            user_id,
            charged_amount: amount,
            current_balance: charge.balance,
            transaction_id: charge.transaction_id,
            charged_at: iso_ms(charge.charged_at_ms),
        },
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BalanceView {
    user_id: u64,
    current_balance: u64,
    total_charged: u64,
    total_used: u64,
    last_updated: String,
}

/// `GET /api/v1/users/{userId}/balance`
pub async fn balance(
    app: &App,
    caller: Caller,
    headers: &HeaderMap,
    user_id: u64,
) -> Result<Response<Body>, Error> {
    caller.owns(user_id)?;
    let token = queue_token(headers, &app.tokens)?;
    let (balance, stale) = wallet::balance(&app.hot, &app.db, caller, token, user_id).await?;
    let view = BalanceView {
        user_id,
        current_balance: balance.balance,
        total_charged: balance.total_charged,
        total_used: balance.total_used,
        last_updated: iso_ms(balance.updated_at_ms),
    };
    Ok(response::ok_maybe_stale(&view, stale))
}
