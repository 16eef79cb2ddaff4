/**
 * Services as supervised units (OTP's one_for_one, the book's kvs:start() under a supervisor).
 *
 * A service starts once when the server starts (its module's `start(argsS)`); a failure then refuses the whole start,
 * naming the service. Later, a failure of the service's own work (its `ctx.fail(err)`, or the death of one of its
 * worker threads) makes the supervisor restart it: the old state is stopped and a new one started (inline), or the
 * dead worker replaced (worker isolation). More than `restart_intensity` restarts within `restart_period` ms and the
 * service is marked down: new connections to it are refused with `serviceDown`; other services carry on. A service
 * that is down is tried again after `service_retry_delay` ms, doubling after each failed try up to
 * `service_retry_max_delay`, and serves again once a start succeeds. Every start (at server start, at a restart, at a
 * retry) must return within `start_timeout` ms. A handler that crashes is counted, logged and ends its own connection;
 * it does not restart the service (its process is temporary, as in OTP).
 */
import { deadline, startTimedOut } from './deadline.js';
import { ChanError, type CloseReason } from './errors.js';
import type { Logger } from './log.js';
import {
  ModuleError,
  serviceCode,
  serviceLimits,
  workerModule,
  type ServiceCode,
  type ServiceDefinition,
  type ServiceLimits,
} from './modules.js';
import { RestartPolicy } from './restart-policy.js';
import { NO_OBSERVER, type Observer, type ServiceStats } from './metrics.js';

export type { ServiceStats };
import type { Groups, ServiceGroups } from './groups.js';
import type { Namespace, Store } from './store/store.js';
import type { HandlerExit, MailboxLimits, ServiceContext } from './runtime.js';
import { InlineRunner, type Attachment, type ProcessHandle, type Runner, type SupervisionSettings } from './runner.js';
import type { Term } from './term/model.js';
import { WorkerPool } from './workers.js';

/** A handler's ctx: getters on the prototype, so that each connection holds one small object and no closures. */
class HandlerContext implements ServiceContext {
  constructor(
    private readonly owner: Service,
    private readonly logs: { readonly log: Logger },
  ) {}
  get service(): string {
    return this.owner.name;
  }
  get state(): unknown {
    return this.owner.currentState;
  }
  get limits(): ServiceLimits {
    return this.owner.limits;
  }
  get log(): Logger {
    return this.logs.log;
  }
  get store(): Namespace {
    return this.owner.store;
  }
  get groups(): ServiceGroups {
    return this.owner.groups;
  }
}

export class Service {
  readonly name: string;
  readonly module?: string;
  readonly function?: string;
  readonly args: Term;
  readonly isolation: 'inline' | 'worker';
  status: 'up' | 'down' = 'up';
  /** Set when the server begins to shut down: failures are no longer restarted. */
  private shuttingDown = false;
  crashes = 0;
  restarts = 0;
  /** Told of crashes and restarts (the admin port's metrics; nothing unless set). */
  observer: Observer = NO_OBSERVER;
  private state: unknown = undefined;
  private readonly policy: RestartPolicy;
  private restarting = false;
  /** The next try to start the service while it is down. */
  private retryTimer: NodeJS.Timeout | null = null;
  private pool: WorkerPool | null = null;
  private inline: InlineRunner | null = null;
  private readonly log: Logger;
  private readonly mailboxLimits: MailboxLimits;
  /** @internal What the service's code is told of the server's limits. */
  readonly limits: ServiceLimits;

  private constructor(
    def: ServiceDefinition,
    /** The service's functions, for inline isolation (worker threads import their own). */
    private readonly code: ServiceCode | null,
    private readonly settings: SupervisionSettings,
    log: Logger,
    private readonly workers: number,
    /** The service's part of the server's store. */
    readonly store: Namespace,
    /** The service's groups of connections. */
    readonly groups: ServiceGroups,
  ) {
    this.name = def.name;
    if (def.module) this.module = def.module;
    if (def.function) this.function = def.function;
    this.args = def.args ?? null;
    this.isolation = def.isolation ?? 'inline';
    this.log = log.child({ service: def.name });
    this.mailboxLimits = { highWater: settings.mailboxHighWater, highWaterBytes: settings.mailboxHighWaterBytes };
    this.limits = serviceLimits(settings);
    this.policy = new RestartPolicy(settings);
  }

