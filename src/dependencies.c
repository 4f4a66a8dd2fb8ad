/*-------------------------------------------------------------------------
 *
 * dependencies.c
 *	  Protect what pumps and handlers use: event triggers and DROP ROLE.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/event_trigger.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "dependencies.h"
#include "restricted.h"
#include "shmem.h"
#include "xact.h"

PG_FUNCTION_INFO_V1(cluster_on_sql_drop);
PG_FUNCTION_INFO_V1(cluster_on_drop_extension);

static ProcessUtility_hook_type prev_process_utility = NULL;

/* Is the extension (still) there?  Not while DROP EXTENSION runs. */
static bool
extension_here(void)
{
	return IsTransactionState() && OidIsValid(get_extension_oid("cluster", true));
}

/*
 * Are the functions the role-command hooks call installed?  Not in a
 * database still at version 0.1 (the library is updated first, the SQL by
 * ALTER EXTENSION UPDATE): there the role commands run as before.
 */
static bool
role_functions_here(void)
{
	Oid			argtypes[1] = {REGROLEOID};

	return extension_here() &&
		OidIsValid(LookupFuncName(list_make2(makeString("cluster"), makeString("_role_in_use")),
								  1, argtypes, true));
}

/* Did the statement say CASCADE? */
static bool
cascades(Node *stmt)
{
	ListCell   *lc;

	if (IsA(stmt, DropStmt))
		return ((DropStmt *) stmt)->behavior == DROP_CASCADE;
	if (IsA(stmt, AlterTableStmt))
		foreach(lc, ((AlterTableStmt *) stmt)->cmds)
		{
			AlterTableCmd *cmd = lfirst(lc);

			if (cmd->subtype == AT_DropColumn && cmd->behavior == DROP_CASCADE)
				return true;
		}
	return false;
}

/* The roles a statement names, as a regrole[]. */
static Datum
role_array(List *roles)
{
	Datum	   *oids = palloc(sizeof(Datum) * Max(list_length(roles), 1));
	int			n = 0;
	ListCell   *lc;

	foreach(lc, roles)
		oids[n++] = ObjectIdGetDatum(get_rolespec_oid(lfirst(lc), false));
	return PointerGetDatum(construct_array(oids, n, REGROLEOID, sizeof(Oid), true,
										   TYPALIGN_INT));
}

/*
 * Run one of the extension's functions as the bootstrap superuser; the
 * first row it returns, as strings in the caller's memory, or NULL.
 */
static char **
run_as_extension(const char *sql, int nargs, Oid *types, Datum *values)
{
	MemoryContext cxt = CurrentMemoryContext;
	Restricted	r;
	char	  **row = NULL;

	restricted_become_definer(&r, BOOTSTRAP_SUPERUSERID);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	spi_exec_checked(sql, nargs, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed > 0)
	{
		int			natts = SPI_tuptable->tupdesc->natts;

		row = MemoryContextAlloc(cxt, sizeof(char *) * natts);
		for (int i = 0; i < natts; i++)
		{
			char	   *value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 1);

			row[i] = value ? MemoryContextStrdup(cxt, value) : NULL;
		}
	}
	SPI_finish();
	restricted_exit(&r);
	return row;
}

/*
 * sql_drop: whatever the statement dropped is checked against the pumps
 * and handlers of this database.
 */
Datum
cluster_on_sql_drop(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata = (EventTriggerData *) fcinfo->context;
	Oid			types[1] = {BOOLOID};
	Datum		values[1];
	char	  **refusal;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		elog(ERROR, "cluster_on_sql_drop: not fired by an event trigger");
	if (!extension_here())
		PG_RETURN_VOID();
	values[0] = BoolGetDatum(cascades(trigdata->parsetree));
	refusal = run_as_extension("SELECT message, detail, hint FROM cluster._protect_dropped($1)",
							   1, types, values);
	if (refusal)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("%s", refusal[0]),
				 errdetail("%s", refusal[1]),
				 errhint("%s", refusal[2])));
	PG_RETURN_VOID();
}

/*
 * DROP OWNED, before it runs: the pumps, handlers, registrations and grants
 * of its roles go first, so that what they used may go with them.  A role
 * the user may not act for is left to the command's own error.
 */
