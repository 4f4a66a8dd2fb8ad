-- Coordinators: the default one, create, drop, and their errors.
CREATE EXTENSION cluster;
\set SHOW_CONTEXT never

SELECT name, lease_ttl, standby_engines FROM cluster.coordinators;
SELECT cluster.create_coordinator('billing');
SELECT cluster.create_coordinator('search', lease_ttl => '30 s', standby_engines => 0);
SELECT name, lease_ttl, standby_engines FROM cluster.coordinators ORDER BY name;

SELECT cluster.create_coordinator('billing');
SELECT cluster.create_coordinator(NULL);
SELECT cluster.create_coordinator('');
SELECT cluster.create_coordinator(repeat('c', 64));
SELECT cluster.create_coordinator('x', lease_ttl => '0 s');
SELECT cluster.create_coordinator('x', lease_ttl => '500 ms');
SELECT cluster.create_coordinator('x', lease_ttl => NULL);
SELECT cluster.create_coordinator('x', standby_engines => -1);
SELECT cluster.create_coordinator('x', standby_engines => 17);
SELECT cluster.create_coordinator('x', standby_engines => NULL);

-- where a leader listens for workers that dial in: only what a superuser
-- listed in cluster.worker_listen, and off the loopback only with TLS
SELECT cluster.alter_coordinator('search', listen => '127.0.0.1:7899');
SELECT name, listen FROM cluster.coordinators ORDER BY name;
SELECT cluster.alter_coordinator('search', lease_ttl => '20 s', standby_engines => 2);
SELECT name, lease_ttl, standby_engines, listen FROM cluster.coordinators WHERE name = 'search';
SELECT cluster.alter_coordinator('search', listen => '');
SELECT name, listen FROM cluster.coordinators WHERE name = 'search';
SELECT cluster.create_coordinator('listener', listen => '127.0.0.1:7899');
SELECT cluster.alter_coordinator('search', listen => '127.0.0.1:7900');
SELECT cluster.alter_coordinator('search', listen => '10.0.0.1:7899');
SELECT cluster.alter_coordinator('search', listen => '127.0.0.1');
SELECT cluster.alter_coordinator('search', listen => '127.0.0.1:0');
SELECT cluster.alter_coordinator('search', listen => '::1:7899');
SELECT cluster.alter_coordinator('search', listen => 'a b:7899');
SELECT cluster.alter_coordinator('search', standby_engines => 99);
SELECT cluster.alter_coordinator('nowhere', listen => '');
SELECT cluster.drop_coordinator('listener');

SELECT cluster.drop_coordinator('search');
SELECT cluster.drop_coordinator('search');
-- a coordinator that runs pumps stays
SELECT cluster.create_pump('invoices', coordinator => 'billing');
SELECT cluster.drop_coordinator('billing');
SELECT cluster.drop_pump('invoices');
SELECT cluster.drop_coordinator(NULL);
SELECT name FROM cluster.coordinators ORDER BY name;

-- engines run only in cluster.database ("postgres" here): none in this one
SELECT count(*) FROM cluster.engines;

-- every public object is documented
SELECT c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'cluster' AND c.relkind IN ('r', 'v')
   AND obj_description(c.oid, 'pg_class') IS NULL;
SELECT p.oid::regprocedure
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'cluster' AND p.proname NOT LIKE '\_%'
   AND obj_description(p.oid, 'pg_proc') IS NULL;


-- the list settings check every entry (ALTER SYSTEM runs the check and
-- writes nothing when it fails)
ALTER SYSTEM SET cluster.worker_listen = '127.0.0.1:7800, nowhere';
ALTER SYSTEM SET cluster.worker_listen = '127.0.0.1:7800, "unclosed';
ALTER SYSTEM SET cluster.worker_hosts = 'localhost, bad_host';
ALTER SYSTEM SET cluster.worker_hosts = 'localhost, "unclosed';
ALTER SYSTEM SET cluster.database = 'app, "unclosed';

DROP EXTENSION cluster;
