// Staff accounts, for a tenant's admins (HIPAA 164.308(a)(3)(ii)(C) and (a)(5)(ii)(D)): list them, add one
// with a temporary password, change a role, disable an account when someone leaves (its sessions end on
// every replica within seconds), unlock it, or set a temporary password when one is forgotten. Every change
// is stored with the AuditEvent that reports it, in one transaction (a change without its event, or an event
// for a change not made, is never stored), and every refused one is recorded too. With an OpenID Connect
// provider, its directory manages staff.
import type { FastifyInstance, FastifyRequest } from "fastify";
import { staffQueryEvent, type AuditInput } from "../audit/audit-trail.js";
import { PlatformError } from "../errors.js";
import type { AccountChange, AccountService, AuditedWrite } from "./accounts.js";
import { roles, type Principal, type Role } from "./sessions.js";

export interface AccountRoutesOptions {
  readonly accounts: AccountService;
  /** The signed-in caller (verified session), or a PlatformError. */
  readonly principalOf: (request: FastifyRequest) => Promise<Principal>;
  /** Records an event in a tenant's audit trail. */
  readonly record: (tenantId: string, event: AuditInput) => Promise<void>;
  /** Stores a change with the event that reports it, in one transaction (AuditTrail.recordAlong). */
  readonly audited: (tenantId: string, event: AuditInput) => AuditedWrite;
  /** Staff sign in through an OpenID Connect provider: accounts are managed there. */
  readonly external: boolean;
}

const changeFields = new Set(["role", "active", "unlock", "temporaryPassword"]);

function isRole(value: unknown): value is Role {
  return typeof value === "string" && (roles as readonly string[]).includes(value);
}

/** The change an admin asked for, checked field by field: unknown fields are refused, not ignored. */
export function parseAccountChange(body: unknown): AccountChange {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new PlatformError("ERR_BAD_REQUEST", "send a JSON object");
  }
  const fields = body as Record<string, unknown>;
  const unknown = Object.keys(fields).filter((field) => !changeFields.has(field));
  if (unknown.length > 0) {
    throw new PlatformError("ERR_BAD_REQUEST", "change role, active, unlock or temporaryPassword only");
  }
  const { role, active, unlock, temporaryPassword } = fields;
  if (role !== undefined && !isRole(role)) {
    throw new PlatformError("ERR_BAD_REQUEST", "role is clerk, clinician or admin");
  }
  if (active !== undefined && typeof active !== "boolean") {
    throw new PlatformError("ERR_BAD_REQUEST", "active is true or false");
  }
  if (unlock !== undefined && unlock !== true) {
    throw new PlatformError("ERR_BAD_REQUEST", "unlock is true");
  }
  if (temporaryPassword !== undefined && typeof temporaryPassword !== "string") {
    throw new PlatformError("ERR_BAD_REQUEST", "temporaryPassword is a string");
  }
  return {
    ...(role === undefined ? {} : { role }),
    ...(active === undefined ? {} : { active }),
    ...(unlock === undefined ? {} : { unlock }),
    ...(temporaryPassword === undefined ? {} : { temporaryPassword }),
  };
}

/** What an audit event calls each kind of change (its subtypes: one code per kind, so each can be found). */
function changeSubtypes(change: AccountChange): string[] {
  return [
    ...(change.role === undefined ? [] : ["account-role"]),
    ...(change.active === undefined ? [] : [change.active ? "account-enable" : "account-disable"]),
    ...(change.unlock === undefined ? [] : ["account-unlock"]),
    ...(change.temporaryPassword === undefined ? [] : ["account-password-reset"]),
  ];
}

export function registerAccountRoutes(app: FastifyInstance, options: AccountRoutesOptions): void {
  const { accounts, record, audited } = options;
  const adminOf = async (request: FastifyRequest): Promise<Principal> => {
    const principal = await options.principalOf(request);
    if (principal.role !== "admin") {
      throw new PlatformError("ERR_FORBIDDEN");
    }
    if (options.external) {
      throw new PlatformError("ERR_ACCOUNTS_EXTERNAL");
    }
    return principal;
  };
  /** One event per change, naming every kind of change it made; a stored change's event names its account. */
  const event = (
    principal: Principal,
    subtypes: readonly string[],
    action: AuditInput["action"],
    failed?: { readonly entity: string; readonly failure: unknown },
  ): AuditInput => ({
    type: { code: "110137", display: "User Security Attributes Changed" },
    subtype: subtypes,
    action,
    outcome: failed === undefined ? "0" : "4",
    ...(failed === undefined
      ? {}
      : { outcomeCode: failed.failure instanceof PlatformError ? failed.failure.code : "ERR_INTERNAL" }),
    agent: { id: principal.subject, role: principal.role },
    entities: failed === undefined ? [] : [failed.entity],
  });

  app.get("/admin/accounts", async (request) => {
    const principal = await adminOf(request);
    const list = await accounts.list(principal.tenantId);
    await record(principal.tenantId, staffQueryEvent(principal, "account-search", ["Account"]));
    return { accounts: list };
  });

  app.post<{ Body: unknown }>("/admin/accounts", async (request, reply) => {
    const principal = await adminOf(request);
    const body = request.body as Record<string, unknown> | null;
    const email = body?.email;
    const role = body?.role;
    const temporaryPassword = body?.temporaryPassword;
    if (typeof email !== "string" || !isRole(role) || typeof temporaryPassword !== "string") {
      throw new PlatformError("ERR_BAD_REQUEST", "send {email, role, temporaryPassword}");
    }
    let id: string;
    try {
      id = await accounts.create(
        { email, role, password: temporaryPassword, tenantId: principal.tenantId, mustChangePassword: true },
        audited(principal.tenantId, event(principal, ["account-create"], "C")),
      );
    } catch (error) {
      await record(
        principal.tenantId,
        event(principal, ["account-create"], "C", { entity: "Account", failure: error }),
      );
      throw error;
    }
    request.log.info({ audit: "account.created", account: id }, "staff account created");
    return reply.status(201).send(await accounts.summary(principal.tenantId, id));
  });

  app.patch<{ Params: { id: string }; Body: unknown }>("/admin/accounts/:id", async (request) => {
    const principal = await adminOf(request);
    const change = parseAccountChange(request.body);
    const entity = `Account/${request.params.id.slice(0, 64)}`;
    const subtypes = changeSubtypes(change);
    try {
      const changed = await accounts.update(
        principal.tenantId,
        request.params.id,
        change,
        principal.subject,
        audited(principal.tenantId, event(principal, subtypes, "U")),
      );
      request.log.info(
        { audit: "account.changed", account: changed.id, changes: subtypes.join(",") },
        "staff account changed",
      );
      return changed;
    } catch (error) {
      await record(
        principal.tenantId,
        event(principal, subtypes.length > 0 ? subtypes : ["account-update"], "U", {
          entity,
          failure: error,
        }),
      );
      throw error;
    }
  });
}
