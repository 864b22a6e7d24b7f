-- A user's reservations, newest first (GET /api/v1/users/{userId}/reservations), read as
-- one range of this index.
ALTER TABLE reservations
  ADD INDEX idx_reservations_user_reserved (user_id, reserved_at, id);
