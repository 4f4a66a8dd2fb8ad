/*-------------------------------------------------------------------------
 *
 * registry.c
 *	  The worker's registration, over its own libpq connection:
 *
 *	cluster.register_worker(handler text, address text, secret text,
 *							capacity int) returns text		-- the worker id
 *	cluster.worker_heartbeat(worker_id text) returns boolean
 *	cluster.unregister_worker(worker_id text) returns void
 *
 * The calls are synchronous: they run between two turns of the lws loop,
 * and deliveries wait meanwhile.  connect_timeout, tcp_user_timeout and
 * statement_timeout keep that wait short even when the database is not
 * answering (settings given in --db win over these defaults).  A broken
 * connection is opened again on the next call.
 *
 * Most failures pass: the next heartbeat tries again.  Some say that the
 * registration is gone for good, and the worker stops (exit status 3):
 * the handler does not exist (42704, it was dropped), the extension is
 * not installed (3F000 no schema "cluster", 42883 no such function), or
 * the role may not serve the handler (42501: its owner revoked our right
 * with cluster.revoke_worker).  A heartbeat failing with one of these is
 * taken as a lapsed registration: registering again tells for sure.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "alloc.h"
#include "log.h"
#include "registry.h"
#include "worker.h"

#define TEXTOID		25
#define INT4OID		23

static PGconn *db = NULL;
static char *worker_id = NULL;
static bool ever_registered = false;

static void
log_db_error(const char *what, const char *message)
{
	int			len = (int) strlen(message);

	while (len > 0 && (message[len - 1] == '\n' || message[len - 1] == ' '))
		len--;
	wlog("WARNING", "%s: %.*s", what, len, message);
}

static bool
db_connect(void)
{
	static const char *const keywords[] = {
		"connect_timeout", "tcp_user_timeout", "application_name",
		"dbname", NULL
	};
	const char *values[] = {
		"5", "10000", "cluster-worker",
		worker.opt.conninfo ? worker.opt.conninfo : "", NULL
	};
	PGresult   *res;

	if (db != NULL && PQstatus(db) == CONNECTION_OK)
		return true;
	if (db != NULL)
		PQfinish(db);

	/* expand_dbname: --db is a whole connection string, later in the list */
	db = PQconnectdbParams(keywords, values, 1);
	if (PQstatus(db) != CONNECTION_OK)
	{
		log_db_error("could not connect to the database", PQerrorMessage(db));
		PQfinish(db);
		db = NULL;
		return false;
	}
	/* a statement_timeout from --db or the role wins */
	res = PQexec(db, "SELECT set_config('statement_timeout', '10s', false) "
				 "WHERE current_setting('statement_timeout') = '0'");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		log_db_error("could not set statement_timeout",
					 PQresultErrorMessage(res));
	PQclear(res);
	return true;
}

/* Keep the SQLSTATE of a failed query, "" when the server gave none. */
static void
keep_sqlstate(const PGresult *res, char *sqlstate)
{
	const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	snprintf(sqlstate, 6, "%s", code ? code : "");
}

/*
 * Run a one-row query.  If the connection turns out to be broken (the
 * server restarted, say), connect again and retry once; an SQL error is
 * not retried.  Returns NULL after logging a failure, its SQLSTATE in
 * sqlstate (6 bytes: "" for none, as when the server can't be reached).
 */
static PGresult *
run_query(const char *what, const char *sql, int nparams, const Oid *types,
		  const char *const *values, char *sqlstate)
{
	for (int attempt = 0; attempt < 2; attempt++)
	{
		PGresult   *res;

		sqlstate[0] = '\0';
		if (!db_connect())
			return NULL;
		res = PQexecParams(db, sql, nparams, types, values, NULL, NULL, 0);
		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
			return res;
		log_db_error(what, PQresultStatus(res) == PGRES_TUPLES_OK ?
					 "no row returned" : PQresultErrorMessage(res));
		keep_sqlstate(res, sqlstate);
		PQclear(res);
		if (PQstatus(db) == CONNECTION_OK)
			return NULL;
		PQfinish(db);
		db = NULL;
	}
	return NULL;
}

