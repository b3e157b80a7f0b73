// The embedded driver: better-sqlite3, write-ahead logging, every write in one transaction.
import { existsSync, rmSync } from "node:fs";
import Database from "better-sqlite3";
import { PlatformError } from "../errors.js";
import { sealedKeyGeneration } from "./record-crypto.js";
import {
  migrations,
  resealParameters,
  toStoredVersion as toVersion,
  type RecordStore,
  type StaleVersion,
  type StoredVersion,
  type VersionRow,
  type VersionWrite,
} from "./record-store.js";

function storageFailure(cause: unknown): PlatformError {
  if (cause instanceof PlatformError) {
    return cause;
  }
  // SQLITE_FULL: the disk (or the database's page limit) is full; the transaction was rolled back.
  const code = typeof cause === "object" && cause !== null && "code" in cause ? cause.code : undefined;
  return new PlatformError(code === "SQLITE_FULL" ? "ERR_STORAGE_FULL" : "ERR_STORAGE", undefined, { cause });
}

/** Opens (and creates) an SQLite record store at `path` (":memory:" for tests). */
/** One EXISTS per token group (AND), any of its tokens (OR); tokens are bound parameters, never spliced in. */
function tokenClauses(tokenGroups: readonly (readonly Uint8Array[])[]): string {
  return tokenGroups
    .map(
      (group) =>
        `AND EXISTS (SELECT 1 FROM search_tokens t WHERE t.tenant_id = c.tenant_id AND t.type = c.type AND t.id = c.id AND t.token IN (${group.map(() => "?").join(", ")}))`,
    )
    .join(" ");
}

