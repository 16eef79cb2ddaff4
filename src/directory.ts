/**
 * What the handshake reads of each service: its name, the verifier its clients must prove they know the secret of
 * (or none), allow_cn, and why it refuses connections now (it is down). A directory is never changed: SIGHUP builds a
 * new one and the server swaps it whole, so a handshake sees one configuration from its start to its end.
 */
import type { ScramVerifier } from './auth/scram.js';
import type { CloseReason } from './errors.js';
import type { ServiceAuth } from './handshake.js';
import { verifierFor, type ServiceDefinition } from './modules.js';

interface Entry extends ServiceAuth {
  readonly verifier: ScramVerifier | null;
  /** The plaintext secret the verifier was made from (null with a stored verifier, or none): to keep it on reload. */
  readonly secret: string | null;
}

/** Why a running service refuses new connections now, or null. */
export type Refusal = () => { reason: CloseReason; text: string } | null;

export class ServiceDirectory {
  private constructor(private readonly entries: ReadonlyMap<string, Entry>) {}

  /**
   * A directory of `defs`, for the running services that `refusal` knows (a definition it does not know is left out).
   * A plaintext secret unchanged since `previous` keeps its verifier (its salt): clients' salted-password caches hold.
   */
  static async build(
    defs: readonly ServiceDefinition[],
    refusal: (name: string) => Refusal | undefined,
    previous?: ServiceDirectory,
  ): Promise<ServiceDirectory> {
    const entries = new Map<string, Entry>();
    for (const def of defs) {
      const refuses = refusal(def.name);
      if (!refuses) continue;
      const before = previous?.entries.get(def.name);
      const sameSecret = !def.verifier && def.secret !== null && def.secret === before?.secret;
      const verifier = sameSecret && before ? before.verifier : await verifierFor(def);
      entries.set(def.name, {
        name: def.name,
        verifier,
        secret: def.verifier ? null : def.secret,
        ...(def.allowCn ? { allowCn: def.allowCn } : {}),
        refusal: refuses,
      });
    }
    return new ServiceDirectory(entries);
  }

  get(name: string): ServiceAuth | undefined {
    return this.entries.get(name);
  }
}
