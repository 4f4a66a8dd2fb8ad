-- The worker registry and its errors.
CREATE EXTENSION cluster;
\set SHOW_CONTEXT never

SELECT cluster.create_pump('orders');
SELECT cluster.create_handler('mail', 'orders');

SELECT length(cluster.register_worker('mail', 'ws://10.0.0.1:8080/')) = 36 AS got_an_id;
SELECT cluster.register_worker('mail', 'wss://worker.example.com/events', secret => 's3cret', capacity => 8) IS NOT NULL;
-- registering the same address again updates it and keeps its id
SELECT cluster.register_worker('mail', 'ws://10.0.0.1:8080/', capacity => 2)
     = (SELECT id FROM cluster.worker WHERE address = 'ws://10.0.0.1:8080/') AS same_id;
SELECT handler, address, capacity, connected, in_flight, delivered, acked, failed, reconnects
  FROM cluster.workers ORDER BY address;
SELECT cluster.worker_heartbeat((SELECT id FROM cluster.worker WHERE address = 'ws://10.0.0.1:8080/'));
SELECT cluster.worker_heartbeat('no-such-worker');
SELECT cluster.unregister_worker((SELECT id FROM cluster.worker WHERE address = 'ws://10.0.0.1:8080/'));
SELECT count(*) FROM cluster.workers;
-- no view shows a secret
SELECT count(*) FROM information_schema.columns
 WHERE table_schema = 'cluster' AND column_name = 'secret' AND table_name <> 'worker';

-- errors
SELECT cluster.register_worker('nobody', 'ws://10.0.0.1:8080/');
SELECT cluster.register_worker('mail', 'http://10.0.0.1:8080/');
SELECT cluster.register_worker('mail', 'ws://');
SELECT cluster.register_worker('mail', NULL);
SELECT cluster.register_worker('mail', 'ws://10.0.0.1/', capacity => 0);
SELECT cluster.register_worker('mail', 'ws://10.0.0.1/', secret => '');
SELECT cluster.worker_heartbeat(NULL);
SELECT cluster.unregister_worker('');
-- the leader dials only what cluster.worker_hosts allows
SELECT cluster.register_worker('mail', 'ws://192.168.1.1:8080/');
SELECT cluster.register_worker('mail', 'ws://evil.test/');
SELECT cluster.register_worker('mail', 'ws://10.0.0.1@evil.test/');
SELECT cluster.register_worker('mail', 'ws://[::ffff:10.0.0.1]/');
SELECT cluster.register_worker('mail', 'ws://0x0a000001/');
SELECT cluster.register_worker('mail', 'wss://a.b.example.com/') IS NOT NULL AS subdomain;
SELECT cluster.register_worker('mail', 'wss://example.com.evil.test/');
SELECT cluster.register_worker('mail', 'ws://[::1]:7000/') IS NOT NULL AS ipv6_loopback;
SELECT address, address_allowed FROM cluster.workers ORDER BY address;

-- a worker role may register once the handler's owner allowed it; PUBLIC may not
CREATE ROLE worker_test_role IN ROLE cluster_worker;
CREATE ROLE worker_test_nobody;
SET ROLE worker_test_role;
SELECT cluster.register_worker('mail', 'ws://10.0.0.9:8080/');
SELECT cluster.grant_worker('mail', 'worker_test_role');
RESET ROLE;
SELECT cluster.grant_worker('mail', 'worker_test_role');
SELECT object_type, object_name, grantee FROM cluster.grants;
SET ROLE worker_test_role;
SELECT cluster.register_worker('mail', 'ws://10.0.0.9:8080/') IS NOT NULL AS registered;
SELECT count(*) FROM cluster.workers;
SELECT * FROM cluster.worker;
RESET ROLE;
SET ROLE worker_test_nobody;
SELECT cluster.register_worker('mail', 'ws://10.0.0.9:8080/');
RESET ROLE;
-- revoking unregisters its workers
SELECT cluster.revoke_worker('mail', 'worker_test_role');
SELECT count(*) FROM cluster.worker WHERE registered_by = 'worker_test_role'::regrole;
DROP ROLE worker_test_role, worker_test_nobody;

