// The production driver: PostgreSQL through node-postgres, every write in one transaction with the
// current row locked, migrations serialised by an advisory lock.
import pg from "pg";
import { PlatformError } from "../errors.js";
import { sealedKeyGeneration } from "./record-crypto.js";
import {
  migrations,
  resealParameters,
  toStoredVersion as toVersion,
  type RecordStore,
  type StoredVersion,
  type VersionRow,
  type VersionWrite,
} from "./record-store.js";

function storageFailure(cause: unknown): PlatformError {
  if (cause instanceof PlatformError) {
    return cause;
  }
  const code = typeof cause === "object" && cause !== null && "code" in cause ? cause.code : undefined;
  // 23505: unique violation, two writers creating the same version at once.
  if (code === "23505") {
    return new PlatformError("ERR_VERSION_CONFLICT");
  }
  // 53100: disk_full.
  return new PlatformError(code === "53100" ? "ERR_STORAGE_FULL" : "ERR_STORAGE", undefined, { cause });
}

/**
 * A connection that was cut (the server restarted or terminated it: 57P01 admin_shutdown, 57P02, 57P03, or
 * the socket closed) before COMMIT was sent: the server rolled the transaction back, so running it again on
 * a fresh connection cannot apply it twice.
 */
function connectionLost(cause: unknown): boolean {
  const code = typeof cause === "object" && cause !== null && "code" in cause ? cause.code : undefined;
  const message = cause instanceof Error ? cause.message : "";
  return (
    code === "57P01" ||
    code === "57P02" ||
    code === "57P03" ||
    code === "ECONNRESET" ||
    /Connection terminated|connection is closed|Client has encountered a connection error/i.test(message)
  );
}

/** Replaces a resource's search tokens (duplicates dropped), inside the caller's transaction. */
async function replaceTokens(
  client: pg.PoolClient,
  tenantId: string,
  version: StoredVersion,
  tokens: readonly Uint8Array[],
): Promise<void> {
  await client.query("DELETE FROM search_tokens WHERE tenant_id = $1 AND type = $2 AND id = $3", [
    tenantId,
    version.type,
    version.id,
  ]);
  const unique = [...new Map(tokens.map((t) => [Buffer.from(t).toString("hex"), t])).values()];
  if (unique.length > 0) {
    await client.query(
      "INSERT INTO search_tokens (tenant_id, type, id, token) SELECT $1, $2, $3, unnest($4::bytea[])",
      [tenantId, version.type, version.id, unique.map((t) => Buffer.from(t))],
    );
  }
}

/** One version written with the current row locked, inside the caller's transaction (see RecordStore.write). */
async function writeOne(
  client: pg.PoolClient,
  tenantId: string,
  { version, expectedVersionId: expected, tokens }: VersionWrite,
): Promise<void> {
  const current = await client.query<{ version_id: number }>(
    "SELECT version_id FROM resources_current WHERE tenant_id = $1 AND type = $2 AND id = $3 FOR UPDATE",
    [tenantId, version.type, version.id],
  );
  if ((current.rows[0]?.version_id ?? 0) !== expected || version.versionId !== expected + 1) {
    throw new PlatformError("ERR_VERSION_CONFLICT");
  }
  await client.query(
    "INSERT INTO resource_versions (tenant_id, type, id, version_id, last_updated, deleted, body, key_generation) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    [
      tenantId,
      version.type,
      version.id,
      version.versionId,
      version.lastUpdated,
      version.deleted,
      Buffer.from(version.body),
      sealedKeyGeneration(version.body),
    ],
  );
  await client.query(
    `INSERT INTO resources_current (tenant_id, type, id, version_id, last_updated, deleted) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (tenant_id, type, id) DO UPDATE SET version_id = EXCLUDED.version_id,
             last_updated = EXCLUDED.last_updated, deleted = EXCLUDED.deleted`,
    [tenantId, version.type, version.id, version.versionId, version.lastUpdated, version.deleted],
  );
  await replaceTokens(client, tenantId, version, version.deleted ? [] : tokens);
}

const versionColumns = "v.type, v.id, v.version_id, v.last_updated, v.deleted, v.body";

export interface PostgresStoreOptions {
  readonly connectionString: string;
  /** A schema to create and use (tests isolate themselves this way); default `public`. */
  readonly schema?: string;
  readonly maxConnections?: number;
}

