-- Queue-Tokens are signed and carry their schedule and arrival sequence: a token is named by
-- (schedule_id, seq), and the bare UUID column goes. Tokens live when this runs are v1 UUIDs
-- no client can use any more; they are ended here so their users may queue again.
UPDATE queue_tokens SET status = 'EXPIRED', ended_at = COALESCE(ended_at, NOW(3))
  WHERE status IN ('WAITING', 'ACTIVE');
ALTER TABLE queue_tokens
  DROP INDEX uq_tokens_token,
  DROP COLUMN token,
  ADD UNIQUE KEY uq_tokens_sequence (schedule_id, seq);
