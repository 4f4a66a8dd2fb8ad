/*-------------------------------------------------------------------------
 *
 * allowlist.c
 *	  Which worker addresses the leader may dial (cluster.worker_hosts).
 *
 * Networks are parsed by PostgreSQL's own inet parser, IP literals of an
 * address by the C library's inet_pton.
 *
 *-------------------------------------------------------------------------
 */
#ifdef FRONTEND
#include "postgres_fe.h"
#else
#include "postgres.h"
#endif

#include <arpa/inet.h>

#include "allowlist.h"

#define MAX_HOST ALLOWLIST_MAX_HOST

/*
 * The host of a ws:// or wss:// URL, lower case, without brackets; the
 * parser of what a registering role sends (fuzzed by test/fuzz, which
 * builds only this part, with FRONTEND).
 */
bool
allowlist_url_host(const char *url, char *host, const char **why)
{
	const char *start = strstr(url, "://");
	const char *end;
	size_t		len;

	if (start == NULL || (strncmp(url, "ws://", 5) != 0 && strncmp(url, "wss://", 6) != 0))
	{
		*why = "it is not a ws:// or wss:// URL";
		return false;
	}
	start += 3;
	end = start + strcspn(start, "/?#");
	if (memchr(start, '@', end - start))
	{
		*why = "it has user information before the host";
		return false;
	}
	if (*start == '[')
	{
		const char *close = memchr(start, ']', end - start);

		if (close == NULL)
		{
			*why = "its IPv6 address has no closing bracket";
			return false;
		}
		start++;
		end = close;
	}
	else
	{
		const char *colon = memchr(start, ':', end - start);

		if (colon)
			end = colon;
	}
	len = end - start;
	if (len == 0 || len >= MAX_HOST)
	{
		*why = "its host is empty or too long";
		return false;
	}
	for (size_t i = 0; i < len; i++)
		host[i] = pg_tolower((unsigned char) start[i]);
	host[len] = '\0';
	return true;
}

#ifndef FRONTEND

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/varlena.h"

#include "cluster.h"

typedef struct Network
{
	int			family;			/* PGSQL_AF_INET or PGSQL_AF_INET6 */
	int			bits;
	unsigned char addr[16];
} Network;

static bool
parse_network(const char *entry, Network *net)
{
	net->family = PGSQL_AF_INET;
	net->bits = pg_inet_net_pton(PGSQL_AF_INET, entry, net->addr, -1);
	if (net->bits < 0)
	{
		net->family = PGSQL_AF_INET6;
		net->bits = pg_inet_net_pton(PGSQL_AF_INET6, entry, net->addr, -1);
	}
	return net->bits >= 0;
}

static bool
valid_name(const char *entry)
{
	const char *rest = strncmp(entry, "*.", 2) == 0 ? entry + 2 : entry;

	return *rest != '\0' && strlen(entry) < MAX_HOST &&
		strspn(rest, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") == strlen(rest);
}

/* May "entry" stand in cluster.worker_hosts: "*", a network or a host name? */
bool
allowlist_entry_valid(const char *entry, const char **why)
{
	Network		net;

	if (strcmp(entry, "*") == 0 || parse_network(entry, &net) || valid_name(entry))
		return true;
	*why = "neither a network nor a host name";
	return false;
}

static bool
in_network(const char *host, Network *net)
{
	unsigned char addr[16];
	int			full;

	if (inet_pton(net->family == PGSQL_AF_INET ? AF_INET : AF_INET6, host, addr) != 1)
		return false;
	full = net->bits / 8;
	if (memcmp(addr, net->addr, full) != 0)
		return false;
	if (net->bits % 8 == 0)
		return true;
	return ((addr[full] ^ net->addr[full]) & (0xff << (8 - net->bits % 8))) == 0;
}

static bool
name_matches(const char *host, const char *entry)
{
	size_t		hl = strlen(host),
				el = strlen(entry);

	if (strncmp(entry, "*.", 2) == 0)
		return hl > el - 1 && pg_strcasecmp(host + hl - (el - 1), entry + 1) == 0;
	return pg_strcasecmp(host, entry) == 0;
}

static bool
is_ip_literal(const char *host)
{
	unsigned char addr[16];

	return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

/* May the leader dial "url"?  If not, *why says why. */
bool
allowlist_allows(const char *url, const char **why)
{
	char		host[MAX_HOST];
	char	   *copy;
	List	   *entries;
	ListCell   *lc;
	bool		ip;

	if (!allowlist_url_host(url, host, why))
		return false;
	ip = is_ip_literal(host);
	copy = pstrdup(cluster_worker_hosts);
	if (!SplitGUCList(copy, ',', &entries))
		entries = NIL;
	foreach(lc, entries)
	{
		const char *entry = lfirst(lc);
		Network		net;

		if (strcmp(entry, "*") == 0)
			return true;
		if (parse_network(entry, &net))
		{
			if (ip && in_network(host, &net))
				return true;
		}
		else if (!ip && name_matches(host, entry))
			return true;
	}
	*why = "its host is not in cluster.worker_hosts";
	return false;
}

PG_FUNCTION_INFO_V1(cluster_worker_address_allowed);

/* cluster._worker_address_allowed(address text): for the views */
Datum
cluster_worker_address_allowed(PG_FUNCTION_ARGS)
{
	const char *why;

	PG_RETURN_BOOL(allowlist_allows(text_to_cstring(PG_GETARG_TEXT_PP(0)), &why));
}

PG_FUNCTION_INFO_V1(cluster_check_worker_address);

/* cluster._check_worker_address(address text): for registrations */
Datum
cluster_check_worker_address(PG_FUNCTION_ARGS)
{
	const char *url = text_to_cstring(PG_GETARG_TEXT_PP(0));
	const char *why;

	if (!allowlist_allows(url, &why))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("the leader may not dial worker address \"%s\"", url),
				 errdetail("It is refused because %s (now \"%s\").", why, cluster_worker_hosts),
				 errhint("A superuser can allow it in cluster.worker_hosts.")));
	PG_RETURN_VOID();
}

#endif							/* !FRONTEND */
