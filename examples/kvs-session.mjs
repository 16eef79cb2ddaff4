// The book's lib_chan session as a program. Start the server first: npm start
import { connect, kvsClient } from 'lib-chan';

const ch = await connect('localhost', Number(process.env.CHAN_PORT ?? 1234), 'nameServer', 'ABXy45');
const kvs = kvsClient(ch);
await kvs.store('joe', 'writing a book');
console.log(await kvs.lookup('joe')); // writing a book
console.log(await kvs.lookup('jim')); // undefined
await ch.close();
