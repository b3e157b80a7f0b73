// The key broker's recovery (see @cloister/enclave's key-recovery.ts for the scheme): a fresh backup after
// every change, and the restore of a backup into an empty store from a quorum of custodians' shares.
//   GET  /recovery/backup   (admin) the latest backup: ciphertext only, to copy off the node
//   POST /recovery          (admin) {backup} begins a restore into this (empty) broker: answers its exchange key,
//                           bound with the backup's digest into fresh evidence
//   GET  /recovery          the restore in progress (what custodians verify)
//   POST /recovery/shares   {share: JWE to the exchange key} from one custodian; at the quorum, the store is
//                           rebuilt inside the TEE and sealed to this broker
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { exportJWK, type JWK } from "jose";
import {
  attestRequestBody,
  createRecoveryBackup,
  openRecoveryBackup,
  openSubmittedShare,
  parseRecoveryBackup,
  recoveryBackupDigest,
  type Evidence,
  type RecoveryBackup,
  type RecoveryExchange,
  type RecoveryShare,
  type TeeProvider,
} from "@cloister/enclave";
import { BrokerError } from "./errors.js";
import { writeFileAtomically, type SealedKeyStore } from "./key-store.js";
import { publicKeySetFromFile, quorumFromEnv } from "./public-key-sets.js";

export interface RecoveryConfig {
  /**
   * The custodians' public keys (RSA, or EC P-256/P-384), from the broker's measured configuration: whoever
   * could change them could have the store encrypted to themselves.
   */
  readonly custodians: readonly JWK[];
  /** How many custodians' shares rebuild the store (at least 2 in production). */
  readonly quorum: number;
  /** Where to write each backup (off the encrypted data mount, e.g. a file share); only served when unset. */
  readonly backupFile?: string;
}

/**
 * The recovery configuration from the environment: CLOISTER_RECOVERY_CUSTODIANS_FILE (a JWK Set of the
 * custodians' public keys; under Gramine a trusted, measured file), CLOISTER_RECOVERY_QUORUM (default 2, or 1
 * with one custodian) and CLOISTER_RECOVERY_BACKUP_FILE (default `defaultBackupFile`). Undefined without
 * custodians. Throws on a malformed file, a private key in it, or a quorum out of range.
 */
export function recoveryConfigFromEnv(
  env: NodeJS.ProcessEnv,
  readFile: (path: string) => string,
  defaultBackupFile: string,
): RecoveryConfig | undefined {
  const file = env.CLOISTER_RECOVERY_CUSTODIANS_FILE;
  if (file === undefined || file === "") {
    return undefined;
  }
  const custodians = publicKeySetFromFile(file, readFile, "custodian", ["P-256", "P-384", "P-521"]);
  const quorum = quorumFromEnv(env.CLOISTER_RECOVERY_QUORUM, custodians.length, "CLOISTER_RECOVERY_QUORUM");
  return { custodians, quorum, backupFile: env.CLOISTER_RECOVERY_BACKUP_FILE ?? defaultBackupFile };
}

interface Restore {
  readonly backup: RecoveryBackup;
  readonly digest: string;
  readonly exchangePrivateKey: KeyObject;
  readonly view: RecoveryExchange;
  readonly shares: Map<number, RecoveryShare>;
}

/** How many dated backups are kept next to the latest. */
export const keptBackups = 30;

/**
 * Writes `backupFile` (the latest) and a dated copy beside it (`<name>-<time>.json`), keeping the newest
 * `keptBackups` dated copies, so an older backup is still there if a later one is unusable.
 */
function writeBackupFiles(backupFile: string, backup: RecoveryBackup): void {
  const text = JSON.stringify(backup);
  mkdirSync(dirname(backupFile), { recursive: true });
  const base = basename(backupFile, ".json");
  const dated = `${base}-${backup.createdAt.replace(/[^0-9TZ]/g, "")}.json`;
  writeFileAtomically(join(dirname(backupFile), dated), text);
  writeFileAtomically(backupFile, text);
  const copies = readdirSync(dirname(backupFile))
    .filter((name) => name.startsWith(`${base}-`) && name.endsWith(".json"))
    .sort();
  for (const old of copies.slice(0, Math.max(0, copies.length - keptBackups))) {
    rmSync(join(dirname(backupFile), old), { force: true });
  }
}

