/*-------------------------------------------------------------------------
 *
 * tokens.h
 *	  The tokens a listening leader accepts from workers that dial in.
 *
 * The leader loads the valid tokens of its coordinator's handlers with its
 * workers (tokens_load, in its transaction, SPI connected); the transport
 * checks each upgrade request's bearer token against them (tokens_match,
 * from an lws callback: no SQL, no error).  Only SHA-256 digests are held,
 * computed through PostgreSQL's cryptohash, as cluster.worker_token stores
 * them; a token past its expiry stops matching before the next load.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_TOKENS_H
#define CLUSTER_TOKENS_H

#include "common/sha2.h"
#include "datatype/timestamp.h"

#define TOKEN_MAX_LEN 256		/* longer bearer tokens are not even hashed */

typedef struct WorkerToken
{
	char		id[65];			/* the worker's id in cluster.workers */
	int32		handler_id;
	int			capacity;
	TimestampTz expires_at;		/* 0: never */
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
} WorkerToken;

extern void tokens_load(int32 coordinator_id);
extern const WorkerToken *tokens_match(const char *token);
extern const WorkerToken *tokens_find(const char *id);
extern void tokens_forget(void);

#endif							/* CLUSTER_TOKENS_H */
