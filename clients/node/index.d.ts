// Types of pg-cluster-worker.  The protocol: docs/protocol.md.
import { EventEmitter } from 'node:events';
import type { ClientConfig } from 'pg';

/** One event of a delivery, as the leader sends it. */
export interface ClusterEvent<P = unknown> {
  /** a bigint, as a decimal string: echo it unchanged */
  id: string;
  stream: string;
  key: string | null;
  payload: P;
  headers: unknown | null;
  /** ISO 8601 with offset, or null */
  createdAt: string | null;
  /** this event's try, this one included */
  attempt: number;
}

/** A state patch operation (docs/protocol.md, "State patches"). */
export type PatchOperation =
  | { op: 'set'; path: (string | number)[]; value: unknown }
  | { op: 'remove'; path: (string | number)[] };

/** What handle() returns: nothing (all done), or per-event failures and a patch. */
export interface HandleResult {
  failed?: { eventId: string; error?: string }[];
  patch?: PatchOperation[];
}

export interface HandleContext {
  deliveryId: string;
  fence: number;
  /** the handler's name, from the leader's hello */
  handler: string | null;
  log: Logger;
}

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
}

interface CommonOptions<P> {
  /** Throwing fails the whole delivery with the error's message. */
  handle(events: ClusterEvent<P>[], context: HandleContext): Promise<HandleResult | void> | HandleResult | void;
  /** deliveries handled at once (default 4); up to 4 x more wait, beyond that they fail */
  capacity?: number;
  logger?: Logger;
  /** stop() on SIGTERM and SIGINT */
  handleSignals?: boolean;
}

/** Dial in to a coordinator's leader that listens, with a worker token. */
export interface DialInOptions<P> extends CommonOptions<P> {
  /** ws://host:port/ or wss://host:port/ (cluster.coordinators.listen) */
  connect: string;
  /** from cluster.issue_worker_token() */
  token: string;
  /** with wss://: a CA file's path, or PEM text */
  ca?: string | Buffer;
  listen?: never;
  register?: never;
}

/** Listen, and have the leader dial you: registered over pg, with heartbeats. */
export interface DialOutOptions<P> extends CommonOptions<P> {
  listen: { host?: string; port?: number; secret?: string };
  register: {
    /** connection for cluster.register_worker / worker_heartbeat / unregister_worker */
    pg: ClientConfig | string;
    handler: string;
    /** what the leader dials; default ws://host:port/ */
    address?: string;
    heartbeatMs?: number;
  };
  connect?: never;
  token?: never;
}

export type WorkerOptions<P = unknown> = DialInOptions<P> | DialOutOptions<P>;

export declare class Worker<P = unknown> extends EventEmitter {
  constructor(options: WorkerOptions<P>);
  /** dial in, or listen and register */
  start(): Promise<void>;
  /** finish what is in flight, refuse new deliveries, unregister, close with 1001 */
  stop(): Promise<void>;
  /** dialled: the port listened on */
  readonly port?: number;
  /** dialled: the id cluster.register_worker returned */
  readonly workerId?: string;
  on(event: 'connected' | 'stopped', listener: () => void): this;
  on(event: 'disconnected', listener: (code: number, reason: string) => void): this;
}

export declare function createWorker<P = unknown>(options: WorkerOptions<P>): Worker<P>;