  /** Loads a service's code and starts it. Throws (with the reason) if it cannot start. */
  static async start(
    def: ServiceDefinition,
    codePath: readonly string[],
    settings: SupervisionSettings,
    log: Logger,
    store: Store,
    groups: Groups,
  ): Promise<Service> {
    const namespace = await store.namespace(def.name);
    const serviceGroups = groups.of(def.name);
    if (def.isolation === 'worker') {
      const where = workerModule(def, codePath);
      const service = new Service(def, null, settings, log, def.workers ?? 1, namespace, serviceGroups);
      service.pool = new WorkerPool(service.name, where, service.args, service.workers, settings, service.log, {
        failed: (why) => service.fail(why),
        crashed: (text) => service.crashed(text),
      });
      await service.pool.start();
      service.log.debug({ from: where.from, isolation: service.isolation }, 'service started');
      return service;
    }
    const code = await serviceCode(def, codePath);
    const service = new Service(def, code, settings, log, def.workers ?? 1, namespace, serviceGroups);
    service.state = await service.runStart();
    service.log.debug({ from: code.from, isolation: service.isolation }, 'service started');
    return service;
  }

  /** The module's start, within start_timeout (a start that never returns is abandoned: what it returns later is dropped). */
  private runStart(): Promise<unknown> {
    const ctx = {
      service: this.name,
      log: this.log,
      limits: this.limits,
      store: this.store,
      fail: (err: unknown) => this.fail(err),
    };
    const started = Promise.resolve().then(() => this.code?.start?.(this.args, ctx));
    return deadline(started, this.settings.startTimeout, () => startTimedOut(this.settings.startTimeout));
  }

  stats(): ServiceStats {
    return { status: this.status, crashes: this.crashes, restarts: this.restarts };
  }

  /** Starts the handler process of a new connection. */
  attach(a: Attachment): ProcessHandle {
    return this.runner.attach(a);
  }

  /** Inline, or the worker pool. */
  private get runner(): Runner {
    if (this.pool) return this.pool;
    this.inline ??= new InlineRunner(
      this.name,
      (this.code as ServiceCode).handler,
      this.args,
      this.mailboxLimits,
      (logs) => new HandlerContext(this, logs),
      this,
    );
    return this.inline;
  }

  /** @internal What a handler's ctx.state reads: the state now (a restart replaces it). */
  get currentState(): unknown {
    return this.state;
  }

  /** @internal A handler process has ended. */
  exited(exit: HandlerExit): void {
    if (!exit.ok) this.crashed(exit.text);
  }

  private crashed(text: string): void {
    this.crashes++;
    this.observer.crashed(this.name, text);
  }

  /**
   * The service's own work failed: restart it, unless it has been restarted restart_intensity times within
   * restart_period; then mark it down. `why` is an error or a sentence.
   */
  fail(why: unknown): void {
    if (this.status === 'down' || this.shuttingDown) return;
    const reason = why instanceof Error ? why.message : String(why);
    const decision = this.policy.failed(Date.now());
    if (decision.action === 'down') {
      this.status = 'down';
      this.observer.restarted(this.name, reason, true);
      this.log.error(
        { err: why instanceof Error ? why : undefined, restarts: decision.restarts },
        `service down: it failed again after ${this.settings.restartIntensity} restarts within restart_period (${this.settings.restartPeriod} ms): ${reason}; new connections are refused with serviceDown`,
      );
      // Connections already open (on workers still alive) carry on, as for an inline service.
      this.scheduleRetry();
      return;
    }
    this.restarts++;
    this.observer.restarted(this.name, reason, false);
    this.log.warn(
      { err: why instanceof Error ? why : undefined, restart: decision.restarts },
      `service failed, restarting: ${reason}`,
    );
    if (this.pool) {
      // Each worker that dies is replaced (a restart replaces the ones dead at that moment).
      this.pool.replaceDead().catch((err: unknown) => this.fail(err));
      return;
    }
    if (this.restarting) return;
    this.restarting = true;
    this.restart().then(
      () => (this.restarting = false),
      (err: unknown) => {
        this.restarting = false;
        this.fail(err);
      },
    );
  }

