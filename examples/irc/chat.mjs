// A terminal chat client for the irc example: node examples/irc/chat.mjs NICK GROUP [PORT]
// Lines you type are said to the group; what the group says is printed as it comes. Ctrl-D leaves.
import { createInterface } from 'node:readline';
import { atom, connect, formatTerm, isTuple, tuple } from 'lib-chan';

const [nick, groupName, port = process.env.CHAN_PORT ?? '1234'] = process.argv.slice(2);
if (!nick || !groupName) {
  console.error('usage: node examples/irc/chat.mjs NICK GROUP [PORT]');
  process.exit(2);
}
const group = atom(groupName);
const ch = await connect('localhost', Number(port), 'irc', null);
const joined = await ch.rpc(tuple(atom('join'), group, nick));
if (!isTuple(joined) && formatTerm(joined) !== 'ok') throw new Error(formatTerm(joined));
if (isTuple(joined, 'error')) {
  console.error(`chat: ${formatTerm(joined)}`);
  process.exit(1);
}
console.log(
  `joined ${groupName} as ${nick}; members: ${formatTerm((await ch.rpc(tuple(atom('members'), group))).at(1))}`,
);

void (async () => {
  for await (const x of ch) {
    if (isTuple(x, 'msg', 4)) console.log(`[${x.at(1)}] ${x.at(2)}: ${x.at(3)}`);
    else if (isTuple(x, 'joined', 3)) console.log(`[${x.at(1)}] ${x.at(2)} joined`);
    else if (isTuple(x, 'left', 3)) console.log(`[${x.at(1)}] ${x.at(2)} left`);
  }
})();

for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() !== '') await ch.rpc(tuple(atom('say'), group, line));
}
await ch.rpc(tuple(atom('leave'), group));
await ch.close();
