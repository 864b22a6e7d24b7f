-- A user may leave the queue (DELETE /api/v1/queue/tokens/me): their token ends as LEFT.
-- Appending to the ENUM keeps every stored value and its order (a status only moves forwards).
ALTER TABLE queue_tokens
  MODIFY status ENUM('WAITING', 'ACTIVE', 'EXPIRED', 'USED', 'LEFT') NOT NULL;
