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

-- Errors to play what the extension raises once a handler is dropped
-- (42704), its owner revoked our right (42501) or the extension is gone
-- (3F000): a row makes fn, 'register' or 'heartbeat', raise for handler.
CREATE TABLE cluster.failures (
	handler text NOT NULL,
	fn text NOT NULL CHECK (fn IN ('register', 'heartbeat')),
	sqlstate text NOT NULL,
	message text NOT NULL,
	PRIMARY KEY (handler, fn)
);

CREATE FUNCTION cluster.raise_if_failing(fn text, handler text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	f cluster.failures;
BEGIN
	SELECT * INTO f FROM cluster.failures x
	 WHERE x.fn = raise_if_failing.fn AND x.handler = raise_if_failing.handler;
	IF FOUND THEN
		RAISE EXCEPTION USING MESSAGE = f.message, ERRCODE = f.sqlstate;
	END IF;
END $$;

CREATE FUNCTION cluster.register_worker(handler text, address text,
										secret text DEFAULT NULL,
										capacity int DEFAULT 4)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	new_id text := 'w' || nextval('cluster.worker_seq');
BEGIN
	PERFORM cluster.raise_if_failing('register', handler);
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
	PERFORM cluster.raise_if_failing('heartbeat',
		(SELECT w.handler FROM cluster.workers w WHERE w.id = worker_heartbeat.worker_id));
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
