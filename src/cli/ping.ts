/** `chan ping HOST PORT`: is a lib-chan server there? */
import { ping } from '../ping.js';
import type { TlsClientOptions } from '../tls.js';
import { EXIT_OK } from './common.js';

export async function pingCommand(
  host: string,
  port: number,
  tls: TlsClientOptions | undefined,
  timeout: number | undefined,
): Promise<number> {
  const r = await ping(host, port, { ...(tls ? { tls } : {}), ...(timeout === undefined ? {} : { timeout }) });
  process.stdout.write(
    `${host}:${port}: ${r.server}, protocol version ${r.version}, ${r.ms.toFixed(1)} ms${tls ? ' (TLS)' : ''}\n`,
  );
  return EXIT_OK;
}
