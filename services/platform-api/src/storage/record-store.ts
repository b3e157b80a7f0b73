// What the platform asks of a database: versioned, sealed resource bodies and blind-index tokens, per
// tenant. Two drivers implement it (SQLite, the embedded default; PostgreSQL, for production) and pass one
// test suite. The database holds ciphertext and HMACs only.

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
   * (AND of ORs), newest first, at most `limit`.
   */
  readonly search: (
    tenantId: string,
    type: string,
    tokenGroups: readonly (readonly Uint8Array[])[],
    limit: number,
  ) => Promise<StoredVersion[]>;
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
];
