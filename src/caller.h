/*-------------------------------------------------------------------------
 *
 * caller.h
 *	  SQL functions that act for their caller with the extension's rights.
 *
 * A SECURITY DEFINER function learns nothing about who called it, so the
 * public functions that must decide by their caller (may this role register
 * workers for that handler?  may it see that pump's lag?) are C functions
 * instead.  cluster_for_caller() serves them all: it takes the caller (the
 * current user), becomes the function's owner (the extension's owner) with
 * search_path pg_catalog, pg_temp, and calls the internal function of the
 * same name with a leading underscore, with the same arguments and the
 * caller as one more, a regrole.  Only the extension's owner may execute
 * the internal functions, so nobody can name another caller.
 *
 * cluster_lag() and cluster_position_before() read a pump's source for a
 * caller allowed to know about it, as the pump's owner (see restricted.h).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_CALLER_H
#define CLUSTER_CALLER_H

#include "fmgr.h"

extern Datum cluster_for_caller(PG_FUNCTION_ARGS);
extern Datum cluster_lag(PG_FUNCTION_ARGS);
extern Datum cluster_handler_lag(PG_FUNCTION_ARGS);
extern Datum cluster_position_before(PG_FUNCTION_ARGS);

#endif							/* CLUSTER_CALLER_H */
