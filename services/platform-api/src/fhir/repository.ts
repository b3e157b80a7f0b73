// FHIR resources of one tenant over the sealed record store: ids and versions assigned here, every body
// validated, sealed with the tenant's keys and indexed by blind tokens.
import { randomUUID } from "node:crypto";
import { PlatformError } from "../errors.js";
import { blindIndexes, openRecord, sealRecord } from "../storage/record-crypto.js";
import { reencryptBatch, type ReencryptProgress } from "../storage/reencrypt.js";
import type { TenantKeyring } from "../storage/record-crypto.js";
import type { RecordStore, StoredVersion, VersionWrite } from "../storage/record-store.js";
import { indexEntries, queryGroups, supportedTypes, type FhirResource } from "./search-parameters.js";
import { validateFhirResource } from "./validation.js";
import { auditEntities } from "../audit/audit-entities.js";

/** How long a search's next-page cursor opens. */
const cursorLifetimeMs = 15 * 60_000;
/** Paging stops here: deeper than this, narrow the search. */
const maxSearchOffset = 10_000;

/** What a cursor is sealed to: the tenant and the resource type searched. */
function cursorAddress(tenant: TenantContext, type: string) {
  return { tenantId: tenant.tenantId, type: "_search-cursor", id: type, versionId: 0 };
}

/** FHIR R4 id: 1 to 64 of [A-Za-z0-9-.] (so never a path). */
export const fhirIdPattern = /^[A-Za-z0-9\-.]{1,64}$/;

export function checkType(type: string): void {
  if (!supportedTypes.includes(type)) {
    throw new PlatformError("ERR_NOT_FOUND", "this server does not hold that resource type");
  }
}

export function checkId(id: string): void {
  if (!fhirIdPattern.test(id)) {
    throw new PlatformError("ERR_BAD_REQUEST", "a FHIR id is 1 to 64 letters, digits, '-' or '.'", {
      expression: "id",
    });
  }
}

/**
 * The AuditEvent that reports a write, made for the entities the write names (`Patient/<id>`), to be stored
 * in the write's own transaction (AuditTrail.recordAlong).
 */
export type AuditEventWrite = (entities: readonly string[]) => VersionWrite;

/** Options of a write. */
export interface WriteOptions {
  /** Stored in the same transaction as the resource: both or neither. */
  readonly auditEvent?: AuditEventWrite;
  /**
   * A guard record moved on in the same transaction, from the version the caller read before checking a rule
   * that spans resources (an MRN names one patient): two writers that checked the same state conflict on it,
   * on any replica, and the later one checks again (`guardVersion`).
   */
  readonly guard?: { readonly id: string; readonly versionId: number };
}

const guardType = "Guard";

export interface TenantContext {
  readonly tenantId: string;
  readonly keyring: TenantKeyring;
}

/** A resource's blind-index search tokens, under every key generation held (see `blindIndexes`). */
export function searchTokens(keyring: TenantKeyring, resource: FhirResource): Buffer[] {
  return indexEntries(resource).flatMap(({ parameter, value }) =>
    blindIndexes(keyring, resource.resourceType, parameter, value),
  );
}

export class FhirRepository {
  private readonly store: RecordStore;
  private readonly now: () => Date;

  constructor(store: RecordStore, now: () => Date = () => new Date()) {
    this.store = store;
    this.now = now;
  }

  /**
   * Search tokens under every key generation held, not only the current one: while a rotation spreads, a
   * replica that has not seen the new generation yet searches with the old one's tokens and must still find
   * what a replica that has seen it wrote or re-encrypted. Tokens of a destroyed generation match nothing.
   */
  private tokens(tenant: TenantContext, resource: FhirResource): Buffer[] {
    return searchTokens(tenant.keyring, resource);
  }

  private decode(tenant: TenantContext, version: StoredVersion): FhirResource {
    const body = openRecord(
      tenant.keyring,
      { tenantId: tenant.tenantId, type: version.type, id: version.id, versionId: version.versionId },
      version.body,
    );
    return JSON.parse(body.toString("utf8")) as FhirResource;
  }

