/*-------------------------------------------------------------------------
 *
 * restricted.h
 *	  Run user code with its owner's rights, never with the engine's.
 *
 * The engines are connected as the bootstrap superuser.  Everything a user
 * defines (a pump's source, read and deleted from; a handler's function;
 * the views and functions these reach) runs between restricted_enter() and
 * restricted_exit(): as the owning role, inside a security-restricted
 * operation (no SET ROLE, no temporary objects, no session-level state),
 * with a GUC nest level that restricted_exit() rolls back, so nothing the
 * code sets (search_path above all) outlives the call.  This is how
 * PostgreSQL runs index expressions and REFRESH MATERIALIZED VIEW.  Inside,
 * search_path is '"$user", public, pg_temp' (pg_catalog is searched first,
 * and pg_temp last: some of this code runs in another role's session, the
 * lag count in its caller's, whose temporary tables must not stand in for
 * the owner's), and client_min_messages is 'error', so that the owner's
 * notices don't reach such a caller; the engines' own SQL runs with
 * 'pg_catalog, pg_temp' (restricted_engine_init).
 *
 * An error inside needs no restricted_exit(): the abort of the enclosing
 * (sub)transaction restores the user, the security context and the GUCs.
 * Errors raised inside carry a context line naming what ran and as whom.
 * restricted_become_definer() is the same switch, without the restriction
 * and with the engines' search_path, for our own C functions that act with
 * the extension's rights (caller.c); restricted_exit() ends either.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_RESTRICTED_H
#define CLUSTER_RESTRICTED_H

#include "utils/elog.h"

typedef struct Restricted
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
	Oid			owner;
	const char *what;			/* for the error context: "pump \"orders\"";
								 * NULL: a definer, no context */
	ErrorContextCallback context;
} Restricted;

#define ENGINE_SEARCH_PATH "pg_catalog, pg_temp"
#define USER_SEARCH_PATH "\"$user\", public, pg_temp"

extern void restricted_engine_init(void);
extern void restricted_enter(Restricted *r, Oid owner, const char *what);
extern void restricted_become_definer(Restricted *r, Oid definer);
extern void restricted_exit(Restricted *r);

#endif							/* CLUSTER_RESTRICTED_H */
