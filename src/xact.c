/*-------------------------------------------------------------------------
 *
 * xact.c
 *	  Short transactions with SPI for the background workers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "pgstat.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

#include "xact.h"

void
worker_xact_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

void
worker_xact_commit(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Undo everything since worker_xact_begin(). */
void
worker_xact_abort(void)
{
	SPI_finish();
	PopActiveSnapshot();
	AbortCurrentTransaction();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * In a PG_CATCH of a background worker: take the error, abort the
 * transaction, and go on in "cxt".  The caller reports the error and
 * frees it.
 */
ErrorData *
worker_xact_recover(MemoryContext cxt)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(cxt);
	return edata;
}

/*
 * Run fn(arg) in a subtransaction, as PL/pgSQL runs an exception block.
 * On an error, everything fn did is rolled back, *error is the message and
 * the result is false.
 */
bool
subxact_run(SubxactFn fn, void *arg, char **error)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool ok = false;

	*error = NULL;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		ok = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		*error = edata->message;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcontext);
	CurrentResourceOwner = oldowner;
	return ok;
}

/*
 * Run a statement whose result must be "expected" (an SPI_OK_* code);
 * anything else is a bug or a damaged installation.
 */
void
spi_exec_checked(const char *sql, int nargs, Oid *argtypes, Datum *values,
				 const char *nulls, int expected)
{
	int			rc = SPI_execute_with_args(sql, nargs, argtypes, values,
										   nulls, false, 0);

	if (rc != expected)
		elog(ERROR, "unexpected SPI result %s for: %s",
			 SPI_result_code_string(rc), sql);
}

Datum
spi_getdatum(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
						 col, isnull);
}
