# The two commands: `make run` and `make test`. Everything runs against the project's own
# dev stack (scripts/stack.sh): Redis on 6390, MariaDB primary 3316 and replica 3317.
SHELL := /bin/bash
.DEFAULT_GOAL := run

TEST_ENV := SEATRUSH_REDIS_URL=redis://127.0.0.1:6390/1 \
	SEATRUSH_MYSQL_PRIMARY_URL=mysql://seatrush:seatrush@127.0.0.1:3316/seatrush_test \
	SEATRUSH_MYSQL_REPLICA_URL=mysql://seatrush:seatrush@127.0.0.1:3317/seatrush_test
# The Redis high-availability tests on the Sentinel-managed dev Redis (make stack-ha).
HA_TEST_ENV := $(TEST_ENV) \
	SEATRUSH_REDIS_URL=redis+sentinel://127.0.0.1:26390,127.0.0.1:26391,127.0.0.1:26392/seatrush?db=1
# The same suite on two 3-master Redis Clusters: one for the apps, one for the tests that
# need a quiet Redis or one they may empty.
CLUSTER_TEST_ENV := $(TEST_ENV) \
	SEATRUSH_REDIS_URL=redis://127.0.0.1:6391,redis://127.0.0.1:6392,redis://127.0.0.1:6393 \
	SEATRUSH_TEST_REDIS_QUIET_URL=redis://127.0.0.1:6394,redis://127.0.0.1:6395,redis://127.0.0.1:6396 \
	SEATRUSH_TEST_REDIS_OWN_URL=redis://127.0.0.1:6394,redis://127.0.0.1:6395,redis://127.0.0.1:6396

.PHONY: run test test-ha test-cluster stack stack-cluster stack-ha stack-down scale scale-down bench \
	bench-scale check api-check check-observability check-nginx check-waiting-room chaos

run: stack
	cargo build --release
	./target/release/seatrush demo-data
	./target/release/seatrush

stack:
	@scripts/stack.sh up

stack-cluster: stack
	@scripts/stack.sh cluster-up

# Redis high availability: a replica of the dev Redis on 6397 and three Sentinels on
# 26390-26392 (master name seatrush); reach it with
# SEATRUSH_REDIS_URL=redis+sentinel://127.0.0.1:26390,127.0.0.1:26391,127.0.0.1:26392/seatrush
stack-ha: stack
	@scripts/stack.sh ha-up

stack-down:
	@scripts/stack.sh down

# Scale-out on loopback: SCALE_INSTANCES (3) release instances on the Redis Cluster, behind
# nginx on 127.0.0.1:8080 (scripts/scale.sh; `make stack-down` stops them too).
scale: stack-cluster
	cargo build --release
	scripts/scale.sh up $(or $(SCALE_INSTANCES),3)

scale-down:
	@scripts/scale.sh down

# First the layering of src/ (no import circles between modules, model/ free of I/O, see
# ARCHITECTURE.md). Tests get their own database and Redis db, emptied first so every run
# starts clean. After the Rust tests: the failure tests that stop the stack's own servers
# (one at a time, with nothing else running), the two 100 000-request memory loops on a Redis
# of their own (once: they do not depend on the cluster), the dashboards and alert rules
# against a real Prometheus, the waiting-room page in a real browser, schemathesis against
# /openapi.json (these start the debug binary the tests built), and the compose file against
# the Compose Specification. Then the Redis failover tests on Sentinel, and all of it again on
# Redis Cluster.
test: stack
	scripts/check-layers.py
	@scripts/reset-test-data.sh
	$(TEST_ENV) cargo test --all-targets -- --test-threads=4
	$(TEST_ENV) cargo test --test chaos -- --ignored --test-threads=1 --nocapture
	$(TEST_ENV) cargo test --test bounded_redis -- --ignored --nocapture
	$(TEST_ENV) scripts/check-observability.py
	$(TEST_ENV) scripts/check-nginx.py
	$(TEST_ENV) scripts/check-waiting-room.py
	$(TEST_ENV) scripts/api-check.sh
	scripts/check-deploy.sh
	$(MAKE) --no-print-directory test-ha
	$(MAKE) --no-print-directory test-cluster

# Redis high availability (tests/redis_ha.rs): the master killed for good under load, the
# old master back as a replica, the replica killed; then the replica and Sentinels stop and
# the dev Redis is the stack's plain Redis again, whatever the tests did.
test-ha: stack-ha
	$(HA_TEST_ENV) cargo test --test redis_ha -- --ignored --test-threads=1 --nocapture; \
		status=$$?; scripts/stack.sh ha-down; exit $$status

# The Rust tests and the failure tests with seatrush on a 3-master Redis Cluster.
test-cluster: stack-cluster
	@scripts/reset-test-data.sh cluster
	$(CLUSTER_TEST_ENV) cargo test --all-targets -- --test-threads=4
	$(CLUSTER_TEST_ENV) cargo test --test chaos -- --ignored --test-threads=1 --nocapture

# Only the failure tests (tests/chaos.rs): MariaDB primary and replica stopped and started.
chaos: stack
	$(TEST_ENV) cargo test --test chaos -- --ignored --test-threads=1 --nocapture

check-observability: stack
	cargo build
	$(TEST_ENV) scripts/check-observability.py

# deploy/nginx.conf in front of a real seatrush: the cap on event streams.
check-nginx: stack
	cargo build
	$(TEST_ENV) scripts/check-nginx.py

# The waiting-room page in Debian's chromium driven by Playwright (screenshots under
# target/waiting-room/).
check-waiting-room: stack
	cargo build
	$(TEST_ENV) scripts/check-waiting-room.py

api-check: stack
	cargo build
	$(TEST_ENV) scripts/api-check.sh

check:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	scripts/check-layers.py

bench: stack
	bench/run.sh

# One instance against three behind nginx, and the flash sale on three with instances killed.
bench-scale: stack-cluster
	bench/scale.sh
