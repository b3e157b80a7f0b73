// Re-encryption after a data key rotated at the key broker, one batch at a time, for any record owner: a
// tenant (FHIR resources and its audit trail) or the platform itself (accounts and the system audit trail).
import { openRecord, sealRecord, type TenantKeyring } from "./record-crypto.js";
import type { RecordStore, StoredVersion } from "./record-store.js";

export interface ReencryptProgress {
  /** The key generation records are sealed under now. */
  readonly generation: number;
  /** Versions this batch moved. */
  readonly resealed: number;
  /** Versions still sealed under an older generation. */
  readonly remaining: number;
}

/**
 * The search tokens of a current version, from its plaintext, under every generation held (`blindIndexes`):
 * a replica that has not seen the new generation yet must still find it.
 */
export type SearchTokensOf = (version: StoredVersion, plaintext: Buffer) => readonly Uint8Array[];

/**
 * Up to `limit` versions sealed under an older generation are opened, sealed again under the current one
 * (same content, same version, same associated data) and swapped in only if unchanged meanwhile; a current
 * version's search tokens are rebuilt in the same transaction. Reads and writes go on throughout, and a batch
 * can be repeated or run by several replicas at once: each version moves at most once.
 */
export async function reencryptBatch(
  store: RecordStore,
  owner: { readonly tenantId: string; readonly keyring: TenantKeyring },
  limit: number,
  searchTokensOf: SearchTokensOf,
): Promise<ReencryptProgress> {
  const { tenantId, keyring } = owner;
  let resealed = 0;
  for (const { version, current } of await store.staleVersions(tenantId, keyring.generation, limit)) {
    const address = { tenantId, type: version.type, id: version.id, versionId: version.versionId };
    const plaintext = openRecord(keyring, address, version.body);
    const moved = await store.reseal(
      tenantId,
      { ...version, body: sealRecord(keyring, address, plaintext) },
      version.body,
      current ? searchTokensOf(version, plaintext) : undefined,
    );
    resealed += moved ? 1 : 0;
  }
  return {
    generation: keyring.generation,
    resealed,
    remaining: await store.countStaleVersions(tenantId, keyring.generation),
  };
}
