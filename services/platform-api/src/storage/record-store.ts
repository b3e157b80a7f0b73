// What the platform asks of a database: versioned, sealed resource bodies and blind-index tokens, per
// tenant. Two drivers implement it (SQLite, the embedded default; PostgreSQL, for production) and pass one
// test suite. The database holds ciphertext and HMACs only.
import { sealedKeyGeneration } from "./record-crypto.js";

export interface StoredVersion {
  readonly type: string;
  readonly id: string;
  readonly versionId: number;
  /** ISO 8601 instant. */
  readonly lastUpdated: string;
  readonly deleted: boolean;
  /** The sealed resource (see record-crypto.ts); empty for a deletion. */
  readonly body: Uint8Array;
}

/** A resource_versions row as both drivers read it (SQLite stores `deleted` as 0/1, PostgreSQL as a boolean). */
export interface VersionRow {
  type: string;
  id: string;
  version_id: number;
  last_updated: string;
  deleted: number | boolean;
  body: Buffer;
}

export function toStoredVersion(row: VersionRow): StoredVersion {
  return {
    type: row.type,
    id: row.id,
    versionId: row.version_id,
    lastUpdated: row.last_updated,
    deleted: row.deleted === true || row.deleted === 1,
    body: new Uint8Array(row.body),
  };
}

/** A version sealed under an older key generation than the tenant's current one: work for re-encryption. */
export interface StaleVersion {
  readonly version: StoredVersion;
  /** Whether it is the resource's current version (its search tokens are then rebuilt too). */
  readonly current: boolean;
}

/**
 * The parameters of both drivers' reseal UPDATE, in its order: new body, its key generation, then the row
 * (tenant, type, id, version) and the body it must still have.
 */
export function resealParameters(
  tenantId: string,
  version: StoredVersion,
  expectedBody: Uint8Array,
): [Buffer, number, string, string, string, number, Buffer] {
  return [
    Buffer.from(version.body),
    sealedKeyGeneration(version.body),
    tenantId,
    version.type,
    version.id,
    version.versionId,
    Buffer.from(expectedBody),
  ];
}

/** One version to write: see RecordStore.write. */
export interface VersionWrite {
  readonly version: StoredVersion;
  /** The resource's current version (0 to create). */
  readonly expectedVersionId: number;
  readonly tokens: readonly Uint8Array[];
  /**
   * The tenant the version belongs to, when not the call's: a staff account (one of the platform's own
   * records) is stored with the AuditEvent in its tenant's trail that reports the change.
   */
  readonly tenantId?: string;
}

/** The order of search results, by last update. */
export type SearchOrder = "newest" | "oldest";

export interface RecordStore {
  readonly dialect: "sqlite" | "postgres";
  /** Applies pending migrations; returns the schema version. */
  readonly migrate: () => Promise<number>;
  /**
   * Writes a new version and replaces the resource's index tokens, atomically. `expectedVersionId` is the
   * current version (0 to create); anything else fails with ERR_VERSION_CONFLICT and changes nothing.
   */
  readonly write: (
    tenantId: string,
    version: StoredVersion,
    expectedVersionId: number,
    tokens: readonly Uint8Array[],
  ) => Promise<void>;
  /**
   * Several writes in one transaction: all of them, or none (a record and the AuditEvent that reports it).
   * Any conflict fails the whole with ERR_VERSION_CONFLICT. Each write belongs to `tenantId` unless it names
   * its own.
   */
  readonly writeAll: (tenantId: string, writes: readonly VersionWrite[]) => Promise<void>;
  readonly current: (tenantId: string, type: string, id: string) => Promise<StoredVersion | undefined>;
  readonly version: (
    tenantId: string,
    type: string,
    id: string,
    versionId: number,
  ) => Promise<StoredVersion | undefined>;
  /** Every version, newest first. */
  readonly history: (tenantId: string, type: string, id: string) => Promise<StoredVersion[]>;
  /**
   * Current, not deleted resources of a type that carry, for every group, at least one of its tokens
   * (AND of ORs), newest first (by last update; `order: "oldest"` for oldest first), at most `limit`, after
   * skipping `offset` (a next page).
   */
  readonly search: (
    tenantId: string,
    type: string,
    tokenGroups: readonly (readonly Uint8Array[])[],
    limit: number,
    order?: SearchOrder,
    offset?: number,
  ) => Promise<StoredVersion[]>;
  /** How many current, not deleted resources `search` would find with no limit. */
  readonly count: (
    tenantId: string,
    type: string,
    tokenGroups: readonly (readonly Uint8Array[])[],
  ) => Promise<number>;
  /**
   * Versions (deletions aside) sealed under a key generation below `generation`, in a stable order, at most
   * `limit`: what re-encryption works through, batch by batch.
   */
  readonly staleVersions: (tenantId: string, generation: number, limit: number) => Promise<StaleVersion[]>;
  readonly countStaleVersions: (tenantId: string, generation: number) => Promise<number>;
  /**
   * Replaces one version's sealed body (the same content under another key generation) if it still is
   * `expectedBody`, and, when `tokens` is given and the version is still current, the resource's search
   * tokens, atomically. Returns false (and changes nothing) when the body changed meanwhile.
   */
  readonly reseal: (
    tenantId: string,
    version: StoredVersion,
    expectedBody: Uint8Array,
    tokens: readonly Uint8Array[] | undefined,
  ) => Promise<boolean>;
  readonly close: () => Promise<void>;
}

