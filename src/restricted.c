/*-------------------------------------------------------------------------
 *
 * restricted.c
 *	  Run user code with its owner's rights, never with the engine's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/syscache.h"

#include "restricted.h"

/*
 * The engines' own SQL qualifies what it calls, and resolves the rest in
 * pg_catalog alone: a search_path set for the database or the role can't
 * slip another schema's operator under it.
 */
void
restricted_engine_init(void)
{
	SetConfigOption("search_path", ENGINE_SEARCH_PATH, PGC_SUSET, PGC_S_SESSION);
}

static void
restricted_context(void *arg)
{
	Restricted *r = arg;
	char	   *role = GetUserNameFromId(r->owner, true);

	errcontext("%s, run as role %s", r->what, role ? role : "(dropped)");
}

/* Run as "role", with settings rolled back at restricted_exit(). */
static void
become(Restricted *r, Oid role, int sec_flags, const char *search_path)
{
	r->owner = role;
	GetUserIdAndSecContext(&r->save_userid, &r->save_sec_context);
	SetUserIdAndSecContext(role, r->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE | sec_flags);
	r->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", search_path, PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
}

void
restricted_enter(Restricted *r, Oid owner, const char *what)
{
	/* a dropped owner's OID must not be run as */
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(owner)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the owner of %s, role with OID %u, does not exist", what, owner)));
	become(r, owner, SECURITY_RESTRICTED_OPERATION, USER_SEARCH_PATH);
	(void) set_config_option("client_min_messages", "error", PGC_SUSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	r->what = what;
	r->context.callback = restricted_context;
	r->context.arg = r;
	r->context.previous = error_context_stack;
	error_context_stack = &r->context;
}

/*
 * Become the owner of a function of ours, as SECURITY DEFINER would (see
 * caller.c), with the engines' search_path: no user code runs in there.
 */
void
restricted_become_definer(Restricted *r, Oid definer)
{
	become(r, definer, 0, ENGINE_SEARCH_PATH);
	r->what = NULL;
}

/* Undo every setting made since, then become who we were again. */
void
restricted_exit(Restricted *r)
{
	if (r->what)
		error_context_stack = r->context.previous;
	AtEOXact_GUC(false, r->save_nestlevel);
	SetUserIdAndSecContext(r->save_userid, r->save_sec_context);
}
