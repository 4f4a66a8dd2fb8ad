/*-------------------------------------------------------------------------
 *
 * listen.h
 *	  Where a coordinator's leader may listen for workers that dial in.
 *
 * A coordinator's "listen" makes the database server open a port, so a
 * superuser decides which: cluster.worker_listen lists the "host:port"
 * endpoints allowed (empty, the default: none).  A token crosses the
 * connection before anything else, so an endpoint off the loopback
 * interface needs a certificate (cluster.listen_cert_file) and serves
 * wss:// only.  create_coordinator / alter_coordinator check an endpoint
 * here, and the leader checks again before it listens, so a tightened
 * setting takes effect at reload.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_LISTEN_H
#define CLUSTER_LISTEN_H

#define LISTEN_MAX_HOST 256

typedef struct ListenAddress
{
	char		host[LISTEN_MAX_HOST];	/* without IPv6 brackets */
	int			port;
	bool		loopback;
} ListenAddress;

extern bool listen_parse(const char *endpoint, ListenAddress *addr, const char **why);

#ifndef FRONTEND
extern bool listen_allowed(const char *endpoint, ListenAddress *addr, const char **why);
extern bool listen_entry_valid(const char *entry, const char **why);
#endif

#endif							/* CLUSTER_LISTEN_H */
