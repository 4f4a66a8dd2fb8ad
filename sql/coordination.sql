-- The coordination service: leases, instance registry, key-value store.
CREATE EXTENSION cluster;
\set SHOW_CONTEXT never

-- Leases: the first holder gets fence 1
SELECT cluster.acquire_lease('jobs', 'a', '1 minute');
-- the holder may acquire again: same fence, extended
SELECT cluster.acquire_lease('jobs', 'a', '1 minute');
-- another holder is refused while the lease is live
SELECT cluster.acquire_lease('jobs', 'b', '1 minute') IS NULL AS refused;
SELECT cluster.renew_lease('jobs', 'a', '1 minute') AS renewed_by_a,
       cluster.renew_lease('jobs', 'b', '1 minute') AS renewed_by_b;
SELECT key, holder, fence, live FROM cluster.leases;
-- release by a non-holder does nothing; by the holder frees it
SELECT cluster.release_lease('jobs', 'b') AS released_by_b,
       cluster.release_lease('jobs', 'a') AS released_by_a;
SELECT key, holder, fence, live FROM cluster.leases;
-- every change of holder raises the fence
SELECT cluster.acquire_lease('jobs', 'b', '1 minute');
SELECT cluster.acquire_lease('jobs', 'a', '1 minute') IS NULL AS refused;
-- an expired lease can be taken over; the old holder can't renew it
UPDATE cluster.lease SET expires_at = clock_timestamp() - interval '1 s' WHERE key = 'jobs';
SELECT live FROM cluster.leases WHERE key = 'jobs';
SELECT cluster.renew_lease('jobs', 'b', '1 minute') AS renewed_expired;
SELECT cluster.acquire_lease('jobs', 'a', '1 minute');
-- a holder re-acquiring its own expired lease keeps its fence
UPDATE cluster.lease SET expires_at = clock_timestamp() - interval '1 s' WHERE key = 'jobs';
SELECT cluster.acquire_lease('jobs', 'a', '1 minute');
-- a restored row for a key that has one (pg_restore into a database that
-- already runs): a lower fence changes nothing; a higher one ends the
-- holding, and the next holder's fence is above it
INSERT INTO cluster.lease VALUES ('jobs', 'old', 1, now(), now() + interval '1 h');
SELECT holder, fence, live FROM cluster.leases WHERE key = 'jobs';
INSERT INTO cluster.lease VALUES ('jobs', 'old', 7, now(), now() + interval '1 h');
SELECT holder, fence, live FROM cluster.leases WHERE key = 'jobs';
SELECT cluster.renew_lease('jobs', 'a', '1 minute') AS renewed_after_restore;
SELECT cluster.acquire_lease('jobs', 'a', '1 minute');
-- a new key is inserted as it is; fences stay within range
INSERT INTO cluster.lease VALUES ('restored', NULL, 5, now(), now());
SELECT key, holder, fence, live FROM cluster.leases WHERE key = 'restored';
\set VERBOSITY terse
INSERT INTO cluster.lease VALUES ('huge', NULL, 9223372036854775807, now(), now());
\set VERBOSITY default

-- Lease errors
SELECT cluster.acquire_lease(NULL, 'a', '1 minute');
SELECT cluster.acquire_lease('', 'a', '1 minute');
SELECT cluster.acquire_lease(repeat('k', 513), 'a', '1 minute');
SELECT cluster.acquire_lease('jobs', NULL, '1 minute');
SELECT cluster.acquire_lease('jobs', '', '1 minute');
SELECT cluster.acquire_lease('jobs', 'a', NULL);
SELECT cluster.acquire_lease('jobs', 'a', '0 s');
SELECT cluster.acquire_lease('jobs', 'a', '-5 s');
SELECT cluster.acquire_lease('coordinator/default', 'a', '1 minute');
SELECT cluster.renew_lease('jobs', 'a', '0 s');
SELECT cluster.renew_lease(NULL, 'a', '1 s');
SELECT cluster.release_lease('jobs', NULL);
SELECT cluster.release_lease('coordinator/default', 'a');

-- Instance registry
SELECT cluster.register_instance('i-1', 'ws://10.0.0.1:8080');
SELECT cluster.register_instance('i-2', 'ws://10.0.0.2:8080');
SELECT cluster.heartbeat('i-1') AS known, cluster.heartbeat('i-9') AS unknown;
SELECT instance_id, address FROM cluster.live_instances('1 minute');
-- re-registration replaces the address
SELECT cluster.register_instance('i-2', 'ws://10.0.0.3:8080');
-- a stale instance is not live
UPDATE cluster.instance SET last_heartbeat = clock_timestamp() - interval '2 minutes'
 WHERE instance_id = 'i-1';
SELECT instance_id, address FROM cluster.live_instances('1 minute');
SELECT cluster.unregister_instance('i-2');
SELECT count(*) FROM cluster.live_instances('1 hour');
SELECT cluster.register_instance(NULL, 'x');
SELECT cluster.register_instance('i-3', '');
SELECT cluster.register_instance('i-3', repeat('a', 2049));
SELECT cluster.heartbeat('');
SELECT cluster.unregister_instance(NULL);
SELECT * FROM cluster.live_instances(NULL);
SELECT * FROM cluster.live_instances('-1 s');

-- Key-value store
SELECT cluster.kv_increment('hits', '1 minute');
SELECT cluster.kv_increment('hits', '1 minute');
SELECT cluster.kv_get('hits');
SELECT cluster.kv_set_if_not_exists('owner', 'a', '1 minute') AS set_a,
       cluster.kv_set_if_not_exists('owner', 'b', '1 minute') AS set_b;
SELECT cluster.kv_get('owner'), cluster.kv_get('nothing') IS NULL AS absent;
SELECT cluster.kv_extend_ttl('owner', '1 hour') AS extended,
       cluster.kv_extend_ttl('nothing', '1 hour') AS extended_absent;
-- an expired key reads as absent, counts from 1 again, can be set again
UPDATE cluster.kv SET expires_at = clock_timestamp() - interval '1 s';
SELECT cluster.kv_get('owner') IS NULL AS expired_reads_absent;
SELECT cluster.kv_extend_ttl('owner', '1 hour') AS extended_expired;
SELECT cluster.kv_increment('hits', '1 minute');
SELECT cluster.kv_set_if_not_exists('owner', 'b', '1 minute') AS set_after_expiry;
SELECT cluster.kv_get('owner');
-- an empty value is a value
SELECT cluster.kv_set_if_not_exists('empty', '', '1 minute');
SELECT cluster.kv_get('empty') = '' AS empty;
SELECT cluster.kv_delete('owner');
SELECT cluster.kv_get('owner') IS NULL AS deleted;
-- counting a key that holds text
SELECT cluster.kv_set_if_not_exists('word', 'hello', '1 minute');
SELECT cluster.kv_increment('word', '1 minute');
SELECT cluster.kv_increment(NULL, '1 minute');
SELECT cluster.kv_increment('hits', NULL);
SELECT cluster.kv_increment('hits', '0 s');
SELECT cluster.kv_set_if_not_exists('k', NULL, '1 minute');
SELECT cluster.kv_set_if_not_exists('k', repeat('v', 1048577), '1 minute');
SELECT cluster.kv_set_if_not_exists(repeat('k', 600), 'v', '1 minute');
SELECT cluster.kv_extend_ttl('k', '-1 minute');
SELECT cluster.kv_delete('');
SELECT cluster.kv_get(NULL);

DROP EXTENSION cluster;
