// IRC lite, after the chat example of Programming Erlang: named groups that clients join under a nick.
//
//   {join, Group, Nick}   -> ok | {error, nickTaken}     the other members get {joined, Group, Nick}
//   {say, Group, Text}    -> ok | {error, notMember}     every member (the speaker too) gets {msg, Group, Nick, Text}
//   {leave, Group}        -> ok                          the others get {left, Group, Nick}
//   {members, Group}      -> {ok, [Nick, ...]}
//
// A member whose connection ends (closed, crashed, killed) leaves every group it was in, and the others get
// {left, Group, Nick}: the group notices. Groups are any term ({join, lobby, "ann"} and {join, "lobby", "ann"} are
// two groups); nicks are strings. The groups live in the service's state, shared by every connection.
import { atom, isTuple, termKey, tuple } from 'lib-chan';

const OK = atom('ok');

export function start() {
  return { groups: new Map() }; // termKey(group) -> { name, members: Map<nick, mm> }
}

export async function start_me_up(mm, _argsC, _argsS, ctx) {
  const { groups } = ctx.state;
  const mine = new Map(); // termKey(group) -> nick
  const broadcast = (group, message, except) => {
    for (const [, member] of group.members) if (member !== except) member.push(message);
  };
  const leave = (key) => {
    const group = groups.get(key);
    const nick = mine.get(key);
    mine.delete(key);
    if (!group || nick === undefined) return;
    group.members.delete(nick);
    broadcast(group, tuple(atom('left'), group.name, nick));
    if (group.members.size === 0) groups.delete(key);
  };
  try {
    for await (const m of mm) {
      if (m.type === 'chan_closed') return;
      const x = m.data;
      if (isTuple(x, 'join', 3) && typeof x.at(2) === 'string') {
        const key = termKey(x.at(1));
        const group = groups.get(key) ?? { name: x.at(1), members: new Map() };
        const nick = x.at(2);
        if (group.members.has(nick) && group.members.get(nick) !== mm) {
          mm.reply(m, tuple(atom('error'), atom('nickTaken')));
          continue;
        }
        if (mine.has(key)) leave(key);
        groups.set(key, group);
        broadcast(group, tuple(atom('joined'), group.name, nick));
        group.members.set(nick, mm);
        mine.set(key, nick);
        mm.reply(m, OK);
      } else if (isTuple(x, 'say', 3)) {
        const key = termKey(x.at(1));
        const group = groups.get(key);
        if (!group || !mine.has(key)) {
          mm.reply(m, tuple(atom('error'), atom('notMember')));
          continue;
        }
        mm.reply(m, OK);
        broadcast(group, tuple(atom('msg'), group.name, mine.get(key), x.at(2)));
      } else if (isTuple(x, 'leave', 2)) {
        leave(termKey(x.at(1)));
        mm.reply(m, OK);
      } else if (isTuple(x, 'members', 2)) {
        const group = groups.get(termKey(x.at(1)));
        mm.reply(m, tuple(OK, group ? [...group.members.keys()].sort() : []));
      } else if (m.requestId !== undefined) {
        mm.reply(m, tuple(atom('error'), tuple(atom('badRequest'), x)));
      }
    }
  } finally {
    // However the connection ended, its member leaves every group: the others are told.
    for (const key of [...mine.keys()]) leave(key);
  }
}
