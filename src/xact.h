/*-------------------------------------------------------------------------
 *
 * xact.h
 *	  Short transactions with SPI for the background workers.
 *
 * worker_xact_begin() starts a transaction, connects SPI and pushes a
 * snapshot; worker_xact_commit() undoes all three and commits.  An error in
 * between aborts the transaction through the usual error path.  The workers
 * never keep a transaction open across a wait.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_XACT_H
#define CLUSTER_XACT_H

#include "executor/spi.h"

extern void worker_xact_begin(const char *activity);
extern void worker_xact_commit(void);
extern void worker_xact_abort(void);

extern void spi_exec_checked(const char *sql, int nargs, Oid *argtypes,
							 Datum *values, const char *nulls, int expected);
extern Datum spi_getdatum(int row, int col, bool *isnull);

#endif							/* CLUSTER_XACT_H */
