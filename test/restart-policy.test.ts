import test from 'ava';
import { RestartPolicy } from '../src/restart-policy.js';

const LIMITS = { restartIntensity: 3, restartPeriod: 1000, serviceRetryDelay: 100, serviceRetryMaxDelay: 1000 };

test('restart_intensity failures within restart_period are restarted; one more marks the service down', (t) => {
  const p = new RestartPolicy(LIMITS);
  t.deepEqual(p.failed(0), { action: 'restart', restarts: 1 });
  t.deepEqual(p.failed(10), { action: 'restart', restarts: 2 });
  t.deepEqual(p.failed(20), { action: 'restart', restarts: 3 });
  t.deepEqual(p.failed(30), { action: 'down', restarts: 3 });
});

test('restarts older than restart_period no longer count', (t) => {
  const p = new RestartPolicy(LIMITS);
  p.failed(0);
  p.failed(500);
  p.failed(900);
  // At 1001 the restart at 0 is 1001 ms old: outside the period, so this failure is a third restart, not a fourth.
  t.deepEqual(p.failed(1001), { action: 'restart', restarts: 3 });
  t.deepEqual(p.failed(1002), { action: 'down', restarts: 3 });
  // Far later, only what happened within the period counts.
  t.deepEqual(p.failed(5000), { action: 'restart', restarts: 1 });
});

test('a service that is down is retried after service_retry_delay, doubling per failed try up to the maximum', (t) => {
  const p = new RestartPolicy(LIMITS);
  const delays: number[] = [];
  for (let i = 0; i < 6; i++) {
    delays.push(p.retryDelay());
    p.tryFailed();
  }
  t.deepEqual(delays, [100, 200, 400, 800, 1000, 1000]);
  t.is(p.tries, 6);
});

test('a service that starts again has a clean slate: full intensity, and the first retry delay again', (t) => {
  const p = new RestartPolicy(LIMITS);
  for (let i = 0; i < 3; i++) p.failed(i);
  t.is(p.failed(3).action, 'down');
  p.tryFailed();
  p.tryFailed();
  p.recovered();
  t.is(p.retryDelay(), 100);
  t.deepEqual(p.failed(4), { action: 'restart', restarts: 1 });
});

test('a huge number of failed tries does not overflow the delay', (t) => {
  const p = new RestartPolicy({ ...LIMITS, serviceRetryMaxDelay: 300_000 });
  for (let i = 0; i < 5000; i++) p.tryFailed();
  t.is(p.retryDelay(), 300_000);
});
