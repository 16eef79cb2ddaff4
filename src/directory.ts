/**
 * What the handshake reads of each service: its name, the verifier its clients must prove they know the secret of
 * (or none), allow_cn, and why it refuses connections now (it is down). A directory is never changed: SIGHUP builds a
 * new one and the server swaps it whole, so a handshake sees one configuration from its start to its end.
 */
import type { ScramVerifier } from './auth/scram.js';
import { ChanError } from './errors.js';
import type { ServiceAuth } from './handshake.js';
import { verifierFor, type ServiceDefinition } from './modules.js';
import type { Service } from './supervisor.js';

/** A service as a handshake starting now sees it, and the running service an accepted connection attaches to. */
export interface DirectoryEntry extends ServiceAuth {
  readonly verifier: ScramVerifier | null;
  /** The plaintext secret the verifier was made from (null with a stored verifier, or none): to keep it on reload. */
  readonly secret: string | null;
  readonly service: Service;
}

export class ServiceDirectory {
  private constructor(private readonly entries: ReadonlyMap<string, DirectoryEntry>) {}

  /**
   * A directory of `defs`, for the services running (a definition of none of them is left out: a reload cannot add
   * one). A plaintext secret unchanged since `previous` keeps its verifier (its salt): clients' salted-password caches
   * hold.
   */
  static async build(
    defs: readonly ServiceDefinition[],
    running: ReadonlyMap<string, Service>,
    previous?: ServiceDirectory,
  ): Promise<ServiceDirectory> {
    const entries = new Map<string, DirectoryEntry>();
    const problems: string[] = [];
    for (const def of defs) {
      const service = running.get(def.name);
      if (!service) continue;
      const before = previous?.entries.get(def.name);
      const sameSecret = !def.verifier && def.secret !== null && def.secret === before?.secret;
      let verifier: ScramVerifier | null;
      try {
        verifier = sameSecret && before ? before.verifier : await verifierFor(def);
      } catch (err) {
        problems.push(`service ${def.name}: ${err instanceof Error ? err.message : String(err)}`);
        continue;
      }
      entries.set(def.name, {
        name: def.name,
        verifier,
        secret: def.verifier ? null : def.secret,
        ...(def.allowCn ? { allowCn: def.allowCn } : {}),
        refusal: () => service.refusal(),
        service,
      });
    }
    // A secret given in code that cannot be prepared (a config file's were checked as it was read).
    if (problems.length > 0)
      throw new ChanError('badConfig', `cannot start:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    return new ServiceDirectory(entries);
  }

  get(name: string): DirectoryEntry | undefined {
    return this.entries.get(name);
  }
}
