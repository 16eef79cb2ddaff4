/**
 * {@link WaitingIds}: the rpcs of one connection that wait for something (an answer, a time to be taken), by id, in
 * the order they arrived, each with a number of its owner's.
 */

/**
 * Ids kept in a short list, scanned; past that many they are kept in a Map until none is left. One rpc at a time (a
 * sequential client) or a handler that answers each as it comes needs one or two.
 */
export const FEW_WAITING = 16;

/**
 * Ids in the order they arrived, each with a number (what the owner keeps of it: a flag, a time). The usual case is
 * one or two at a time, each added and removed within a message or two; a `Map` with one entry added and removed per
 * message shrinks its table whenever a removal empties it (a new table and a call into V8's runtime each time), so up
 * to {@link FEW_WAITING} are kept in two short arrays, scanned. Past that many (a handler that lets rpcs queue), they
 * move into a Map, which keeps insertion order, and back to the arrays once none is left (the Map kept for next time).
 *
 * The caller adds an id only when it is not there ({@link has}); it bounds how many it lets wait.
 */
export class WaitingIds {
  /** While `many` is not in use: the first `few` ids, oldest first, and their numbers (both made with the first id). */
  private ids: number[] | null = null;
  private values: number[] | null = null;
  private few = 0;
  /** Every id with its number, oldest first, while more are kept than the arrays hold. */
  private many: Map<number, number> | null = null;
  private spilled = false;

  get size(): number {
    return this.spilled ? (this.many as Map<number, number>).size : this.few;
  }

  has(id: number): boolean {
    return this.spilled ? (this.many as Map<number, number>).has(id) : this.indexOf(id) >= 0;
  }

  /** Adds `id` (not there yet: see {@link has}) as the newest, with `value`. */
  add(id: number, value: number): void {
    if (this.spilled) {
      (this.many as Map<number, number>).set(id, value);
      return;
    }
    if (this.ids === null) {
      this.ids = new Array<number>(FEW_WAITING).fill(0);
      this.values = new Array<number>(FEW_WAITING).fill(0);
    }
    if (this.few < FEW_WAITING) {
      this.ids[this.few] = id;
      (this.values as number[])[this.few++] = value;
      return;
    }
    // One more than the arrays hold: all of them into the Map, in the same order.
    const many = (this.many ??= new Map());
    for (let i = 0; i < this.few; i++) many.set(this.ids[i] as number, (this.values as number[])[i] as number);
    many.set(id, value);
    this.few = 0;
    this.spilled = true;
  }

  /** The number kept with `id`, or undefined when it is not there. */
  get(id: number): number | undefined {
    if (this.spilled) return (this.many as Map<number, number>).get(id);
    const i = this.indexOf(id);
    return i < 0 ? undefined : (this.values as number[])[i];
  }

  /** Changes the number kept with `id`, if it is there (its place stays). */
  set(id: number, value: number): void {
    if (this.spilled) {
      const many = this.many as Map<number, number>;
      if (many.has(id)) many.set(id, value);
      return;
    }
    const i = this.indexOf(id);
    if (i >= 0) (this.values as number[])[i] = value;
  }

  /** The oldest id, if any. */
  first(): number | undefined {
    if (this.spilled) return (this.many as Map<number, number>).keys().next().value;
    return this.few > 0 ? this.ids?.[0] : undefined;
  }

  /** Removes `id`: the number it had, or undefined when it was not there. */
  delete(id: number): number | undefined {
    if (this.spilled) {
      const many = this.many as Map<number, number>;
      const value = many.get(id);
      if (value === undefined) return undefined;
      many.delete(id);
      // None left: back to the arrays.
      if (many.size === 0) this.spilled = false;
      return value;
    }
    const i = this.indexOf(id);
    if (i < 0) return undefined;
    const ids = this.ids as number[];
    const values = this.values as number[];
    const value = values[i];
    for (let j = i + 1; j < this.few; j++) {
      ids[j - 1] = ids[j] as number;
      values[j - 1] = values[j] as number;
    }
    this.few--;
    return value;
  }

  /** Forgets every id (the Map too). */
  clear(): void {
    this.few = 0;
    this.many = null;
    this.spilled = false;
  }

  /** Where `id` is in the arrays, or -1 (only while the arrays are in use). */
  private indexOf(id: number): number {
    const ids = this.ids;
    for (let i = 0; i < this.few; i++) if ((ids as number[])[i] === id) return i;
    return -1;
  }
}
