/*-------------------------------------------------------------------------
 *
 * allowlist.h
 *	  Which worker addresses the leader may dial (cluster.worker_hosts).
 *
 * A registration makes the database server open a connection to the
 * address it names, so a superuser decides where that may go: the setting
 * is a comma-separated list of IP networks in CIDR form (matched against
 * an address written as an IP literal), host names (matched exactly,
 * without case; "*.example.com" matches every name under example.com), or
 * "*" for anything.  A host name matches only a name entry and an IP only
 * a network entry, so no spelling of an address slips past a network list.
 * Registrations are checked against it, and the leader checks again
 * before it dials, so a tightened setting takes effect at reload.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_ALLOWLIST_H
#define CLUSTER_ALLOWLIST_H

#define ALLOWLIST_MAX_HOST 256

extern bool allowlist_url_host(const char *url, char *host, const char **why);

#ifndef FRONTEND
extern bool allowlist_entry_valid(const char *entry, const char **why);
extern bool allowlist_allows(const char *url, const char **why);
#endif

#endif							/* CLUSTER_ALLOWLIST_H */
