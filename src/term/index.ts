/** The term role: the JavaScript model of Erlang terms, and reading and printing Erlang term text. */
export {
  Atom,
  Tuple,
  Float,
  atom,
  tuple,
  float,
  isAtom,
  isTuple,
  isFloat,
  isTermObject,
  type Term,
  type TermObject,
} from './model.js';
export { formatTerm, formatAtom, formatString, termKey, termEquals } from './print.js';
export {
  parseTerm,
  parseTerms,
  parseTermsLocated,
  parseTermsRecovering,
  TermSyntaxError,
  MAX_ATOM_LENGTH,
  MAX_PARSE_DEPTH,
  type Located,
} from './parse.js';
export { termToJson, jsonToTerm, parseJsonTerm, formatJsonTerm, JsonTermError } from './json.js';