-- tokens of workers that dial in: shown once, stored as SHA-256 only
SELECT cluster.issue_worker_token('mail', label => 'laptop') AS token \gset
SELECT :'token' ~ '^cwt_[0-9a-f]{64}$' AS token_shape;
SELECT t.token_hash = sha256(convert_to(:'token', 'UTF8')) AS stored_hashed,
	   position(:'token' IN t::text) = 0 AS not_in_clear
  FROM cluster.worker_token t;
SELECT handler, label, capacity, issued_by = current_user::regrole AS by_me, expires_at, revoked_at, valid
  FROM cluster.worker_tokens;
SELECT cluster.issue_worker_token('mail', capacity => 2, expires_in => '1 hour') IS NOT NULL AS expiring;
SELECT count(*) FILTER (WHERE expires_at > now()) AS expiring FROM cluster.worker_tokens;
-- no view shows a token or its hash
SELECT count(*) FROM information_schema.columns
 WHERE table_schema = 'cluster' AND column_name IN ('token', 'token_hash') AND table_name <> 'worker_token';
-- a worker that dialed in shows in cluster.workers only while connected
SELECT count(*) FROM cluster.workers WHERE dialed_in;
SELECT cluster.revoke_worker_token((SELECT id FROM cluster.worker_tokens WHERE label = 'laptop'));
SELECT cluster.revoke_worker_token((SELECT id FROM cluster.worker_tokens WHERE label = 'laptop'));
SELECT cluster.revoke_worker_token('no-such-token');
SELECT label, valid FROM cluster.worker_tokens ORDER BY label;
-- errors
SELECT cluster.issue_worker_token('nobody');
SELECT cluster.issue_worker_token('mail', capacity => 0);
SELECT cluster.issue_worker_token('mail', expires_in => '-1 s');
SELECT cluster.issue_worker_token('mail', label => repeat('x', 201));
SELECT cluster.revoke_worker_token(NULL);
-- only the handler's owner and its grantees issue and revoke
CREATE ROLE worker_test_role IN ROLE cluster_worker;
SET ROLE worker_test_role;
SELECT cluster.issue_worker_token('mail');
SELECT cluster.revoke_worker_token((SELECT id FROM cluster.worker_tokens WHERE label IS NULL));
SELECT count(*) FROM cluster.worker_token;
RESET ROLE;
SELECT cluster.grant_worker('mail', 'worker_test_role');
SET ROLE worker_test_role;
SELECT cluster.issue_worker_token('mail', label => 'granted') IS NOT NULL AS issued;
RESET ROLE;
SELECT label, issued_by = current_user::regrole AS by_me, valid FROM cluster.worker_tokens ORDER BY label;
-- role commands see the tokens a role issued: DROP ROLE is refused while
-- one is not revoked, REASSIGN OWNED moves them, DROP OWNED deletes them
DROP ROLE worker_test_role;
CREATE ROLE worker_test_other IN ROLE cluster_worker;
SELECT cluster.grant_worker('mail', 'worker_test_other');
SET ROLE worker_test_other;
SELECT cluster.issue_worker_token('mail', label => 'other') IS NOT NULL AS issued;
RESET ROLE;
REASSIGN OWNED BY worker_test_other TO CURRENT_USER;
SELECT label, issued_by = current_user::regrole AS by_me FROM cluster.worker_tokens WHERE label = 'other';
SET ROLE worker_test_other;
SELECT cluster.issue_worker_token('mail', label => 'other, dropped') IS NOT NULL AS issued;
RESET ROLE;
DROP OWNED BY worker_test_other;
SELECT count(*) FROM cluster.worker_tokens WHERE label = 'other, dropped';
DROP ROLE worker_test_other;
SELECT cluster.revoke_worker_token(id) FROM cluster.worker_tokens WHERE label = 'other';
-- revoking the grant revokes the tokens it issued
SELECT cluster.revoke_worker('mail', 'worker_test_role');
SELECT label, valid FROM cluster.worker_tokens ORDER BY label;
DROP ROLE worker_test_role;

-- dropping the handler drops its workers and tokens
SELECT cluster.drop_handler('mail');
SELECT count(*) FROM cluster.worker;
SELECT count(*) FROM cluster.worker_token;

DROP EXTENSION cluster;
