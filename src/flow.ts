/**
 * Inbound flow control, one rule for every queue of messages from a peer (a handler's mailbox, inline or in a
 * worker, and a client's unread pushes): when `highWater` messages wait, the socket is no longer read; once they are
 * down to half, it is read again. What the peer sends meanwhile waits in socket buffers, not in the heap.
 */

/** What reads the socket (a middle-man, or whatever stands for it). */
export interface Reader {
  pauseReading(): void;
  resumeReading(): void;
}

/**
 * The gate. Extend it (the server's mailboxes do: an idle connection holds no object more for it) or hold one (the
 * client's channel, whose reader changes with each reconnect).
 */
export class HighWater {
  private paused = false;

  constructor(
    private readonly highWater: number,
    private readonly reader: Reader,
  ) {}

  /** True while the reader is paused by this gate. */
  get readerPaused(): boolean {
    return this.paused;
  }

  /** A message was queued: `waiting` wait now. */
  added(waiting: number): void {
    if (!this.paused && waiting >= this.highWater) {
      this.paused = true;
      this.reader.pauseReading();
    }
  }

  /** Messages were taken: `waiting` are left. */
  taken(waiting: number): void {
    if (this.paused && waiting <= this.highWater >> 1) {
      this.paused = false;
      this.reader.resumeReading();
    }
  }
}