export function openSqliteStore(path: string): RecordStore {
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("foreign_keys = ON");

  // Migrations run as the store opens (better-sqlite3 is synchronous), so statements can be prepared.
  const applyMigrations = (): number => {
    try {
      db.exec(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
      );
      const applied = new Set(
        (db.prepare("SELECT version FROM schema_migrations").all() as { version: number }[]).map(
          (r) => r.version,
        ),
      );
      for (const migration of migrations) {
        if (!applied.has(migration.version)) {
          db.transaction(() => {
            db.exec(migration.sql.sqlite);
            db.prepare("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)").run(
              migration.version,
              new Date().toISOString(),
            );
          })();
        }
      }
      return Math.max(0, ...migrations.map((m) => m.version));
    } catch (cause) {
      db.close();
      throw storageFailure(cause);
    }
  };
  const schemaVersion = applyMigrations();
  const migrate = async (): Promise<number> => schemaVersion;

  const currentVersionOf = db.prepare(
    "SELECT version_id FROM resources_current WHERE tenant_id = ? AND type = ? AND id = ?",
  );
  const insertVersion = db.prepare(
    "INSERT INTO resource_versions (tenant_id, type, id, version_id, last_updated, deleted, body, key_generation) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
  );
  const upsertCurrent = db.prepare(
    `INSERT INTO resources_current (tenant_id, type, id, version_id, last_updated, deleted) VALUES (?, ?, ?, ?, ?, ?)
     ON CONFLICT (tenant_id, type, id) DO UPDATE SET version_id = excluded.version_id,
       last_updated = excluded.last_updated, deleted = excluded.deleted`,
  );
  const deleteTokens = db.prepare("DELETE FROM search_tokens WHERE tenant_id = ? AND type = ? AND id = ?");
  const insertToken = db.prepare(
    "INSERT OR IGNORE INTO search_tokens (tenant_id, type, id, token) VALUES (?, ?, ?, ?)",
  );
  const writeOne = (
    tenantId: string,
    { version, expectedVersionId: expected, tokens }: VersionWrite,
  ): void => {
    const row = currentVersionOf.get(tenantId, version.type, version.id) as
      { version_id: number } | undefined;
    if ((row?.version_id ?? 0) !== expected || version.versionId !== expected + 1) {
      throw new PlatformError("ERR_VERSION_CONFLICT");
    }
    insertVersion.run(
      tenantId,
      version.type,
      version.id,
      version.versionId,
      version.lastUpdated,
      version.deleted ? 1 : 0,
      Buffer.from(version.body),
      sealedKeyGeneration(version.body),
    );
    upsertCurrent.run(
      tenantId,
      version.type,
      version.id,
      version.versionId,
      version.lastUpdated,
      version.deleted ? 1 : 0,
    );
    deleteTokens.run(tenantId, version.type, version.id);
    for (const token of version.deleted ? [] : tokens) {
      insertToken.run(tenantId, version.type, version.id, Buffer.from(token));
    }
  };
  const writeMany = db.transaction((tenantId: string, writes: readonly VersionWrite[]) => {
    for (const write of writes) {
      writeOne(write.tenantId ?? tenantId, write);
    }
  });
  const selectCurrent = db.prepare(
    `SELECT v.type, v.id, v.version_id, v.last_updated, v.deleted, v.body FROM resources_current c
     JOIN resource_versions v ON v.tenant_id = c.tenant_id AND v.type = c.type AND v.id = c.id AND v.version_id = c.version_id
     WHERE c.tenant_id = ? AND c.type = ? AND c.id = ?`,
  );
  const selectVersion = db.prepare(
    "SELECT type, id, version_id, last_updated, deleted, body FROM resource_versions WHERE tenant_id = ? AND type = ? AND id = ? AND version_id = ?",
  );
  const selectHistory = db.prepare(
    "SELECT type, id, version_id, last_updated, deleted, body FROM resource_versions WHERE tenant_id = ? AND type = ? AND id = ? ORDER BY version_id DESC",
  );

  const selectStale = db.prepare(
    `SELECT v.type, v.id, v.version_id, v.last_updated, v.deleted, v.body,
       CASE WHEN c.version_id = v.version_id THEN 1 ELSE 0 END AS is_current
     FROM resource_versions v JOIN resources_current c ON c.tenant_id = v.tenant_id AND c.type = v.type AND c.id = v.id
     WHERE v.tenant_id = ? AND v.key_generation BETWEEN 1 AND ? - 1
     ORDER BY v.type, v.id, v.version_id LIMIT ?`,
  );
  const countStale = db.prepare(
    "SELECT count(*) AS stale FROM resource_versions WHERE tenant_id = ? AND key_generation BETWEEN 1 AND ? - 1",
  );
  const replaceBody = db.prepare(
    `UPDATE resource_versions SET body = ?, key_generation = ?
     WHERE tenant_id = ? AND type = ? AND id = ? AND version_id = ? AND body = ?`,
  );
  const reseal = db.transaction(
    (
      tenantId: string,
      version: StoredVersion,
      expectedBody: Uint8Array,
      tokens: readonly Uint8Array[] | undefined,
    ): boolean => {
      const changed = replaceBody.run(...resealParameters(tenantId, version, expectedBody)).changes;
      if (changed !== 1) {
        return false;
      }
      const current = currentVersionOf.get(tenantId, version.type, version.id) as
        { version_id: number } | undefined;
      if (tokens !== undefined && current?.version_id === version.versionId) {
        deleteTokens.run(tenantId, version.type, version.id);
        for (const token of tokens) {
          insertToken.run(tenantId, version.type, version.id, Buffer.from(token));
        }
      }
      return true;
    },
  );

  return {
    dialect: "sqlite",
    migrate,
    write: async (tenantId, version, expectedVersionId, tokens) => {
      try {
        writeMany(tenantId, [{ version, expectedVersionId, tokens }]);
      } catch (cause) {
        throw storageFailure(cause);
      }
    },
    writeAll: async (tenantId, writes) => {
      try {
        writeMany(tenantId, writes);
      } catch (cause) {
        throw storageFailure(cause);
      }
    },
    current: async (tenantId, type, id) => {
      const row = selectCurrent.get(tenantId, type, id) as VersionRow | undefined;
      return row === undefined ? undefined : toVersion(row);
    },
    version: async (tenantId, type, id, versionId) => {
      const row = selectVersion.get(tenantId, type, id, versionId) as VersionRow | undefined;
      return row === undefined ? undefined : toVersion(row);
    },
    history: async (tenantId, type, id) =>
      (selectHistory.all(tenantId, type, id) as VersionRow[]).map(toVersion),
    search: async (tenantId, type, tokenGroups, limit, order = "newest", offset = 0) => {
      if (tokenGroups.some((group) => group.length === 0)) {
        return [];
      }
      const sql = `SELECT v.type, v.id, v.version_id, v.last_updated, v.deleted, v.body FROM resources_current c
        JOIN resource_versions v ON v.tenant_id = c.tenant_id AND v.type = c.type AND v.id = c.id AND v.version_id = c.version_id
        WHERE c.tenant_id = ? AND c.type = ? AND c.deleted = 0 ${tokenClauses(tokenGroups)}
        ORDER BY c.last_updated ${order === "oldest" ? "ASC" : "DESC"}, c.id LIMIT ? OFFSET ?`;
      const parameters = [
        tenantId,
        type,
        ...tokenGroups.flat().map((token) => Buffer.from(token)),
        limit,
        offset,
      ];
      return (db.prepare(sql).all(...parameters) as VersionRow[]).map(toVersion);
    },
    count: async (tenantId, type, tokenGroups) => {
      if (tokenGroups.some((group) => group.length === 0)) {
        return 0;
      }
      const sql = `SELECT count(*) AS matches FROM resources_current c
        WHERE c.tenant_id = ? AND c.type = ? AND c.deleted = 0 ${tokenClauses(tokenGroups)}`;
      const parameters = [tenantId, type, ...tokenGroups.flat().map((token) => Buffer.from(token))];
      return (db.prepare(sql).get(...parameters) as { matches: number }).matches;
    },
    staleVersions: async (tenantId, generation, limit): Promise<StaleVersion[]> =>
      (selectStale.all(tenantId, generation, limit) as (VersionRow & { is_current: number })[]).map(
        (row) => ({ version: toVersion(row), current: row.is_current === 1 }),
      ),
    countStaleVersions: async (tenantId, generation) =>
      (countStale.get(tenantId, generation) as { stale: number }).stale,
    reseal: async (tenantId, version, expectedBody, tokens) => {
      try {
        return reseal(tenantId, version, expectedBody, tokens);
      } catch (cause) {
        throw storageFailure(cause);
      }
    },
    close: async () => {
      db.close();
    },
  };
}

