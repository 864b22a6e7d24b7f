-- The whole data model. MySQL is the record once the flusher has written to it; ids of rows
-- born in Redis (reservations, ledger entries, payments) are assigned there, so those tables
-- take explicit ids. All times are UTC, DATETIME(3).

CREATE TABLE users (
  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name        VARCHAR(100)    NOT NULL,
  created_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE=InnoDB;

CREATE TABLE user_balances (
  user_id        BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  balance        BIGINT          NOT NULL DEFAULT 0,
  total_charged  BIGINT          NOT NULL DEFAULT 0,
  total_used     BIGINT          NOT NULL DEFAULT 0,
  updated_at     DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  CONSTRAINT fk_balances_user FOREIGN KEY (user_id) REFERENCES users (id),
  CONSTRAINT chk_balance_non_negative CHECK (balance >= 0),
  CONSTRAINT chk_balance_is_difference CHECK (balance = total_charged - total_used)
) ENGINE=InnoDB;

CREATE TABLE venues (
  id    BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name  VARCHAR(200)    NOT NULL
) ENGINE=InnoDB;

CREATE TABLE concerts (
  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  title       VARCHAR(200)    NOT NULL,
  created_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE=InnoDB;

CREATE TABLE concert_schedules (
  id                    BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  concert_id            BIGINT UNSIGNED NOT NULL,
  venue_id              BIGINT UNSIGNED NOT NULL,
  performance_date      DATE            NOT NULL,
  performance_time      TIME            NOT NULL,
  booking_open_at       DATETIME(3)     NOT NULL,
  booking_close_at      DATETIME(3)     NOT NULL,
  status                ENUM('SCHEDULED', 'CANCELLED') NOT NULL DEFAULT 'SCHEDULED',
  max_active_users      INT UNSIGNED    NOT NULL DEFAULT 1000,
  max_waiting_users     INT UNSIGNED    NOT NULL DEFAULT 100000,
  admission_per_second  INT UNSIGNED    NOT NULL DEFAULT 200,
  active_ttl_seconds    INT UNSIGNED    NOT NULL DEFAULT 300,
  hold_ttl_seconds      INT UNSIGNED    NOT NULL DEFAULT 300,
  max_seats_per_user    INT UNSIGNED    NOT NULL DEFAULT 4,
  queue_paused          BOOLEAN         NOT NULL DEFAULT FALSE,
  CONSTRAINT fk_schedules_concert FOREIGN KEY (concert_id) REFERENCES concerts (id),
  CONSTRAINT fk_schedules_venue FOREIGN KEY (venue_id) REFERENCES venues (id),
  CONSTRAINT chk_booking_window CHECK (booking_open_at < booking_close_at),
  INDEX idx_schedules_concert_date (concert_id, performance_date)
) ENGINE=InnoDB;

CREATE TABLE seats (
  id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  schedule_id  BIGINT UNSIGNED NOT NULL,
  seat_number  INT UNSIGNED    NOT NULL,
  price        BIGINT          NOT NULL,
  status       ENUM('AVAILABLE', 'HELD', 'SOLD') NOT NULL DEFAULT 'AVAILABLE',
  CONSTRAINT fk_seats_schedule FOREIGN KEY (schedule_id) REFERENCES concert_schedules (id),
  CONSTRAINT chk_seat_price CHECK (price > 0),
  UNIQUE KEY uq_seats_schedule_number (schedule_id, seat_number),
  INDEX idx_seats_schedule_status (schedule_id, status)
) ENGINE=InnoDB;

-- `live` is 1 while a token is WAITING or ACTIVE and NULL after: the unique key then allows
-- any number of ended tokens but at most one live token per (user, schedule). Tokens are
-- ASCII UUIDs compared bytewise, which keeps their random inserts into the index cheap.
CREATE TABLE queue_tokens (
  id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  token         CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  user_id       BIGINT UNSIGNED NOT NULL,
  schedule_id   BIGINT UNSIGNED NOT NULL,
  status        ENUM('WAITING', 'ACTIVE', 'EXPIRED', 'USED') NOT NULL,
  seq           BIGINT UNSIGNED NOT NULL,
  issued_at     DATETIME(3)     NOT NULL,
  activated_at  DATETIME(3)     NULL,
  expires_at    DATETIME(3)     NULL,
  ended_at      DATETIME(3)     NULL,
  live          TINYINT AS (IF(status IN ('WAITING', 'ACTIVE'), 1, NULL)) PERSISTENT,
  CONSTRAINT fk_tokens_user FOREIGN KEY (user_id) REFERENCES users (id),
  CONSTRAINT fk_tokens_schedule FOREIGN KEY (schedule_id) REFERENCES concert_schedules (id),
  UNIQUE KEY uq_tokens_token (token),
  UNIQUE KEY uq_tokens_one_live (user_id, schedule_id, live),
  INDEX idx_tokens_schedule_status (schedule_id, status, seq)
) ENGINE=InnoDB;

CREATE TABLE reservations (
  id                  BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  reservation_number  VARCHAR(24) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  user_id             BIGINT UNSIGNED NOT NULL,
  schedule_id         BIGINT UNSIGNED NOT NULL,
  status              ENUM('RESERVED', 'PAID', 'CANCELLED', 'EXPIRED') NOT NULL,
  total_amount        BIGINT          NOT NULL,
  reserved_at         DATETIME(3)     NOT NULL,
  expires_at          DATETIME(3)     NOT NULL,
  paid_at             DATETIME(3)     NULL,
  ended_at            DATETIME(3)     NULL,
  CONSTRAINT fk_reservations_user FOREIGN KEY (user_id) REFERENCES users (id),
  CONSTRAINT fk_reservations_schedule FOREIGN KEY (schedule_id) REFERENCES concert_schedules (id),
  CONSTRAINT chk_reservation_total CHECK (total_amount > 0),
  UNIQUE KEY uq_reservations_number (reservation_number),
  INDEX idx_reservations_user_schedule (user_id, schedule_id, status),
  INDEX idx_reservations_schedule_status (schedule_id, status)
) ENGINE=InnoDB;

CREATE TABLE reservation_seats (
  reservation_id  BIGINT UNSIGNED NOT NULL,
  seat_id         BIGINT UNSIGNED NOT NULL,
  price           BIGINT          NOT NULL,
  PRIMARY KEY (reservation_id, seat_id),
  CONSTRAINT fk_rs_reservation FOREIGN KEY (reservation_id) REFERENCES reservations (id),
  CONSTRAINT fk_rs_seat FOREIGN KEY (seat_id) REFERENCES seats (id),
  INDEX idx_rs_seat (seat_id)
) ENGINE=InnoDB;

CREATE TABLE payments (
  id              BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  reservation_id  BIGINT UNSIGNED NOT NULL,
  user_id         BIGINT UNSIGNED NOT NULL,
  amount          BIGINT          NOT NULL,
  method          ENUM('BALANCE') NOT NULL,
  status          ENUM('COMPLETED') NOT NULL,
  paid_at         DATETIME(3)     NOT NULL,
  CONSTRAINT fk_payments_reservation FOREIGN KEY (reservation_id) REFERENCES reservations (id),
  CONSTRAINT fk_payments_user FOREIGN KEY (user_id) REFERENCES users (id),
  CONSTRAINT chk_payment_amount CHECK (amount > 0),
  UNIQUE KEY uq_payments_reservation (reservation_id),
  INDEX idx_payments_user (user_id)
) ENGINE=InnoDB;

-- The ledger. A payment debit is keyed by its reservation, so it can exist only once.
CREATE TABLE balance_transactions (
  id             BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  user_id        BIGINT UNSIGNED NOT NULL,
  type           ENUM('CHARGE', 'PAYMENT') NOT NULL,
  amount         BIGINT          NOT NULL,
  balance_after  BIGINT          NOT NULL,
  ref_id         BIGINT UNSIGNED NULL,
  created_at     DATETIME(3)     NOT NULL,
  CONSTRAINT fk_ledger_user FOREIGN KEY (user_id) REFERENCES users (id),
  CONSTRAINT chk_ledger_amount CHECK (amount > 0),
  CONSTRAINT chk_ledger_balance CHECK (balance_after >= 0),
  UNIQUE KEY uq_ledger_ref (type, ref_id),
  INDEX idx_ledger_user_time (user_id, created_at)
) ENGINE=InnoDB;