  private async put(
    tenant: TenantContext,
    resource: FhirResource,
    id: string,
    previous: number,
    options: WriteOptions,
  ): Promise<FhirResource> {
    const { stored, write } = this.versionWrite(tenant, resource, id, previous);
    await this.store.writeAll(tenant.tenantId, [
      write,
      ...(options.guard === undefined ? [] : [this.guardWrite(tenant, options.guard)]),
      ...(options.auditEvent === undefined ? [] : [options.auditEvent(auditEntities([stored]))]),
    ]);
    return stored;
  }

  /** The version of a guard record now (0 before its first write): read before the check it guards. */
  async guardVersion(tenant: TenantContext, id: string): Promise<number> {
    return (await this.store.current(tenant.tenantId, guardType, id))?.versionId ?? 0;
  }

  /** The guard's next version: sealed and empty, it carries nothing but its version. */
  private guardWrite(
    tenant: TenantContext,
    guard: { readonly id: string; readonly versionId: number },
  ): VersionWrite {
    const versionId = guard.versionId + 1;
    return {
      version: {
        type: guardType,
        id: guard.id,
        versionId,
        lastUpdated: this.now().toISOString(),
        deleted: false,
        body: sealRecord(
          tenant.keyring,
          { tenantId: tenant.tenantId, type: guardType, id: guard.id, versionId },
          Buffer.from("{}"),
        ),
      },
      expectedVersionId: guard.versionId,
      tokens: [],
    };
  }

  /**
   * Updates resources from the versions the caller read (`ifMatch`, each checked) and creates `created`
   * (server-assigned ids) in one transaction, with the audit event: all of them or none. Answers the updated
   * resources in order, then the created ones.
   */
  async updateTogether(
    tenant: TenantContext,
    updates: readonly { readonly resource: FhirResource; readonly id: string; readonly ifMatch: number }[],
    created: readonly FhirResource[],
    options: WriteOptions = {},
  ): Promise<FhirResource[]> {
    for (const { resource, id, ifMatch } of updates) {
      checkType(resource.resourceType);
      checkId(id);
      const current = await this.store.current(tenant.tenantId, resource.resourceType, id);
      if ((current?.versionId ?? 0) !== ifMatch) {
        throw new PlatformError("ERR_PRECONDITION");
      }
    }
    // The store checks each expected version again inside the transaction.
    const writes = [
      ...updates.map(({ resource, id, ifMatch }) => this.versionWrite(tenant, resource, id, ifMatch)),
      ...created.map((extra) => {
        checkType(extra.resourceType);
        return this.versionWrite(tenant, extra, randomUUID(), 0);
      }),
    ];
    const entities = auditEntities(writes.map(({ stored }) => stored));
    await this.store.writeAll(tenant.tenantId, [
      ...writes.map(({ write }) => write),
      ...(options.auditEvent === undefined ? [] : [options.auditEvent(entities)]),
    ]);
    return writes.map(({ stored }) => stored);
  }

  /** A resource as its next stored version: validated, sealed, with its search tokens. */
  private versionWrite(
    tenant: TenantContext,
    resource: FhirResource,
    id: string,
    previous: number,
  ): { stored: FhirResource; write: VersionWrite } {
    const versionId = previous + 1;
    const lastUpdated = this.now().toISOString();
    const meta = {
      ...(typeof resource.meta === "object" ? (resource.meta as object) : {}),
      versionId: String(versionId),
      lastUpdated,
    };
    const stored: FhirResource = { ...resource, id, meta };
    validateFhirResource(stored);
    const address = { tenantId: tenant.tenantId, type: resource.resourceType, id, versionId };
    const write: VersionWrite = {
      version: {
        type: resource.resourceType,
        id,
        versionId,
        lastUpdated,
        deleted: false,
        body: sealRecord(tenant.keyring, address, Buffer.from(JSON.stringify(stored), "utf8")),
      },
      expectedVersionId: previous,
      tokens: this.tokens(tenant, stored),
    };
    return { stored, write };
  }

