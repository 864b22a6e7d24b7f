# shellcheck shell=bash
# First start of mysql-primary: the users and the database seatrush needs.
#
# The mariadb image's entrypoint runs the files of /docker-entrypoint-initdb.d/ once, against a
# temporary server, when the data directory is empty. This file is *sourced* (it is not
# executable), which gives it the entrypoint's docker_process_sql (root over the socket).
#
# Binary logging stays on here, on purpose: these statements get GTIDs and reach the replica
# through replication, so both servers have the same users and database (as in
# scripts/stack.sh). The tables themselves are created by seatrush's migrations at start-up.
#
# Passwords come from docker-compose.yml (DB_PASSWORD, DB_REPL_PASSWORD); they are written into
# SQL string literals, so keep them free of quotes and backslashes.

docker_process_sql <<-SQL
	CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY '${DB_REPL_PASSWORD:-repl}';
	GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';

	CREATE DATABASE IF NOT EXISTS seatrush
	  CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
	CREATE USER IF NOT EXISTS 'seatrush'@'%' IDENTIFIED BY '${DB_PASSWORD:-seatrush}';
	GRANT ALL PRIVILEGES ON seatrush.* TO 'seatrush'@'%';
	-- seatrush reads SHOW SLAVE STATUS on the replica (replica lag, /health). SLAVE MONITOR
	-- is that privilege on MariaDB 10.5.9+; on older MariaDB and on MySQL it is REPLICATION
	-- CLIENT.
	GRANT SLAVE MONITOR ON *.* TO 'seatrush'@'%';
SQL
