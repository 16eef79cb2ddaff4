/**
 * `node dist/bench/waiting.js`: what keeping the rpcs that wait for an answer costs per rpc (src/waiting.ts, as the
 * server's RpcAnswers uses it: arrived, taken, the oldest received, answered), against a `Map` of id to flag used the
 * same way (what the server used before), in the same run. One rpc waiting at a time (a sequential client, or a
 * handler that answers each as it comes) and 64 (a handler that lets a pipelining client's rpcs queue).
 *
 *   npm run build && node dist/bench/waiting.js [--rounds 5]
 */
import { parseArgs } from 'node:util';
import { RpcAnswers } from '../src/session.js';
import { median } from './common.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' } } });
const rounds = Number(values.rounds);
const RPCS = 2_000_000;

interface Record {
  arrived(id: number): string | null;
  taken(id: number): void;
  oldestReceived(): number | undefined;
  answered(id: number): void;
}

/** The same rules over a Map of id to "received": the way the server kept them before. */
class MapRecord implements Record {
  private readonly waiting = new Map<number, boolean>();
  arrived(id: number): string | null {
    if (this.waiting.has(id)) return 'already waiting';
    this.waiting.set(id, false);
    return null;
  }
  taken(id: number): void {
    if (this.waiting.get(id) === false) this.waiting.set(id, true);
  }
  oldestReceived(): number | undefined {
    const first = this.waiting.entries().next();
    return !first.done && first.value[1] ? first.value[0] : undefined;
  }
  answered(id: number): void {
    this.waiting.delete(id);
  }
}

/** ns per rpc: each arrives, and once `inFlight` wait, the oldest is taken and answered. */
function run(record: Record, inFlight: number): number {
  const queue: number[] = [];
  let id = 0;
  const started = process.hrtime.bigint();
  for (let i = 0; i < RPCS; i++) {
    record.arrived(++id);
    queue.push(id);
    if (queue.length >= inFlight) {
      record.taken(queue.shift() as number);
      const oldest = record.oldestReceived();
      if (oldest !== undefined) record.answered(oldest);
    }
  }
  return Number(process.hrtime.bigint() - started) / RPCS;
}

const rows: string[] = [];
for (const inFlight of [1, 64]) {
  const ours: number[] = [];
  const map: number[] = [];
  for (let r = 0; r < rounds; r++) {
    ours.push(run(new RpcAnswers(), inFlight));
    map.push(run(new MapRecord(), inFlight));
  }
  const o = median(ours);
  const m = median(map);
  rows.push(`| ${inFlight} | ${o.toFixed(1)} | ${m.toFixed(1)} | ${(m / o).toFixed(2)} |`);
}
console.log(`Node ${process.version}; ${rounds} rounds of ${RPCS} rpcs, alternating, medians\n`);
console.log('| rpcs waiting | RpcAnswers ns/rpc | Map ns/rpc | Map / RpcAnswers |');
console.log('| ---: | ---: | ---: | ---: |');
for (const row of rows) console.log(row);