/** One EXISTS per token group (AND), any of its tokens (OR); the tokens are bound parameters. */
function tokenClauses(
  tenantId: string,
  type: string,
  tokenGroups: readonly (readonly Uint8Array[])[],
): { clauses: string; values: unknown[] } {
  const values: unknown[] = [tenantId, type];
  const clauses = tokenGroups.map((group) => {
    values.push(group.map((token) => Buffer.from(token)));
    return `AND EXISTS (SELECT 1 FROM search_tokens t WHERE t.tenant_id = c.tenant_id AND t.type = c.type AND t.id = c.id AND t.token = ANY($${values.length}::bytea[]))`;
  });
  return { clauses: clauses.join(" "), values };
}

export function openPostgresStore(options: PostgresStoreOptions): RecordStore {
  const schema = options.schema ?? "public";
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) {
    throw new PlatformError("ERR_STORAGE", "the schema name must be a lowercase identifier");
  }
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.maxConnections ?? 10,
    options: `-c search_path=${schema}`,
  });
  // A cut connection is also reported as an 'error' event, on the pool for idle clients and on the client
  // itself (even while the pool is already ending it); unheard, that event would end the process. The cut is
  // handled where it matters: the query on it fails and withClient retries or reports it.
  pool.on("error", () => undefined);
  pool.on("connect", (client) => {
    client.on("error", () => undefined);
  });

  /**
   * Runs `work` on a checked-out client, in a transaction when asked. A connection cut before COMMIT (see
   * connectionLost) is retried on a fresh connection, at most twice.
   */
  const withClient = async <T>(
    work: (client: pg.PoolClient) => Promise<T>,
    inTransaction: boolean,
  ): Promise<T> => {
    for (let attempt = 1; ; attempt++) {
      let client: pg.PoolClient | undefined;
      let committing = false;
      try {
        client = await pool.connect();
        if (inTransaction) {
          await client.query("BEGIN");
        }
        const result = await work(client);
        if (inTransaction) {
          committing = true;
          await client.query("COMMIT");
        }
        client.release();
        return result;
      } catch (error) {
        const lost = connectionLost(error);
        if (client !== undefined) {
          if (inTransaction && !lost) {
            await client.query("ROLLBACK").catch(() => undefined);
          }
          // A cut connection is dropped from the pool, not handed to the next caller.
          client.release(lost ? (error as Error) : undefined);
        }
        // Once COMMIT was sent, whether it applied is unknown: that is reported, never run twice.
        if (lost && !committing && attempt < 3) {
          continue;
        }
        throw storageFailure(error);
      }
    }
  };
  const transaction = <T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> => withClient(work, true);
  const select = async <Row extends pg.QueryResultRow>(sql: string, values: unknown[]): Promise<Row[]> =>
    withClient(async (client) => (await client.query<Row>(sql, values)).rows, false);
  const query = (sql: string, values: unknown[]): Promise<VersionRow[]> => select<VersionRow>(sql, values);

  return {
    dialect: "postgres",
    migrate: async () =>
      transaction(async (client) => {
        await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
        await client.query("SELECT pg_advisory_xact_lock(726172)");
        await client.query(
          "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
        );
        const applied = new Set(
          (await client.query<{ version: number }>("SELECT version FROM schema_migrations")).rows.map(
            (r) => r.version,
          ),
        );
        for (const migration of migrations) {
          if (!applied.has(migration.version)) {
            await client.query(migration.sql.postgres);
            await client.query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", [
              migration.version,
              new Date().toISOString(),
            ]);
          }
        }
        return Math.max(0, ...migrations.map((m) => m.version));
      }),
    write: async (tenantId, version, expectedVersionId, tokens) =>
      transaction(async (client) => {
        await writeOne(client, tenantId, { version, expectedVersionId, tokens });
      }),
    writeAll: async (tenantId, writes) =>
      transaction(async (client) => {
        for (const write of writes) {
          await writeOne(client, write.tenantId ?? tenantId, write);
        }
      }),
    current: async (tenantId, type, id) => {
      const rows = await query(
        `SELECT ${versionColumns} FROM resources_current c JOIN resource_versions v ON v.tenant_id = c.tenant_id
         AND v.type = c.type AND v.id = c.id AND v.version_id = c.version_id WHERE c.tenant_id = $1 AND c.type = $2 AND c.id = $3`,
        [tenantId, type, id],
      );
      return rows[0] === undefined ? undefined : toVersion(rows[0]);
    },
    version: async (tenantId, type, id, versionId) => {
      const rows = await query(
        `SELECT ${versionColumns} FROM resource_versions v WHERE v.tenant_id = $1 AND v.type = $2 AND v.id = $3 AND v.version_id = $4`,
        [tenantId, type, id, versionId],
      );
      return rows[0] === undefined ? undefined : toVersion(rows[0]);
    },
    history: async (tenantId, type, id) =>
      (
        await query(
          `SELECT ${versionColumns} FROM resource_versions v WHERE v.tenant_id = $1 AND v.type = $2 AND v.id = $3 ORDER BY v.version_id DESC`,
          [tenantId, type, id],
        )
      ).map(toVersion),
    search: async (tenantId, type, tokenGroups, limit, order = "newest", offset = 0) => {
      if (tokenGroups.some((group) => group.length === 0)) {
        return [];
      }
      const { clauses, values } = tokenClauses(tenantId, type, tokenGroups);
      values.push(offset, limit);
      const direction = order === "oldest" ? "ASC" : "DESC";
      const rows = await query(
        `SELECT ${versionColumns} FROM resources_current c JOIN resource_versions v ON v.tenant_id = c.tenant_id
         AND v.type = c.type AND v.id = c.id AND v.version_id = c.version_id
         WHERE c.tenant_id = $1 AND c.type = $2 AND NOT c.deleted ${clauses}
         ORDER BY c.last_updated ${direction}, c.id OFFSET $${values.length - 1} LIMIT $${values.length}`,
        values,
      );
      return rows.map(toVersion);
    },
    count: async (tenantId, type, tokenGroups) => {
      if (tokenGroups.some((group) => group.length === 0)) {
        return 0;
      }
      const { clauses, values } = tokenClauses(tenantId, type, tokenGroups);
      const [row] = await select<{ matches: string }>(
        `SELECT count(*) AS matches FROM resources_current c
         WHERE c.tenant_id = $1 AND c.type = $2 AND NOT c.deleted ${clauses}`,
        values,
      );
      return Number(row?.matches ?? 0);
    },
    staleVersions: async (tenantId, generation, limit) => {
      const rows = await select<VersionRow & { is_current: boolean }>(
        `SELECT ${versionColumns}, c.version_id = v.version_id AS is_current
         FROM resource_versions v JOIN resources_current c ON c.tenant_id = v.tenant_id AND c.type = v.type AND c.id = v.id
         WHERE v.tenant_id = $1 AND v.key_generation BETWEEN 1 AND $2 - 1
         ORDER BY v.type, v.id, v.version_id LIMIT $3`,
        [tenantId, generation, limit],
      );
      return rows.map((row) => ({ version: toVersion(row), current: row.is_current }));
    },
    countStaleVersions: async (tenantId, generation) => {
      const [row] = await select<{ stale: string }>(
        "SELECT count(*) AS stale FROM resource_versions WHERE tenant_id = $1 AND key_generation BETWEEN 1 AND $2 - 1",
        [tenantId, generation],
      );
      return Number(row?.stale ?? 0);
    },
    reseal: async (tenantId, version, expectedBody, tokens) =>
      transaction(async (client) => {
        // The current row is locked first, as a write locks it, so a write and a reseal never interleave.
        const current = await client.query<{ version_id: number }>(
          "SELECT version_id FROM resources_current WHERE tenant_id = $1 AND type = $2 AND id = $3 FOR UPDATE",
          [tenantId, version.type, version.id],
        );
        const changed = await client.query(
          `UPDATE resource_versions SET body = $1, key_generation = $2
           WHERE tenant_id = $3 AND type = $4 AND id = $5 AND version_id = $6 AND body = $7`,
          resealParameters(tenantId, version, expectedBody),
        );
        if (changed.rowCount !== 1) {
          return false;
        }
        if (tokens !== undefined && current.rows[0]?.version_id === version.versionId) {
          await replaceTokens(client, tenantId, version, tokens);
        }
        return true;
      }),
    close: async () => {
      await pool.end();
    },
  };
}
