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
 * The group messages waiting on one IPC channel (a process's to its primary, or the primary's to one process), held
 * to {@link GROUP_BACKLOG_BYTES}: node:cluster queues what a channel cannot take yet without bound, and a client
 * publishing faster than the processes pass it on would grow the sender's memory with it. Publishes are messages, not
 * storage: past the bound they are dropped, as Redis pub/sub drops what a subscriber cannot take.
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

  /** Sends `m` by `send`, whose `done` runs once the channel has taken it; or drops it when the channel holds enough. */
  send(m: GroupMessage, send: (m: GroupMessage, done: () => void) => void): void {
    const size = m.payload.length + m.group.length + m.service.length + m.origin.length;
    if (this.bytes + size > GROUP_BACKLOG_BYTES) {
      this.dropped.note(
        { waiting: this.bytes },
        `a group publish to ${this.to} was dropped: ${GROUP_BACKLOG_BYTES} bytes of them already wait on the channel`,
      );
      return;
    }
    this.bytes += size;
    send(m, () => {
      this.bytes -= size;
    });
  }
}
