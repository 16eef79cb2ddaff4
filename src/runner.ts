/**
 * How a service runs its handler processes: on the main thread ({@link InlineRunner}) or in worker threads
 * (workers.ts's WorkerPool). Either way a connection attaches and gets a {@link ProcessHandle}, the middle-man's sink
 * for the session.
 */
import type { Account } from './budget.js';
import type { Logger } from './log.js';
import type { MessageSink, MiddleMan } from './mm.js';
import {
  Mailbox,
  type Handler,
  type HandlerExit,
  type HandlerWatcher,
  type MailboxLimits,
  type ServiceContext,
} from './runtime.js';
import type { Term } from './term/model.js';
import { RpcClock, type Observer } from './metrics.js';
import type { ServerSettings } from './config/load.js';

/** What supervising a service needs of the server's settings, and the log level its worker threads use. */
export type SupervisionSettings = Pick<
  ServerSettings,
  | 'restartIntensity'
  | 'restartPeriod'
  | 'serviceRetryDelay'
  | 'serviceRetryMaxDelay'
  | 'startTimeout'
  | 'handlerBlockTimeout'
  | 'mailboxHighWater'
  | 'mailboxHighWaterBytes'
  | 'maxDepth'
  | 'maxFrameSize'
  | 'storeMaxBytes'
> & { logLevel: string /** The store's URL: worker threads open their own. */; storeUrl: string };

/**
 * What a handler process may do with its connection's middle-man: send (encoded here, or already encoded by a worker
 * thread, checked against the client's frame limit), close, pace itself, and stop the reading when full.
 */
export type SessionOutput = Pick<
  MiddleMan,
  | 'send'
  | 'sendEncoded'
  | 'close'
  | 'closed'
  | 'pauseReading'
  | 'resumeReading'
  | 'drain'
  | 'peerMaxFrameSize'
  | 'dialect'
>;

/** One connection's side, as a service's process sees it. */
export interface Attachment {
  mm: SessionOutput;
  id: number;
  peer: string;
  /** Where the connection's logger comes from (made when first asked for). */
  logs: { readonly log: Logger };
  argsC: Term;
  /** Where the connection's queued bytes are counted. */
  account: Account | null;
  /** Who times its rpcs (the admin port's metrics), if anyone. */
  observer?: Observer;
}

/**
 * A handler process, as its connection sees it. It is the middle-man's message sink for the session: the connection
 * hands the middle-man's messages over to it at accept (setController), and only then starts it, so that whatever the
 * handler does first (close, throw) already reaches it as its own end.
 */
export interface ProcessHandle extends MessageSink {
  /** Runs the handler (inline: until its first await; in a worker: posted to the worker). */
  start(): void;
  /** The connection is being cut for holding too much: drop what the handler has not received yet. */
  shed(): void;
  /** Messages from the client that the handler has not received yet. */
  readonly queued: number;
  /** Settles when the handler has returned or thrown (or its worker died). */
  readonly done: Promise<HandlerExit>;
}

/** Starts the handler process of each new connection of a service. */
export interface Runner {
  attach(a: Attachment): ProcessHandle;
}

/** Handler processes on the main thread: a mailbox in front of the middle-man, and the handler's async function. */
export class InlineRunner implements Runner {
  constructor(
    private readonly service: string,
    private readonly handler: Handler,
    /** The service's ArgsS. */
    private readonly args: Term,
    private readonly mailboxLimits: MailboxLimits,
    /** The ctx a handler of this connection gets. */
    private readonly context: (logs: { readonly log: Logger }) => ServiceContext,
    private readonly watcher: HandlerWatcher,
  ) {}

  attach(a: Attachment): ProcessHandle {
    const mailbox = new Mailbox(
      a.mm,
      a.id,
      this.service,
      a.peer,
      a.logs,
      this.mailboxLimits,
      a.account,
      { handler: this.handler, argsC: a.argsC, argsS: this.args, ctx: this.context(a.logs) },
      this.watcher,
    );
    mailbox.clock = RpcClock.for(a.observer, this.service);
    return mailbox;
  }
}