/* Does an error say the registration can't be had, whatever we retry? */
static bool
gone_for_good(const char *sqlstate)
{
	return strcmp(sqlstate, "42704") == 0 ||	/* undefined_object */
		strcmp(sqlstate, "3F000") == 0 ||	/* invalid_schema_name */
		strcmp(sqlstate, "42883") == 0 ||	/* undefined_function */
		strcmp(sqlstate, "42501") == 0; /* insufficient_privilege */
}

/* Say, in words, why registering can't succeed. */
static void
log_gone(const char *sqlstate)
{
	const char *handler = worker.opt.handler;

	if (strcmp(sqlstate, "42704") == 0)
		wlog("FATAL", "handler \"%s\" %s", handler,
			 ever_registered ? "no longer exists" : "does not exist");
	else if (strcmp(sqlstate, "42501") == 0)
		wlog("FATAL", "permission denied: role \"%s\" may %s register workers for handler \"%s\" (its owner allows that with cluster.grant_worker)",
			 PQuser(db), ever_registered ? "no longer" : "not", handler);
	else
		wlog("FATAL", "the cluster extension is not installed in this database%s",
			 strcmp(sqlstate, "42883") == 0 ?
			 " (or not in a version with cluster.register_worker)" : "");
}

Registration
registry_register(void)
{
	static const Oid types[] = {TEXTOID, TEXTOID, TEXTOID, INT4OID};
	char		capacity[16];
	const char *values[4];
	char		sqlstate[6];
	PGresult   *res;

	snprintf(capacity, sizeof(capacity), "%d", worker.opt.capacity);
	values[0] = worker.opt.handler;
	values[1] = worker.address;
	values[2] = worker.opt.secret;	/* NULL: no secret */
	values[3] = capacity;
	res = run_query("could not register the worker",
					"SELECT cluster.register_worker($1, $2, $3, $4)",
					4, types, values, sqlstate);
	if (res == NULL && gone_for_good(sqlstate))
	{
		log_gone(sqlstate);
		return REGISTRATION_GONE;
	}
	if (res == NULL)
		return NOT_REGISTERED;
	if (PQgetisnull(res, 0, 0))
	{
		wlog("WARNING", "cluster.register_worker returned no worker id");
		PQclear(res);
		return NOT_REGISTERED;
	}
	free(worker_id);
	worker_id = xstrdup(PQgetvalue(res, 0, 0));
	ever_registered = true;
	PQclear(res);
	wlog("LOG", "registered as worker %s for handler \"%s\" at %s",
		 worker_id, worker.opt.handler, worker.address);
	return REGISTERED;
}

/*
 * Tell the database this worker lives.  If it answers false the
 * registration has lapsed (expired, or removed): register again, unless
 * shutting down.  Other failures are logged and retried on the next beat.
 * Returns false once the registration is gone for good.
 */
bool
registry_heartbeat(void)
{
	static const Oid types[] = {TEXTOID};
	const char *values[1];
	char		sqlstate[6];
	PGresult   *res;
	bool		alive;

	if (worker_id == NULL)
		return worker.shutting_down || registry_register() != REGISTRATION_GONE;
	values[0] = worker_id;
	res = run_query("heartbeat failed",
					"SELECT cluster.worker_heartbeat($1)", 1, types, values,
					sqlstate);
	if (res == NULL && !gone_for_good(sqlstate))
		return true;
	alive = res != NULL && !PQgetisnull(res, 0, 0) &&
		strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	if (alive || worker.shutting_down)
	{
		PQclear(res);
		return true;
	}
	wlog("LOG", "worker %s %s: registering again", worker_id,
		 res != NULL ? "is no longer registered" : "may no longer heartbeat");
	PQclear(res);
	/* nothing left to unregister, whatever comes of this */
	free(worker_id);
	worker_id = NULL;
	return registry_register() != REGISTRATION_GONE;
}

/* Remove the registration and close the database connection. */
void
registry_unregister(void)
{
	static const Oid types[] = {TEXTOID};
	const char *values[1];
	char		sqlstate[6];
	PGresult   *res;

	if (worker_id != NULL)
	{
		values[0] = worker_id;
		res = run_query("could not unregister the worker",
						"SELECT cluster.unregister_worker($1)",
						1, types, values, sqlstate);
		if (res != NULL)
		{
			wlog("LOG", "unregistered worker %s", worker_id);
			PQclear(res);
		}
		free(worker_id);
		worker_id = NULL;
	}
	if (db != NULL)
		PQfinish(db);
	db = NULL;
}
