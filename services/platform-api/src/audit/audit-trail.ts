// The audit trail: one FHIR AuditEvent per read, search, create, update, sign-in, inference and
// attestation failure, with ids and codes only. Events are append-only and hash-chained per tenant: event
// n is stored as AuditEvent/audit-n and carries the SHA-256 of event n-1, so an edit, a deletion or a
// reordering breaks the chain (AuditTrail.verify). Creating audit-n is the claim on sequence number n, so
// concurrent writers (replicas) never fork the chain. A sealed head record holds the newest sequence and
// hash, so a deleted tail is noticed after restarts too; deleting the head as well is not (an external
// checkpoint of the head would close that).
import { createHash } from "node:crypto";
import { PlatformError } from "../errors.js";
import { openRecord, sealRecord } from "../storage/record-crypto.js";
import type { RecordStore, VersionWrite } from "../storage/record-store.js";
import { searchTokens, type AuditEventWrite, type TenantContext } from "../fhir/repository.js";

export const auditChainExtension = "https://cloister.dev/fhir/StructureDefinition/audit-chain";

export type AuditAction = "C" | "R" | "U" | "D" | "E";

export interface AuditInput {
  /** DICOM audit event type, e.g. 110110 Patient Record, 110114 User Authentication, 110112 Query. */
  readonly type: { code: string; display: string };
  /** What was done: one code, or several for one change of several kinds (an account's role and status). */
  readonly subtype?: string | readonly string[];
  readonly action: AuditAction;
  /** 0 success, 4 minor failure, 8 serious failure, 12 major failure (FHIR AuditEvent.outcome). */
  readonly outcome: "0" | "4" | "8" | "12";
  /** Error code on failure: a stable code, never a message with values in it. */
  readonly outcomeCode?: string;
  /** Who: an account id or a workload measurement, never a name. */
  readonly agent: { readonly id: string; readonly role?: string };
  /** What: references only (`Patient/<id>`). */
  readonly entities?: readonly string[];
}

/**
 * A staff member's query (DICOM 110112): reading the trail, staff accounts or counts, not a patient's record.
 * `outcomeCode` makes it a refused one (outcome 4).
 */
export function staffQueryEvent(
  staff: { readonly subject: string; readonly role: string },
  subtype: string,
  entities: readonly string[],
  options: { readonly action?: AuditAction; readonly outcomeCode?: string } = {},
): AuditInput {
  return {
    type: { code: "110112", display: "Query" },
    subtype,
    action: options.action ?? "E",
    outcome: options.outcomeCode === undefined ? "0" : "4",
    ...(options.outcomeCode === undefined ? {} : { outcomeCode: options.outcomeCode }),
    agent: { id: staff.subject, role: staff.role },
    entities,
  };
}

type AuditEvent = Record<string, unknown> & { resourceType: "AuditEvent"; id: string };

