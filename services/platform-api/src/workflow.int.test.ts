// The diagnosis workflow end to end on loopback: the platform verifies the attested inference server,
// sends the image sealed with OHTTP carrying its own attestation, and records the report, observations and
// provenance once, or a cancelled report with the reason.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { encodeDicom, readMedMnistSplit } from "@cloister/imaging";
import {
  inferenceMeasurement,
  startConfidentialStack,
  type ConfidentialStack,
} from "@cloister/inference-server/test-support";
import type { FastifyInstance } from "fastify";
import { PNG } from "pngjs";
import {
  AccountService,
  buildApp,
  createLocalSessions,
  createMemoryJobQueue,
  createMemoryResultCache,
  deriveTenantKeyring,
  openSqliteStore,
  type DiagnosisJob,
  type RecordStore,
} from "./app.js";
import { deriveTenantKeyringGenerations, openRecord } from "./storage/record-crypto.js";
import type { AiPerformance, ModelPerformance } from "./fhir/ai-performance.js";
import { FhirRepository } from "./fhir/repository.js";
import { pneumoniaOrder } from "./test-support/orders.js";
import { modelCodeSystem } from "./workflow/diagnosis-worker.js";

const medmnist = new URL("../../../../shared/data/medmnist/pneumoniamnist_trainval.npz", import.meta.url)
  .pathname;
const validation = readMedMnistSplit(medmnist, "val");
const scratch = mkdtempSync(join(tmpdir(), "cloister-workflow-"));
const password = "correct horse battery staple";
const tenantKey = randomBytes(32);
const tenantKeyring = deriveTenantKeyring(tenantKey, "demo");
// What the key broker releases for the tenant; the last test rotates it, as another replica's admin would.
let keyringAtBroker = tenantKeyring;
let platformKeyring = tenantKeyring;
let keyringRefreshes = 0;
let queue: ReturnType<typeof createMemoryJobQueue>;
let stack: ConfidentialStack;
let store: RecordStore;
let app: FastifyInstance;
let url = "";
let platformLogs = "";
let inferenceLogs = "";
const capture = (sink: (text: string) => void): Writable =>
  new Writable({
    write(chunk: Buffer, _encoding, done) {
      sink(chunk.toString());
      done();
    },
  });
const tokens: Record<string, string> = {};
/** When set, a worker that has read its order waits here before it asks the inference server. */
let inferenceGate: { reached: () => void; open: Promise<void> } | undefined;

/** Makes the next worker wait at the gate: `atInference` settles when it is there, `open` lets it go on. */
function closeInferenceGate(): { atInference: Promise<void>; open: () => void } {
  let reached: () => void = () => undefined;
  let open: () => void = () => undefined;
  const atInference = new Promise<void>((resolve) => (reached = resolve));
  inferenceGate = { reached, open: new Promise<void>((resolve) => (open = resolve)) };
  return { atInference, open };
}

let systemKeyring: ReturnType<typeof deriveTenantKeyring>;
const cache = createMemoryResultCache();
let accounts: AccountService;
let sessions: Awaited<ReturnType<typeof createLocalSessions>>;

/** Starts the platform on the shared store with a fresh in-memory queue (on the same port after a crash). */
async function startPlatform(port = 0): Promise<void> {
  app = await buildApp({
    baseUrl: "http://127.0.0.1",
    store,
    accounts,
    systemKeyring,
    sessions,
    tenantKeyring: async () => platformKeyring,
    refreshTenantKeyring: async () => {
      keyringRefreshes++;
      platformKeyring = keyringAtBroker;
      return platformKeyring;
    },
    workflow: {
      queue: (queue = createMemoryJobQueue()),
      inference: async () => {
        const gate = inferenceGate;
        if (gate !== undefined) {
          gate.reached();
          await gate.open;
        }
        return stack.client;
      },
      maxAttempts: 6,
      cache,
    },
    attestation: stack.caller,
    logger: { level: "info", stream: capture((text) => (platformLogs += text)) },
  });
  url = await app.listen({ port, host: "127.0.0.1" });
}

before(async () => {
  stack = await startConfidentialStack({ logStream: capture((text) => (inferenceLogs += text)) });
  store = openSqliteStore(join(scratch, "records.db"));
  systemKeyring = deriveTenantKeyring(randomBytes(32), "_system");
  accounts = new AccountService(store, systemKeyring);
  sessions = await createLocalSessions({ issuer: "http://127.0.0.1" });
  await accounts.create({ email: "clerk@demo.test", password, tenantId: "demo", role: "clerk" });
  await accounts.create({ email: "clinician@demo.test", password, tenantId: "demo", role: "clinician" });
  await startPlatform();
  for (const who of ["clerk", "clinician"]) {
    const response = await app.inject({
      method: "POST",
      url: "/auth/login",
      payload: { email: `${who}@demo.test`, password },
    });
    tokens[who] = response.json<{ accessToken: string }>().accessToken;
  }
});
after(async () => {
  await app.close();
  await store.close();
  await stack.close();
  rmSync(scratch, { recursive: true, force: true });
});

