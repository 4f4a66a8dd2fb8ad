/*-------------------------------------------------------------------------
 *
 * wire.h
 *	  The protocol's constants, shared by the leader and cluster-worker.
 *
 * Plain C, no PostgreSQL header: worker/ includes it too.  What a message
 * looks like is in docs/protocol.md and, for the leader, in protocol.c,
 * the one module that knows the field names.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_WIRE_H
#define CLUSTER_WIRE_H

#define PROTOCOL_VERSION 1

/* a larger message closes the connection with 1009 */
#define PROTOCOL_MAX_MESSAGE (16 * 1024 * 1024)
#define PROTOCOL_MAX_DELIVERY_ID 64

/*
 * Bounds on what a worker may send, checked before anything is built from
 * it: a message nested deeper than PROTOCOL_MAX_DEPTH is refused before it
 * is parsed (the parser recurses), a patch may have PROTOCOL_MAX_PATCH_OPS
 * operations with paths of PROTOCOL_MAX_PATH_DEPTH keys, and an error text
 * is cut to PROTOCOL_MAX_ERROR bytes (at a character boundary).
 */
#define PROTOCOL_MAX_DEPTH 64
#define PROTOCOL_MAX_PATCH_OPS 1000
#define PROTOCOL_MAX_PATH_DEPTH 32
#define PROTOCOL_MAX_ERROR 1024

/*
 * What a worker may make the leader do: queue at most PROTOCOL_MAX_QUEUED
 * messages to it (pings answered faster than it reads are a violation),
 * and log PROTOCOL_MAX_WARNINGS warnings per connection about it.
 */
#define PROTOCOL_MAX_QUEUED 64
#define PROTOCOL_MAX_WARNINGS 10

#endif							/* CLUSTER_WIRE_H */
