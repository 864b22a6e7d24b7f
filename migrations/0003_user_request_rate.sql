-- Each user may make this many public requests per second on a schedule (bursts of as many):
-- the per-user rate limit the scripts enforce. Existing schedules get the default.
ALTER TABLE concert_schedules
  ADD COLUMN user_requests_per_second INT UNSIGNED NOT NULL DEFAULT 50 AFTER max_seats_per_user;
