/* cluster 0.4 -> 0.5: every public object's comment says what it does now */
\echo Use "ALTER EXTENSION cluster UPDATE TO '0.5'" to load this file. \quit

/*
 * Comments only: no table, function body or privilege changes, so a 0.5
 * library runs a database still at 0.4 (src/cluster.h).  docs/sql-reference.md
 * quotes each of these, and TAP 020_docs.pl checks that it does.
 */

COMMENT ON SCHEMA cluster IS
'the cluster extension: leases, instances and a key-value store; coordinators and their engines; pumps, handlers, workers and dead letters';

COMMENT ON ROLE cluster_admin IS
'may create coordinators, pumps and handlers, and manage its own; a member of cluster_worker';
COMMENT ON ROLE cluster_worker IS
'may call what workers and applications need: leases, instances, key-value store, publish, the status views, and the worker functions of handlers whose owners granted it';

COMMENT ON FUNCTION cluster.create_handler(text, text, regprocedure, text, int, int, interval, int, int) IS
'create a handler of a pump, owned by the caller and starting at the pump''s first event; its function (taking jsonb or cluster.event[]) runs the batches as the owner while none of its workers is connected';
COMMENT ON FUNCTION cluster.alter_handler(text, regprocedure, text, int, int, interval, int, boolean, int) IS
'change a handler''s settings (NULL keeps a setting, remove_function removes the function); the caller becomes its owner; cursor and state stay';
COMMENT ON FUNCTION cluster.drop_handler(text) IS
'drop a handler with its cursor, state, dead letters, worker registrations and tokens';
COMMENT ON FUNCTION cluster.reset_handler(text, text) IS
'move a handler''s cursor: ''start'' (every event again), ''end'' (past every event of the transactions that ended below the oldest one still running), or a timestamp (the events created from then on, in pump order)';
COMMENT ON FUNCTION cluster.kv_increment(text, interval) IS
'add one to a counter and return it; an absent or expired key starts at 1 and expires ttl later (later increments keep that expiry)';
COMMENT ON FUNCTION cluster.live_instances(interval) IS
'instances whose last heartbeat is within the last stale_after, by instance_id';
