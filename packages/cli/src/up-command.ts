// `cloister up [--data-dir DIR] [--port-base N]`: the whole platform on one machine, in simulation mode.
// Each service runs as its own process on 127.0.0.1 over TLS (dev CA), in its own simulated TEE with its
// own measurement: attestation service (N), key broker (N+1), inference server (N+2), platform API (N+3),
// portal (N+4). Keys and release policies are bound to the measurements computed here from the built code.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { devSigner, measureService } from "@cloister/enclave";
import { ExitCode, type CliIo } from "./cli-io.js";
import { claimDataDirectory, demoTenant, prepareDataDirectory } from "./up-data-directory.js";
import { ensureKey, ensureNamedSecret, readApproverKeys } from "./up-keys.js";
import { checkPortsFree, ServiceSupervisor, type ServiceSpec } from "./up-processes.js";

export const upUsage = `Usage: cloister up [--data-dir DIR] [--port-base N] [--redis-url URL]

Runs the local Cloister platform in simulation mode until Ctrl-C. The data directory (default .cloister/)
keeps the simulation platform, the dev CA, the keys, the records and the logs, so a second run continues
where the first stopped. Services listen on 127.0.0.1, ports N to N+4 (default 7443): attestation service,
key broker, inference server, platform API, portal.
The demo accounts' password comes from CLOISTER_DEMO_PASSWORD, or is made at random on first run.
With --redis-url, the platform's job queue and result cache live in that Redis instead of in memory; its
credentials ("password" or "user:password") come from CLOISTER_REDIS_CREDENTIALS and are handed to the
platform through the key broker (the secret "redis-credentials"), never through its environment.`;

const repositoryRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

export interface StackDescription {
  readonly attestation: string;
  readonly keyBroker: string;
  readonly inference: string;
  readonly platform: string;
  readonly portal: string;
  readonly caCert: string;
  readonly logs: string;
  readonly measurements: Readonly<Record<string, string>>;
  readonly pids: Readonly<Record<string, number>>;
}

