/*-------------------------------------------------------------------------
 *
 * listen.c
 *	  Where a coordinator's leader may listen (cluster.worker_listen).
 *
 * listen_parse, the parser of what a cluster_admin gives as "listen", is
 * also built alone with FRONTEND for its fuzzer (test/fuzz/fuzz_listen.c).
 *
 *-------------------------------------------------------------------------
 */
#ifdef FRONTEND
#include "postgres_fe.h"
#else
#include "postgres.h"
#endif

#include "listen.h"

/*
 * "host:port", the host a name, an IPv4 literal or a bracketed IPv6
 * literal, the port 1..65535.
 */
bool
listen_parse(const char *endpoint, ListenAddress *addr, const char **why)
{
	const char *colon = strrchr(endpoint, ':');
	const char *host = endpoint;
	size_t		host_len;
	char	   *end;
	long		port;

	if (colon == NULL)
	{
		*why = "it has no \":port\"";
		return false;
	}
	host_len = colon - endpoint;
	if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']')
	{
		host++;
		host_len -= 2;
	}
	else if (memchr(host, ':', host_len) || memchr(host, '[', host_len))
	{
		*why = "an IPv6 address must be in brackets";
		return false;
	}
	if (host_len == 0 || host_len >= LISTEN_MAX_HOST ||
		strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:") < host_len)
	{
		*why = "its host is empty, too long or not a host name or IP address";
		return false;
	}
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || errno != 0 || port < 1 || port > 65535)
	{
		*why = "its port is not a number from 1 to 65535";
		return false;
	}
	memcpy(addr->host, host, host_len);
	addr->host[host_len] = '\0';
	addr->port = (int) port;
	addr->loopback = pg_strcasecmp(addr->host, "localhost") == 0 ||
		strncmp(addr->host, "127.", 4) == 0 || strcmp(addr->host, "::1") == 0;
	return true;
}

#ifndef FRONTEND

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/varlena.h"

#include "cluster.h"

/* Is the endpoint listed in cluster.worker_listen (spelled the same)? */
static bool
listed(const char *endpoint)
{
	char	   *copy = pstrdup(cluster_worker_listen ? cluster_worker_listen : "");
	List	   *entries;
	ListCell   *lc;
	bool		found = false;

	if (!SplitGUCList(copy, ',', &entries))
		return false;
	foreach(lc, entries)
		if (pg_strcasecmp(lfirst(lc), endpoint) == 0)
			found = true;
	list_free(entries);
	pfree(copy);
	return found;
}

/* May a leader listen at the endpoint now?  Fills addr when it may. */
bool
listen_allowed(const char *endpoint, ListenAddress *addr, const char **why)
{
	if (!listen_parse(endpoint, addr, why))
		return false;
	if (!listed(endpoint))
	{
		*why = "it is not in cluster.worker_listen";
		return false;
	}
	if (!addr->loopback && (cluster_listen_cert_file == NULL || cluster_listen_cert_file[0] == '\0'))
	{
		*why = "it is off the loopback interface and cluster.listen_cert_file is not set (tokens would cross the network in clear)";
		return false;
	}
	return true;
}

/* May "entry" stand in cluster.worker_listen?  Only a host:port may. */
bool
listen_entry_valid(const char *entry, const char **why)
{
	ListenAddress addr;
	const char *parse_why;

	if (listen_parse(entry, &addr, &parse_why))
		return true;
	*why = psprintf("not a host:port: %s", parse_why);
	return false;
}

PG_FUNCTION_INFO_V1(cluster_check_listen);

/* cluster._check_listen(listen text): for create_ and alter_coordinator */
Datum
cluster_check_listen(PG_FUNCTION_ARGS)
{
	const char *endpoint = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ListenAddress addr;
	const char *why;

	if (!listen_allowed(endpoint, &addr, &why))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("a leader may not listen at \"%s\"", endpoint),
				 errdetail("It is refused because %s (cluster.worker_listen is \"%s\").",
						   why, cluster_worker_listen ? cluster_worker_listen : ""),
				 errhint("A superuser can allow it in cluster.worker_listen, with cluster.listen_cert_file and cluster.listen_key_file for an address off the loopback interface.")));
	PG_RETURN_VOID();
}

#endif							/* !FRONTEND */