/**
 * An online backup of the SQLite record store at `source` into a new file `destination` (SQLite's backup
 * API), consistent as of one moment, while the platform goes on reading and writing it. The copy is checked
 * (`PRAGMA integrity_check`) before this returns, and removed when anything failed; an existing `destination`
 * is never overwritten. The copy holds only what the store holds: sealed records and blind-index tokens,
 * opened only with the tenants' keys.
 */
export async function backupSqliteDatabase(source: string, destination: string): Promise<{ pages: number }> {
  let db: Database.Database;
  try {
    db = new Database(source, { readonly: true, fileMustExist: true });
  } catch (cause) {
    throw new PlatformError("ERR_STORAGE", "the record store could not be opened to back it up", { cause });
  }
  let created = false;
  try {
    if (existsSync(destination)) {
      throw new PlatformError("ERR_STORAGE", "the backup file exists already: choose a new one");
    }
    created = true;
    const { totalPages } = await db.backup(destination);
    const copy = new Database(destination, { readonly: true, fileMustExist: true });
    try {
      const problems = copy.pragma("integrity_check", { simple: true });
      if (problems !== "ok") {
        throw new PlatformError("ERR_STORAGE", "the backup failed its integrity check");
      }
    } finally {
      copy.close();
    }
    return { pages: totalPages };
  } catch (cause) {
    // A partial or damaged copy is never left to be mistaken for a backup.
    if (created) {
      rmSync(destination, { force: true });
    }
    throw storageFailure(cause);
  } finally {
    db.close();
  }
}