async function fhir(
  who: string,
  method: "GET" | "POST",
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
) {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${tokens[who] ?? ""}`,
      ...(body === undefined ? {} : { "content-type": "application/fhir+json" }),
      ...headers,
    },
    ...(body === undefined
      ? {}
      : { body: body instanceof Uint8Array ? new Uint8Array(body) : JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

function png(index: number): Buffer {
  const image = new PNG({ width: 28, height: 28 });
  validation.images.subarray(index * 784, (index + 1) * 784).forEach((value, i) => {
    image.data.set([value, value, value, 255], i * 4);
  });
  return PNG.sync.write(image);
}

async function order(
  image: Uint8Array,
  person: { family: string; mrn: string; birthDate?: string; gender?: string } = {
    family: "Testperson",
    mrn: `MRN-${randomBytes(4).toString("hex")}`,
  },
  /** More of the ServiceRequest (its priority). */
  details: Record<string, unknown> = {},
  contentType = "image/png",
): Promise<string> {
  const patient = await fhir("clerk", "POST", "/fhir/Patient", {
    resourceType: "Patient",
    identifier: [{ system: "urn:mrn", value: person.mrn }],
    name: [{ family: person.family }],
    ...(person.birthDate === undefined ? {} : { birthDate: person.birthDate }),
    ...(person.gender === undefined ? {} : { gender: person.gender }),
  });
  const binary = await fhir("clerk", "POST", "/fhir/Binary", image, {
    "content-type": contentType,
    "x-security-context": `Patient/${String(patient.body.id)}`,
  });
  assert.equal(binary.status, 201);
  const request = await fhir("clerk", "POST", "/fhir/ServiceRequest", {
    ...pneumoniaOrder(String(patient.body.id), String(binary.body.id)),
    ...details,
  });
  assert.equal(request.status, 201, JSON.stringify(request.body));
  return String(request.body.id);
}

/** A review's FHIR Parameters. */
function verdict(outcome: string, note?: string) {
  return {
    resourceType: "Parameters",
    parameter: [
      { name: "outcome", valueCode: outcome },
      ...(note === undefined ? [] : [{ name: "note", valueString: note }]),
    ],
  };
}

/** The ids of the tenant's reports awaiting a clinician's review, as the worklist finds them. */
async function reportsAwaitingReview(): Promise<string[]> {
  const found = await fhir("clinician", "GET", "/fhir/DiagnosticReport?status=preliminary&_count=500");
  return ((found.body.entry ?? []) as { resource: { id: string } }[]).map((entry) => entry.resource.id);
}

async function reportFor(serviceRequestId: string): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const found = await fhir(
      "clinician",
      "GET",
      `/fhir/DiagnosticReport?based-on=ServiceRequest/${serviceRequestId}`,
    );
    const entry = (found.body.entry as { resource: Record<string, unknown> }[] | undefined)?.[0];
    if (entry !== undefined) {
      return entry.resource;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error("no report within 30 s");
}

describe("the platform's own attestation", () => {
  it("serves evidence that the attestation service turns into a token binding the platform's keys", async () => {
    const evidence = (await (await fetch(`${url}/attestation`)).json()) as {
      quote: string;
      runtimeData: { data: string; dataType: string };
      token: string;
    };
    assert.equal(evidence.runtimeData.dataType, "JSON");
    const attested = await stack.attestationService.inject({
      method: "POST",
      url: "/attest/SgxEnclave?api-version=2022-08-01",
      payload: { quote: evidence.quote, runtimeData: evidence.runtimeData },
    });
    assert.equal(attested.statusCode, 200, attested.body);
    const runtime = JSON.parse(Buffer.from(evidence.runtimeData.data, "base64url").toString()) as {
      keys: unknown[];
      ohttp: string;
    };
    assert.equal(runtime.keys.length, 1);
    assert.equal(typeof runtime.ohttp, "string");
  });
});

describe("diagnosis workflow", () => {
  it("orders an analysis, announces the result over SSE, and records report, observations and provenance", async () => {
    const events = await fetch(`${url}/events`, {
      headers: { authorization: `Bearer ${tokens.clinician ?? ""}` },
    });
    assert.equal(events.headers.get("content-type"), "text/event-stream");
    const reader = events.body?.getReader();
    assert.ok(reader);

    // Index 1 of the validation split is a pneumonia image.
    assert.equal(validation.labels[1], 1);
    const requestId = await order(png(1));
    const report = await reportFor(requestId);
    assert.equal(report.status, "preliminary");
    assert.match(String(report.conclusion), /pneumonia/);
    assert.match(String(report.conclusion), /not a diagnosis/);

    let announced = "";
    while (!announced.includes(`ServiceRequest/${requestId}`)) {
      const chunk = await reader.read();
      announced += new TextDecoder().decode(chunk.value);
    }
    assert.match(announced, /event: DiagnosticReport/);
    await reader.cancel();
    // The event names the order and its patient (ids only), so a page open on that patient can tell.
    const data = announced
      .split("\n")
      .filter((line) => line.startsWith("data: ") && line.includes(requestId))
      .map((line) => JSON.parse(line.slice(6)) as Record<string, unknown>);
    assert.deepEqual(data, [
      {
        type: "DiagnosticReport",
        id: report.id,
        status: "preliminary",
        basedOn: `ServiceRequest/${requestId}`,
        subject: (report.subject as { reference: string }).reference,
      },
    ]);

    const results = report.result as { reference: string }[];
    const observations = await Promise.all(
      results.map(async (r) => (await fhir("clinician", "GET", `/fhir/${r.reference}`)).body),
    );
    const probabilities = observations.flatMap((o) => {
      const value = (o.valueQuantity as { value?: number } | undefined)?.value;
      return value === undefined ? [] : [value];
    });
    assert.equal(probabilities.length, 2);
    assert.ok(Math.abs(probabilities.reduce((a, b) => a + b, 0) - 1) < 1e-4);
    const provenance = await fhir(
      "clinician",
      "GET",
      `/fhir/Provenance?target=DiagnosticReport/${String(report.id)}`,
    );
    const agents = JSON.stringify(provenance.body);
    assert.ok(
      agents.includes(inferenceMeasurement),
      "the provenance names the attested inference measurement",
    );
    assert.ok(
      agents.includes(stack.models.find((m) => m.config.name === "chest-xray-pneumonia")?.sha256 ?? "none"),
    );
    const request = await fhir("clerk", "GET", `/fhir/ServiceRequest/${requestId}`);
    assert.equal(request.body.status, "completed");
    assert.equal(
      (await fhir("clerk", "GET", `/fhir/DiagnosticReport/${String(report.id)}`)).status,
      403,
      "clerks do not read results",
    );

    // The workflow's own writes are audited too: the result and the order's completion were stored in one
    // transaction with one AuditEvent naming every resource written.
    const workflowEvents: string[][] = [];
    for (let sequence = 1; ; sequence++) {
      const stored = await store.current("demo", "AuditEvent", `audit-${sequence}`);
      if (stored === undefined) {
        break;
      }
      const event = JSON.parse(
        openRecord(
          tenantKeyring,
          { tenantId: "demo", type: "AuditEvent", id: stored.id, versionId: stored.versionId },
          stored.body,
        ).toString("utf8"),
      ) as {
        agent: { who: { identifier: { value: string } } }[];
        entity?: { what: { reference: string } }[];
      };
      if (event.agent[0]?.who.identifier.value === "cloister-workflow") {
        workflowEvents.push((event.entity ?? []).map((entity) => entity.what.reference));
      }
    }
    const provenanceId = (provenance.body.entry as { resource: { id: string } }[])[0]?.resource.id;
    const written = workflowEvents.filter((entities) => entities.includes(`ServiceRequest/${requestId}`));
    assert.equal(written.length, 1, "one AuditEvent for the order's outcome");
    assert.deepEqual(
      [...(written[0] ?? [])].sort(),
      [
        `DiagnosticReport/${String(report.id)}`,
        ...results.map((r) => r.reference),
        `Provenance/${provenanceId ?? ""}`,
        `ServiceRequest/${requestId}`,
        // The patient whose record it is, for access reports.
        (report.subject as { reference: string }).reference,
      ].sort(),
    );

    // A second delivery of the same job writes nothing new.
    assert.equal(await app.recoverDiagnosisJobs(["demo"]), 0, "completed requests are not active any more");
    const again = await reportFor(requestId);
    assert.equal((again.meta as { versionId: string }).versionId, "1");
  });

  it("carries an order's priority to its job and its result, so urgent ones are analysed, found, counted and shown first", async () => {
    // The jobs the platform queues (the queue itself takes urgent ones first: redis-job-queue.int.test.ts).
    const queued: DiagnosisJob[] = [];
    const enqueue = queue.enqueue;
    Object.assign(queue, {
      enqueue: async (job: DiagnosisJob, delayMs?: number) => {
        queued.push(job);
        await enqueue(job, delayMs);
      },
    });
    const statOrder = await order(png(1), undefined, { priority: "stat" });
    const routineOrder = await order(png(2));
    Object.assign(queue, { enqueue });
    assert.deepEqual(
      queued.map((job) => [job.serviceRequestId, job.urgent]),
      [
        [statOrder, true],
        [routineOrder, undefined],
      ],
    );
    const statReport = await reportFor(statOrder);
    const routineReport = await reportFor(routineOrder);
    const priorityOf = (report: Record<string, unknown>) =>
      (report.extension as { url: string; valueCode?: string }[] | undefined)?.find(
        (extension) => extension.url === "https://cloister.dev/fhir/StructureDefinition/order-priority",
      )?.valueCode;
    assert.equal(priorityOf(statReport), "stat");
    assert.equal(priorityOf(routineReport), "routine", "an order that names none is routine");

    const ids = (bundle: Record<string, unknown>) =>
      ((bundle.entry ?? []) as { resource: { id: string } }[]).map((entry) => entry.resource.id);
    const urgent = await fhir(
      "clinician",
      "GET",
      "/fhir/DiagnosticReport?status=preliminary&order-priority=stat,asap,urgent&_count=500",
    );
    assert.ok(ids(urgent.body).includes(String(statReport.id)));
    assert.ok(!ids(urgent.body).includes(String(routineReport.id)));
    const orders = await fhir("clerk", "GET", "/fhir/ServiceRequest?priority=stat&_count=500");
    assert.ok(ids(orders.body).includes(statOrder));
    assert.ok(!ids(orders.body).includes(routineOrder));

    // Counted apart for their gauge and alert.
    const waiting = await app.countReviewBacklog(["demo"]);
    assert.ok(waiting.urgent.count >= 1 && waiting.urgent.count < waiting.count, JSON.stringify(waiting));
    assert.ok(
      waiting.urgent.oldestIssuedMs !== undefined &&
        waiting.urgent.oldestIssuedMs <= Date.parse(String(statReport.issued)),
    );
    const gauges = (await app.inject({ method: "GET", url: "/metrics" })).body;
    assert.match(
      gauges,
      new RegExp(`^diagnosis_urgent_reports_awaiting_review ${waiting.urgent.count}$`, "m"),
    );
    assert.match(gauges, /^diagnosis_urgent_report_oldest_awaiting_review_seconds \d/m);

    // A priority outside FHIR's request-priority codes is refused, naming the element.
    const refused = await fhir("clerk", "POST", "/fhir/ServiceRequest", {
      ...pneumoniaOrder("any", "any"),
      priority: "whenever",
    });
    assert.equal(refused.status, 400);
    assert.match(JSON.stringify(refused.body), /ServiceRequest\.priority/);
    // The CapabilityStatement says what the parameter searches.
    const metadata = JSON.stringify((await fhir("clinician", "GET", "/fhir/metadata")).body);
    assert.match(
      metadata,
      /"name":"order-priority","type":"token","documentation":"The priority of the order/,
    );
  });

  it("analyses only patients the model is for: no result for an adult from the paediatric model, nor for a man from the breast model, and the order says why", async () => {
    const person = (birthDate?: string, gender?: string) => ({
      family: "Agecheck",
      mrn: `MRN-${randomBytes(4).toString("hex")}`,
      ...(birthDate === undefined ? {} : { birthDate }),
      ...(gender === undefined ? {} : { gender }),
    });
    // Three years old today: within the model's 1 to 5 years.
    const child = new Date(Date.now() - 3 * 365 * 86_400_000).toISOString().slice(0, 10);
    const [adultOrder, childOrder, unknownOrder] = [
      await order(png(1), person("1961-04-12")),
      await order(png(1), person(child)),
      await order(png(1), person()),
    ];
    const adult = await reportFor(adultOrder);
    assert.equal(adult.status, "cancelled");
    assert.match(String(adult.conclusion), /ERR_OUTSIDE_INTENDED_USE/);
    assert.equal(adult.result, undefined, "no result");
    const adultRequest = (await fhir("clerk", "GET", `/fhir/ServiceRequest/${adultOrder}`)).body;
    assert.equal(adultRequest.status, "revoked");
    assert.match(
      JSON.stringify(adultRequest.note),
      /outside the patients the model is for, so it was not run/,
    );

    const analysed = await reportFor(childOrder);
    assert.equal(analysed.status, "preliminary");
    assert.doesNotMatch(String(analysed.conclusion), /birth date/);
    // No birth date recorded: analysed, and the report says the age could not be checked.
    const unchecked = await reportFor(unknownOrder);
    assert.equal(unchecked.status, "preliminary");
    assert.match(
      String(unchecked.conclusion),
      /The model is for patients aged 1 to 5 years; this patient's record does not show whether they are one\./,
    );
    // No birth date recorded, but the DICOM image's own header names one (1961): that adult is refused too.
    const adultDicom = encodeDicom({
      rows: 28,
      columns: 28,
      pixels: validation.images.subarray(784, 2 * 784),
      patientBirthDate: "19610412",
    });
    const fromHeader = await reportFor(await order(adultDicom, person(), {}, "application/dicom"));
    assert.equal(fromHeader.status, "cancelled");
    assert.match(String(fromHeader.conclusion), /ERR_OUTSIDE_INTENDED_USE/);

    // The breast ultrasound model learned from women aged 25 to 75: a man's image is not analysed by it.
    const breast = { code: { coding: [{ system: modelCodeSystem, code: "breast-ultrasound" }] } };
    const man = await reportFor(await order(png(1), person("1961-04-12", "male"), breast));
    assert.equal(man.status, "cancelled");
    assert.match(String(man.conclusion), /ERR_OUTSIDE_INTENDED_USE/);
    const woman = await reportFor(await order(png(1), person("1961-04-12", "female"), breast));
    assert.equal(woman.status, "preliminary");
    assert.doesNotMatch(String(woman.conclusion), /does not show/);

    // The inference server publishes whom each model is for, for the portal's order form.
    const models = (await fhir("clerk", "GET", "/models")).body as {
      models?: { name: string; parameters?: { intended_patients?: unknown } }[];
    };
    assert.deepEqual(
      models.models?.find((model) => model.name === "chest-xray-pneumonia")?.parameters?.intended_patients,
      { minAgeYears: 1, maxAgeYears: 5 },
    );
  });

  it("answers Patient/$everything: the patient's whole record, images included, narrowed by _type", async () => {
    const requestId = await order(png(9));
    const report = await reportFor(requestId);
    const patient = (report.subject as { reference: string }).reference;
    const everything = await fhir("clinician", "GET", `/fhir/${patient}/$everything`);
    assert.equal(everything.status, 200);
    assert.equal(everything.body.type, "searchset");
    const entries = everything.body.entry as {
      fullUrl: string;
      resource: Record<string, unknown>;
      search: { mode: string };
    }[];
    const types = entries.map((entry) => String(entry.resource.resourceType));
    assert.deepEqual(types, [
      "Patient",
      "ServiceRequest",
      "Binary",
      "DiagnosticReport",
      "Observation",
      "Observation",
      "Observation",
      "Provenance",
    ]);
    assert.equal(everything.body.total, entries.length);
    assert.deepEqual(
      entries.map((entry) => entry.search.mode),
      ["match", ...Array<string>(entries.length - 1).fill("include")],
    );
    const image = entries.find((entry) => entry.resource.resourceType === "Binary")?.resource;
    assert.deepEqual(Buffer.from(String(image?.data), "base64"), png(9), "the image analysed, as uploaded");
    assert.ok(entries.every((entry) => entry.fullUrl.endsWith(`/${String(entry.resource.id)}`)));

    const narrowed = await fhir(
      "clinician",
      "GET",
      `/fhir/${patient}/$everything?_type=DiagnosticReport,Provenance`,
    );
    assert.deepEqual(
      (narrowed.body.entry as { resource: { resourceType: string } }[]).map(
        (entry) => entry.resource.resourceType,
      ),
      ["DiagnosticReport", "Provenance"],
    );
    for (const [query, status] of [
      ["_type=Nonsense", 400],
      ["start=2020-01-01", 400],
    ] as const) {
      assert.equal(
        (await fhir("clinician", "GET", `/fhir/${patient}/$everything?${query}`)).status,
        status,
        query,
      );
    }
    assert.equal(
      (await fhir("clerk", "GET", `/fhir/${patient}/$everything`)).status,
      403,
      "clerks do not read results",
    );
    assert.equal((await fhir("clinician", "GET", "/fhir/Patient/nobody/$everything")).status, 404);
  });

  it("a clinician reviews the AI's preliminary report: final, with the clinician, the verdict and a Provenance", async () => {
    const requestId = await order(png(1));
    const report = await reportFor(requestId);
    const id = String(report.id);
    assert.equal(report.status, "preliminary");
    assert.match(String(report.conclusion), /awaiting a clinician's review/);
    const observation = await fhir(
      "clinician",
      "GET",
      `/fhir/${(report.result as { reference: string }[])[0]?.reference ?? ""}`,
    );
    assert.equal(observation.body.status, "preliminary", "the AI's observations are preliminary too");
    const reviewUrl = `/fhir/DiagnosticReport/${id}/$review`;
    // Clerks do not review; a verdict must be one of the two; not confirming needs a reason.
    const byClerk = await fhir("clerk", "POST", reviewUrl, verdict("confirmed"));
    assert.equal(byClerk.status, 403);
    assert.equal(byClerk.body.resourceType, "OperationOutcome");
    for (const body of [
      verdict("maybe"),
      verdict("not-confirmed"),
      verdict("not-confirmed", "  "),
      { resourceType: "Patient" },
    ]) {
      const refused = await fhir("clinician", "POST", reviewUrl, body);
      assert.equal(refused.status, 400, JSON.stringify(body));
    }
    assert.equal(
      (await fhir("clinician", "POST", "/fhir/DiagnosticReport/no-such-report/$review", verdict("confirmed")))
        .status,
      404,
    );

    // The results awaiting review are counted for their gauges and alert (counts only, no label).
    const waiting = await app.countReviewBacklog(["demo"]);
    assert.ok(waiting.count >= 2, `the results of this file's orders wait (${waiting.count})`);
    assert.ok(
      waiting.oldestIssuedMs !== undefined && waiting.oldestIssuedMs <= Date.parse(String(report.issued)),
    );
    const gauges = (await app.inject({ method: "GET", url: "/metrics" })).body;
    assert.match(gauges, new RegExp(`^diagnosis_reports_awaiting_review ${waiting.count}$`, "m"));
    assert.match(gauges, /^diagnosis_report_oldest_awaiting_review_seconds \d/m);

    // The note may name the patient: it is sealed in the record, never logged.
    const note = "Consolidation right lower lobe; Sentinelnotearthurdent agrees on review";
    const reviewed = await fhir("clinician", "POST", reviewUrl, verdict("not-confirmed", note));
    assert.equal(reviewed.status, 200, JSON.stringify(reviewed.body));
    assert.equal(reviewed.body.status, "final");
    assert.equal((reviewed.body.meta as { versionId: string }).versionId, "2");
    assert.match(
      String(reviewed.body.conclusion),
      /^Clinician review: the AI finding is NOT confirmed\. Note: Consolidation/,
    );
    assert.match(String(reviewed.body.conclusion), /AI result: .*pneumonia/);
    assert.deepEqual((reviewed.body.conclusionCode as { coding: unknown[] }[])[0]?.coding, [
      { system: "https://cloister.dev/fhir/CodeSystem/clinician-review", code: "not-confirmed" },
    ]);
    const interpreter = (reviewed.body.resultsInterpreter as { identifier: { value: string } }[])[0];
    assert.ok(
      interpreter !== undefined && interpreter.identifier.value.length > 0,
      "names the clinician's account",
    );
    // The AI's own version stays readable.
    const original = await fhir("clinician", "GET", `/fhir/DiagnosticReport/${id}/_history/1`);
    assert.equal(original.body.status, "preliminary");
    const provenances = await fhir(
      "clinician",
      "GET",
      `/fhir/Provenance?target=DiagnosticReport/${id}/_history/2`,
    );
    const verification = (provenances.body.entry as { resource: Record<string, unknown> }[] | undefined)?.[0]
      ?.resource;
    assert.ok(verification !== undefined, "a Provenance names the reviewed version");
    assert.match(JSON.stringify(verification.agent), /"verifier"/);
    assert.match(JSON.stringify(verification.entity), new RegExp(`DiagnosticReport/${id}/_history/1`));
    assert.equal((await app.countReviewBacklog(["demo"])).count, waiting.count - 1, "one fewer to review");
    assert.ok(!platformLogs.includes("Sentinelnotearthurdent"), "the note is not logged");
    assert.match(platformLogs, /"route":"\/fhir\/DiagnosticReport\/:id\/\$review"/);
  });

  it("a reviewed report's review is changed only from the version read, with a note: corrected, then amended", async () => {
    const requestId = await order(png(2));
    const id = String((await reportFor(requestId)).id);
    const reviewUrl = `/fhir/DiagnosticReport/${id}/$review`;
    const first = await fhir("clinician", "POST", reviewUrl, verdict("confirmed"));
    assert.equal(first.status, 200);
    assert.equal(first.body.status, "final");

    // Without the version the clinician read, or from an older one, or without saying why: nothing changes.
    const blind = await fhir("clinician", "POST", reviewUrl, verdict("not-confirmed", "On a second look"));
    assert.equal(blind.status, 428);
    assert.match(JSON.stringify(blind.body), /ERR_PRECONDITION_REQUIRED/);
    const stale = await fhir("clinician", "POST", reviewUrl, verdict("not-confirmed", "On a second look"), {
      "if-match": 'W/"1"',
    });
    assert.equal(stale.status, 412);
    const silent = await fhir("clinician", "POST", reviewUrl, verdict("not-confirmed"), {
      "if-match": 'W/"2"',
    });
    assert.equal(silent.status, 400);
    const unexplained = await fhir("clinician", "POST", reviewUrl, verdict("confirmed"), {
      "if-match": 'W/"2"',
    });
    assert.equal(unexplained.status, 400, "a second review needs a note");
    assert.match(JSON.stringify(unexplained.body), /say why the review is changed/);
    assert.equal(
      (await fhir("clinician", "GET", `/fhir/DiagnosticReport/${id}`)).body.status,
      "final",
      "refused changes leave the review as it was",
    );

    const corrected = await fhir(
      "clinician",
      "POST",
      reviewUrl,
      verdict("not-confirmed", "Second read with the prior film: no consolidation"),
      { "if-match": 'W/"2"' },
    );
    assert.equal(corrected.status, 200, JSON.stringify(corrected.body));
    assert.equal(corrected.body.status, "corrected", "a changed verdict corrects the report");
    assert.equal((corrected.body.meta as { versionId: string }).versionId, "3");
    assert.match(
      String(corrected.body.conclusion),
      /^Clinician review \(changed\): the AI finding is NOT confirmed/,
    );
    assert.match(String(corrected.body.conclusion), /AI result: [^.]*pneumonia/i);
    assert.doesNotMatch(
      String(corrected.body.conclusion),
      /AI result: .*AI result:/,
      "the AI's statement once",
    );
    const amended = await fhir(
      "clinician",
      "POST",
      reviewUrl,
      verdict("not-confirmed", "Discussed with radiology: no consolidation"),
      { "if-match": 'W/"3"' },
    );
    assert.equal(amended.body.status, "amended", "the same verdict with another note amends it");
    assert.deepEqual((amended.body.conclusionCode as { coding: unknown[] }[])[0]?.coding, [
      { system: "https://cloister.dev/fhir/CodeSystem/clinician-review", code: "not-confirmed" },
    ]);
    // Each change has its Provenance, from the version before it.
    for (const version of [3, 4]) {
      const found = await fhir(
        "clinician",
        "GET",
        `/fhir/Provenance?target=DiagnosticReport/${id}/_history/${version}`,
      );
      const provenance = (found.body.entry as { resource: Record<string, unknown> }[] | undefined)?.[0]
        ?.resource;
      assert.match(JSON.stringify(provenance?.activity), /change of a clinician's review/);
      assert.match(
        JSON.stringify(provenance?.entity),
        new RegExp(`DiagnosticReport/${id}/_history/${version - 1}"`),
      );
    }
    // The backlog counts preliminary reports only.
    assert.equal((await reportsAwaitingReview()).includes(id), false);
  });

  it("a clinician withdraws a report entered in error: it, its Observations and its order, in one change with one Provenance", async () => {
    const requestId = await order(png(3));
    const report = await reportFor(requestId);
    const id = String(report.id);
    const results = (report.result as { reference: string }[]).map((result) => result.reference);
    assert.ok(results.length > 0);
    const reviewUrl = `/fhir/DiagnosticReport/${id}/$review`;
    assert.equal(
      (await fhir("clinician", "POST", reviewUrl, verdict("entered-in-error"))).status,
      400,
      "a withdrawal says why",
    );
    const before = await app.countReviewBacklog(["demo"]);
    const withdrawn = await fhir(
      "clinician",
      "POST",
      reviewUrl,
      verdict("entered-in-error", "Image belongs to another patient (Sentinelnoteford)"),
    );
    assert.equal(withdrawn.status, 200, JSON.stringify(withdrawn.body));
    assert.equal(withdrawn.body.status, "entered-in-error");
    assert.match(String(withdrawn.body.conclusion), /entered in error and withdrawn/);
    for (const reference of results) {
      const result = await fhir("clinician", "GET", `/fhir/${reference}`);
      assert.equal(result.body.status, "entered-in-error", `${reference} is withdrawn with its report`);
      assert.equal((result.body.meta as { versionId: string }).versionId, "2");
    }
    // So is the order, which the clerk sees (clerks do not read results) and places again.
    const orderRead = await fhir("clerk", "GET", `/fhir/ServiceRequest/${requestId}`);
    assert.equal(orderRead.body.status, "entered-in-error");
    const orderVersion = Number((orderRead.body.meta as { versionId: string }).versionId);
    const found = await fhir("clinician", "GET", `/fhir/Provenance?target=DiagnosticReport/${id}/_history/2`);
    const provenance = (found.body.entry as { resource: Record<string, unknown> }[] | undefined)?.[0]
      ?.resource;
    assert.match(JSON.stringify(provenance?.activity), /withdrawal of a report entered in error/);
    for (const [reference, version] of [
      ...results.map((result) => [result, 2] as const),
      [`ServiceRequest/${requestId}`, orderVersion] as const,
    ]) {
      assert.match(JSON.stringify(provenance?.target), new RegExp(`${reference}/_history/${version}"`));
      assert.match(JSON.stringify(provenance?.entity), new RegExp(`${reference}/_history/${version - 1}"`));
    }
    assert.equal(
      (await app.countReviewBacklog(["demo"])).count,
      before.count - 1,
      "no longer awaiting review",
    );
    // Withdrawn is final: neither reviewed nor withdrawn again.
    for (const body of [verdict("confirmed", "Looks right"), verdict("entered-in-error", "Again")]) {
      const again = await fhir("clinician", "POST", reviewUrl, body, { "if-match": 'W/"2"' });
      assert.equal(again.status, 409);
      assert.match(JSON.stringify(again.body), /ERR_REPORT_STATE/);
    }
    assert.ok(!platformLogs.includes("Sentinelnoteford"), "the note is not logged");
  });

  it("ends a bad image in a cancelled report with the reason, never silently", async () => {
    const requestId = await order(new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]));
    const report = await reportFor(requestId);
    assert.equal(report.status, "cancelled");
    assert.match(JSON.stringify(report.contained), /ERR_IMAGE_DECODE/);
    const request = await fhir("clerk", "GET", `/fhir/ServiceRequest/${requestId}`);
    assert.equal(request.body.status, "revoked");
    // The clerk, who does not read reports, reads why on the order.
    assert.deepEqual(
      (request.body.note as { authorString?: string; text?: string }[]).map((note) => [
        note.authorString,
        /\(ERR_IMAGE_DECODE\)/.test(note.text ?? ""),
      ]),
      [["Cloister AI workflow", true]],
    );
    // There is no result to review.
    const review = await fhir("clinician", "POST", `/fhir/DiagnosticReport/${String(report.id)}/$review`, {
      resourceType: "Parameters",
      parameter: [{ name: "outcome", valueCode: "confirmed" }],
    });
    assert.equal(review.status, 409);
    assert.match(JSON.stringify(review.body), /a cancelled report has no result to review/);
  });

  it("reports how each AI model does in this hospital from its clinicians' reviews: counts only, and a metric per first review", async () => {
    const performance = async (): Promise<AiPerformance> => {
      const answer = await fhir("clinician", "GET", "/admin/ai-performance?days=30");
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      return answer.body as unknown as AiPerformance;
    };
    const before = await performance();
    const pneumonia = before.models.find((model) => model.model === "chest-xray-pneumonia");
    assert.ok(pneumonia, "the model of this file's orders is listed");
    assert.equal(pneumonia.version, "1");
    assert.match(pneumonia.sha256, /^[0-9a-f]{64}$/);
    // This file's earlier tests: a result not confirmed, a review changed, a report withdrawn, a bad image.
    assert.ok(
      pneumonia.notConfirmed >= 1 && pneumonia.withdrawn >= 1 && before.failed >= 1,
      JSON.stringify(before),
    );
    assert.equal(
      pneumonia.results,
      pneumonia.awaitingReview + pneumonia.confirmed + pneumonia.notConfirmed + pneumonia.withdrawn,
      "every result is awaiting review, reviewed or withdrawn",
    );
    assert.equal(
      pneumonia.findings.reduce((sum, finding) => sum + finding.results, 0),
      pneumonia.results,
      "every result has its finding",
    );
    assert.equal(before.truncated, false);

    // One more result, confirmed by a clinician: exactly its model's and its finding's counts move.
    const report = await reportFor(await order(png(9)));
    const findingReference = (report.result as { reference: string }[])
      .map((result) => result.reference)
      .find((reference) => reference.endsWith("-finding"));
    const findingObservation = await fhir("clinician", "GET", `/fhir/${findingReference ?? ""}`);
    const label =
      (findingObservation.body.valueCodeableConcept as { coding: { code: string }[] } | undefined)?.coding[0]
        ?.code ?? "";
    assert.ok(["normal", "pneumonia"].includes(label), label);
    const reviewed = await fhir(
      "clinician",
      "POST",
      `/fhir/DiagnosticReport/${String(report.id)}/$review`,
      verdict("confirmed"),
    );
    assert.equal(reviewed.status, 200, JSON.stringify(reviewed.body));
    const after = await performance();
    const now = after.models.find((model) => model.model === "chest-xray-pneumonia");
    assert.ok(now);
    assert.equal(now.results, pneumonia.results + 1);
    assert.equal(now.confirmed, pneumonia.confirmed + 1);
    assert.equal(now.awaitingReview, pneumonia.awaitingReview);
    const countsOf = (model: ModelPerformance) =>
      model.findings.find((entry) => entry.finding === label) ?? { results: 0, confirmed: 0 };
    assert.equal(countsOf(now).results, countsOf(pneumonia).results + 1);
    assert.equal(countsOf(now).confirmed, countsOf(pneumonia).confirmed + 1);
    assert.equal(now.agreement, now.confirmed / (now.confirmed + now.notConfirmed));
    // Counts only: no patient, report, order or account is named.
    assert.doesNotMatch(
      JSON.stringify(after),
      /Patient|DiagnosticReport\/|ServiceRequest|Testperson|[0-9a-f]{8}-[0-9a-f]{4}-/,
    );

    const metrics = (await app.inject({ method: "GET", url: "/metrics" })).body;
    assert.match(
      metrics,
      new RegExp(
        `^diagnosis_reviews_total\\{model="chest-xray-pneumonia",finding="${label}",verdict="confirmed"\\} [1-9]`,
        "m",
      ),
    );
    assert.match(metrics, /^diagnosis_reviews_total\{[^}]*verdict="not-confirmed"\} [1-9]/m);
    // Clerks do not read results, nor these counts; the period is bounded.
    assert.equal((await fhir("clerk", "GET", "/admin/ai-performance")).status, 403);
    for (const days of ["0", "731", "1.5", "x", "1e1", ""]) {
      assert.equal((await fhir("clinician", "GET", `/admin/ai-performance?days=${days}`)).status, 400, days);
    }
  });

  it("never analyses an image uploaded for another patient, even for an order placed before that was checked", async () => {
    const patient = async (family: string) =>
      String(
        (await fhir("clerk", "POST", "/fhir/Patient", { resourceType: "Patient", name: [{ family }] })).body
          .id,
      );
    const owner = await patient("Imageowner");
    const other = await patient("Otherpatient");
    const image = await fhir("clerk", "POST", "/fhir/Binary", png(8), {
      "content-type": "image/png",
      "x-security-context": `Patient/${owner}`,
    });
    assert.equal(image.status, 201);
    // The API refuses such an order; one stored before it did is caught by the worker.
    const refused = await fhir(
      "clerk",
      "POST",
      "/fhir/ServiceRequest",
      pneumoniaOrder(other, String(image.body.id)),
    );
    assert.equal(refused.status, 422);
    const orderId = "placed-before-the-check";
    await new FhirRepository(store).update(
      { tenantId: "demo", keyring: platformKeyring },
      { ...pneumoniaOrder(other, String(image.body.id)), resourceType: "ServiceRequest", id: orderId },
      orderId,
      0,
    );
    assert.equal(await app.recoverDiagnosisJobs(["demo"]), 1);
    const report = await reportFor(orderId);
    assert.equal(report.status, "cancelled");
    assert.match(JSON.stringify(report.contained), /ERR_IMAGE_PATIENT/);
    assert.equal((await fhir("clerk", "GET", `/fhir/ServiceRequest/${orderId}`)).body.status, "revoked");
  });

  it("an order cancelled while it is analysed gets no result: the outcome is written from the order's version, or not at all", async () => {
    const { atInference, open } = closeInferenceGate();
    try {
      const requestId = await order(png(6));
      // The worker has read the order (active) and is about to send the image.
      await atInference;
      const placed = await fhir("clerk", "GET", `/fhir/ServiceRequest/${requestId}`);
      const cancelled = await fetch(`${url}/fhir/ServiceRequest/${requestId}`, {
        method: "PUT",
        headers: {
          authorization: `Bearer ${tokens.clerk ?? ""}`,
          "content-type": "application/fhir+json",
          "if-match": 'W/"1"',
        },
        body: JSON.stringify({ ...placed.body, status: "revoked", note: [{ text: "Wrong image" }] }),
      });
      assert.equal(cancelled.status, 200);
      inferenceGate = undefined;
      open();
      const deadline = Date.now() + 20_000;
      while (!platformLogs.includes("no result written") && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.match(platformLogs, /"outcome":"ORDER_SETTLED"/);
      const reports = await fhir(
        "clinician",
        "GET",
        `/fhir/DiagnosticReport?based-on=ServiceRequest/${requestId}`,
      );
      assert.equal(reports.body.total, 0, "no result for a cancelled order");
      for (const id of [`obs-${requestId}-0`, `obs-${requestId}-finding`, `prov-${requestId}`]) {
        const type = id.startsWith("obs") ? "Observation" : "Provenance";
        assert.equal((await fhir("clinician", "GET", `/fhir/${type}/${id}`)).status, 404, id);
      }
      const after = await fhir("clerk", "GET", `/fhir/ServiceRequest/${requestId}`);
      assert.equal(after.body.status, "revoked");
      assert.equal((after.body.meta as { versionId: string }).versionId, "2");
      assert.equal(await app.recoverDiagnosisJobs(["demo"]), 0, "a cancelled order is not queued again");
    } finally {
      inferenceGate = undefined;
      open();
    }
  });

  it("finishes a result an earlier workflow version left half-written, as its stored report says", async () => {
    // Earlier versions wrote Observations, the report and the Provenance one at a time, and a crash could
    // stop them midway; the order stayed active and its job ran again after the upgrade.
    const repository = new FhirRepository(store);
    const tenant = { tenantId: "demo", keyring: platformKeyring };
    for (const earlier of ["preliminary", "cancelled"] as const) {
      const { atInference, open } = closeInferenceGate();
      try {
        const requestId = await order(png(7));
        await atInference;
        const code = { coding: [{ system: modelCodeSystem, code: "chest-xray-pneumonia" }] };
        await repository.update(
          tenant,
          { resourceType: "Observation", id: `obs-${requestId}-0`, status: "preliminary", code },
          `obs-${requestId}-0`,
          0,
        );
        await repository.update(
          tenant,
          {
            resourceType: "DiagnosticReport",
            id: `report-${requestId}`,
            status: earlier,
            code,
            basedOn: [{ reference: `ServiceRequest/${requestId}` }],
            conclusion: "written by an earlier version",
          },
          `report-${requestId}`,
          0,
        );
        inferenceGate = undefined;
        open();
        const expected = earlier === "preliminary" ? "completed" : "revoked";
        const deadline = Date.now() + 20_000;
        let status = "";
        while (status !== expected && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 50));
          status = String((await fhir("clerk", "GET", `/fhir/ServiceRequest/${requestId}`)).body.status);
        }
        assert.equal(status, expected, earlier);
        const report = await fhir("clinician", "GET", `/fhir/DiagnosticReport/report-${requestId}`);
        assert.equal(report.body.conclusion, "written by an earlier version", "the stored report stays");
        assert.equal((report.body.meta as { versionId: string }).versionId, "1");
        const provenance = await fhir("clinician", "GET", `/fhir/Provenance/prov-${requestId}`);
        const finding = await fhir("clinician", "GET", `/fhir/Observation/obs-${requestId}-finding`);
        const first = await fhir("clinician", "GET", `/fhir/Observation/obs-${requestId}-0`);
        assert.equal((first.body.meta as { versionId: string }).versionId, "1");
        // A stored AI report is completed with what it lacked; a stored failure gets nothing more.
        assert.equal(provenance.status, earlier === "preliminary" ? 200 : 404);
        assert.equal(finding.status, earlier === "preliminary" ? 200 : 404);
      } finally {
        inferenceGate = undefined;
        open();
      }
    }
  });

  it("lets a sentinel patient's name and MRN through the whole workflow without reaching any log, metric, error or URL", async () => {
    const family = "Sentinelzaphodbeeblebrox";
    const mrn = "MRN-SENTINEL-31337";
    const requestId = await order(png(2), { family, mrn });
    const report = await reportFor(requestId);
    assert.ok(["preliminary", "cancelled"].includes(String(report.status)));
    // Searches with PHI go in a form body (POST _search), never in the URL.
    const searched = await fetch(`${url}/fhir/Patient/_search`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${tokens.clerk ?? ""}`,
        "content-type": "application/x-www-form-urlencoded",
      },
      body: new URLSearchParams({ name: family, identifier: `urn:mrn|${mrn}` }).toString(),
    });
    assert.equal(((await searched.json()) as { total: number }).total, 1);
    // Errors about PHI-carrying input do not echo it.
    const refused = await fhir("clerk", "POST", "/fhir/Patient", {
      resourceType: "Patient",
      name: [{ family }],
      identifier: [{ value: mrn }],
      birthDate: `${mrn}-not-a-date`,
    });
    assert.equal(refused.status, 400);
    const failedLogin = await app.inject({
      method: "POST",
      url: "/auth/login",
      payload: { email: `${mrn}@x.test`, password: family },
    });
    const errorBodies = JSON.stringify(refused.body) + failedLogin.body;
    const metrics =
      (await app.inject({ method: "GET", url: "/metrics" })).body +
      (await stack.inference.inject({ method: "GET", url: "/metrics" })).body;
    for (const [where, text] of [
      ["platform logs", platformLogs],
      ["inference logs", inferenceLogs],
      ["metrics", metrics],
      ["error bodies", errorBodies],
    ] as const) {
      for (const secret of [family, family.toLowerCase(), mrn, password, tokens.clerk ?? "none"]) {
        assert.ok(!text.includes(secret), `${where} contain ${secret.slice(0, 12)}…`);
      }
    }
    assert.match(platformLogs, /"route":"\/fhir\/:type\/_search"/);
    assert.doesNotMatch(platformLogs, /"url":/);
  });

  it("survives the inference server dying mid-job: retries, re-attests the new server, writes the result once", async () => {
    await stack.stopInference();
    const requestId = await order(png(3));
    await new Promise((resolve) => setTimeout(resolve, 700));
    await stack.startInference();
    const report = await reportFor(requestId);
    assert.equal(report.status, "preliminary");
    const reports = await fhir(
      "clinician",
      "GET",
      `/fhir/DiagnosticReport?based-on=ServiceRequest/${requestId}`,
    );
    assert.equal(reports.body.total, 1);
    assert.equal((await fhir("clerk", "GET", `/fhir/ServiceRequest/${requestId}`)).body.status, "completed");
    assert.match(platformLogs, /diagnosis will be retried/);
  });

  it("survives the platform going down with a job in flight: the restarted platform re-queues it and writes once", async () => {
    await stack.stopInference();
    const requestId = await order(png(4));
    await new Promise((resolve) => setTimeout(resolve, 300));
    // The platform stops with the job waiting for its retry in the (lost) in-memory queue.
    const port = Number(new URL(url).port);
    await app.close();
    await stack.startInference();
    await startPlatform(port);
    assert.equal(await app.recoverDiagnosisJobs(["demo"]), 1);
    const report = await reportFor(requestId);
    assert.equal(report.status, "preliminary");
    assert.equal(
      (await fhir("clinician", "GET", `/fhir/DiagnosticReport?based-on=ServiceRequest/${requestId}`)).body
        .total,
      1,
    );
    assert.equal((await fhir("clerk", "GET", `/fhir/ServiceRequest/${requestId}`)).body.status, "completed");
  });

  it("reuses an inference answer obtained before a failure instead of asking the inference server again", async () => {
    await stack.stopInference();
    const requestId = await order(png(5));
    // As if an earlier attempt had obtained this answer and the platform died before writing it.
    const measurement = "c3".repeat(32);
    await cache.set(
      { tenantId: "demo", keyring: tenantKeyring },
      `inference:${requestId}`,
      Buffer.from(
        JSON.stringify({
          result: {
            model_version: "1",
            outputs: [{ data: [0.25, 0.75] }],
            parameters: { predicted_index: 1, predicted_label: "pneumonia", model_sha256: "ab".repeat(32) },
          },
          info: { labels: ["normal", "pneumonia"], title: "Cached model" },
          identity: { measurement, attestationType: "sgx", simulated: true, tokenId: "cached-token" },
        }),
      ),
      60_000,
    );
    const report = await reportFor(requestId);
    await stack.startInference();
    assert.equal(report.status, "preliminary");
    assert.match(String(report.conclusion), /^Cached model: pneumonia/);
    const provenance = await fhir(
      "clinician",
      "GET",
      `/fhir/Provenance?target=DiagnosticReport/${String(report.id)}`,
    );
    assert.ok(JSON.stringify(provenance.body).includes(measurement));
  });

  // Last: from here on the tenant's records are under key version 2.
  it("a worker behind a key rotation fetches the new version and finishes the order instead of spending its attempts", async () => {
    // Another replica holds version 2 of the tenant's key and takes the order; this one has not fetched it.
    keyringAtBroker = deriveTenantKeyringGenerations(
      new Map([
        [1, tenantKey],
        [2, randomBytes(32)],
      ]),
      "demo",
    );
    const otherReplica = await buildApp({
      baseUrl: "http://127.0.0.1",
      store,
      accounts,
      systemKeyring,
      sessions,
      tenantKeyring: async () => keyringAtBroker,
    });
    try {
      const onOther = async (
        path: string,
        payload: unknown,
        contentType = "application/fhir+json",
        headers: Record<string, string> = {},
      ) => {
        const answer = await otherReplica.inject({
          method: "POST",
          url: path,
          headers: { authorization: `Bearer ${tokens.clerk ?? ""}`, "content-type": contentType, ...headers },
          payload: payload instanceof Uint8Array ? Buffer.from(payload) : JSON.stringify(payload),
        });
        assert.equal(answer.statusCode, 201, answer.body);
        return answer.json<{ id: string }>().id;
      };
      const orderOnOther = async (): Promise<string> => {
        const patientId = await onOther("/fhir/Patient", {
          resourceType: "Patient",
          identifier: [{ system: "urn:mrn", value: `MRN-${randomBytes(4).toString("hex")}` }],
        });
        const binaryId = await onOther("/fhir/Binary", png(1), "image/png", {
          "x-security-context": `Patient/${patientId}`,
        });
        return onOther("/fhir/ServiceRequest", pneumoniaOrder(patientId, binaryId));
      };
      const behind = (): void => {
        platformKeyring = tenantKeyring;
      };

      // This replica's worker takes the job and meets the order under version 2.
      const first = await orderOnOther();
      behind();
      let refreshesBefore = keyringRefreshes;
      await queue.enqueue({ tenantId: "demo", serviceRequestId: first, attempt: 0 });
      assert.equal((await reportFor(first)).status, "preliminary", "not cancelled after its attempts");
      assert.equal(keyringRefreshes - refreshesBefore, 1);
      assert.doesNotMatch(platformLogs, /"outcome":"ERR_KEY_UNAVAILABLE"/, "no attempt was spent on it");

      // The reconciler (and the start-up requeue) reads active orders under version 2 too.
      const second = await orderOnOther();
      behind();
      refreshesBefore = keyringRefreshes;
      assert.equal(await app.reconcileDiagnosisJobs(["demo"]), 1);
      assert.equal(keyringRefreshes - refreshesBefore, 1);
      assert.equal((await reportFor(second)).status, "preliminary");
    } finally {
      await otherReplica.close();
    }
  });
});
