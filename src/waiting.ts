/**
 * {@link WaitingIds}: the rpcs of one connection that wait for something (an answer, a time to be taken), by id, in
 * the order they arrived, each with a number of its owner's.
 */

/**
 * Ids in the order they arrived, each with a number (what the owner keeps of it: a flag, a time).
 *
 * The usual case is one at a time: a sequential client, or a handler that answers each rpc as it comes, adds an id and
 * removes it within a message. A `Map` used that way shrinks its table whenever a removal empties it (a new table and
 * a call into V8's runtime, per rpc), so one id is kept in two fields of this object, and a `Map` (which keeps
 * insertion order) is used only while two or more are kept at once (a handler that lets rpcs queue); once none is
 * left, the next one goes to the fields again, and the Map is kept for the next time. A connection that has made one
 * rpc and gone idle holds this object only.
 *
 * Its methods are its subclasses' (the server's answers, the admin port's rpc clock), which keep their rules (an id
 * added only when it is not there, how many may wait) and are what the rest of the server calls; `clear` is public.
 */
export class WaitingIds {
  /** The one id kept, and its number, while `many` is not in use and `one` is true. */
  private oneId = 0;
  private oneValue = 0;
  private one = false;
  /** Every id with its number, oldest first, while two or more are kept (made the first time). */
  private many: Map<number, number> | null = null;
  private spilled = false;

  protected get size(): number {
    if (this.spilled) return (this.many as Map<number, number>).size;
    return this.one ? 1 : 0;
  }

  protected has(id: number): boolean {
    if (this.spilled) return (this.many as Map<number, number>).has(id);
    return this.one && this.oneId === id;
  }

  /** Adds `id` (not there yet: see {@link has}) as the newest, with `value`. */
  protected add(id: number, value: number): void {
    if (this.spilled) {
      (this.many as Map<number, number>).set(id, value);
    } else if (!this.one) {
      this.oneId = id;
      this.oneValue = value;
      this.one = true;
    } else {
      // A second at once: both into the Map, the older first.
      const many = (this.many ??= new Map());
      many.set(this.oneId, this.oneValue);
      many.set(id, value);
      this.one = false;
      this.spilled = true;
    }
  }

  /** The number kept with `id`, or undefined when it is not there. */
  protected get(id: number): number | undefined {
    if (this.spilled) return (this.many as Map<number, number>).get(id);
    return this.one && this.oneId === id ? this.oneValue : undefined;
  }

  /** Changes the number kept with `id`, if it is there (its place stays). */
  protected set(id: number, value: number): void {
    if (this.spilled) {
      const many = this.many as Map<number, number>;
      if (many.has(id)) many.set(id, value);
    } else if (this.one && this.oneId === id) {
      this.oneValue = value;
    }
  }

  /** The oldest id and its number, if any: `fn(id, value)`'s result, else undefined. */
  protected withOldest<R>(fn: (id: number, value: number) => R): R | undefined {
    if (this.spilled) {
      const first = (this.many as Map<number, number>).entries().next();
      return first.done ? undefined : fn(first.value[0], first.value[1]);
    }
    return this.one ? fn(this.oneId, this.oneValue) : undefined;
  }

  /** Removes `id`: the number it had, or undefined when it was not there. */
  protected delete(id: number): number | undefined {
    if (!this.spilled) {
      if (!this.one || this.oneId !== id) return undefined;
      this.one = false;
      return this.oneValue;
    }
    const many = this.many as Map<number, number>;
    const value = many.get(id);
    if (value === undefined) return undefined;
    many.delete(id);
    // None left: the next one goes to the fields.
    if (many.size === 0) this.spilled = false;
    return value;
  }

  /** Removes `id`, if it is there, without its number ({@link delete} gives it: a lookup more in the Map). */
  protected remove(id: number): void {
    if (!this.spilled) {
      if (this.one && this.oneId === id) this.one = false;
      return;
    }
    const many = this.many as Map<number, number>;
    if (many.delete(id) && many.size === 0) this.spilled = false;
  }

  /** Forgets every id (the Map too). */
  clear(): void {
    this.one = false;
    this.many = null;
    this.spilled = false;
  }
}