function canonical(value: unknown): string {
  if (Array.isArray(value)) {
    return `[${value.map(canonical).join(",")}]`;
  }
  if (typeof value === "object" && value !== null) {
    return `{${Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonical((value as Record<string, unknown>)[key])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value);
}

/** The chain hash of an event: SHA-256 over its canonical JSON (RFC 8785 style key order). */
export function auditEventHash(event: Record<string, unknown>): string {
  return createHash("sha256").update(canonical(event)).digest("hex");
}

const genesis = "0".repeat(64);

const patientRole = {
  system: "http://terminology.hl7.org/CodeSystem/object-role",
  code: "1",
  display: "Patient",
};

function chainOf(event: Record<string, unknown>): { sequence: number; previousHash: string } | undefined {
  const extensions = Array.isArray(event.extension) ? (event.extension as Record<string, unknown>[]) : [];
  const chain = extensions.find((extension) => extension.url === auditChainExtension);
  const parts = Array.isArray(chain?.extension) ? (chain.extension as Record<string, unknown>[]) : [];
  const sequence = parts.find((part) => part.url === "sequence")?.valueInteger;
  const previousHash = parts.find((part) => part.url === "previousHash")?.valueString;
  return typeof sequence === "number" && typeof previousHash === "string"
    ? { sequence, previousHash }
    : undefined;
}

export class AuditTrail {
  private readonly store: RecordStore;
  private readonly now: () => Date;
  /** Last known sequence and hash per tenant: where the next append starts looking. */
  private readonly heads = new Map<string, { sequence: number; hash: string; headVersion?: number }>();
  private readonly queues = new Map<string, Promise<unknown>>();

  constructor(store: RecordStore, now: () => Date = () => new Date()) {
    this.store = store;
    this.now = now;
  }

  /** The sealed head record: the newest sequence and its hash, so a deleted tail is noticed after restarts. */
  private async readHead(
    tenant: TenantContext,
  ): Promise<{ sequence: number; hash: string; versionId: number } | undefined> {
    const stored = await this.store.current(tenant.tenantId, "AuditHead", "head");
    if (stored === undefined) {
      return undefined;
    }
    const body = openRecord(
      tenant.keyring,
      { tenantId: tenant.tenantId, type: "AuditHead", id: "head", versionId: stored.versionId },
      stored.body,
    );
    const head = JSON.parse(body.toString("utf8")) as { sequence: number; hash: string };
    return { ...head, versionId: stored.versionId };
  }

  /**
   * Moves the sealed head record to `sequence`; returns the head record's new version. The version this
   * process wrote last is tried first, so the head is read only when another writer moved it.
   */
  private async writeHead(
    tenant: TenantContext,
    sequence: number,
    hash: string,
    knownVersion: number | undefined,
  ): Promise<number | undefined> {
    let expected = knownVersion;
    for (let attempt = 0; attempt < 20; attempt++) {
      if (expected === undefined) {
        const current = await this.readHead(tenant);
        if (current !== undefined && current.sequence >= sequence) {
          return current.versionId;
        }
        expected = current?.versionId ?? 0;
      }
      const versionId = expected + 1;
      try {
        await this.store.write(
          tenant.tenantId,
          {
            type: "AuditHead",
            id: "head",
            versionId,
            lastUpdated: this.now().toISOString(),
            deleted: false,
            body: sealRecord(
              tenant.keyring,
              { tenantId: tenant.tenantId, type: "AuditHead", id: "head", versionId },
              Buffer.from(JSON.stringify({ sequence, hash }), "utf8"),
            ),
          },
          expected,
          [],
        );
        return versionId;
      } catch (error) {
        if (!(error instanceof PlatformError && error.code === "ERR_VERSION_CONFLICT")) {
          throw error;
        }
        expected = undefined;
      }
    }
    return undefined;
  }

  private async read(tenant: TenantContext, sequence: number): Promise<AuditEvent | undefined> {
    const stored = await this.store.current(tenant.tenantId, "AuditEvent", `audit-${sequence}`);
    if (stored === undefined) {
      return undefined;
    }
    const body = openRecord(
      tenant.keyring,
      { tenantId: tenant.tenantId, type: "AuditEvent", id: stored.id, versionId: stored.versionId },
      stored.body,
    );
    return JSON.parse(body.toString("utf8")) as AuditEvent;
  }

  /** Runs `work` after this tenant's earlier appends in this process (other writers are handled by claims). */
  private serialise<T>(tenant: TenantContext, work: () => Promise<T>): Promise<T> {
    const previous = this.queues.get(tenant.tenantId) ?? Promise.resolve();
    const next = previous.then(work);
    this.queues.set(
      tenant.tenantId,
      next.catch(() => undefined),
    );
    return next;
  }

  /** Appends one event; serialised per tenant in this process, and safe against other writers. */
  async record(tenant: TenantContext, input: AuditInput): Promise<void> {
    await this.serialise(tenant, async () => {
      await this.recordWith(
        tenant,
        input,
        async (event) => {
          await this.store.writeAll(tenant.tenantId, [event(input.entities ?? [])]);
        },
        "refuse",
      );
    });
  }

  /**
   * Appends the event for a write in the same transaction as the write: `write` must pass the event it is
   * given (called with the entities, known only once the write knows its ids) to its `writeAll` along with
   * its own records. The event exists if and only if the records do. Serialised like `record`, so `write`
   * must not itself record an event for the same tenant (it would wait for itself).
   */
  async recordAlong<T>(
    tenant: TenantContext,
    input: AuditInput,
    write: (event: AuditEventWrite) => Promise<T>,
  ): Promise<T> {
    // Once the write is stored, a head record that cannot be moved must not report it as failed.
    return this.serialise(tenant, async () => this.recordWith(tenant, input, write, "tolerate"));
  }

  private async headOf(
    tenant: TenantContext,
  ): Promise<{ sequence: number; hash: string; headVersion?: number }> {
    const known = this.heads.get(tenant.tenantId);
    if (known !== undefined) {
      return known;
    }
    const persisted = await this.readHead(tenant);
    return persisted === undefined
      ? { sequence: 0, hash: genesis, headVersion: 0 }
      : { sequence: persisted.sequence, hash: persisted.hash, headVersion: persisted.versionId };
  }

  /**
   * The append loop. `headFailure` says what a failure to move the head record (after the event is stored)
   * does: "refuse" fails the call (an event alone, as before a read is answered), "tolerate" leaves the head
   * for the next append and `verify` to catch up with (a write that is stored and must not be reported as
   * failed).
   */
  private async recordWith<T>(
    tenant: TenantContext,
    input: AuditInput,
    write: (event: AuditEventWrite) => Promise<T>,
    headFailure: "refuse" | "tolerate",
  ): Promise<T> {
    let head = await this.headOf(tenant);
    for (let attempt = 0; attempt < 1000; attempt++) {
      const sequence: number = head.sequence + 1;
      const previousHash = head.hash;
      let written: AuditEvent | undefined;
      const event: AuditEventWrite = (entities) => {
        const recorded = this.now().toISOString();
        written = this.buildEvent(sequence, previousHash, recorded, { ...input, entities });
        return this.eventWrite(tenant, written, recorded);
      };
      let result: T;
      try {
        result = await write(event);
      } catch (error) {
        if (
          error instanceof PlatformError &&
          error.code === "ERR_VERSION_CONFLICT" &&
          written !== undefined
        ) {
          // Either another writer took this sequence number (catch up with its event and try again: our
          // transaction wrote nothing), or the write's own record conflicted (that is the caller's answer).
          const taken = await this.read(tenant, sequence);
          if (taken !== undefined) {
            head = { sequence, hash: auditEventHash(taken) };
            continue;
          }
        }
        throw error;
      }
      if (written === undefined) {
        throw new PlatformError(
          "ERR_INTERNAL",
          "a write reported by the audit trail did not store its event",
        );
      }
      const hash = auditEventHash(written);
      let headVersion: number | undefined;
      try {
        headVersion = await this.writeHead(tenant, sequence, hash, head.headVersion);
      } catch (error) {
        // The event is stored either way; the head record guards against a deleted tail, and the next
        // append moves it past this sequence.
        this.heads.set(tenant.tenantId, { sequence, hash });
        if (headFailure === "refuse") {
          throw error;
        }
        headVersion = undefined;
      }
      this.heads.set(tenant.tenantId, {
        sequence,
        hash,
        ...(headVersion === undefined ? {} : { headVersion }),
      });
      return result;
    }
    throw new PlatformError("ERR_STORAGE", "the audit chain could not be extended");
  }

  private buildEvent(
    sequence: number,
    previousHash: string,
    recorded: string,
    input: AuditInput,
  ): AuditEvent {
    return {
      resourceType: "AuditEvent",
      id: `audit-${sequence}`,
      extension: [
        {
          url: auditChainExtension,
          extension: [
            { url: "sequence", valueInteger: sequence },
            { url: "previousHash", valueString: previousHash },
          ],
        },
      ],
      type: {
        system: "http://dicom.nema.org/resources/ontology/DCM",
        code: input.type.code,
        display: input.type.display,
      },
      ...(input.subtype === undefined
        ? {}
        : {
            subtype: (typeof input.subtype === "string" ? [input.subtype] : input.subtype).map((code) => ({
              system: "http://hl7.org/fhir/restful-interaction",
              code,
            })),
          }),
      action: input.action,
      recorded,
      outcome: input.outcome,
      ...(input.outcomeCode === undefined ? {} : { outcomeDesc: input.outcomeCode }),
      agent: [
        {
          who: { identifier: { value: input.agent.id } },
          ...(input.agent.role === undefined ? {} : { role: [{ text: input.agent.role }] }),
          requestor: true,
        },
      ],
      source: { observer: { display: "cloister-platform-api" } },
      ...(input.entities === undefined || input.entities.length === 0
        ? {}
        : {
            entity: input.entities.map((reference) => ({
              what: { reference },
              // The patient whose record was touched (a resource's subject, or the Patient itself).
              ...(reference.startsWith("Patient/") ? { role: patientRole } : {}),
            })),
          }),
    };
  }

  private eventWrite(tenant: TenantContext, event: AuditEvent, recorded: string): VersionWrite {
    return {
      version: {
        type: "AuditEvent",
        id: event.id,
        versionId: 1,
        lastUpdated: recorded,
        deleted: false,
        body: sealRecord(
          tenant.keyring,
          { tenantId: tenant.tenantId, type: "AuditEvent", id: event.id, versionId: 1 },
          Buffer.from(JSON.stringify(event), "utf8"),
        ),
      },
      expectedVersionId: 0,
      // Searchable by patient and agent, for access reports (search-parameters.ts).
      tokens: searchTokens(tenant.keyring, event),
      // Its own tenant, also when it is stored along with one of the platform's own records.
      tenantId: tenant.tenantId,
    };
  }

  /**
   * Walks the tenant's chain from event 1: every event must name its own sequence and the hash of the one
   * before. Returns the length, or throws naming the first broken link.
   */
  async verify(tenant: TenantContext, expectedLength?: number): Promise<number> {
    return (await this.walk(tenant, expectedLength)).length;
  }

  /**
   * verify, and also that the chain still holds the head an auditor recorded earlier (an external
   * checkpoint `{sequence, hash}`): deleting or rewriting the tail, head record included, is then noticed.
   * Returns the new head to record.
   */
  async verifyFromCheckpoint(
    tenant: TenantContext,
    checkpoint: { readonly sequence: number; readonly hash: string } | undefined,
  ): Promise<{ length: number; headHash: string }> {
    const walked = await this.walk(tenant, checkpoint?.sequence, checkpoint?.sequence);
    if (checkpoint !== undefined && checkpoint.sequence > 0 && walked.checkpointHash !== checkpoint.hash) {
      throw new PlatformError(
        "ERR_STORAGE",
        `the audit chain no longer holds the checkpoint at event ${checkpoint.sequence}: it was rewritten`,
      );
    }
    return { length: walked.length, headHash: walked.headHash };
  }

  private async walk(
    tenant: TenantContext,
    expectedLength: number | undefined,
    checkpointSequence?: number,
  ): Promise<{ length: number; headHash: string; checkpointHash: string | undefined }> {
    let checkpointHash: string | undefined;
    let previousHash = genesis;
    let sequence = 0;
    for (;;) {
      let event: AuditEvent | undefined;
      try {
        event = await this.read(tenant, sequence + 1);
      } catch (cause) {
        // Sealed under a key version this replica does not hold: not evidence of tampering, and no
        // verdict on the chain; the caller fetches the version (503, Retry-After) or reports it missing.
        if (cause instanceof PlatformError && cause.code === "ERR_KEY_UNAVAILABLE") {
          throw cause;
        }
        throw new PlatformError("ERR_STORAGE", `audit event ${sequence + 1} does not open: it was altered`, {
          cause,
        });
      }
      if (event === undefined) {
        break;
      }
      const chain = chainOf(event);
      if (chain?.sequence !== sequence + 1 || chain.previousHash !== previousHash) {
        throw new PlatformError("ERR_STORAGE", `the audit chain breaks at event ${sequence + 1}`);
      }
      previousHash = auditEventHash(event);
      sequence++;
      if (sequence === checkpointSequence) {
        checkpointHash = previousHash;
      }
    }
    const persisted = await this.readHead(tenant);
    const known = Math.max(
      expectedLength ?? 0,
      this.heads.get(tenant.tenantId)?.sequence ?? 0,
      persisted?.sequence ?? 0,
    );
    if (persisted !== undefined && persisted.sequence === sequence && persisted.hash !== previousHash) {
      throw new PlatformError("ERR_STORAGE", "the audit chain's head does not match its newest event");
    }
    if (sequence < known) {
      throw new PlatformError(
        "ERR_STORAGE",
        `the audit chain ends at ${sequence}, but ${known} events were written`,
      );
    }
    return { length: sequence, headHash: previousHash, checkpointHash };
  }
}