  /** Creates a resource with a server-assigned id (any id in the body is replaced). */
  async create(
    tenant: TenantContext,
    resource: FhirResource,
    options: WriteOptions = {},
  ): Promise<FhirResource> {
    checkType(resource.resourceType);
    return this.put(tenant, resource, randomUUID(), 0, options);
  }

  /** Updates (or, with an unused id, creates) a resource; `ifMatch` is the version the caller read. */
  async update(
    tenant: TenantContext,
    resource: FhirResource,
    id: string,
    ifMatch?: number,
    options: WriteOptions = {},
  ): Promise<FhirResource> {
    checkType(resource.resourceType);
    checkId(id);
    if (resource.id !== undefined && resource.id !== id) {
      throw new PlatformError("ERR_BAD_REQUEST", "the body's id is not the URL's id", { expression: "id" });
    }
    const current = await this.store.current(tenant.tenantId, resource.resourceType, id);
    const previous = current?.versionId ?? 0;
    if (ifMatch !== undefined && ifMatch !== previous) {
      throw new PlatformError("ERR_PRECONDITION");
    }
    return this.put(tenant, resource, id, previous, options);
  }

  async read(tenant: TenantContext, type: string, id: string): Promise<FhirResource> {
    checkType(type);
    checkId(id);
    const current = await this.store.current(tenant.tenantId, type, id);
    if (current === undefined) {
      throw new PlatformError("ERR_NOT_FOUND");
    }
    if (current.deleted) {
      throw new PlatformError("ERR_GONE");
    }
    return this.decode(tenant, current);
  }

  /** Whether the tenant holds a current, not deleted resource of this type and id (nothing is opened). */
  async exists(tenant: TenantContext, type: string, id: string): Promise<boolean> {
    checkType(type);
    checkId(id);
    const current = await this.store.current(tenant.tenantId, type, id);
    return current !== undefined && !current.deleted;
  }

  async vread(tenant: TenantContext, type: string, id: string, versionId: string): Promise<FhirResource> {
    checkType(type);
    checkId(id);
    const version = /^[1-9][0-9]{0,8}$/.test(versionId)
      ? await this.store.version(tenant.tenantId, type, id, Number(versionId))
      : undefined;
    if (version === undefined) {
      throw new PlatformError("ERR_NOT_FOUND");
    }
    if (version.deleted) {
      throw new PlatformError("ERR_GONE");
    }
    return this.decode(tenant, version);
  }

  async history(tenant: TenantContext, type: string, id: string): Promise<FhirResource[]> {
    checkType(type);
    checkId(id);
    const versions = await this.store.history(tenant.tenantId, type, id);
    if (versions.length === 0) {
      throw new PlatformError("ERR_NOT_FOUND");
    }
    return versions.filter((version) => !version.deleted).map((version) => this.decode(tenant, version));
  }

  /**
   * One batch of re-encryption after the tenant's data key rotated (`reencryptBatch`): FHIR resources get
   * their search tokens rebuilt; the audit chain's events and head record have none.
   */
  async reencrypt(tenant: TenantContext, limit: number): Promise<ReencryptProgress> {
    return reencryptBatch(this.store, tenant, limit, (version, plaintext) =>
      supportedTypes.includes(version.type)
        ? this.tokens(tenant, JSON.parse(plaintext.toString("utf8")) as FhirResource)
        : [],
    );
  }

  async search(
    tenant: TenantContext,
    type: string,
    query: Readonly<Record<string, string | string[] | undefined>>,
  ): Promise<FhirResource[]> {
    return (await this.page(tenant, type, query)).resources;
  }

