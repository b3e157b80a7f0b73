// What `cloister up` keeps in its data directory, made on first run and reused afterwards:
//   sim-platform.json        the simulation platform (root CA, PCK, QE keys), trusted only by this stack
//   tls/ca.pem, ca-key.pem   the dev CA; tls/<service>.pem, .key: each service's certificate (reissued at start)
//   key-broker-admin-token   the key broker's admin bearer token
//   demo-credentials.json    the demo tenant's accounts and password (the platform's bootstrap file)
//   recovery/                three demo recovery custodians (custodian-N.jwk, private; custodians.json, public)
//                            and the key broker's latest backup; in production each custodian keeps their own
//                            key apart, offline
//   approvers/               three demo policy approvers (approver-N.jwk, private; approvers.json, public): the
//                            key broker takes release policy changes and version destruction only with two of
//                            their approvals; `cloister up` signs its own changes with two of them. In
//                            production each approver keeps their key on their own machine
// Secrets are written with mode 0600 and the directories with 0700.
import { createPrivateKey, generateKeyPairSync, randomBytes, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { passwordProblem } from "@cloister/platform-api/password-policy";
import {
  createSimulationPlatform,
  loadSimulationPlatform,
  type SimulationPlatform,
} from "@cloister/attestation";
import {
  createDevCertificateAuthority,
  issueServerCertificate,
  type DevCertificateAuthority,
} from "@cloister/enclave";

export const demoTenant = { id: "demo-hospital", name: "Demo Hospital" } as const;

export interface DemoAccount {
  readonly email: string;
  readonly password: string;
  readonly tenantId: string;
  readonly role: "clerk" | "clinician" | "admin";
}

export interface DataDirectory {
  readonly path: string;
  readonly platform: SimulationPlatform;
  readonly createdPlatform: boolean;
  readonly caCertPath: string;
  readonly caPem: string;
  readonly adminTokenPath: string;
  readonly demoCredentialsPath: string;
  readonly demoAccounts: readonly DemoAccount[];
  /** True when the demo password was made now (it is printed once). */
  readonly createdDemoPassword: boolean;
  readonly logs: string;
  /** The key broker's recovery: the custodians' public keys (2 of 3 restore) and where backups go. */
  readonly recovery: {
    readonly custodiansPath: string;
    readonly quorum: number;
    readonly backupPath: string;
  };
  /** The key broker's policy approvers: their public keys, the quorum, and the demo approvers' key files. */
  readonly approvals: {
    readonly approversPath: string;
    readonly quorum: number;
    readonly approverKeyPaths: readonly string[];
  };
  /** Writes a fresh certificate for a service on 127.0.0.1 and returns its PEM paths. */
  readonly serverCertificate: (service: string) => { cert: string; key: string };
}

function writeSecret(path: string, content: string): void {
  writeFileSync(path, content, { mode: 0o600 });
}

function loadOrCreateCa(tls: string): DevCertificateAuthority {
  const certPath = join(tls, "ca.pem");
  const keyPath = join(tls, "ca-key.pem");
  if (existsSync(certPath) && existsSync(keyPath)) {
    const certificatePem = readFileSync(certPath, "utf8");
    const certificate = new X509Certificate(certificatePem);
    // A CA with less than 30 days left is replaced, with every certificate it issued.
    if (Date.parse(certificate.validTo) - Date.now() > 30 * 24 * 3600 * 1000) {
      return {
        certificatePem,
        privateKey: createPrivateKey(readFileSync(keyPath, "utf8")),
        name: /CN=([^\n,]+)/.exec(certificate.subject)?.[1] ?? "Cloister Dev CA",
      };
    }
  }
  const ca = createDevCertificateAuthority(`Cloister Dev CA ${randomBytes(4).toString("hex")}`);
  writeSecret(keyPath, ca.privateKey.export({ format: "pem", type: "pkcs8" }).toString());
  writeFileSync(certPath, ca.certificatePem, { mode: 0o644 });
  return ca;
}

function demoPassword(): { password: string; created: boolean } {
  const given = process.env.CLOISTER_DEMO_PASSWORD;
  if (given !== undefined && given.length > 0) {
    // The platform's own password policy: a weak one would be refused when it creates the demo accounts.
    const problem = passwordProblem(given);
    if (problem !== undefined) {
      throw new Error(`CLOISTER_DEMO_PASSWORD: ${problem}`);
    }
    return { password: given, created: false };
  }
  // 16 random bytes: 22 base64url characters.
  return { password: randomBytes(16).toString("base64url"), created: true };
}

/** Makes (first run) or loads (later runs) everything `cloister up` keeps in `path`. */
export function prepareDataDirectory(path: string): DataDirectory {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  const tls = join(path, "tls");
  const logs = join(path, "logs");
  mkdirSync(tls, { recursive: true, mode: 0o700 });
  mkdirSync(logs, { recursive: true, mode: 0o700 });

  const createdPlatform = !existsSync(join(path, "sim-platform.json"));
  const platform = createdPlatform ? createSimulationPlatform() : loadSimulationPlatform(path);
  if (createdPlatform) {
    platform.save(path);
  }
  const ca = loadOrCreateCa(tls);

  const adminTokenPath = join(path, "key-broker-admin-token");
  if (!existsSync(adminTokenPath)) {
    writeSecret(adminTokenPath, randomBytes(32).toString("base64url"));
  }

  // Demo recovery custodians, so the local stack's key broker writes backups a restore can use.
  const recoveryDirectory = join(path, "recovery");
  mkdirSync(recoveryDirectory, { recursive: true, mode: 0o700 });
  const custodiansPath = join(recoveryDirectory, "custodians.json");
  if (!existsSync(custodiansPath)) {
    const publicKeys = [1, 2, 3].map((custodian) => {
      const pair = generateKeyPairSync("ec", { namedCurve: "P-384" });
      writeSecret(
        join(recoveryDirectory, `custodian-${custodian}.jwk`),
        `${JSON.stringify(pair.privateKey.export({ format: "jwk" }))}\n`,
      );
      return pair.publicKey.export({ format: "jwk" });
    });
    writeFileSync(custodiansPath, `${JSON.stringify({ keys: publicKeys }, null, 2)}\n`, { mode: 0o644 });
  }

  // Demo policy approvers, so the local stack's key broker enforces the two-person rule as production does.
  const approversDirectory = join(path, "approvers");
  mkdirSync(approversDirectory, { recursive: true, mode: 0o700 });
  const approversPath = join(approversDirectory, "approvers.json");
  const approverKeyPaths = [1, 2, 3].map((approver) => join(approversDirectory, `approver-${approver}.jwk`));
  if (!existsSync(approversPath)) {
    const publicKeys = approverKeyPaths.map((keyPath) => {
      const pair = generateKeyPairSync("ec", { namedCurve: "P-384" });
      writeSecret(keyPath, `${JSON.stringify(pair.privateKey.export({ format: "jwk" }))}\n`);
      return pair.publicKey.export({ format: "jwk" });
    });
    writeFileSync(approversPath, `${JSON.stringify({ keys: publicKeys }, null, 2)}\n`, { mode: 0o644 });
  }

  const demoCredentialsPath = join(path, "demo-credentials.json");
  let password: string;
  let createdDemoPassword = false;
  const stored = existsSync(demoCredentialsPath)
    ? (JSON.parse(readFileSync(demoCredentialsPath, "utf8")) as { accounts?: DemoAccount[] }).accounts
    : undefined;
  if (stored?.[0] !== undefined) {
    password = stored[0].password;
  } else {
    const made = demoPassword();
    password = made.password;
    createdDemoPassword = made.created;
  }
  // A clerk and a clinician for the portal, and an admin for `cloister audit verify`.
  const demoAccounts: DemoAccount[] = (["clerk", "clinician", "admin"] as const).map((role) => ({
    email: `${role}@demo.hospital`,
    password,
    tenantId: demoTenant.id,
    role,
  }));
  if (stored?.length !== demoAccounts.length) {
    writeSecret(
      demoCredentialsPath,
      `${JSON.stringify({ tenant: demoTenant, accounts: demoAccounts }, null, 2)}\n`,
    );
  }

  return {
    path,
    platform,
    createdPlatform,
    caCertPath: join(tls, "ca.pem"),
    caPem: ca.certificatePem,
    adminTokenPath,
    demoCredentialsPath,
    demoAccounts,
    createdDemoPassword,
    logs,
    recovery: {
      custodiansPath,
      quorum: 2,
      backupPath: join(recoveryDirectory, "key-broker-backup.json"),
    },
    approvals: { approversPath, quorum: 2, approverKeyPaths },
    serverCertificate: (service) => {
      const issued = issueServerCertificate(ca, { ips: ["127.0.0.1"], dnsNames: ["localhost"] });
      const cert = join(tls, `${service}.pem`);
      const key = join(tls, `${service}.key`);
      writeFileSync(cert, issued.cert, { mode: 0o644 });
      writeSecret(key, issued.key);
      return { cert, key };
    },
  };
}

/**
 * Claims the data directory for this `cloister up` (DIR/cloister-up.pid): two stacks on one directory would
 * write the same records and keys. A claim left by a process that no longer runs is taken over.
 * Returns the release function.
 */
export function claimDataDirectory(path: string): () => void {
  const lock = join(path, "cloister-up.pid");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(lock, `${process.pid}\n`, { flag: "wx", mode: 0o600 });
      return () => {
        rmSync(lock, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") {
        throw error;
      }
      const holder = Number.parseInt(readFileSync(lock, "utf8"), 10);
      let alive = false;
      try {
        process.kill(holder, 0);
        alive = Number.isInteger(holder) && holder > 0;
      } catch {
        alive = false;
      }
      if (alive) {
        throw new Error(
          `another cloister up (pid ${holder}) is using ${path}; stop it first, or choose --data-dir`,
        );
      }
      rmSync(lock, { force: true });
    }
  }
  throw new Error(`could not claim ${path}`);
}