export async function runUp(
  argv: readonly string[],
  io: CliIo,
  signal: AbortSignal = processSignals(),
): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        "data-dir": { type: "string", default: ".cloister" },
        "port-base": { type: "string", default: "7443" },
        "redis-url": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    io.stderr(`${(error as Error).message}\n\n${upUsage}\n`);
    return ExitCode.usage;
  }
  if (values.help === true) {
    io.stdout(`${upUsage}\n`);
    return ExitCode.ok;
  }
  const portBase = Number(values["port-base"]);
  if (!Number.isInteger(portBase) || portBase < 1024 || portBase > 65530) {
    io.stderr(`--port-base must be a whole number from 1024 to 65530\n\n${upUsage}\n`);
    return ExitCode.usage;
  }
  const redisUrl = values["redis-url"];
  const redisCredentials = process.env.CLOISTER_REDIS_CREDENTIALS;
  if (redisUrl !== undefined && (!/^rediss?:\/\/[^/@\s]+/.test(redisUrl) || redisCredentials === undefined)) {
    io.stderr(
      `--redis-url is redis://host:port (no credentials in it), with CLOISTER_REDIS_CREDENTIALS set\n\n${upUsage}\n`,
    );
    return ExitCode.usage;
  }
  const portalBuild = join(repositoryRoot, "services/portal/dist-dev");
  for (const built of ["services/platform-api/dist/main.js", "services/portal/dist-dev/index.html"]) {
    if (!existsSync(join(repositoryRoot, built))) {
      io.stderr(`cloister up: ${built} is missing; run \`npm run build\` (npm ci does it) first\n`);
      return ExitCode.rejected;
    }
  }
  const started = performance.now();
  const ports = {
    attestation: portBase,
    keyBroker: portBase + 1,
    inference: portBase + 2,
    platform: portBase + 3,
    portal: portBase + 4,
  };
  const url = (port: number): string => `https://127.0.0.1:${port}`;
  const urls = {
    attestation: url(ports.attestation),
    keyBroker: url(ports.keyBroker),
    inference: url(ports.inference),
    platform: url(ports.platform),
    portal: url(ports.portal),
  };
  const supervisorEvents = {
    onRestart: (name: string, code: number | null, exitSignal: NodeJS.Signals | null) => {
      io.stderr(`cloister up: ${name} exited (${code ?? exitSignal}); starting it again\n`);
    },
    onCrashLoop: (name: string, delayMs: number) => {
      io.stderr(
        `cloister up: ${name} keeps failing soon after starting; starting it again in ${delayMs / 1000} s. See its log in the data directory.\n`,
      );
    },
    onPidChange: () => {
      writeStack();
    },
  };
  let writeStack = (): void => undefined;
  let supervisor: ServiceSupervisor | undefined;
  let releaseClaim: (() => void) | undefined;
  try {
    await checkPortsFree([
      { name: "attestation service", port: ports.attestation },
      { name: "key broker", port: ports.keyBroker },
      { name: "inference server", port: ports.inference },
      { name: "platform API", port: ports.platform },
      { name: "portal", port: ports.portal },
    ]);
    const dataPath = resolve(values["data-dir"]);
    mkdirSync(dataPath, { recursive: true, mode: 0o700 });
    releaseClaim = claimDataDirectory(dataPath);
    const data = prepareDataDirectory(dataPath);
    const measurements = {
      "attestation-service": measureService(repositoryRoot, "attestation-service"),
      "key-broker": measureService(repositoryRoot, "key-broker"),
      "inference-server": measureService(repositoryRoot, "inference-server"),
      "platform-api": measureService(repositoryRoot, "platform-api"),
    };
    const stackFile = join(data.path, "stack.json");
    const portalConfig = join(data.path, "portal-config.json");
    writeFileSync(
      portalConfig,
      `${JSON.stringify(
        {
          platformUrl: urls.platform,
          attestationUrl: urls.attestation,
          platformMeasurements: [measurements["platform-api"]],
          tenantName: demoTenant.name,
          idleMinutes: 15,
        },
        null,
        2,
      )}\n`,
    );
    const activeSupervisor = new ServiceSupervisor(data.caPem, supervisorEvents);
    supervisor = activeSupervisor;
    writeStack = () => {
      const stack: StackDescription = {
        ...urls,
        caCert: data.caCertPath,
        logs: data.logs,
        measurements,
        pids: activeSupervisor.pids(),
      };
      // Written aside and renamed: the file changes at every restart of a service, and a reader (the
      // `cloister` commands, operators' scripts) must never see it half-written.
      const temporary = `${stackFile}.${process.pid}.tmp`;
      writeFileSync(temporary, `${JSON.stringify(stack, null, 2)}\n`);
      renameSync(temporary, stackFile);
    };
    const common = {
      CLOISTER_DATA_DIR: data.path,
      CLOISTER_LOG_LEVEL: process.env.CLOISTER_LOG_LEVEL ?? "info",
      // A developer's machine runs a browser, an editor and five services on shared cores: shed load only
      // when the loop is a second late, not at the 200 ms a dedicated pod uses.
      CLOISTER_MAX_EVENT_LOOP_DELAY_MS: process.env.CLOISTER_MAX_EVENT_LOOP_DELAY_MS ?? "1000",
      NODE_ENV: "production",
    };
    const spec = (
      name: string,
      script: string,
      env: Record<string, string>,
      serviceUrl: string,
    ): ServiceSpec => {
      const tls = data.serverCertificate(name);
      return {
        name,
        script: join(repositoryRoot, script),
        url: serviceUrl,
        logFile: join(data.logs, `${name}.log`),
        env: { ...common, CLOISTER_TLS_CERT: tls.cert, CLOISTER_TLS_KEY: tls.key, ...env },
      };
    };

    await activeSupervisor.start(
      spec(
        "attestation-service",
        "services/attestation-service/dist/main.js",
        {
          CLOISTER_ATTESTATION_PORT: String(ports.attestation),
          CLOISTER_ATTESTATION_URL: urls.attestation,
          CLOISTER_POLICY_MODE: "dev",
          CLOISTER_TRUST_SIMULATION: "1",
          CLOISTER_CORS_ORIGINS: urls.portal,
        },
        urls.attestation,
      ),
    );
    await activeSupervisor.start(
      spec(
        "key-broker",
        "services/key-broker/dist/main.js",
        {
          CLOISTER_KEY_BROKER_PORT: String(ports.keyBroker),
          CLOISTER_KEY_BROKER_ADMIN_TOKEN_FILE: data.adminTokenPath,
          CLOISTER_AUTHORITY_CA: data.caCertPath,
          // The broker attests at start: workloads verify its token before taking any key from it.
          CLOISTER_ATTESTATION_URL: urls.attestation,
          CLOISTER_RECOVERY_CUSTODIANS_FILE: data.recovery.custodiansPath,
          CLOISTER_RECOVERY_QUORUM: String(data.recovery.quorum),
          CLOISTER_RECOVERY_BACKUP_FILE: data.recovery.backupPath,
          CLOISTER_POLICY_APPROVERS_FILE: data.approvals.approversPath,
          CLOISTER_POLICY_APPROVAL_QUORUM: String(data.approvals.quorum),
        },
        urls.keyBroker,
      ),
    );
    const admin = {
      url: urls.keyBroker,
      adminToken: readFileSync(data.adminTokenPath, "utf8").trim(),
      ca: data.caPem,
      authority: urls.attestation,
      // The demo approvers sign the stack's own key changes (a quorum of them); see up-data-directory.ts.
      approverKeys: readApproverKeys(data.approvals.approverKeyPaths.slice(0, data.approvals.quorum)),
    };
    const keyOutcomes: string[] = [];
    // The OHTTP keys are shared by a service's replicas: 32 random bytes, an X25519 private key.
    const keys = [
      ...["platform-system", `tenant-${demoTenant.id}`, "platform-ohttp"].map((name) => ({
        name,
        service: "platform-api" as const,
      })),
      { name: "inference-ohttp", service: "inference-server" as const },
    ];
    for (const { name, service } of keys) {
      const outcome = await ensureKey(admin, {
        name,
        measurements: [measurements[service]],
        signer: devSigner,
      });
      keyOutcomes.push(`${name} ${outcome}`);
    }
    if (redisUrl !== undefined && redisCredentials !== undefined) {
      const outcome = await ensureNamedSecret(
        admin,
        { name: "redis-credentials", measurements: [measurements["platform-api"]], signer: devSigner },
        redisCredentials,
      );
      keyOutcomes.push(`redis-credentials ${outcome}`);
    }

    const peers = {
      CLOISTER_CA: data.caCertPath,
      CLOISTER_ATTESTATION_URL: urls.attestation,
      // Who the key broker must be, checked before any key is taken from it.
      CLOISTER_KEY_BROKER_MEASUREMENTS: measurements["key-broker"],
      // The local stack runs on the simulation, whose enclaves are debuggable.
      CLOISTER_PEER_ALLOW_SIMULATION: "true",
      CLOISTER_PEER_ALLOW_DEBUG: "true",
    };
    await Promise.all([
      activeSupervisor.start(
        spec(
          "inference-server",
          "services/inference-server/dist/main.js",
          {
            ...peers,
            CLOISTER_INFERENCE_PORT: String(ports.inference),
            CLOISTER_KEY_BROKER_URL: urls.keyBroker,
            CLOISTER_CALLER_MEASUREMENTS: measurements["platform-api"],
            CLOISTER_CALLER_ALLOW_SIMULATION: "true",
            CLOISTER_CALLER_ALLOW_DEBUG: "true",
          },
          urls.inference,
        ),
      ),
      activeSupervisor.start(
        spec(
          "platform-api",
          "services/platform-api/dist/main.js",
          {
            ...peers,
            CLOISTER_PLATFORM_PORT: String(ports.platform),
            CLOISTER_PLATFORM_URL: urls.platform,
            CLOISTER_KEY_BROKER_URL: urls.keyBroker,
            CLOISTER_INFERENCE_URL: urls.inference,
            CLOISTER_INFERENCE_MEASUREMENTS: measurements["inference-server"],
            CLOISTER_TENANTS: demoTenant.id,
            // The local stack has one tenant, whose admin also operates the platform (cloister keys --system).
            CLOISTER_OPERATOR_TENANT: demoTenant.id,
            CLOISTER_CORS_ORIGINS: urls.portal,
            CLOISTER_BOOTSTRAP_ACCOUNTS: data.demoCredentialsPath,
            ...(redisUrl === undefined ? {} : { CLOISTER_REDIS_URL: redisUrl }),
          },
          urls.platform,
        ),
      ),
      activeSupervisor.start(
        spec(
          "portal",
          "packages/cli/dist/portal-server-main.js",
          {
            CLOISTER_PORTAL_PORT: String(ports.portal),
            CLOISTER_PORTAL_ROOT: portalBuild,
            CLOISTER_PORTAL_CONFIG: portalConfig,
          },
          urls.portal,
        ),
      ),
    ]);
    writeStack();
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const [firstAccount] = data.demoAccounts;
    io.stdout(
      [
        `Cloister is up (simulation mode, ${seconds} s). Data directory: ${data.path}`,
        "",
        `  portal               ${urls.portal}`,
        `  platform API         ${urls.platform}   (measurement ${measurements["platform-api"].slice(0, 16)}…)`,
        `  inference server     ${urls.inference}   (measurement ${measurements["inference-server"].slice(0, 16)}…)`,
        `  key broker           ${urls.keyBroker}   (keys: ${keyOutcomes.join(", ")})`,
        `                       backed up for ${data.recovery.quorum} of 3 demo recovery custodians: ${data.recovery.backupPath}`,
        `                       policy changes need ${data.approvals.quorum} of 3 demo approvers: ${dirname(data.approvals.approversPath)}`,
        `  attestation service  ${urls.attestation}   (trusts this stack's simulation root only)`,
        "",
        `Trust the dev CA in your browser or system: ${data.caCertPath}`,
        "  (Chromium: Settings → Privacy and security → Security → Manage certificates → Authorities → Import)",
        "",
        `Demo login (${demoTenant.name}): ${data.demoAccounts
          .filter((account) => account.role !== "admin")
          .map((account) => account.email)
          .join(
            " or ",
          )}   (audit: ${data.demoAccounts.find((account) => account.role === "admin")?.email ?? "-"})`,
        data.createdDemoPassword && firstAccount !== undefined
          ? `  password: ${firstAccount.password}   (shown once; kept in ${data.demoCredentialsPath}, mode 0600)`
          : `  password: in ${data.demoCredentialsPath}`,
        "",
        `Stack: ${stackFile}   Logs: ${data.logs}`,
        "Press Ctrl-C to stop.",
        "",
      ].join("\n"),
    );
  } catch (error) {
    io.stderr(`cloister up: ${(error as Error).message}\n`);
    await supervisor?.stopAll();
    releaseClaim?.();
    return ExitCode.rejected;
  }
  await new Promise<void>((resolveStop) => {
    if (signal.aborted) {
      resolveStop();
    }
    signal.addEventListener(
      "abort",
      () => {
        resolveStop();
      },
      { once: true },
    );
  });
  io.stdout("Stopping…\n");
  await supervisor.stopAll();
  releaseClaim();
  io.stdout("Stopped.\n");
  return ExitCode.ok;
}

/** Aborts on the first SIGINT or SIGTERM (Ctrl-C). */
function processSignals(): AbortSignal {
  const controller = new AbortController();
  for (const name of ["SIGINT", "SIGTERM"] as const) {
    process.once(name, () => {
      controller.abort();
    });
  }
  return controller.signal;
}