  /** Starts the service anew: inline, its stop and then its start; with workers, fresh workers for the dead ones. */
  private async restart(): Promise<void> {
    if (this.pool) {
      await this.pool.replaceDead();
      return;
    }
    try {
      await this.code?.stop?.(this.state);
    } catch (err) {
      this.log.error({ err }, 'stop failed during a restart');
    }
    this.state = await this.runStart();
  }

  /** A service that is down is tried again later: service_retry_delay, doubled for each try that failed. */
  private scheduleRetry(): void {
    const delay = this.policy.retryDelay();
    this.log.warn(
      { delay, tries: this.policy.tries },
      `service ${this.name} is down: trying to start it again in ${delay} ms`,
    );
    this.retryTimer = setTimeout(() => void this.retry(), delay);
    this.retryTimer.unref();
  }

  private async retry(): Promise<void> {
    this.retryTimer = null;
    if (this.shuttingDown) return;
    try {
      await this.restart();
    } catch (err) {
      this.policy.tryFailed();
      this.log.error(
        { err },
        `service ${this.name} failed to start again: ${err instanceof Error ? err.message : String(err)}`,
      );
      if (!this.shuttingDown) this.scheduleRetry();
      return;
    }
    if (this.shuttingDown) return;
    this.status = 'up';
    this.restarts++;
    this.log.info({ tries: this.policy.tries + 1 }, `service ${this.name} is up again`);
    this.policy.recovered();
  }

  /** Why a new connection cannot have this service, or null. */
  refusal(): { reason: CloseReason; text: string } | null {
    if (this.status === 'down')
      return {
        reason: 'serviceDown',
        text: `service ${this.name} is down after repeated failures; see the server log`,
      };
    return null;
  }

  /** The server is shutting down: from now on failures are not restarted, and a service that is down is not retried. */
  beginShutdown(): void {
    this.shuttingDown = true;
  }

  /** Runs the module's stop (in each worker, for worker isolation), waiting at most `timeout` ms for workers. */
  async stop(timeout: number): Promise<void> {
    this.shuttingDown = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.pool) {
      await this.pool.stop(timeout);
      return;
    }
    try {
      await this.code?.stop?.(this.state);
    } catch (err) {
      this.log.error({ err }, 'service stop failed');
    }
  }
}

/**
 * Starts every service. Throws a `badConfig` ChanError naming each service that cannot start; the ones already
 * started are stopped again first.
 */
export async function startServices(
  defs: readonly ServiceDefinition[],
  codePath: readonly string[],
  settings: SupervisionSettings,
  log: Logger,
  store: Store,
  groups: Groups,
): Promise<Service[]> {
  const problems: string[] = [];
  const started: Service[] = [];
  for (const def of defs) {
    try {
      started.push(await Service.start(def, codePath, settings, log, store, groups));
    } catch (err) {
      problems.push(`service ${def.name}: ${err instanceof Error ? err.message : String(err)}`);
      if (!(err instanceof ModuleError)) log.error({ err, service: def.name }, 'service failed to start');
    }
  }
  if (problems.length > 0) {
    await stopServices(started, 0);
    throw new ChanError('badConfig', `cannot start:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  }
  return started;
}

export async function stopServices(services: readonly Service[], timeout: number): Promise<void> {
  await Promise.all(services.map((s) => s.stop(timeout)));
}
