/** `chan serve [CONF]`: runs a server on a config file until SIGINT or SIGTERM. */
import { ConfigError, loadConfigFile } from '../config/load.js';
import { createLogger } from '../log.js';
import { startServer } from '../server.js';

export const DEFAULT_CONF = 'conf/lib_chan.conf';

export async function serve(confArg: string | undefined): Promise<number> {
  const file = confArg ?? process.env['CHAN_CONF'] ?? DEFAULT_CONF;
  const config = loadConfigFile(file); // a ConfigError becomes "chan: badConfig: ..." and exit 2
  const log = createLogger({ level: config.logLevel });
  log.info({ config: file }, 'lib-chan starting');
  const server = await startServer(config, { logger: log });
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        log.warn({ signal }, 'second signal: exiting at once');
        resolve(1);
        return;
      }
      stopping = true;
      log.info({ signal }, 'shutting down');
      void server.close().then(() => resolve(0));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    process.on('SIGHUP', () => {
      // New secrets, verifiers and certificates for new connections; a broken file changes nothing.
      let next;
      try {
        next = loadConfigFile(file);
      } catch (err) {
        const problems = err instanceof ConfigError ? err.problems.map(String) : [String(err)];
        log.error({ problems }, 'reload refused: the configuration has problems; the running settings stay');
        return;
      }
      server.reload(next).then(
        (notApplied) => {
          for (const n of notApplied) log.warn(`not applied until a restart: ${n}`);
        },
        (err: unknown) => log.error({ err }, 'reload failed; the running settings stay'),
      );
    });
  });
}
