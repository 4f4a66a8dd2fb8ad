-- Privileges: PUBLIC reads views only; the extension's roles do the rest.
CREATE EXTENSION cluster;
\set SHOW_CONTEXT never

CREATE ROLE cluster_test_nobody;
CREATE ROLE cluster_test_app IN ROLE cluster_worker;
CREATE ROLE cluster_test_ops IN ROLE cluster_admin;

SET ROLE cluster_test_nobody;
SELECT count(*) >= 0 AS reads_leases FROM cluster.leases;
SELECT count(*) >= 0 AS reads_engines FROM cluster.engines;
SELECT name FROM cluster.coordinators ORDER BY name;
-- fences go on above those the earlier suites' extension handed out here
SELECT cluster.acquire_lease('l', 'me', '1 minute');
SELECT cluster.kv_get('k');
SELECT cluster.register_instance('i', 'ws://x');
SELECT cluster.create_coordinator('mine');
SELECT * FROM cluster.lease;
SELECT * FROM cluster.kv;
UPDATE cluster.lease SET fence = 0;
RESET ROLE;

SET ROLE cluster_test_app;
SELECT cluster.acquire_lease('l', 'me', '1 minute');
SELECT cluster.kv_increment('k', '1 minute');
SELECT cluster.register_instance('i', 'ws://x');
SELECT cluster.create_coordinator('mine');
UPDATE cluster.lease SET fence = 0;
SELECT cluster._engine_take(1, 'me');
RESET ROLE;

SET ROLE cluster_test_ops;
SELECT cluster.create_coordinator('mine', standby_engines => 0);
SELECT cluster.acquire_lease('l2', 'ops', '1 minute');
SELECT cluster.drop_coordinator('mine');
RESET ROLE;

-- no function but the status reader is executable by PUBLIC
SELECT p.oid::regprocedure
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'cluster'
   AND has_function_privilege('cluster_test_nobody', p.oid, 'EXECUTE')
 ORDER BY 1;

DROP ROLE cluster_test_nobody, cluster_test_app, cluster_test_ops;

DROP EXTENSION cluster;