/** Versioned schema migrations: each runs once, in order, inside a transaction. */
export interface Migration {
  readonly version: number;
  readonly description: string;
  readonly sql: { readonly sqlite: string; readonly postgres: string };
}

export const migrations: readonly Migration[] = [
  {
    version: 1,
    description: "sealed resource versions, current pointers and blind-index tokens",
    sql: {
      sqlite: `
        CREATE TABLE resource_versions (
          tenant_id TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL, version_id INTEGER NOT NULL,
          last_updated TEXT NOT NULL, deleted INTEGER NOT NULL, body BLOB NOT NULL,
          PRIMARY KEY (tenant_id, type, id, version_id)
        );
        CREATE TABLE resources_current (
          tenant_id TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL, version_id INTEGER NOT NULL,
          last_updated TEXT NOT NULL, deleted INTEGER NOT NULL,
          PRIMARY KEY (tenant_id, type, id)
        );
        CREATE TABLE search_tokens (
          tenant_id TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL, token BLOB NOT NULL,
          PRIMARY KEY (tenant_id, type, id, token)
        );
        CREATE INDEX search_tokens_lookup ON search_tokens (tenant_id, type, token);`,
      postgres: `
        CREATE TABLE resource_versions (
          tenant_id TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL, version_id INTEGER NOT NULL,
          last_updated TEXT NOT NULL, deleted BOOLEAN NOT NULL, body BYTEA NOT NULL,
          PRIMARY KEY (tenant_id, type, id, version_id)
        );
        CREATE TABLE resources_current (
          tenant_id TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL, version_id INTEGER NOT NULL,
          last_updated TEXT NOT NULL, deleted BOOLEAN NOT NULL,
          PRIMARY KEY (tenant_id, type, id)
        );
        CREATE TABLE search_tokens (
          tenant_id TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL, token BYTEA NOT NULL,
          PRIMARY KEY (tenant_id, type, id, token)
        );
        CREATE INDEX search_tokens_lookup ON search_tokens (tenant_id, type, token);`,
    },
  },
  {
    version: 2,
    description: "the data key generation each version is sealed under, for re-encryption after rotation",
    sql: {
      // Every body before this migration is in sealed format 1: the data key's first version.
      sqlite: `
        ALTER TABLE resource_versions ADD COLUMN key_generation INTEGER NOT NULL DEFAULT 1;
        UPDATE resource_versions SET key_generation = 0 WHERE deleted = 1;
        CREATE INDEX resource_versions_key_generation ON resource_versions (tenant_id, key_generation);`,
      postgres: `
        ALTER TABLE resource_versions ADD COLUMN key_generation BIGINT NOT NULL DEFAULT 1;
        UPDATE resource_versions SET key_generation = 0 WHERE deleted;
        CREATE INDEX resource_versions_key_generation ON resource_versions (tenant_id, key_generation);`,
    },
  },
];
