# shellcheck shell=bash
# First start of mysql-replica: follow mysql-primary by GTID.
#
# Sourced by the mariadb image's entrypoint on an empty data directory, like primary-init.sh.
# Users and the seatrush database are not created here: they arrive from the primary through
# replication, from its first GTID on (the replica starts with an empty gtid_slave_pos).
#
# Nothing done here may reach the replica's own binary log: under gtid_strict_mode a local
# transaction would take sequence numbers that the primary's events then collide with. The
# entrypoint already keeps its system-user set-up out of the binlog; sql_log_bin = 0 covers this
# file.

docker_process_sql <<-SQL
	SET SESSION sql_log_bin = 0;
	CHANGE MASTER TO
	  MASTER_HOST = '${DB_PRIMARY_HOST:-mysql-primary}',
	  MASTER_PORT = ${DB_PRIMARY_PORT:-3306},
	  MASTER_USER = 'repl',
	  MASTER_PASSWORD = '${DB_REPL_PASSWORD:-repl}',
	  MASTER_USE_GTID = slave_pos,
	  MASTER_CONNECT_RETRY = 5;
	-- Starts now and again on every later start of the server (read_only does not apply to
	-- the replication threads).
	START SLAVE;
SQL
