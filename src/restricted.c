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

void
restricted_enter(Restricted *r, Oid owner, const char *what)
{
	/* a dropped owner's OID must not be run as */
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(owner)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the owner of %s, role with OID %u, does not exist", what, owner)));
	r->owner = owner;
	r->what = what;
	GetUserIdAndSecContext(&r->save_userid, &r->save_sec_context);
	SetUserIdAndSecContext(owner, r->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	r->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", USER_SEARCH_PATH, PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	r->context.callback = restricted_context;
	r->context.arg = r;
	r->context.previous = error_context_stack;
	error_context_stack = &r->context;
}

/* Undo every setting the code made, then become the engine again. */
void
restricted_exit(Restricted *r)
{
	error_context_stack = r->context.previous;
	AtEOXact_GUC(false, r->save_nestlevel);
	SetUserIdAndSecContext(r->save_userid, r->save_sec_context);
}
