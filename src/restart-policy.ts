/**
 * When a failed service is restarted, when it is marked down, and how long a service that is down waits before each
 * try to start it again (OTP's restart intensity, with a back-off for the retries). Pure: the caller gives the time,
 * so the policy is tested with a clock of numbers.
 */

export interface RestartLimits {
  /** Restarts allowed within `restartPeriod` ms; one more failure marks the service down. */
  restartIntensity: number;
  restartPeriod: number;
  /** The wait before the first try to start a service that is down, ms; doubled after each failed try... */
  serviceRetryDelay: number;
  /** ...up to this, ms. */
  serviceRetryMaxDelay: number;
}

/** What to do with a failure: restart (the `restarts`-th within the period), or mark the service down. */
export type FailureDecision = { action: 'restart'; restarts: number } | { action: 'down'; restarts: number };

export class RestartPolicy {
  /** When the restarts within the period happened, oldest first. */
  private readonly restartTimes: number[] = [];
  /** Failed tries since the service went down. */
  private failedTries = 0;

  constructor(private readonly limits: RestartLimits) {}

  /** The service failed at `now` (ms). */
  failed(now: number): FailureDecision {
    const times = this.restartTimes;
    while (times.length > 0 && now - (times[0] as number) > this.limits.restartPeriod) times.shift();
    if (times.length >= this.limits.restartIntensity) return { action: 'down', restarts: times.length };
    times.push(now);
    return { action: 'restart', restarts: times.length };
  }

  /** How long to wait before the next try to start a service that is down: doubled for each try that failed. */
  retryDelay(): number {
    const { serviceRetryDelay, serviceRetryMaxDelay } = this.limits;
    return Math.min(serviceRetryMaxDelay, serviceRetryDelay * 2 ** Math.min(this.failedTries, 30));
  }

  /** A try to start the service again failed. */
  tryFailed(): void {
    this.failedTries++;
  }

  /** Tries that failed since the service went down. */
  get tries(): number {
    return this.failedTries;
  }

  /** The service started again: it has a clean slate. */
  recovered(): void {
    this.restartTimes.length = 0;
    this.failedTries = 0;
  }
}
