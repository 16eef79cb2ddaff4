/**
 * `memory:`: the book's behaviour. Terms kept as they are, in this process, until it ends; nothing is written anywhere.
 */
import { TermMap } from '../term/hash.js';
import type { Term } from '../term/model.js';
import { ALREADY_COMMITTED, made, type Namespace, type PutResult, type Store } from './store.js';

/** Every put that is stored answers the same: stored, and committed already (nothing is written anywhere). */
const STORED: PutResult = Object.freeze({ stored: true, committed: ALREADY_COMMITTED });

class MemoryNamespace implements Namespace {
  /** Keys compared by value (term/hash.ts), in time proportional to the key however it nests. */
  private readonly entries = new TermMap<Term>();
  private held = 0;

  async get(key: Term): Promise<Term | undefined> {
    return this.getNow(key);
  }

  getNow(key: Term): Term | undefined {
    return this.entries.get(key)?.value;
  }

  async put(key: Term, value: Term, cost: number, maxBytes: number): Promise<PutResult> {
    return this.putNow(key, value, cost, maxBytes);
  }

  putNow(key: Term, value: Term, cost: number, maxBytes: number): PutResult {
    // One lookup: a key stored before has its record changed in place.
    const e = this.entries.get(key);
    const after = this.held - (e?.weight ?? 0) + cost;
    if (after > maxBytes) return { stored: false, wouldHold: after };
    if (e) {
      e.value = value;
      e.weight = cost;
    } else {
      this.entries.set(key, value, cost);
    }
    this.held = after;
    return STORED;
  }

  async delete(key: Term): Promise<boolean> {
    const e = this.entries.get(key);
    if (!e) return false;
    this.held -= e.weight;
    this.entries.delete(key);
    return true;
  }

  get bytes(): number {
    return this.held;
  }

  get size(): number {
    return this.entries.size;
  }
}

export class MemoryStore implements Store {
  readonly description = 'memory:';
  private readonly spaces = new Map<string, MemoryNamespace>();

  async namespace(service: string): Promise<Namespace> {
    return made(this.spaces, service, () => new MemoryNamespace());
  }

  async close(): Promise<void> {
    this.spaces.clear();
  }
}
