// IRC lite, after the chat example of Programming Erlang, on lib-chan's groups: named groups that clients join under
// a nick, whose messages reach every member wherever it is connected (another process of the server, another server
// sharing its Redis store).
//
//   {join, Group, Nick}   -> ok | {error, nickTaken}     the other members get {joined, Group, Nick}
//                            | {error, tooManyGroups}  past MAX_GROUPS groups on one connection
//   {say, Group, Text}    -> ok | {error, notMember}     every member (the speaker too) gets {msg, Group, Nick, Text}
//   {leave, Group}        -> ok                          the others get {left, Group, Nick}
//   {members, Group}      -> {ok, [Nick, ...]}           the members connected to this server process
//
// A member whose connection ends (closed, crashed, killed) leaves every group it was in (ctx.groups forgets it), and
// the others get {left, Group, Nick}. Groups are any term ({join, lobby, "ann"} and {join, "lobby", "ann"} are two
// groups); nicks are strings. Nicks are checked against the members of this process: two servers each know their own.
import { atom, isTuple, termKey, tuple } from 'lib-chan';

const OK = atom('ok');
/** Groups one connection may be in at once: a client cannot make the server hold groups without bound. */
export const MAX_GROUPS = 64;

export function start() {
  return { nicks: new Map() }; // termKey(group) -> Map<nick, mm>: this process's members
}

export async function start_me_up(mm, _argsC, _argsS, ctx) {
  const { nicks } = ctx.state;
  const mine = new Map(); // termKey(group) -> { group, nick }
  const leave = (key) => {
    const joined = mine.get(key);
    if (!joined) return;
    mine.delete(key);
    ctx.groups.leave(joined.group, mm);
    const here = nicks.get(key);
    here?.delete(joined.nick);
    if (here?.size === 0) nicks.delete(key);
    ctx.groups.publish(joined.group, tuple(atom('left'), joined.group, joined.nick));
  };
  try {
    for await (const m of mm) {
      if (m.type === 'chan_closed') return;
      const x = m.data;
      if (isTuple(x, 'join', 3) && typeof x.at(2) === 'string') {
        const group = x.at(1);
        const nick = x.at(2);
        const key = termKey(group);
        const here = nicks.get(key) ?? new Map();
        if (here.has(nick) && here.get(nick) !== mm) {
          mm.reply(m, tuple(atom('error'), atom('nickTaken')));
          continue;
        }
        if (!mine.has(key) && mine.size >= MAX_GROUPS) {
          mm.reply(m, tuple(atom('error'), atom('tooManyGroups')));
          continue;
        }
        if (mine.has(key)) leave(key);
        ctx.groups.publish(group, tuple(atom('joined'), group, nick));
        ctx.groups.join(group, mm);
        here.set(nick, mm);
        nicks.set(key, here);
        mine.set(key, { group, nick });
        mm.reply(m, OK);
      } else if (isTuple(x, 'say', 3)) {
        const joined = mine.get(termKey(x.at(1)));
        if (!joined) {
          mm.reply(m, tuple(atom('error'), atom('notMember')));
          continue;
        }
        mm.reply(m, OK);
        ctx.groups.publish(joined.group, tuple(atom('msg'), joined.group, joined.nick, x.at(2)));
      } else if (isTuple(x, 'leave', 2)) {
        leave(termKey(x.at(1)));
        mm.reply(m, OK);
      } else if (isTuple(x, 'members', 2)) {
        const here = nicks.get(termKey(x.at(1)));
        mm.reply(m, tuple(OK, here ? [...here.keys()].sort() : []));
      } else if (m.requestId !== undefined) {
        mm.reply(m, tuple(atom('error'), tuple(atom('badRequest'), x)));
      }
    }
  } finally {
    // However the connection ended, its member leaves every group: the others are told.
    for (const key of [...mine.keys()]) leave(key);
  }
}
