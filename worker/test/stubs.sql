-- Stand-ins for the extension's worker registry, for cluster-worker's tests:
-- the exact signatures the worker calls, each logging its call.
CREATE SCHEMA cluster;

CREATE TABLE cluster.calls (
	n serial PRIMARY KEY,
	at timestamptz NOT NULL DEFAULT clock_timestamp(),
	fn text NOT NULL,
	worker_id text,
	handler text,
	address text,
	secret text,
	capacity int
);

CREATE TABLE cluster.workers (
	id text PRIMARY KEY,
	handler text NOT NULL,
	address text NOT NULL,
	secret text,
	capacity int NOT NULL,
	last_beat timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE SEQUENCE cluster.worker_seq;

CREATE FUNCTION cluster.register_worker(handler text, address text,
										secret text DEFAULT NULL,
										capacity int DEFAULT 4)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	new_id text := 'w' || nextval('cluster.worker_seq');
BEGIN
	INSERT INTO cluster.calls (fn, worker_id, handler, address, secret, capacity)
	VALUES ('register', new_id, handler, address, secret, capacity);
	INSERT INTO cluster.workers (id, handler, address, secret, capacity)
	VALUES (new_id, handler, address, secret, capacity);
	RETURN new_id;
END $$;

CREATE FUNCTION cluster.worker_heartbeat(worker_id text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO cluster.calls (fn, worker_id) VALUES ('heartbeat', worker_id);
	UPDATE cluster.workers w SET last_beat = clock_timestamp()
	 WHERE w.id = worker_heartbeat.worker_id;
	RETURN FOUND;
END $$;

CREATE FUNCTION cluster.unregister_worker(worker_id text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO cluster.calls (fn, worker_id) VALUES ('unregister', worker_id);
	DELETE FROM cluster.workers w WHERE w.id = unregister_worker.worker_id;
END $$;
