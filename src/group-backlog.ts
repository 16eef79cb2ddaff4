/**
 * The group messages waiting on one node:cluster IPC channel, bounded (see {@link GroupBacklog}). Its own module: the
 * primary relays group messages, and loads nothing of the buses' codecs and Redis client to do it.
 */
import { ThrottledLog, type Logger } from './log.js';

/** The cluster IPC message of a publish (JSON on that channel: the payload travels as base64). */
export interface GroupMessage {
  t: 'group';
  origin: string;
  service: string;
  group: string;
  payload: string;
}

/** Bytes of group messages that may wait on one IPC channel; a publish past that is dropped (and logged). */
export const GROUP_BACKLOG_BYTES = 8 * 1024 * 1024;

/**
 * The group publishes waiting on one channel (a process's IPC channel to its primary, the primary's to one process, a
 * server's connection to Redis), held to {@link GROUP_BACKLOG_BYTES}: node:cluster and ioredis queue what a channel
 * cannot take yet without bound, and a client publishing faster than the channel passes it on would grow the sender's
 * memory with it. Publishes are messages, not storage: past the bound they are dropped, as Redis pub/sub drops what a
 * subscriber cannot take. One publish alone always goes, however large (the bound is on what waits behind it), and
 * more than the bound published within one turn of the event loop is past it (a channel takes nothing before the
 * turn ends).
 */
export class GroupBacklog {
  private bytes = 0;
  private readonly dropped: ThrottledLog;
  constructor(
    log: Logger,
    /** Where the channel leads, for the log. */
    private readonly to: string,
  ) {
    this.dropped = new ThrottledLog(log, 'warn');
  }

  /** Bytes waiting on the channel now. */
  get waiting(): number {
    return this.bytes;
  }

  /**
   * Sends a publish of `size` bytes by `send`, whose `done` runs once the channel has taken it (or failed to); or
   * drops it, when it would put more than the bound waiting.
   */
  send(size: number, send: (done: () => void) => void): void {
    if (this.bytes > 0 && this.bytes + size > GROUP_BACKLOG_BYTES) {
      this.dropped.note(
        { waiting: this.bytes, size },
        `a group publish to ${this.to} was dropped: with it, over ${GROUP_BACKLOG_BYTES} bytes of publishes would wait on the channel`,
      );
      return;
    }
    this.bytes += size;
    let settled = false;
    send(() => {
      if (settled) return; // (a channel that calls back twice does not free twice)
      settled = true;
      this.bytes -= size;
    });
  }
}

/** What a group message of the cluster channel counts in its backlog. */
export function groupMessageSize(m: GroupMessage): number {
  return m.payload.length + m.group.length + m.service.length + m.origin.length;
}