  /**
   * A search, the number of all its matches (`Bundle.total`: counted only when it is not plain from the page,
   * or for `_summary=count`, which returns no resources), and when more follow, the `_cursor` of the next page.
   * A cursor is the query and the next offset sealed with the tenant's key: the search values (names, MRNs)
   * never appear in the next page's URL, and the cursor opens only in this tenant, for 15 minutes.
   */
  async searchWithTotal(
    tenant: TenantContext,
    type: string,
    query: Readonly<Record<string, string | string[] | undefined>>,
  ): Promise<{ resources: FhirResource[]; total: number; nextCursor?: string }> {
    const { resources, tokenGroups, count, offset, effective, countOnly } = await this.page(
      tenant,
      type,
      query,
    );
    const total =
      !countOnly && offset === 0 && resources.length < count
        ? resources.length
        : await this.store.count(tenant.tenantId, type, tokenGroups);
    const next = offset + count;
    return {
      resources,
      total,
      ...(!countOnly && next < total && next <= maxSearchOffset
        ? { nextCursor: this.sealCursor(tenant, type, effective, next) }
        : {}),
    };
  }

  /** One page of a search (none for `_summary=count`), with what counting it and paging on need. */
  private async page(
    tenant: TenantContext,
    type: string,
    query: Readonly<Record<string, string | string[] | undefined>>,
  ): Promise<{
    resources: FhirResource[];
    tokenGroups: Buffer[][];
    count: number;
    offset: number;
    effective: Readonly<Record<string, string | string[] | undefined>>;
    countOnly: boolean;
  }> {
    checkType(type);
    let effective = query;
    let offset = 0;
    if (query._cursor !== undefined) {
      if (Object.keys(query).some((name) => name !== "_cursor")) {
        throw new PlatformError("ERR_BAD_REQUEST", "_cursor is sent alone", { expression: "_cursor" });
      }
      ({ query: effective, offset } = this.openCursor(tenant, type, query._cursor));
    }
    const { groups, count, order, countOnly } = queryGroups(type, effective);
    const tokenGroups = groups.map((group) =>
      // Every generation's token: records indexed before a key rotation match until re-encrypted.
      group.flatMap(({ parameter, value }) => blindIndexes(tenant.keyring, type, parameter, value)),
    );
    const found = countOnly
      ? []
      : await this.store.search(tenant.tenantId, type, tokenGroups, count, order, offset);
    return {
      resources: found.map((version) => this.decode(tenant, version)),
      tokenGroups,
      count,
      offset,
      effective,
      countOnly,
    };
  }

  private sealCursor(
    tenant: TenantContext,
    type: string,
    query: Readonly<Record<string, string | string[] | undefined>>,
    offset: number,
  ): string {
    const cursor = { query, offset, expiresAt: this.now().getTime() + cursorLifetimeMs };
    return sealRecord(
      tenant.keyring,
      cursorAddress(tenant, type),
      Buffer.from(JSON.stringify(cursor), "utf8"),
    ).toString("base64url");
  }

  private openCursor(
    tenant: TenantContext,
    type: string,
    cursor: string | string[],
  ): { query: Record<string, string | string[]>; offset: number } {
    const refused = new PlatformError(
      "ERR_BAD_REQUEST",
      "the paging cursor is not valid here: expired, altered or made for another search; search again",
      { expression: "_cursor" },
    );
    let opened: { query?: unknown; offset?: unknown; expiresAt?: unknown };
    try {
      if (typeof cursor !== "string") {
        throw refused;
      }
      opened = JSON.parse(
        openRecord(tenant.keyring, cursorAddress(tenant, type), Buffer.from(cursor, "base64url")).toString(
          "utf8",
        ),
      ) as typeof opened;
    } catch {
      throw refused;
    }
    if (
      typeof opened.query !== "object" ||
      opened.query === null ||
      "_cursor" in opened.query ||
      typeof opened.offset !== "number" ||
      !Number.isInteger(opened.offset) ||
      opened.offset < 1 ||
      typeof opened.expiresAt !== "number" ||
      opened.expiresAt < this.now().getTime()
    ) {
      throw refused;
    }
    return { query: opened.query as Record<string, string | string[]>, offset: opened.offset };
  }
}