static void
drop_owned(DropOwnedStmt *stmt)
{
	Oid			types[2] = {REGROLEARRAYOID, BOOLOID};
	Datum		values[2];
	ListCell   *lc;

	if (!role_functions_here())
		return;
	foreach(lc, stmt->roles)
		if (!has_privs_of_role(GetUserId(), get_rolespec_oid(lfirst(lc), false)))
			return;
	values[0] = role_array(stmt->roles);
	values[1] = BoolGetDatum(stmt->behavior == DROP_CASCADE);
	run_as_extension("SELECT cluster._drop_owned($1, $2)", 2, types, values);
}

/* REASSIGN OWNED, after it succeeded: the new owner takes ours over too. */
static void
reassign_owned(ReassignOwnedStmt *stmt)
{
	Oid			types[2] = {REGROLEARRAYOID, REGROLEOID};
	Datum		values[2];

	if (!role_functions_here())
		return;
	values[0] = role_array(stmt->roles);
	values[1] = ObjectIdGetDatum(get_rolespec_oid(stmt->newrole, false));
	run_as_extension("SELECT cluster._reassign_owned($1, $2)", 2, types, values);
}

/*
 * ddl_command_start of DROP EXTENSION: when it is this extension, let go
 * of what outlives it and would stop the drop (the wake triggers on user
 * outbox tables), and keep the highest fence (cluster._before_drop).
 */
Datum
cluster_on_drop_extension(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata = (EventTriggerData *) fcinfo->context;
	DropStmt   *stmt;
	ListCell   *lc;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		elog(ERROR, "cluster_on_drop_extension: not fired by an event trigger");
	stmt = (DropStmt *) trigdata->parsetree;
	if (!IsA(stmt, DropStmt) || stmt->removeType != OBJECT_EXTENSION || !extension_here())
		PG_RETURN_VOID();
	foreach(lc, stmt->objects)
		if (strcmp(strVal(lfirst(lc)), "cluster") == 0)
			run_as_extension("SELECT cluster._before_drop()", 0, NULL, NULL);
	PG_RETURN_VOID();
}

/* What of this database's pumps and handlers names the role; NULL: nothing. */
static char *
role_in_use(Oid role)
{
	Oid			types[1] = {REGROLEOID};
	Datum		values[1] = {ObjectIdGetDatum(role)};
	char	  **row = run_as_extension("SELECT cluster._role_in_use($1)", 1, types, values);

	return row ? row[0] : NULL;
}

/*
 * DROP ROLE fires no event trigger; like a role that owns a table, a role
 * that owns a pump or handler, registered a worker or holds a grant here
 * can't be dropped.  Other databases are not visible from this one: there
 * the engines find the owner gone and stop that handler, visibly.
 */
static void
check_drop_role(DropRoleStmt *stmt)
{
	ListCell   *lc;

	if (!role_functions_here())
		return;
	foreach(lc, stmt->roles)
	{
		RoleSpec   *spec = lfirst(lc);
		Oid			role = get_rolespec_oid(spec, true);
		char	   *use;

		if (!OidIsValid(role) || (use = role_in_use(role)) == NULL)
			continue;
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("role \"%s\" cannot be dropped because some objects depend on it",
						get_rolespec_name(spec)),
				 errdetail("%s in database %s", use, get_database_name(MyDatabaseId)),
				 errhint("Use REASSIGN OWNED or DROP OWNED in that database first.")));
	}
}

/*
 * DROP DATABASE refuses while other sessions are connected, and waits up
 * to 5 s for them to go: the database's scheduler and engines leave first,
 * and are kept away for a while (DROP_HOLD_MS).  Only for a role that may
 * drop the database; the command's own checks decide the rest.
 */
#define DROP_HOLD_MS 10000

static void
leave_database(DropdbStmt *stmt)
{
	Oid			database = get_database_oid(stmt->dbname, true);

	if (OidIsValid(database) && pg_database_ownercheck(database, GetUserId()))
		shmem_db_hold(database, DROP_HOLD_MS);
}

static void
process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				ProcessUtilityContext context, ParamListInfo params,
				QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;

	if (IsA(stmt, DropRoleStmt))
		check_drop_role((DropRoleStmt *) stmt);
	else if (IsA(stmt, DropOwnedStmt))
		drop_owned((DropOwnedStmt *) stmt);
	else if (IsA(stmt, DropdbStmt))
		leave_database((DropdbStmt *) stmt);
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params,
							 queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
	if (IsA(stmt, ReassignOwnedStmt))
		reassign_owned((ReassignOwnedStmt *) stmt);
}

void
dependencies_install(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = process_utility;
}
