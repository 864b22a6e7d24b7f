-- Fair opening: a schedule's queue may take a pre-queue before booking opens and shuffle it
-- at the opening (queue_order SHUFFLE_AT_OPEN); FIFO keeps arrival order from the start.
ALTER TABLE concert_schedules
  ADD COLUMN queue_order ENUM('FIFO', 'SHUFFLE_AT_OPEN') NOT NULL DEFAULT 'FIFO'
    AFTER queue_paused,
  ADD COLUMN pre_queue_minutes INT UNSIGNED NOT NULL DEFAULT 30 AFTER queue_order;

-- The opening's shuffle of a schedule's pre-queue, kept for audit and for rebuilding the
-- queue's order: the pre-queue took the arrival sequences first_seq..last_seq, and the seed
-- (64 hex digits, drawn from the operating system at the opening) determines which place each
-- takes (the procedure is in ARCHITECTURE.md).
CREATE TABLE queue_shuffles (
  schedule_id  BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  seed         CHAR(64) CHARACTER SET ascii NOT NULL,
  first_seq    BIGINT UNSIGNED NOT NULL,
  last_seq     BIGINT UNSIGNED NOT NULL,
  shuffled_at  DATETIME(3)     NOT NULL,
  CONSTRAINT fk_shuffles_schedule FOREIGN KEY (schedule_id) REFERENCES concert_schedules (id)
) ENGINE=InnoDB;