/**
 * Adds the recovery routes; answers `backupChanged`, which the store calls after every write, and
 * `backupsWritten`, which settles once the backups asked for so far are written. Without
 * `recovery` the routes answer ERR_RECOVERY_STATE and nothing is written.
 */
export function registerRecovery(
  app: FastifyInstance,
  options: {
    readonly store: () => SealedKeyStore;
    readonly provider: TeeProvider;
    readonly recovery: RecoveryConfig | undefined;
    readonly requireAdmin: (request: FastifyRequest) => Promise<void>;
    readonly now: () => Date;
    /** After each backup attempt: whether it was written (for the backup-behind gauge). */
    readonly onBackup?: (written: boolean) => void;
  },
): { backupChanged: () => void; backupsWritten: () => Promise<void> } {
  const { recovery } = options;
  let latest: RecoveryBackup | undefined;
  let writes: Promise<void> = Promise.resolve();
  let pending = false;
  let restore: Restore | undefined;

  // One backup at a time, of the store as it is when the write starts; changes meanwhile make one more.
  const backupChanged = (): void => {
    if (recovery === undefined || pending) {
      return;
    }
    pending = true;
    writes = writes
      .then(async () => {
        pending = false;
        const keys = options.store().list().length;
        // An empty store is never backed up: a broker started empty on a new node must not replace the
        // backup it is about to be restored from.
        if (keys === 0) {
          return;
        }
        const backup = await createRecoveryBackup(
          options.store().exportKeys(),
          recovery.custodians,
          recovery.quorum,
          options.now(),
        );
        // Served to the admin even if the volume cannot take it, so a copy can be saved elsewhere.
        latest = backup;
        if (recovery.backupFile !== undefined) {
          writeBackupFiles(recovery.backupFile, backup);
        }
        options.onBackup?.(true);
        app.log.info({ audit: "recovery.backup-written", keys }, "recovery backup written");
      })
      .catch((error: unknown) => {
        options.onBackup?.(false);
        app.log.error(
          { errorName: error instanceof Error ? error.name : "unknown" },
          "the recovery backup could not be written",
        );
      });
  };
  app.addHook("onClose", async () => {
    await writes;
  });

  const configured = (): RecoveryConfig => {
    if (recovery === undefined) {
      throw new BrokerError(
        "ERR_RECOVERY_STATE",
        "no recovery custodians are configured (CLOISTER_RECOVERY_CUSTODIANS_FILE)",
      );
    }
    return recovery;
  };

  app.get("/recovery/backup", { preHandler: options.requireAdmin }, async (request) => {
    configured();
    if (options.store().list().length === 0) {
      throw new BrokerError(
        "ERR_RECOVERY_STATE",
        "this broker holds no keys: there is nothing to back up (keep the backups you have)",
      );
    }
    backupChanged();
    await writes;
    if (latest === undefined) {
      throw new BrokerError("ERR_INTERNAL", "the recovery backup could not be made");
    }
    request.log.info({ audit: "recovery.backup-read" }, "recovery backup read");
    return latest;
  });

  app.post<{ Body: { backup?: unknown } }>(
    "/recovery",
    { preHandler: options.requireAdmin },
    async (request) => {
      configured();
      let backup: RecoveryBackup;
      try {
        backup = parseRecoveryBackup(request.body.backup);
      } catch {
        throw new BrokerError("ERR_RECOVERY_INVALID", "the body must be {backup: <a key broker backup>}");
      }
      if (options.store().list().length > 0) {
        throw new BrokerError(
          "ERR_RECOVERY_STATE",
          "a restore needs an empty store: this broker holds keys already",
        );
      }
      const digest = recoveryBackupDigest(backup);
      if (restore?.digest !== digest) {
        // A new exchange key, made here and bound with the backup's digest into fresh evidence.
        const exchange = generateKeyPairSync("ec", { namedCurve: "P-256" });
        const exchangeKey: JWK = {
          ...(await exportJWK(exchange.publicKey)),
          use: "enc",
          alg: "ECDH-ES",
          kid: "recovery-exchange",
        };
        const runtimeData = new TextEncoder().encode(
          JSON.stringify({ service: "key-broker", keys: [exchangeKey], recovery: { backup: digest } }),
        );
        const evidence: Evidence = await options.provider.getEvidence(runtimeData);
        restore = {
          backup,
          digest,
          exchangePrivateKey: exchange.privateKey,
          shares: new Map(),
          view: {
            exchangeKey,
            backup: digest,
            quorum: backup.quorum,
            received: 0,
            evidenceType: evidence.type,
            attest: attestRequestBody(evidence, runtimeData),
          },
        };
        request.log.info(
          { audit: "recovery.started", quorum: backup.quorum, custodians: backup.shares.length },
          "restore of a recovery backup started",
        );
      }
      return { ...restore.view, received: restore.shares.size };
    },
  );

  const inProgress = (): Restore => {
    if (restore === undefined) {
      throw new BrokerError("ERR_RECOVERY_STATE", "no restore is in progress");
    }
    return restore;
  };

  app.get("/recovery", async () => {
    const current = inProgress();
    return { ...current.view, received: current.shares.size };
  });

  app.post<{ Body: { share?: unknown } }>("/recovery/shares", async (request) => {
    const current = inProgress();
    const sealed = request.body.share;
    if (typeof sealed !== "string" || sealed.length > 16_384) {
      throw new BrokerError("ERR_RECOVERY_INVALID", "the body must be {share: <JWE to the exchange key>}");
    }
    let share: RecoveryShare;
    try {
      share = await openSubmittedShare(current.backup, sealed, current.exchangePrivateKey);
    } catch {
      request.log.warn({ audit: "recovery.share-refused" }, "recovery share refused");
      throw new BrokerError("ERR_RECOVERY_INVALID", "the share does not open, or belongs to another backup");
    }
    if (restore !== current) {
      throw new BrokerError("ERR_RECOVERY_STATE", "the restore ended meanwhile");
    }
    current.shares.set(share.x, share);
    request.log.info(
      { audit: "recovery.share-received", share: share.x, received: current.shares.size },
      "recovery share received",
    );
    if (current.shares.size < current.backup.quorum) {
      return { received: current.shares.size, quorum: current.backup.quorum, restored: false };
    }
    // The quorum: this request rebuilds the store; another one arriving meanwhile finds no restore.
    restore = undefined;
    let document: Uint8Array;
    try {
      document = await openRecoveryBackup(current.backup, [...current.shares.values()]);
    } catch {
      restore = current;
      throw new BrokerError("ERR_RECOVERY_INVALID", "the backup does not open with these shares");
    }
    let keys: number;
    try {
      if (options.store().list().length > 0) {
        throw new BrokerError("ERR_RECOVERY_STATE", "keys were created during the restore");
      }
      keys = options.store().importKeys(document);
    } catch (error) {
      if (error instanceof BrokerError) {
        throw error;
      }
      // The store wrote nothing (importKeys is all or nothing) and the restore goes on: a custodian sends
      // their share again once the volume is fixed. The system's error code (ENOSPC, EIO) names no secret.
      restore = current;
      request.log.error(
        { audit: "recovery.restore-failed", errorCode: (error as NodeJS.ErrnoException).code ?? "unknown" },
        "the restored keys could not be written; nothing was kept",
      );
      throw new BrokerError(
        "ERR_INTERNAL",
        "the restored keys could not be written, so none were kept; the restore is still in progress",
      );
    } finally {
      document.fill(0);
    }
    request.log.info({ audit: "recovery.restored", keys }, "recovery backup restored");
    return { received: current.shares.size, quorum: current.backup.quorum, restored: true, keys };
  });

  return { backupChanged, backupsWritten: () => writes };
}
