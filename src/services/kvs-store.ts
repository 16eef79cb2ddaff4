/**
 * The book's `kvs`: a key-value store whose keys are any term, compared by value (`{location, joe}` finds what was
 * stored under `{location, joe}`; the atom `joe`, the string "joe" and the binary <<"joe">> are three keys).
 * One store per service, created when the server starts, shared by every connection of that service.
 */
import { Atom, Tuple, type Term } from '../term/model.js';
import { termKey } from '../term/print.js';

const OK = new Atom('ok');
const UNDEFINED = new Atom('undefined');

export class KvsStore {
  private readonly entries = new Map<string, Term>();

  /** `kvs:store(Key, Value)`. */
  store(key: Term, value: Term): void {
    this.entries.set(termKey(key), value);
  }

  /** `kvs:lookup(Key) -> {ok, Value} | undefined`. */
  lookup(key: Term): Tuple | Atom {
    const k = termKey(key);
    return this.entries.has(k) ? new Tuple([OK, this.entries.get(k) as Term]) : UNDEFINED;
  }

  get size(): number {
    return this.entries.size;
  }
}
