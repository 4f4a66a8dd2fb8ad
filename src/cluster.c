/*-------------------------------------------------------------------------
 *
 * cluster.c
 *	  Module initialisation: settings, shared memory hooks, the launcher.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "allowlist.h"
#include "listen.h"
#include "cluster.h"
#include "dependencies.h"
#include "launcher.h"
#include "shmem.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

char	   *cluster_database = NULL;
int			cluster_max_engines = 16;
int			cluster_poll_interval = 10000;
int			cluster_worker_timeout = 30000;
char	   *cluster_ca_file = NULL;
char	   *cluster_worker_hosts = NULL;
char	   *cluster_worker_listen = NULL;
char	   *cluster_listen_cert_file = NULL;
char	   *cluster_listen_key_file = NULL;
static char *cluster_fence_floor = NULL;

/*
 * The one check of the list settings: a valid list, and, with
 * "entry_valid", every entry one its module accepts (which says why not).
 */
static bool
list_check(const char *value, bool (*entry_valid) (const char *entry, const char **why))
{
	char	   *copy = pstrdup(value);
	List	   *entries;
	ListCell   *lc;
	bool		ok = SplitGUCList(copy, ',', &entries);

	if (!ok)
		GUC_check_errdetail("List syntax is invalid.");
	foreach(lc, ok && entry_valid ? entries : NIL)
	{
		const char *why;

		if (!entry_valid(lfirst(lc), &why))
		{
			GUC_check_errdetail("\"%s\" is %s.", (char *) lfirst(lc), why);
			ok = false;
			break;
		}
	}
	list_free(entries);
	pfree(copy);
	return ok;
}

/* cluster.database: a list of names (quoted where need be) */
static bool
database_list_check(char **newval, void **extra, GucSource source)
{
	return list_check(*newval, NULL);
}

/* cluster.worker_hosts: "*", networks and host names */
static bool
worker_hosts_check(char **newval, void **extra, GucSource source)
{
	return list_check(*newval, allowlist_entry_valid);
}

/* cluster.worker_listen: host:port endpoints */
static bool
worker_listen_check(char **newval, void **extra, GucSource source)
{
	return list_check(*newval, listen_entry_valid);
}

static void
define_settings(void)
{
	DefineCustomStringVariable("cluster.database",
							   "Databases the cluster engines may run in.",
							   "A comma-separated list of database names; empty: every database where the extension is created.",
							   &cluster_database,
							   "",
							   PGC_SIGHUP, GUC_LIST_INPUT,
							   database_list_check, NULL, NULL);
	DefineCustomIntVariable("cluster.max_engines",
							"Maximum number of engines across all coordinators.",
							"Each engine is a background worker: max_worker_processes must leave room for them.",
							&cluster_max_engines,
							16, 1, 1024,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("cluster.poll_interval",
							"Fallback poll interval of the background workers.",
							"Changes are normally signalled at commit; this poll only catches writers that bypass the extension's functions.",
							&cluster_poll_interval,
							10000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("cluster.worker_timeout",
							"How long a worker may go without a heartbeat before the leader stops dialling it.",
							NULL,
							&cluster_worker_timeout,
							30000, 1000, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomStringVariable("cluster.ca_file",
							   "File of CA certificates that wss:// workers are verified against.",
							   "Empty: the system's default CA store.",
							   &cluster_ca_file,
							   "",
							   PGC_POSTMASTER, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("cluster.worker_hosts",
							   "Hosts and networks the leader may dial workers at.",
							   "A comma-separated list of IP networks (CIDR), host names (\"*.example.com\" for a domain) or \"*\" for any.",
							   &cluster_worker_hosts,
							   "localhost, 127.0.0.0/8, ::1",
							   PGC_SIGHUP, 0,
							   worker_hosts_check, NULL, NULL);
	DefineCustomStringVariable("cluster.worker_listen",
							   "Endpoints where a coordinator's leader may listen for workers that dial in.",
							   "A comma-separated list of host:port; empty: leaders listen nowhere.",
							   &cluster_worker_listen,
							   "",
							   PGC_SIGHUP, GUC_LIST_INPUT,
							   worker_listen_check, NULL, NULL);
	DefineCustomStringVariable("cluster.listen_cert_file",
							   "Certificate (PEM) a listening leader presents to workers that dial in.",
							   "Required for an endpoint off the loopback interface: such a leader serves wss:// only.",
							   &cluster_listen_cert_file,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("cluster.listen_key_file",
							   "Private key (PEM) of cluster.listen_cert_file.",
							   NULL,
							   &cluster_listen_key_file,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	/*
	 * Not a setting to set: DROP EXTENSION keeps the database's highest
	 * fence here (ALTER DATABASE ... SET, which outlives the extension's
	 * tables), and CREATE EXTENSION starts its fences above it.
	 */
	DefineCustomStringVariable("cluster.fence_floor",
							   "Highest fence of this database when the extension was last dropped.",
							   "Set by DROP EXTENSION cluster; read by CREATE EXTENSION cluster.",
							   &cluster_fence_floor,
							   "",
							   PGC_SUSET, GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
	MarkGUCPrefixReserved("cluster");
}

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cluster must be loaded via shared_preload_libraries"),
				 errhint("Add \"cluster\" to shared_preload_libraries in postgresql.conf and restart the server.")));

	define_settings();
	shmem_install_hooks();
	dependencies_install();
	launcher_register();
}
