/*-------------------------------------------------------------------------
 *
 * dependencies.h
 *	  Protect what pumps and handlers use, as PostgreSQL protects its own
 *	  dependencies.
 *
 * Pumps and handlers are rows, not catalog objects, so pg_depend can't
 * hold their dependencies; DDL is watched instead.  The sql_drop event
 * trigger (cluster_on_sql_drop) refuses a drop that takes a pump's source
 * table, one of its mapped columns or a handler's function, unless the
 * statement said CASCADE: then the pump goes with its handlers, and the
 * handler loses its function.  Role commands fire no event trigger:
 * dependencies_install() hooks ProcessUtility to refuse DROP ROLE of a role
 * that this database's pumps, handlers, workers or grants still name, and
 * to carry REASSIGN OWNED and DROP OWNED over to them; before DROP
 * DATABASE, the database's scheduler and engines leave so that the drop
 * doesn't find them connected.  DROP EXTENSION
 * first drops the wake triggers on user tables (which would stop it) and
 * keeps the highest fence, so that fences never go back
 * (cluster_on_drop_extension).  The decisions are SQL functions of the extension
 * (cluster._protect_dropped and friends), run as the bootstrap superuser;
 * this module only reads the statement (its DROP behaviour, its roles).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_DEPENDENCIES_H
#define CLUSTER_DEPENDENCIES_H

#include "fmgr.h"

extern void dependencies_install(void);
extern Datum cluster_on_sql_drop(PG_FUNCTION_ARGS);
extern Datum cluster_on_drop_extension(PG_FUNCTION_ARGS);

#endif							/* CLUSTER_DEPENDENCIES_H */
