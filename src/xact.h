/*-------------------------------------------------------------------------
 *
 * xact.h
 *	  Short transactions with SPI for the background workers.
 *
 * worker_xact_begin() starts a transaction, connects SPI and pushes a
 * snapshot; worker_xact_commit() undoes all three and commits;
 * worker_xact_abort() rolls back.  After an error caught with PG_TRY,
 * worker_xact_recover() aborts the transaction and returns the error.
 * subxact_run() runs a function in a subtransaction and turns an error
 * into its message, leaving the outer transaction as it was.  The workers
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
extern ErrorData *worker_xact_recover(MemoryContext cxt);

typedef void (*SubxactFn) (void *arg);
extern bool subxact_run(SubxactFn fn, void *arg, char **error);

extern void spi_exec_checked(const char *sql, int nargs, Oid *argtypes,
							 Datum *values, const char *nulls, int expected);
extern Datum spi_getdatum(int row, int col, bool *isnull);

#endif							/* CLUSTER_XACT_H */
