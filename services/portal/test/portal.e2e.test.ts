// The newcomer's first five minutes, end to end: `cloister up` from a fresh data directory, then the portal
// in real Chromium (Debian's, driven by playwright-core): attestation before PHI, sign-in, patient intake with
// duplicate detection, PNG and DICOM upload, live status, the clinician's result, refusal for a wrong
// measurement; then the stack itself: TLS health, a taken port, restart with records kept, a platform killed
// mid-job, `cloister keys rotate` re-encrypting every record without downtime, and `cloister audit verify`
// catching a truncated audit trail.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomBytes, X509Certificate } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import { encodeDicom, readMedMnistSplit } from "@cloister/imaging";
import { requestBytes, requestJson } from "@cloister/enclave";
import { chromium, type Browser, type Page } from "playwright-core";
import { PNG } from "pngjs";
import {
  demoApprovals,
  freePortBase,
  repositoryRoot,
  scanStackSession,
  sessionLedger,
  signIn,
  stackRequest,
  startLocalStack,
  type RunningStack,
} from "./local-stack.js";

const execFileAsync = promisify(execFile);
/** Everything the CLI commands printed this session, for the closing secrets scan. */
const cliOutputs: string[] = [];
/** Runs a command, keeping what it printed (also when it fails). */
async function run(file: string, args: readonly string[]): Promise<{ stdout: string; stderr: string }> {
  try {
    const result = await execFileAsync(file, [...args]);
    cliOutputs.push(result.stdout, result.stderr);
    return result;
  } catch (error) {
    const failed = error as { stdout?: string; stderr?: string };
    cliOutputs.push(failed.stdout ?? "", failed.stderr ?? "");
    throw error;
  }
}
// What the browser requested and logged, across every page of the session.
const observed = { urls: [] as string[], console: [] as string[] };
const chromiumPath = "/usr/bin/chromium";
const artifacts = join(repositoryRoot, "test-artifacts/portal");
const scratch = mkdtempSync(join(tmpdir(), "cloister-e2e-"));
const dataDirectory = join(scratch, "data");
const password = `demo-${randomBytes(9).toString("base64url")}`;
// Sentinel PHI: must never appear in a log, URL, console line or browser storage.
/** A date `days` ago, as a FHIR date. */
function daysAgo(days: number): string {
  return new Date(Date.now() - days * 86_400_000).toISOString().slice(0, 10);
}

const sentinel = {
  family: `Qzxvbenchmarkfam${randomBytes(3).toString("hex")}`,
  given: `Sentinelgiven${randomBytes(3).toString("hex")}`,
  mrn: `MRN-SENT-${randomBytes(4).toString("hex").toUpperCase()}`,
  // A three-year-old, whom the paediatric chest X-ray model is for (1 to 5 years); corrected by nine days later.
  birthDate: daysAgo(3 * 365),
  correctedBirthDate: daysAgo(3 * 365 - 9),
};

/** Passwords of staff accounts made during the run: like the demo password, never in a log or URL. */
const staffPasswords: string[] = [];
let stack: RunningStack;
let portBase: number;
let browser: Browser | undefined;

const validation = readMedMnistSplit(
  join(repositoryRoot, "../shared/data/medmnist/pneumoniamnist_trainval.npz"),
  "val",
);

function pngOf(index: number): Buffer {
  const image = new PNG({ width: 28, height: 28 });
  validation.images.subarray(index * 784, (index + 1) * 784).forEach((value, i) => {
    image.data.set([value, value, value, 255], i * 4);
  });
  return PNG.sync.write(image);
}

/** A 16-bit DICOM (256×256, windowed) of a validation image, with the sentinel name in its header. */
function dicomOf(index: number): Uint8Array {
  const size = 256;
  const pixels = new Uint16Array(size * size);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const source =
        validation.images[index * 784 + Math.floor((y * 28) / size) * 28 + Math.floor((x * 28) / size)] ?? 0;
      pixels[y * size + x] = source * 16;
    }
  }
  return encodeDicom({
    rows: size,
    columns: size,
    pixels,
    bitsStored: 12,
    window: { center: 2048, width: 4096 },
    modality: "CR",
    patientName: `${sentinel.family}^${sentinel.given}`,
    patientId: sentinel.mrn,
  });
}

/** Chromium's form of each service certificate's key: base64 SHA-256 of the DER SubjectPublicKeyInfo. */
function spkiHashes(): string[] {
  const tls = join(dataDirectory, "tls");
  return readdirSync(tls)
    .filter((name) => name.endsWith(".pem") && !name.startsWith("ca"))
    .map((name) =>
      createHash("sha256")
        .update(
          new X509Certificate(readFileSync(join(tls, name), "utf8")).publicKey.export({
            type: "spki",
            format: "der",
          }),
        )
        .digest("base64"),
    );
}

async function newPage(observed: { urls: string[]; console: string[] }): Promise<Page> {
  assert.ok(browser !== undefined);
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  page.on("request", (request) => observed.urls.push(request.url()));
  page.on("console", (message) => observed.console.push(message.text()));
  page.on("pageerror", (error) => observed.console.push(`pageerror: ${error.message}`));
  return page;
}

const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/**
 * What axe-core finds against WCAG 2.1 A and AA on the page as it is now (colour contrast, labels, names,
 * landmarks, ARIA), one line per rule with the elements it fails on. The script goes in through the DevTools
 * protocol, which the portal's Content-Security-Policy does not govern, so the page is tested as served.
 */
async function accessibilityProblems(page: Page): Promise<string[]> {
  await page.evaluate(axeSource);
  const { problems, contrastChecked } = await page.evaluate(async () => {
    interface AxeRule {
      id: string;
      impact?: string | null;
      nodes: { target: string[] }[];
    }
    const axe = (
      globalThis as unknown as {
        axe: {
          run: (
            context: Document,
            options: { runOnly: { type: "tag"; values: string[] } },
          ) => Promise<{ violations: AxeRule[]; passes: AxeRule[] }>;
        };
      }
    ).axe;
    const { violations, passes } = await axe.run(document, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] },
    });
    return {
      problems: violations.map(
        (violation) =>
          `${violation.id} (${violation.impact ?? "?"}): ${violation.nodes.map((node) => node.target.join(" ")).join(", ")}`,
      ),
      contrastChecked: passes.some((rule) => rule.id === "color-contrast" && rule.nodes.length > 0),
    };
  });
  // A scan that checked no text's contrast proves nothing.
  return contrastChecked ? problems : [...problems, "color-contrast was not evaluated on any element"];
}

async function signInPortal(page: Page, email: string): Promise<void> {
  await page.goto(stack.stack().portal);
  await page.getByTestId("attestation-verified").waitFor({ timeout: 20_000 });
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByTestId("signed-in").waitFor();
}

/** Signs in and opens the sentinel patient, found by name. */
async function openSentinelPatient(page: Page, email: string): Promise<void> {
  await signInPortal(page, email);
  await findSentinelPatient(page);
}

/** On a signed-in page: finds the sentinel patient (or another, by family name) and opens the record. */
async function findSentinelPatient(page: Page, family = sentinel.family): Promise<void> {
  const search = page.getByRole("region", { name: "Find a patient" });
  await search.getByLabel("Search by").selectOption("name");
  await search.getByLabel("Family or given name").fill(family);
  await search.getByRole("button", { name: "Search" }).click();
  await search.getByRole("button", { name: new RegExp(family, "i") }).click();
  await page.getByTestId("patient-name").waitFor();
}

/**
 * Through the platform's API, as another workstation would: a PNG of validation image `index` uploaded for
 * `subject` (`Patient/<id>`) and an active pneumonia order for it. The order's id.
 */
async function placeOrderThroughApi(clerkToken: string, subject: string, index: number): Promise<string> {
  const description = stack.stack();
  const binary = await stackRequest(
    description,
    "POST",
    `${description.platform}/fhir/Binary`,
    {
      resourceType: "Binary",
      contentType: "image/png",
      securityContext: { reference: subject },
      data: pngOf(index).toString("base64"),
    },
    clerkToken,
  );
  assert.equal(binary.status, 201);
  const order = await stackRequest(
    description,
    "POST",
    `${description.platform}/fhir/ServiceRequest`,
    {
      resourceType: "ServiceRequest",
      status: "active",
      intent: "order",
      subject: { reference: subject },
      code: {
        coding: [{ system: "https://cloister.dev/fhir/CodeSystem/ai-model", code: "chest-xray-pneumonia" }],
      },
      supportingInfo: [{ reference: `Binary/${(binary.body as { id: string }).id}` }],
    },
    clerkToken,
  );
  assert.equal(order.status, 201);
  return (order.body as { id: string }).id;
}

function serviceLogs(): string {
  const logs = join(dataDirectory, "logs");
  return readdirSync(logs)
    .map((name) => readFileSync(join(logs, name), "utf8"))
    .join("\n");
}

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  portBase = await freePortBase();
  stack = await startLocalStack(dataDirectory, portBase, { CLOISTER_DEMO_PASSWORD: password });
  if (existsSync(chromiumPath)) {
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        // Trust exactly this stack's service certificates (issued by its dev CA), nothing else.
        `--ignore-certificate-errors-spki-list=${spkiHashes().join(",")}`,
      ],
    });
  }
});

after(async () => {
  await browser?.close();
  // Unset when before() failed.
  await (stack as RunningStack | undefined)?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

describe("cloister up (npm start)", () => {
  test("comes up from a fresh data directory in under 15 s with a complete stack.json", () => {
    assert.ok(stack.readySeconds < 15, `ready after ${stack.readySeconds} s`);
    const description = stack.stack();
    for (const field of [
      "attestation",
      "keyBroker",
      "inference",
      "platform",
      "portal",
      "caCert",
      "logs",
    ] as const) {
      assert.ok(typeof description[field] === "string" && description[field].length > 0, field);
    }
    assert.ok(existsSync(description.caCert));
    assert.match(
      stack.stdout(),
      /Demo login \(Demo Hospital\): clerk@demo\.hospital or clinician@demo\.hospital/,
    );
    assert.ok(!stack.stdout().includes(password), "a password from CLOISTER_DEMO_PASSWORD is not printed");
    const credentials = join(dataDirectory, "demo-credentials.json");
    assert.equal(statSync(credentials).mode & 0o777, 0o600);
  });

  test("every service answers /healthz over TLS, trusted through the dev CA only", async () => {
    const description = stack.stack();
    for (const url of [
      description.attestation,
      description.keyBroker,
      description.inference,
      description.platform,
      description.portal,
    ]) {
      const response = await stackRequest(description, "GET", `${url}/healthz`);
      assert.equal(response.status, 200, url);
    }
    // Without the dev CA, the certificate is refused.
    await assert.rejects(fetch(`${description.platform}/healthz`));
  });

  test("a taken port is named, with how to choose others", async () => {
    const second = await run(process.execPath, [
      join(repositoryRoot, "packages/cli/dist/bin.js"),
      "up",
      "--data-dir",
      join(scratch, "other"),
      "--port-base",
      String(portBase),
    ]).then(
      () => assert.fail("a second stack on the same ports started"),
      (error: unknown) => error as { code: number; stderr: string },
    );
    assert.equal(second.code, 1);
    assert.match(second.stderr, new RegExp(`port ${portBase} \\(attestation service\\) is taken`));
    assert.match(second.stderr, /--port-base/);
  });

  test("a weak CLOISTER_DEMO_PASSWORD is refused before anything starts, saying why but not repeating it", async () => {
    const refused = await execFileAsync(
      process.execPath,
      [
        join(repositoryRoot, "packages/cli/dist/bin.js"),
        "up",
        "--data-dir",
        join(scratch, "weak-password"),
        "--port-base",
        String(await freePortBase()),
      ],
      { env: { ...process.env, CLOISTER_DEMO_PASSWORD: "password1234" } },
    ).then(
      () => assert.fail("a stack with a common demo password started"),
      (error: unknown) => error as { code: number; stderr: string },
    );
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /CLOISTER_DEMO_PASSWORD: the password is too easy to guess/);
    assert.doesNotMatch(refused.stderr, /password1234/);
  });

  test("a second stack on the same data directory is refused, naming the running one", async () => {
    const otherPorts = await freePortBase();
    const second = await run(process.execPath, [
      join(repositoryRoot, "packages/cli/dist/bin.js"),
      "up",
      "--data-dir",
      dataDirectory,
      "--port-base",
      String(otherPorts),
    ]).then(
      () => assert.fail("a second stack on the same data directory started"),
      (error: unknown) => error as { code: number; stderr: string },
    );
    assert.equal(second.code, 1);
    assert.match(
      second.stderr,
      new RegExp(`another cloister up \\(pid ${String(stack.process.pid)}\\) is using`),
    );
  });
});

describe(
  "the portal in Chromium",
  {
    skip: existsSync(chromiumPath)
      ? false
      : `SKIPPED LOUDLY: ${chromiumPath} is missing (apt-get install chromium); .ci/run installs it`,
  },
  () => {
    const images = { png: join(scratch, "chest.png"), dicom: join(scratch, "chest.dcm") };
    let orderedAt = 0;

    test("attests the platform before anything is sent, then the clerk registers a patient (duplicate found by MRN)", async () => {
      writeFileSync(images.png, pngOf(3));
      writeFileSync(images.dicom, dicomOf(7));
      const page = await newPage(observed);
      await page.goto(stack.stack().portal);
      await page.getByTestId("attestation-verified").waitFor({ timeout: 20_000 });
      assert.equal(
        await page.getByTestId("platform-measurement").textContent(),
        stack.stack().measurements["platform-api"],
      );
      const panel = (await page.getByTestId("attestation-verified").textContent()) ?? "";
      assert.match(panel, /Intel SGX enclave \(simulated: development only, not hardware\), debuggable/);
      assert.match(panel, /Token valid until/);
      // Before sign-in, the platform saw only its own evidence request: nothing sealed was sent yet.
      assert.ok(!observed.urls.some((url) => url.endsWith("/ohttp")));
      await page.screenshot({ path: join(artifacts, "1-attested-sign-in.png"), fullPage: true });
      assert.deepEqual(await accessibilityProblems(page), [], "sign-in page: WCAG 2.1 AA");

      await page.getByLabel("Email").fill("clerk@demo.hospital");
      await page.getByLabel("Password").fill("wrong password here");
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByText("The email or password is not right.").waitFor();
      assert.deepEqual(await accessibilityProblems(page), [], "sign-in error: WCAG 2.1 AA");
      // Keyboard only: the password field submits the form with Enter.
      await page.getByLabel("Password").fill(password);
      await page.getByLabel("Password").press("Enter");
      await page.getByTestId("signed-in").waitFor();

      const intake = page.getByRole("region", { name: "New patient" });
      await intake.getByLabel("Medical record number").fill(sentinel.mrn);
      await intake.getByLabel("Family name").fill(sentinel.family);
      await intake.getByLabel("Given name").fill(sentinel.given);
      await intake.getByLabel("Date of birth").fill(sentinel.birthDate);
      await intake.getByLabel("Administrative gender").selectOption("female");
      await intake.getByRole("button", { name: "Register patient" }).click();
      await page.getByTestId("patient-name").filter({ hasText: sentinel.family.toUpperCase() }).waitFor();

      // Same MRN again: the portal finds the existing patient instead of creating a duplicate.
      await intake.getByLabel("Medical record number").fill(sentinel.mrn);
      await intake.getByLabel("Family name").fill("Someone Else");
      await intake.getByRole("button", { name: "Register patient" }).click();
      await intake.getByText("A patient with this MRN is already registered").waitFor();

      // Upload a PNG and a DICOM and order an analysis for each: the PNG routine, the DICOM STAT.
      await page.getByTestId("model-select").locator("option").first().waitFor({ state: "attached" });
      await page.getByTestId("model-select").selectOption("chest-xray-pneumonia");
      for (const image of [images.png, images.dicom]) {
        assert.equal(
          await page.getByTestId("priority-select").inputValue(),
          "routine",
          "routine unless chosen",
        );
        if (image === images.dicom) {
          await page.getByTestId("priority-select").selectOption("stat");
        }
        await page.getByTestId("image-input").setInputFiles(image);
        await page.getByTestId("image-preview").waitFor();
        if (image === images.dicom) {
          assert.match(
            (await page.locator("figcaption").textContent()) ?? "",
            /DICOM, rendered in your browser/,
          );
          await page.screenshot({ path: join(artifacts, "2-dicom-preview.png"), fullPage: true });
        }
        await page.getByRole("button", { name: "Upload and order analysis" }).click();
        await page.getByTestId("image-preview").waitFor({ state: "detached" });
      }
      orderedAt = Date.now();
      // Live status: both orders turn to "Result ready" through the event stream.
      await page
        .locator('[data-testid="orders"] li[data-status="completed"]')
        .nth(1)
        .waitFor({ timeout: 60_000 });
      // The STAT order is marked; the routine one is not.
      assert.deepEqual(await page.getByTestId("orders").getByTestId("priority").allTextContents(), ["STAT"]);
      await page.screenshot({ path: join(artifacts, "3-clerk-orders.png"), fullPage: true });
      assert.deepEqual(await accessibilityProblems(page), [], "clerk's orders: WCAG 2.1 AA");
      assert.equal(await page.getByTestId("report").count(), 0, "clerks do not see results");
      await page.context().close();
    });

    test("the clinician finds the patient by name and sees both results with the model and the inference enclave", async () => {
      assert.ok(orderedAt > 0, "the clerk's orders were placed");
      const page = await newPage(observed);
      await openSentinelPatient(page, "clinician@demo.hospital");
      await page.getByTestId("report").nth(1).waitFor({ timeout: 30_000 });
      const reports = await page.getByTestId("report").allTextContents();
      assert.equal(reports.length, 2);
      for (const text of reports) {
        assert.match(text, /AI result, awaiting clinician review/);
        assert.match(text, /not a diagnosis; awaiting a clinician's review/);
        assert.match(text, /Finding: (normal|pneumonia)/);
        assert.match(text, /Model chest-xray-pneumonia v1/);
        assert.match(text, /%/);
      }
      const measurements = await page.getByTestId("inference-measurement").allTextContents();
      assert.deepEqual(new Set(measurements), new Set([stack.stack().measurements["inference-server"]]));
      assert.equal(await page.locator("meter").count(), 4, "two probability bars per report");
      await page.screenshot({ path: join(artifacts, "4-clinician-result.png"), fullPage: true });
      assert.deepEqual(await accessibilityProblems(page), [], "clinician's results: WCAG 2.1 AA");

      // The clinician's worklist lists both results as awaiting review, under the patient's name.
      const worklist = page.getByTestId("worklist");
      const awaiting = worklist.getByRole("button", { name: new RegExp(sentinel.family, "i") });
      await awaiting.nth(1).waitFor({ timeout: 15_000 });
      assert.equal(await awaiting.count(), 2);
      // The STAT order's result comes first, marked, though it arrived after the routine one; its report too.
      const entries = worklist.getByRole("listitem");
      assert.equal(await entries.nth(0).getByTestId("priority").textContent(), "STAT");
      assert.equal(await entries.nth(1).getByTestId("priority").count(), 0);
      await worklist.getByText("Urgent first, then waiting longest:").waitFor();
      assert.deepEqual(await page.getByTestId("report").getByTestId("priority").allTextContents(), ["STAT"]);

      // The clinician reviews both AI results, reading each image first: confirms one; does not confirm the
      // other, and must say why.
      const first = page.getByTestId("report").nth(0);
      for (const report of [first, page.getByTestId("report").nth(1)]) {
        await report.getByRole("button", { name: "Show the image analysed" }).click();
        const shown = report.getByTestId("report-image");
        await shown.waitFor({ timeout: 15_000 });
        // Decoded and shown (a PNG, and a DICOM rendered in the page), not a broken image.
        await page.waitForFunction(
          (image) => image instanceof HTMLImageElement && image.complete && image.naturalWidth > 0,
          await shown.elementHandle(),
          { timeout: 15_000 },
        );
      }
      await first.getByLabel("I confirm the AI finding").check();
      await first.getByRole("button", { name: "Record review" }).click();
      await first.getByTestId("reviewed").waitFor({ timeout: 15_000 });
      assert.match(
        (await first.getByTestId("reviewed").textContent()) ?? "",
        /^Finding confirmed by a clinician/,
      );
      assert.equal(await first.getByTestId("report-status").textContent(), "Reviewed by a clinician");
      assert.match(
        (await first.getByTestId("conclusion").textContent()) ?? "",
        /^Clinician review: the AI finding is confirmed\./,
      );
      const second = page.getByTestId("report").nth(1);
      await second.getByLabel("I do not confirm the AI finding").check();
      const record = second.getByRole("button", { name: "Record review" });
      assert.equal(await record.isDisabled(), true, "not without a note saying why");
      await second.getByLabel(/Note \(required/).fill("Image quality too poor to call; repeat the film.");
      await record.click();
      await second.getByTestId("reviewed").waitFor({ timeout: 15_000 });
      assert.match(
        (await second.getByTestId("reviewed").textContent()) ?? "",
        /^Finding not confirmed by a clinician/,
      );
      assert.match(
        (await second.getByTestId("conclusion").textContent()) ?? "",
        /Note: Image quality too poor to call/,
      );
      assert.equal(await page.getByTestId("review-form").count(), 0, "nothing left to review");
      // The reviews' events take them off the worklist.
      await awaiting.first().waitFor({ state: "detached", timeout: 15_000 });
      assert.deepEqual(await accessibilityProblems(page), [], "reviewed results: WCAG 2.1 AA");

      // On a second look the clinician changes the first review (always with a note), and withdraws the second
      // report as being about the wrong image: its result is no longer shown.
      await first.getByRole("button", { name: "Change review" }).click();
      await first.getByLabel("I do not confirm the AI finding").check();
      const change = first.getByRole("button", { name: "Change review" });
      assert.equal(await change.isDisabled(), true, "a changed review says why");
      await first.getByLabel(/Note \(required: why the review changes/).fill("Compared with the prior film.");
      await change.click();
      await first
        .getByTestId("report-status")
        .filter({ hasText: "Reviewed by a clinician, review corrected" })
        .waitFor({ timeout: 15_000 });
      assert.match(
        (await first.getByTestId("reviewed").textContent()) ?? "",
        /^Finding not confirmed by a clinician \(review changed\)/,
      );
      await second.getByRole("button", { name: "Change review" }).click();
      await second.getByLabel(/Wrong patient or wrong image/).check();
      await second.getByLabel(/Note \(required/).fill("This film is another patient's.");
      await second.getByRole("button", { name: "Withdraw report" }).click();
      await second
        .getByTestId("report-status")
        .filter({ hasText: "Withdrawn: entered in error" })
        .waitFor({ timeout: 15_000 });
      assert.equal(await second.locator("meter").count(), 0, "a withdrawn report shows no result");
      assert.equal(await second.getByTestId("finding").count(), 0);
      assert.equal(
        await second.getByRole("button", { name: "Change review" }).count(),
        0,
        "withdrawn is final",
      );
      assert.match(
        (await second.getByTestId("conclusion").textContent()) ?? "",
        /entered in error and withdrawn/,
      );
      // Its order says so, for the clerk to place it again.
      await page
        .getByTestId("orders")
        .locator('[data-status="entered-in-error"]')
        .filter({ hasText: "Withdrawn: order again" })
        .waitFor({ timeout: 15_000 });
      await page.screenshot({ path: join(artifacts, "4b-reviews-changed.png"), fullPage: true });
      assert.deepEqual(await accessibilityProblems(page), [], "changed and withdrawn results: WCAG 2.1 AA");

      // Nothing about the patient is kept in the browser.
      const stored = await page.evaluate(() => ({
        local: window.localStorage.length,
        session: window.sessionStorage.length,
        cookie: document.cookie,
      }));
      assert.deepEqual(stored, { local: 0, session: 0, cookie: "" });
      await page.context().close();
    });

    test("results reach an open page without live events: by the page's own checks while the stream is cut, and by the patient's event for an order placed at another workstation", async () => {
      assert.ok(orderedAt > 0, "the clerk's orders were placed");
      // The clerk's workstation, ordering while a clinician has the same patient open.
      const clerk = await newPage(observed);
      await openSentinelPatient(clerk, "clerk@demo.hospital");
      let ordered = 0;
      const orderAtClerk = async (): Promise<void> => {
        // A new file each time: choosing the same file again does not change the input.
        const image = join(scratch, `elsewhere-${++ordered}.png`);
        writeFileSync(image, pngOf(20 + ordered));
        await clerk.getByTestId("model-select").selectOption("chest-xray-pneumonia");
        await clerk.getByTestId("image-input").setInputFiles(image);
        await clerk.getByTestId("image-preview").waitFor();
        await clerk.getByRole("button", { name: "Upload and order analysis" }).click();
        await clerk.getByTestId("image-preview").waitFor({ state: "detached" });
      };

      // The event stream cut (a proxy dropping it): the page says so, and its own checks find the result.
      const cut = await newPage(observed);
      await cut.route(/\/events$/, (route) => route.abort());
      await openSentinelPatient(cut, "clinician@demo.hospital");
      await cut.getByTestId("report").nth(1).waitFor({ timeout: 30_000 });
      await orderAtClerk();
      await cut.getByTestId("report").nth(2).waitFor({ timeout: 60_000 });
      assert.equal(await cut.getByTestId("live-status").textContent(), "○ connecting", "no event reached it");
      await cut.context().close();

      // Live, with no order of this patient pending when the page read them, no check is due: only the
      // report's event, matched by its patient, can show an order placed elsewhere afterwards.
      const live = await newPage(observed);
      await openSentinelPatient(live, "clinician@demo.hospital");
      await live.getByTestId("report").nth(2).waitFor({ timeout: 30_000 });
      await live.getByTestId("live-status").filter({ hasText: "● live" }).waitFor();
      await orderAtClerk();
      await live.getByTestId("report").nth(3).waitFor({ timeout: 25_000 });
      assert.match(
        (await live.getByTestId("report").first().textContent()) ?? "",
        /AI result, awaiting clinician review/,
      );
      await live.context().close();
      await clerk.context().close();
    });

    test("a long record shows its most recent orders and reports, says how many there are in all, and shows older ones on request", async () => {
      // 21 orders analysed for one patient (placed through the API, as another workstation would).
      const description = stack.stack();
      const clerk = await signIn(description, "clerk@demo.hospital", password);
      const family = `Longrecord${randomBytes(3).toString("hex")}`;
      const patient = await stackRequest(
        description,
        "POST",
        `${description.platform}/fhir/Patient`,
        { resourceType: "Patient", name: [{ family }] },
        clerk,
      );
      const subject = `Patient/${(patient.body as { id: string }).id}`;
      for (let i = 0; i < 21; i++) {
        await placeOrderThroughApi(clerk, subject, 100 + i);
      }
      const clinicianToken = await signIn(description, "clinician@demo.hospital", password);
      const deadline = Date.now() + 60_000;
      let analysed = 0;
      while (analysed < 21 && Date.now() < deadline) {
        await new Promise((wake) => setTimeout(wake, 500));
        const counted = await stackRequest(
          description,
          "GET",
          `${description.platform}/fhir/DiagnosticReport?subject=${subject}&_summary=count`,
          undefined,
          clinicianToken,
        );
        analysed = (counted.body as { total?: number }).total ?? 0;
      }
      assert.equal(analysed, 21, "every order was analysed");

      const page = await newPage(observed);
      await signInPortal(page, "clinician@demo.hospital");
      await findSentinelPatient(page, family);
      await page.getByTestId("report").nth(9).waitFor({ timeout: 20_000 });
      const orders = page.getByTestId("order");
      assert.equal(await orders.count(), 20);
      assert.equal(
        await page.getByTestId("orders-shown").textContent(),
        "The 20 most recently updated of 21 orders.",
      );
      assert.equal(await page.getByTestId("report").count(), 10);
      assert.equal(
        await page.getByTestId("reports-shown").textContent(),
        "The 10 most recently updated of 21 reports.",
      );
      assert.deepEqual(await accessibilityProblems(page), []);

      // The clinician's worklist holds these 21 results and more: 20 at first, then more on request.
      const worklist = page.getByTestId("worklist");
      const waiting = worklist.getByRole("listitem");
      await waiting.nth(19).waitFor();
      assert.equal(await waiting.count(), 20);
      const total = Number(/\((\d+)\)/.exec((await worklist.getByRole("heading").textContent()) ?? "")?.[1]);
      assert.ok(total >= 21, `${String(total)} wait`);
      await worklist.getByRole("button", { name: `Show ${String(Math.min(20, total - 20))} more` }).click();
      await waiting.nth(Math.min(40, total) - 1).waitFor();
      assert.equal(await waiting.count(), Math.min(40, total));

      await page.getByRole("button", { name: "Show 1 older order" }).click();
      await orders.nth(20).waitFor();
      assert.equal(await page.getByTestId("orders-shown").count(), 0, "all 21 are shown: nothing to say");
      assert.equal(await page.getByRole("button", { name: /older order/ }).count(), 0);

      await page.getByRole("button", { name: "Show 10 older reports" }).click();
      await page.getByTestId("report").nth(19).waitFor();
      assert.equal(
        await page.getByTestId("reports-shown").textContent(),
        "The 20 most recently updated of 21 reports.",
      );
      await page.getByRole("button", { name: "Show 1 older report" }).click();
      await page.getByTestId("report").nth(20).waitFor();
      assert.equal(await page.getByTestId("reports-shown").count(), 0);
      // Each report shows its result.
      assert.equal(await page.getByTestId("finding").count(), 21);
      await page.context().close();
    });

    test("the clerk cancels an order while it is analysed: it gets no result, and the reason stays with it", async () => {
      const inferencePid = stack.stack().pids["inference-server"];
      assert.ok(inferencePid !== undefined, "stack.json names the inference server's process");
      // A clinician has the patient open, live: a result written for the cancelled order would reach it.
      const clinician = await newPage(observed);
      await openSentinelPatient(clinician, "clinician@demo.hospital");
      await clinician.getByTestId("report").first().waitFor({ timeout: 30_000 });
      await clinician.getByTestId("live-status").filter({ hasText: "● live" }).waitFor();
      const reportsBefore = await clinician.getByTestId("report").count();

      const clerk = await newPage(observed);
      await openSentinelPatient(clerk, "clerk@demo.hospital");
      // The inference server stops answering, so the order stays in analysis while the clerk cancels it: the
      // worker has read the order and waits for the answer.
      process.kill(inferencePid, "SIGSTOP");
      try {
        const image = join(scratch, "wrong-image.png");
        writeFileSync(image, pngOf(30));
        await clerk.getByTestId("model-select").selectOption("chest-xray-pneumonia");
        await clerk.getByTestId("image-input").setInputFiles(image);
        await clerk.getByTestId("image-preview").waitFor();
        await clerk.getByRole("button", { name: "Upload and order analysis" }).click();
        await clerk.getByTestId("image-preview").waitFor({ state: "detached" });
        const analysing = clerk.locator('[data-testid="order"][data-status="active"]');
        await analysing.getByRole("button", { name: "Cancel order" }).click();
        await analysing.getByLabel(/Reason/).fill(`Wrong image: ${sentinel.given}'s other study`);
        assert.deepEqual(await accessibilityProblems(clerk), [], "cancelling an order: WCAG 2.1 AA");
        await analysing.getByRole("button", { name: "Cancel this order" }).click();
      } finally {
        process.kill(inferencePid, "SIGCONT");
      }
      const cancelled = clerk.locator('[data-testid="order"][data-status="revoked"]');
      await cancelled.waitFor();
      assert.match((await cancelled.textContent()) ?? "", /^Cancelled/);
      assert.match(
        (await cancelled.getByTestId("order-note").textContent()) ?? "",
        /^Cancelled: Wrong image: /,
      );
      assert.equal(await cancelled.getByRole("button", { name: "Cancel order" }).count(), 0);
      await clerk.screenshot({ path: join(artifacts, "4-order-cancelled.png"), fullPage: true });

      // The worker gets the inference answer once the server runs again, and writes nothing: the order
      // changed since it read it.
      const deadline = Date.now() + 30_000;
      while (!serviceLogs().includes('"outcome":"ORDER_SETTLED"') && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      assert.match(serviceLogs(), /"outcome":"ORDER_SETTLED"/);
      await clinician.getByTestId("live-status").filter({ hasText: "● live" }).waitFor();
      assert.equal(await clinician.getByTestId("report").count(), reportsBefore, "no result for it");
      await clinician.context().close();
      await clerk.context().close();
    });

    test("the clerk corrects a patient's details from the version on screen; an MRN another patient holds is refused", async () => {
      const clerk = await newPage(observed);
      await openSentinelPatient(clerk, "clerk@demo.hospital");
      const header = clerk.getByRole("region", { name: /QZXVBENCHMARKFAM/ });
      // Another patient, registered at the same desk.
      const intake = clerk.getByRole("region", { name: "New patient" });
      const otherMrn = `${sentinel.mrn}-2`;
      await intake.getByLabel("Medical record number").fill(otherMrn);
      await intake.getByLabel("Family name").fill("Otherperson");
      await intake.getByRole("button", { name: "Register patient" }).click();
      await clerk.getByTestId("patient-name").filter({ hasText: "OTHERPERSON" }).waitFor();
      await findSentinelPatient(clerk);
      await header.waitFor();

      // The MRN of the other patient: refused, nothing changed.
      await header.getByRole("button", { name: "Correct details" }).click();
      const form = header.getByRole("form", { name: "Correct the patient's details" });
      assert.equal(await form.getByLabel("Date of birth").inputValue(), sentinel.birthDate);
      await form.getByLabel("Medical record number").fill(otherMrn);
      await form.getByRole("button", { name: "Save details" }).click();
      await header.getByText("Another patient is registered with this MRN").waitFor();
      assert.deepEqual(await accessibilityProblems(clerk), [], "correcting a patient: WCAG 2.1 AA");

      // Meanwhile a colleague corrects the gender at another workstation.
      const colleague = await newPage(observed);
      await openSentinelPatient(colleague, "clerk@demo.hospital");
      const colleagues = colleague.getByRole("region", { name: /QZXVBENCHMARKFAM/ });
      await colleagues.getByRole("button", { name: "Correct details" }).click();
      await colleagues.getByLabel("Administrative gender").selectOption("other");
      await colleagues.getByRole("button", { name: "Save details" }).click();
      await colleagues.getByText(/· other$/).waitFor();
      await colleague.context().close();

      // This clerk's correction was made on the version before it: refused, and the current details shown.
      await form.getByLabel("Medical record number").fill(sentinel.mrn);
      await form.getByLabel("Date of birth").fill(sentinel.correctedBirthDate);
      await form.getByRole("button", { name: "Save details" }).click();
      await header.getByText("Someone changed this patient's details meanwhile").waitFor();
      assert.equal(await form.getByLabel("Administrative gender").inputValue(), "other");
      assert.equal(await form.getByLabel("Date of birth").inputValue(), sentinel.birthDate);
      await form.getByLabel("Date of birth").fill(sentinel.correctedBirthDate);
      await form.getByRole("button", { name: "Save details" }).click();
      await header.getByText(`MRN ${sentinel.mrn} · born ${sentinel.correctedBirthDate} · other`).waitFor();
      assert.equal(await form.count(), 0, "the form closes once saved");
      await clerk.context().close();
    });

    test("an admin reads who accessed the patient's record: staff by email, what they did, newest first", async () => {
      const admin = await newPage(observed);
      await openSentinelPatient(admin, "admin@demo.hospital");
      // A records request: the whole record as one FHIR Bundle, saved as a file named by the record's id only.
      const saving = admin.waitForEvent("download");
      await admin.getByRole("button", { name: "Download the whole record (FHIR)" }).click();
      const download = await saving;
      assert.match(download.suggestedFilename(), /^patient-[0-9a-f-]{36}\.fhir\.json$/);
      const bundle = JSON.parse(readFileSync(await download.path(), "utf8")) as {
        resourceType: string;
        type: string;
        entry: { resource: { resourceType: string; name?: { family?: string }[] } }[];
      };
      assert.equal(bundle.resourceType, "Bundle");
      assert.equal(bundle.type, "searchset");
      assert.equal(bundle.entry[0]?.resource.name?.[0]?.family, sentinel.family);
      const kinds = new Set(bundle.entry.map((entry) => entry.resource.resourceType));
      for (const kind of ["ServiceRequest", "Binary", "DiagnosticReport", "Observation", "Provenance"]) {
        assert.ok(kinds.has(kind), `the record holds ${kind}`);
      }
      const access = admin.getByRole("region", { name: "Access to this record" });
      await access.getByRole("button", { name: "Show who accessed this record" }).click();
      await access.getByTestId("access-log").waitFor();
      // The newest 100 first, then older ones on request, until the clerk's registration.
      while ((await access.getByRole("button", { name: "Show older accesses" }).count()) > 0) {
        const before = await access.getByTestId("access-row").count();
        await access.getByRole("button", { name: "Show older accesses" }).click();
        await access.getByTestId("access-row").nth(before).waitFor();
      }
      const rows = (await access.getByTestId("access-row").allTextContents()).join("\n");
      for (const expected of [
        /clerk@demo\.hospital \(clerk\)Created patient details/,
        /clerk@demo\.hospital \(clerk\)Created image/,
        /clerk@demo\.hospital \(clerk\)Changed order/,
        /clerk@demo\.hospital \(clerk\)Changed patient details/,
        /clinician@demo\.hospital \(clinician\)Opened image/,
        /clinician@demo\.hospital \(clinician\)Reviewed report/,
        /the platform's AI workflow \(workflow\)Recorded a result: order, result, report, provenance/,
        /the attested inference server \(inference-server\)Sent for AI analysis: order, image/,
        /admin@demo\.hospital \(admin\)Downloaded the whole record: order, image, report, result, provenance/,
      ]) {
        assert.match(rows, expected);
      }
      assert.doesNotMatch(rows, /account [0-9a-f-]{36}/, "every staff member is named");
      assert.match((await access.locator("caption").textContent()) ?? "", /^All \d+ accesses, newest first$/);
      // A page reading a report's results at once is one row.
      assert.match(rows, /Opened result \(\d+ times\)/);
      await admin.screenshot({ path: join(artifacts, "5-access-report.png"), fullPage: true });
      assert.deepEqual(await accessibilityProblems(admin), [], "access report: WCAG 2.1 AA");
      // The model's record in this hospital: the clinician confirmed one finding and not another, then changed
      // the first review and withdrew the second report.
      const performance = admin.getByRole("region", { name: "AI model performance" });
      await performance.getByRole("button", { name: "Show AI model performance" }).click();
      const table = performance.getByTestId("ai-performance");
      await table.waitFor();
      assert.match(
        (await table.locator("caption").textContent()) ?? "",
        /^chest-xray-pneumonia v1: (clinicians confirmed \d+% of the findings they reviewed \(\d+ of [1-9]\d*\)|no finding reviewed yet)$/,
      );
      assert.match((await performance.textContent()) ?? "", /[1-9]\d* withdrawn as entered in error/);
      assert.doesNotMatch((await performance.textContent()) ?? "", new RegExp(sentinel.family, "i"));
      await performance.screenshot({ path: join(artifacts, "5-ai-performance.png") });
      assert.deepEqual(await accessibilityProblems(admin), [], "AI model performance: WCAG 2.1 AA");
      await admin.context().close();
    });

    test("an admin adds a member of staff, who chooses their own password; disabling the account ends their session at once", async () => {
      const admin = await newPage(observed);
      await signInPortal(admin, "admin@demo.hospital");
      const staff = admin.getByRole("region", { name: "Staff accounts" });
      await staff.getByTestId("staff-row").first().waitFor();
      const nurse = `nurse-${randomBytes(3).toString("hex")}@demo.hospital`;
      await staff.getByLabel("Email").fill(nurse);
      // The add form comes after the table, whose rows have a role of their own each.
      await staff.getByLabel("Role").last().selectOption("clerk");
      await staff.getByRole("button", { name: "Add staff member" }).click();
      const handOver = staff.getByTestId("temporary-password");
      await handOver.waitFor();
      const temporary = (await handOver.locator("code").textContent()) ?? "";
      assert.match(temporary, /^[a-z2-9]{4}(-[a-z2-9]{4}){3}$/);
      staffPasswords.push(temporary);
      const row = staff.getByTestId("staff-row").filter({ hasText: nurse });
      await row.getByText("Active (temporary password)").waitFor();
      assert.match((await row.textContent()) ?? "", /Never/, "no sign-in yet");
      assert.equal(
        await staff
          .getByTestId("staff-row")
          .filter({ hasText: "admin@demo.hospital" })
          .getByRole("button")
          .count(),
        0,
        "an admin does not disable or reset their own account here",
      );
      await admin.screenshot({ path: join(artifacts, "6-staff-accounts.png"), fullPage: true });
      assert.deepEqual(await accessibilityProblems(admin), [], "staff accounts: WCAG 2.1 AA");

      // The new member of staff signs in with it, and chooses their own password on the way.
      const page = await newPage(observed);
      await page.goto(stack.stack().portal);
      await page.getByTestId("attestation-verified").waitFor({ timeout: 20_000 });
      await page.getByLabel("Email").fill(nurse);
      // A mistyped password first: the admin's list shows it (log-in monitoring), once read again.
      await page.getByLabel("Password", { exact: true }).fill("a mistyped temporary password");
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByText("The email or password is not right.").waitFor();
      await staff.getByRole("button", { name: "Refresh the list" }).click();
      await row.getByText("Active (temporary password; 1 wrong password since the last sign-in)").waitFor();
      await page.getByLabel("Password", { exact: true }).fill(temporary);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByTestId("choose-password").waitFor();
      assert.deepEqual(await accessibilityProblems(page), [], "choosing a password: WCAG 2.1 AA");
      const own = `the nurse's own ${randomBytes(4).toString("hex")}`;
      staffPasswords.push(own);
      await page.getByLabel("New password", { exact: true }).fill(own);
      await page.getByLabel("Repeat the new password").fill(own);
      await page.getByRole("button", { name: "Set password and sign in" }).click();
      await page.getByTestId("signed-in").waitFor();
      // Later they change it themselves.
      const changed = `${own} changed`;
      staffPasswords.push(changed);
      await page.getByRole("button", { name: "Change password" }).click();
      const form = page.getByRole("region", { name: "Change your password" });
      await form.getByLabel("Current password").fill(own);
      await form.getByLabel("New password", { exact: true }).fill(changed);
      await form.getByLabel("Repeat the new password").fill(changed);
      await form.getByRole("button", { name: "Change password" }).click();
      await page.getByText("Your password is changed.").waitFor();
      assert.equal(await form.count(), 0, "the form closes");

      // The nurse leaves: the admin disables the account, and the nurse's next request ends the session.
      await staff.getByRole("button", { name: `Disable ${nurse}` }).click();
      await row.getByText("Disabled").waitFor();
      const search = page.getByRole("region", { name: "Find a patient" });
      await search.getByLabel("Medical record number").fill("ANY-MRN-1");
      await search.getByRole("button", { name: "Search" }).click();
      await page.getByText("Your session has ended").waitFor();
      assert.equal(await page.getByTestId("signed-in").count(), 0, "signed out");
      await page.getByLabel("Email").fill(nurse);
      await page.getByLabel("Password", { exact: true }).fill(changed);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByText("This account is disabled. Ask your administrator.").waitFor();
      await page.context().close();
      await admin.context().close();
    });

    test("refuses to send anything when the platform's measurement is not the expected one", async () => {
      const refusedUrls: string[] = [];
      const page = await newPage({ urls: refusedUrls, console: observed.console });
      const config = JSON.parse(readFileSync(join(dataDirectory, "portal-config.json"), "utf8")) as Record<
        string,
        unknown
      >;
      await page.route("**/config.json", (route) =>
        route.fulfill({ json: { ...config, platformMeasurements: ["00".repeat(32)] } }),
      );
      await page.goto(stack.stack().portal);
      const refusal = page.getByTestId("attestation-refused");
      await refusal.waitFor({ timeout: 20_000 });
      assert.match((await refusal.textContent()) ?? "", /runs code this portal was not built for/);
      assert.equal(await page.getByLabel("Password").count(), 0, "no sign-in form");
      assert.ok(!refusedUrls.some((url) => url.endsWith("/ohttp")), "nothing sealed was sent");
      await page.screenshot({ path: join(artifacts, "5-refused.png"), fullPage: true });
      assert.deepEqual(await accessibilityProblems(page), [], "refusal: WCAG 2.1 AA");
      await page.context().close();
    });

    test("a models list that could not be fetched is fetched again by itself: the order form gets its models", async () => {
      const page = await newPage(observed);
      // The first sealed request after the sign-in is the models list: it is lost on the way, once.
      let sealed = 0;
      await page.route(/\/ohttp$/, async (route) => {
        sealed++;
        await (sealed === 2 ? route.abort() : route.continue());
      });
      await openSentinelPatient(page, "clerk@demo.hospital");
      // Without a second try the model list stays empty until the next sign-in.
      await page
        .getByTestId("model-select")
        .locator("option")
        .first()
        .waitFor({ state: "attached", timeout: 15_000 });
      assert.ok(
        (await page.getByTestId("model-select").locator("option").allTextContents()).some((text) =>
          text.includes("(v1)"),
        ),
      );
      assert.equal(
        await page.getByRole("alert").filter({ hasText: "The AI models could not be listed" }).count(),
        0,
        "the error is gone once the list arrives",
      );
      await page.context().close();
    });

    test("the order form says when a patient is not one the model is for: an adult and the paediatric model cannot be ordered; without a birth date it cautions", async () => {
      const description = stack.stack();
      const clerkToken = await signIn(description, "clerk@demo.hospital", password);
      const family = `Agecheck${randomBytes(3).toString("hex")}`;
      for (const facts of [{ birthDate: "1961-04-12", gender: "female" }, {}]) {
        const created = await stackRequest(
          description,
          "POST",
          `${description.platform}/fhir/Patient`,
          { resourceType: "Patient", name: [{ family }], ...facts },
          clerkToken,
        );
        assert.equal(created.status, 201);
      }
      const page = await newPage(observed);
      await signInPortal(page, "clerk@demo.hospital");
      const search = page.getByRole("region", { name: "Find a patient" });
      await search.getByLabel("Search by").selectOption("name");
      await search.getByLabel("Family or given name").fill(family);
      await search.getByRole("button", { name: "Search" }).click();
      const found = search.getByRole("button", { name: new RegExp(family, "i") });
      await found.nth(1).waitFor();

      // The woman born in 1961: the paediatric model is not ordered; the breast model (women of 25 to 75) may be.
      const patientBorn = (born: string) =>
        search
          .getByRole("listitem")
          .filter({ hasText: `born ${born}` })
          .getByRole("button");
      await patientBorn("1961-04-12").click();
      await page.getByTestId("model-select").locator("option").first().waitFor({ state: "attached" });
      await page.getByTestId("model-select").selectOption("chest-xray-pneumonia");
      await page.getByTestId("image-input").setInputFiles(images.png);
      await page.getByTestId("image-preview").waitFor();
      assert.equal(
        await page.getByTestId("intended-use").textContent(),
        "This model is for patients aged 1 to 5 years. This patient's recorded age or sex is outside that, so the platform would not analyse the image: read it without the AI, or choose another model.",
      );
      const orderButton = page.getByRole("button", { name: "Upload and order analysis" });
      assert.equal(await orderButton.isDisabled(), true);
      assert.deepEqual(await accessibilityProblems(page), [], "the refusal: WCAG 2.1 AA");
      await page.getByTestId("model-select").selectOption("breast-ultrasound");
      assert.equal(await page.getByTestId("intended-use").count(), 0);
      assert.equal(await orderButton.isDisabled(), false);
      // A DICOM whose own header says the patient is male is not hers: the form says so before anything is
      // sent, and does not order (the platform refuses such an upload too: fhir-api.int.test.ts).
      const male = join(scratch, "male.dcm");
      writeFileSync(
        male,
        encodeDicom({ rows: 64, columns: 64, pixels: new Uint16Array(64 * 64), patientSex: "M" }),
      );
      await page.getByTestId("image-input").setInputFiles(male);
      await page.getByTestId("image-preview").waitFor();
      await page
        .getByRole("alert")
        .filter({
          hasText: "This image's own header names another birth date or sex than this patient's record",
        })
        .waitFor();
      assert.equal(await orderButton.isDisabled(), true);
      assert.equal(await page.getByTestId("order").count(), 0, "nothing was ordered");

      // No birth date recorded: a caution, and the order may be placed.
      await patientBorn("—").click();
      await page.getByTestId("model-select").selectOption("chest-xray-pneumonia");
      await page
        .getByTestId("intended-use")
        .filter({ hasText: "This patient's record does not show whether they are one" })
        .waitFor();
      await page.context().close();
    });

    test("markup and script in every text field are shown as text, never run", async () => {
      const page = await newPage(observed);
      let dialogs = 0;
      page.on("dialog", (dialog) => {
        dialogs++;
        void dialog.dismiss();
      });
      await signInPortal(page, "clerk@demo.hospital");
      const payloads = {
        mrn: `XSS-<svg onload=alert(1)>-${randomBytes(2).toString("hex")}`,
        family: `<img src=x onerror="window.__xss=1;alert(1)">`,
        given: `"><script>window.__xss=2</script>`,
      };
      const intake = page.getByRole("region", { name: "New patient" });
      await intake.getByLabel("Medical record number").fill(payloads.mrn);
      await intake.getByLabel("Family name").fill(payloads.family);
      await intake.getByLabel("Given name").fill(payloads.given);
      await intake.getByRole("button", { name: "Register patient" }).click();
      const heading = page.getByTestId("patient-name");
      await heading.waitFor();
      assert.equal(await heading.textContent(), `${payloads.family.toUpperCase()}, ${payloads.given}`);
      const search = page.getByRole("region", { name: "Find a patient" });
      await search.getByLabel("Medical record number").fill(payloads.mrn);
      await search.getByRole("button", { name: "Search" }).click();
      await search.getByText(payloads.mrn).waitFor();
      assert.equal(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss), undefined);
      assert.equal(dialogs, 0);
      assert.equal(await page.locator("img[src=x], svg[onload]").count(), 0, "no injected element exists");
      await page.context().close();
    });

    test("no sentinel PHI or password in any URL, console line, service log or metric", async () => {
      assert.ok(observed.urls.length > 10);
      const description = stack.stack();
      let metrics = "";
      for (const url of [
        description.attestation,
        description.keyBroker,
        description.inference,
        description.platform,
      ]) {
        const response = await requestBytes("GET", `${url}/metrics`, undefined, {
          ca: readFileSync(description.caCert, "utf8"),
        });
        assert.equal(response.status, 200);
        metrics += Buffer.from(response.body).toString("utf8");
      }
      assert.match(metrics, /http_requests_total/);
      const haystacks = {
        metrics,
        urls: observed.urls.join("\n"),
        console: observed.console.join("\n"),
        logs: serviceLogs(),
      };
      for (const [where, text] of Object.entries(haystacks)) {
        for (const secret of [sentinel.family, sentinel.given, sentinel.mrn, password, ...staffPasswords]) {
          assert.ok(!text.includes(secret), `${where} contains a sentinel`);
        }
      }
      assert.ok(!observed.console.some((line) => line.startsWith("pageerror")), observed.console.join("\n"));
    });
  },
);

describe("the stack over time", () => {
  test("the platform killed mid-job is restarted and the order ends in exactly one AI report", async () => {
    const description = stack.stack();
    const clerk = await signIn(description, "clerk@demo.hospital", password);
    const patient = await stackRequest(
      description,
      "POST",
      `${description.platform}/fhir/Patient`,
      {
        resourceType: "Patient",
        identifier: [
          { system: "https://demo.hospital/fhir/mrn", value: `KILL-${randomBytes(3).toString("hex")}` },
        ],
        name: [{ family: "Killtest" }],
      },
      clerk,
    );
    assert.equal(patient.status, 201);
    const orderId = await placeOrderThroughApi(clerk, `Patient/${(patient.body as { id: string }).id}`, 11);
    const killed = description.pids["platform-api"];
    assert.ok(killed !== undefined);
    process.kill(killed, "SIGKILL");
    // The supervisor starts it again; it requeues active orders at start.
    const deadline = Date.now() + 60_000;
    let reports: unknown[] = [];
    while (Date.now() < deadline) {
      await new Promise((resolveWait) => setTimeout(resolveWait, 500));
      const restarted = stack.stack().pids["platform-api"];
      if (restarted === undefined || restarted === killed) {
        continue;
      }
      try {
        const clinician = await signIn(stack.stack(), "clinician@demo.hospital", password);
        const found = await stackRequest(
          stack.stack(),
          "GET",
          `${description.platform}/fhir/DiagnosticReport?based-on=ServiceRequest/${orderId}`,
          undefined,
          clinician,
        );
        reports = ((found.body as { entry?: { resource: { status: string } }[] }).entry ?? []).map(
          (entry) => entry.resource,
        );
        if (reports.length > 0) {
          break;
        }
      } catch {
        // still starting
      }
    }
    assert.equal(reports.length, 1, "exactly one report");
    assert.equal((reports[0] as { status: string }).status, "preliminary");
    assert.match(stack.stderr(), /platform-api exited \(SIGKILL\); starting it again/);
  });

  test("the attestation service killed and restarted signs with the same sealed key", async () => {
    const description = stack.stack();
    const kids = async (): Promise<string[]> =>
      (
        (await stackRequest(stack.stack(), "GET", `${description.attestation}/certs`)).body as {
          keys: { kid: string }[];
        }
      ).keys.map((key) => key.kid);
    const before = await kids();
    const killed = description.pids["attestation-service"];
    assert.ok(killed !== undefined);
    process.kill(killed, "SIGKILL");
    const deadline = Date.now() + 30_000;
    let after: string[] = [];
    while (Date.now() < deadline) {
      await new Promise((resolveWait) => setTimeout(resolveWait, 300));
      if (stack.stack().pids["attestation-service"] === killed) {
        continue;
      }
      try {
        after = await kids();
        break;
      } catch {
        // starting
      }
    }
    assert.deepEqual(after, before);
  });

  /**
   * Once the platform serves again (a new process, when `killed` is its old pid), the number of patients
   * named Killtest a clerk finds; -1 if it does not serve within `waitMs`.
   */
  const killtestPatientsOnceServing = async (waitMs: number, killed?: number): Promise<number> => {
    const deadline = Date.now() + waitMs;
    while (Date.now() < deadline) {
      await new Promise((resolveWait) => setTimeout(resolveWait, 500));
      if (killed !== undefined && stack.stack().pids["platform-api"] === killed) {
        continue;
      }
      try {
        const clerk = await signIn(stack.stack(), "clerk@demo.hospital", password);
        const search = await stackRequest(
          stack.stack(),
          "GET",
          `${stack.stack().platform}/fhir/Patient?name=Killtest`,
          undefined,
          clerk,
        );
        return (search.body as { total?: number }).total ?? -1;
      } catch {
        // still starting
      }
    }
    return -1;
  };

  test("the key broker and the platform killed together come back, and the records still open", async () => {
    const description = stack.stack();
    const before = { ...description.pids };
    const keyConfig = async (): Promise<unknown> =>
      (
        (await stackRequest(stack.stack(), "GET", `${stack.stack().platform}/attestation`)).body as {
          keyConfig?: unknown;
        }
      ).keyConfig;
    const keyConfigBefore = await keyConfig();
    for (const service of ["key-broker", "platform-api"] as const) {
      const pid = before[service];
      assert.ok(pid !== undefined);
      process.kill(pid, "SIGKILL");
    }
    // The platform may start before the key broker is back: it then fails to get its keys, exits, and is
    // started again; it never serves without them.
    const total = await killtestPatientsOnceServing(60_000);
    assert.equal(total, 1, "the patient written before the kills opens with the released key");
    // The OHTTP key is platform-ohttp from the key broker, not one made by the process: a browser that
    // attested the platform before the restart goes on sealing to the same key.
    assert.equal(await keyConfig(), keyConfigBefore);
    const after = stack.stack().pids;
    assert.notEqual(after["key-broker"], before["key-broker"]);
    assert.notEqual(after["platform-api"], before["platform-api"]);
  });

  test(
    "the platform's OHTTP key rotated while a clerk works: the page goes on through the roll, without a reload or a new sign-in",
    {
      skip: existsSync(chromiumPath)
        ? false
        : `SKIPPED LOUDLY: ${chromiumPath} is missing (apt-get install chromium); .ci/run installs it`,
    },
    async () => {
      const description = stack.stack();
      const adminToken = readFileSync(join(dataDirectory, "key-broker-admin-token"), "utf8").trim();
      const seen = { urls: [] as string[], console: observed.console };
      const page = await newPage(seen);
      await signInPortal(page, "clerk@demo.hospital");
      const attestations = (): number =>
        seen.urls.filter((url) => new URL(url).pathname === "/attestation").length;
      const attestedAtStart = attestations();
      assert.equal(attestedAtStart, 1);
      /** Registers a patient through the page: a sealed POST whose answer the page shows. */
      const register = async (family: string): Promise<void> => {
        const intake = page.getByRole("region", { name: "New patient" });
        await intake.getByLabel("Medical record number").fill(`ROLL-${randomBytes(4).toString("hex")}`);
        await intake.getByLabel("Family name").fill(family);
        await intake.getByLabel("Given name").fill("Keyroll");
        await intake.getByRole("button", { name: "Register patient" }).click();
        await page.getByTestId("patient-name").filter({ hasText: family.toUpperCase() }).waitFor();
      };
      const restartPlatform = async (): Promise<void> => {
        const killed = stack.stack().pids["platform-api"];
        assert.ok(killed !== undefined);
        process.kill(killed, "SIGKILL");
        assert.ok((await killtestPatientsOnceServing(60_000, killed)) >= 0, "the platform serves again");
      };
      const broker = (method: "GET" | "POST", path: string) =>
        stackRequest(
          description,
          method,
          `${description.keyBroker}${path}`,
          method === "POST" ? {} : undefined,
          adminToken,
        );

      // Rotated at the broker, and the platform rolled: the new process binds version 2, and still opens what
      // the page seals to version 1, so the page does not even need to verify it again.
      const rotated = await broker("POST", "/keys/platform-ohttp/rotate");
      assert.equal(rotated.status, 201, JSON.stringify(rotated.body));
      const { version: newest, versions } = rotated.body as {
        version: number;
        versions: { version: number }[];
      };
      await restartPlatform();
      await register("Rollone");
      assert.equal(attestations(), attestedAtStart, "the previous key still opened");

      // The older version destroyed and the platform restarted: it no longer opens it. The page verifies the
      // platform again by itself and sends the request once more; the clerk stays signed in.
      for (const { version } of versions.filter((entry) => entry.version < newest)) {
        const destroyed = await requestJson(
          "DELETE",
          `${description.keyBroker}/keys/platform-ohttp/${version}`,
          undefined,
          {
            ca: readFileSync(description.caCert, "utf8"),
            headers: {
              authorization: `Bearer ${adminToken}`,
              // Destroying a version takes two of the stack's three policy approvers.
              "cloister-approvals": await demoApprovals(dataDirectory, {
                action: "destroy-version",
                key: "platform-ohttp",
                version,
              }),
            },
          },
        );
        assert.equal(destroyed.status, 200, JSON.stringify(destroyed.body));
      }
      await restartPlatform();
      await register("Rolltwo");
      assert.equal(attestations(), attestedAtStart + 1, "verified again once");
      assert.match((await page.getByTestId("signed-in").textContent()) ?? "", /clerk@demo\.hospital/);
      // A request cut by a restart (the models list, asked for at sign-in) may show an error for a moment; it
      // is tried again by itself, so none is left.
      await page
        .getByRole("alert")
        .first()
        .waitFor({ state: "detached", timeout: 15_000 })
        .catch(() => undefined);
      assert.deepEqual(await page.getByRole("alert").allTextContents(), [], "no error left shown");
      await page.context().close();
      observed.urls.push(...seen.urls);
    },
  );

  test("Ctrl-C stops everything; a second start reuses the data directory and the records", async () => {
    assert.equal(await stack.stop(), 0);
    assert.match(stack.stdout(), /Stopped\./);
    stack = await startLocalStack(dataDirectory, portBase, { CLOISTER_DEMO_PASSWORD: "" });
    assert.match(stack.stdout(), /password: in .*demo-credentials\.json/);
    const description = stack.stack();
    const clerk = await signIn(description, "clerk@demo.hospital", password);
    const search = await stackRequest(
      description,
      "GET",
      `${description.platform}/fhir/Patient?identifier=https://demo.hospital/fhir/mrn|${sentinel.mrn}`,
      undefined,
      clerk,
    );
    const total = (search.body as { entry?: unknown[] }).entry?.length ?? 0;
    assert.equal(
      total,
      existsSync(chromiumPath) ? 1 : 0,
      "the patient registered in the portal survived the restart",
    );
  });

  test("cloister keys rotate --retire: every record moves to the new data key version, the old one is destroyed once two approvers approve it, and a restarted platform opens everything", async () => {
    const cli = join(repositoryRoot, "packages/cli/dist/bin.js");
    const keyName = "tenant-demo-hospital";
    // Without approvals, the rotation and the re-encryption run, and the old version is kept: the key broker
    // destroys a version only with two of its three policy approvers' approvals.
    await assert.rejects(
      run(process.execPath, [cli, "keys", "rotate", "--retire", "--batch", "7", "--data-dir", dataDirectory]),
      (error: unknown) => {
        const { stdout = "", stderr = "" } = error as { stdout?: string; stderr?: string };
        assert.match(stdout, /tenant-demo-hospital: version 2 created at the key broker/);
        assert.match(
          stderr,
          /refused to destroy tenant-demo-hospital version 1 \(HTTP 403, ERR_APPROVAL_REQUIRED\)/,
        );
        assert.match(stderr, /cloister approvals approve --key tenant-demo-hospital --destroy-version 1/);
        return true;
      },
    );
    const adminToken = readFileSync(join(dataDirectory, "key-broker-admin-token"), "utf8").trim();
    const held = await stackRequest(
      stack.stack(),
      "GET",
      `${stack.stack().keyBroker}/keys/${keyName}`,
      undefined,
      adminToken,
    );
    assert.deepEqual(
      (held.body as { versions: { version: number }[] }).versions.map((entry) => entry.version),
      [1, 2],
      "nothing destroyed",
    );
    // Two approvers, each with their own key, approve destroying version 1.
    const approvals: string[] = [];
    for (const approver of [1, 3]) {
      const approved = await run(process.execPath, [
        cli,
        "approvals",
        "approve",
        "--approver",
        join(dataDirectory, "approvers", `approver-${approver}.jwk`),
        "--key",
        keyName,
        "--destroy-version",
        "1",
      ]);
      approvals.push(approved.stdout.trim());
    }
    const approvalsFile = join(dataDirectory, "retire-approvals.txt");
    writeFileSync(approvalsFile, `# destroy ${keyName} version 1\n${approvals.join("\n")}\n`);
    const retired = await run(process.execPath, [
      cli,
      "keys",
      "reencrypt",
      "--retire",
      "--approvals",
      approvalsFile,
      "--json",
      "--data-dir",
      dataDirectory,
    ]);
    const outcome = JSON.parse(retired.stdout) as {
      tenant: string;
      generation: number;
      resealed: number;
      retired: number[];
    };
    assert.equal(outcome.tenant, "demo-hospital");
    assert.equal(outcome.generation, 2);
    assert.deepEqual(outcome.retired, [1]);
    const database = new Database(join(dataDirectory, "records.db"), { readonly: true });
    const generations = database
      .prepare(
        "SELECT key_generation, count(*) AS versions FROM resource_versions WHERE tenant_id = 'demo-hospital' GROUP BY key_generation",
      )
      .all() as { key_generation: number; versions: number }[];
    database.close();
    assert.ok(
      generations.every((row) => row.key_generation !== 1),
      `nothing is left under version 1: ${JSON.stringify(generations)}`,
    );
    assert.ok(
      (generations.find((row) => row.key_generation === 2)?.versions ?? 0) > 10,
      `records were re-encrypted: ${JSON.stringify(generations)}`,
    );
    // A restarted platform gets version 2 alone from the broker, and still opens and finds the records.
    const killed = stack.stack().pids["platform-api"];
    assert.ok(killed !== undefined);
    process.kill(killed, "SIGKILL");
    const total = await killtestPatientsOnceServing(30_000, killed);
    assert.equal(total, 1, "the patient written under version 1 opens and is found under version 2");
  });

  test("cloister keys rotate --system, a restart, then --retire: the platform's own records move to the new platform-system version, and a platform holding it alone signs staff in", async () => {
    const keys = async (...args: string[]) => {
      const answer = await run(process.execPath, [
        join(repositoryRoot, "packages/cli/dist/bin.js"),
        "keys",
        ...args,
        "--system",
        "--json",
        "--data-dir",
        dataDirectory,
      ]);
      return JSON.parse(answer.stdout) as {
        key: string;
        generation: number;
        resealed: number;
        retired: number[];
      };
    };
    const systemGenerations = (): { key_generation: number; versions: number }[] => {
      const database = new Database(join(dataDirectory, "records.db"), { readonly: true });
      try {
        return database
          .prepare(
            "SELECT key_generation, count(*) AS versions FROM resource_versions WHERE tenant_id = '_system' GROUP BY key_generation",
          )
          .all() as { key_generation: number; versions: number }[];
      } finally {
        database.close();
      }
    };
    const rotated = await keys("rotate");
    assert.equal(rotated.key, "platform-system");
    assert.equal(rotated.generation, 2);
    assert.ok(rotated.resealed >= 3, `the accounts and the system audit trail moved (${rotated.resealed})`);
    assert.deepEqual(rotated.retired, []);
    const afterRotation = systemGenerations();
    assert.ok(
      afterRotation.every((row) => row.key_generation !== 1),
      `nothing of the platform's is left under version 1: ${JSON.stringify(afterRotation)}`,
    );
    // The runbook's restart, so the job queue and the sign-in limits hold version 2 as well.
    const first = stack.stack().pids["platform-api"];
    assert.ok(first !== undefined);
    process.kill(first, "SIGKILL");
    assert.equal(await killtestPatientsOnceServing(30_000, first), 1);
    const approvalsFile = join(dataDirectory, "system-retire-approvals.txt");
    writeFileSync(
      approvalsFile,
      (
        await demoApprovals(dataDirectory, { action: "destroy-version", key: "platform-system", version: 1 })
      ).replaceAll(",", "\n"),
    );
    const retired = await keys("reencrypt", "--retire", "--approvals", approvalsFile);
    assert.deepEqual(retired.retired, [1]);
    // A platform started now gets version 2 alone, and staff still sign in (the search signs the clerk in).
    const second = stack.stack().pids["platform-api"];
    assert.ok(second !== undefined);
    process.kill(second, "SIGKILL");
    assert.equal(await killtestPatientsOnceServing(30_000, second), 1, "signed in under version 2 alone");
  });

  test("cloister audit verify: the chain verifies, then a truncated tail (head record included) is caught by the checkpoint", async () => {
    const cli = [
      join(repositoryRoot, "packages/cli/dist/bin.js"),
      "audit",
      "verify",
      "--data-dir",
      dataDirectory,
    ];
    const first = await run(process.execPath, cli);
    assert.match(first.stdout, /audit chain verifies for tenant demo-hospital: \d+ events/);
    const second = await run(process.execPath, cli);
    assert.match(second.stdout, /still holds the checkpoint at event \d+/);
    // An insider deletes the newest audit events and the sealed head record, then restarts the platform.
    const database = new Database(join(dataDirectory, "records.db"));
    const newest = database
      .prepare("SELECT id FROM resources_current WHERE tenant_id = 'demo-hospital' AND type = 'AuditEvent'")
      .all() as { id: string }[];
    const highest = newest
      .map((row) => Number(row.id.slice("audit-".length)))
      .sort((a, b) => b - a)
      .slice(0, 3);
    for (const sequence of highest) {
      for (const table of ["resources_current", "resource_versions", "search_tokens"]) {
        database
          .prepare(
            `DELETE FROM ${table} WHERE tenant_id = 'demo-hospital' AND type = 'AuditEvent' AND id = ?`,
          )
          .run(`audit-${sequence}`);
      }
    }
    for (const table of ["resources_current", "resource_versions"]) {
      database.prepare(`DELETE FROM ${table} WHERE tenant_id = 'demo-hospital' AND type = 'AuditHead'`).run();
    }
    database.close();
    const killed = stack.stack().pids["platform-api"];
    assert.ok(killed !== undefined);
    process.kill(killed, "SIGKILL");
    const deadline = Date.now() + 30_000;
    while (stack.stack().pids["platform-api"] === killed && Date.now() < deadline) {
      await new Promise((resolveWait) => setTimeout(resolveWait, 200));
    }
    let broken: { code: number; stdout: string } | undefined;
    while (broken === undefined && Date.now() < deadline) {
      await new Promise((resolveWait) => setTimeout(resolveWait, 500));
      broken = await run(process.execPath, cli).then(
        () => assert.fail("the truncated chain verified"),
        (error: unknown) => {
          const failed = error as { code: number; stdout: string };
          return failed.stdout.includes("BROKEN") ? failed : undefined;
        },
      );
    }
    assert.ok(broken !== undefined, "the truncation was not reported");
    assert.equal(broken.code, 1);
    // Either the checkpoint's event is gone (chain shorter than recorded) or it was rewritten.
    assert.match(broken.stdout, /ends at \d+, but \d+ events were written|no longer holds the checkpoint/);
  });
  test("the key broker's store lost with its node: cloister recovery restores it from the backup with 2 of 3 custodians, and a restarted platform opens every record", async () => {
    const recovery = async (...args: string[]): Promise<string> =>
      (
        await run(process.execPath, [
          join(repositoryRoot, "packages/cli/dist/bin.js"),
          "recovery",
          ...args,
          "--data-dir",
          dataDirectory,
        ])
      ).stdout;
    const backupFile = join(scratch, "key-broker-backup.json");
    assert.match(await recovery("backup", "--out", backupFile), /2 of 3 custodians restore it/);
    const backupOnVolume = join(dataDirectory, "recovery", "key-broker-backup.json");
    assert.ok(existsSync(backupOnVolume), "written after every change");
    const backupBefore = readFileSync(backupOnVolume, "utf8");

    // The node is lost: the broker's sealed store is gone (moved aside, then the process killed).
    const keysDirectory = join(dataDirectory, "keys");
    const sealedBefore = readdirSync(keysDirectory)
      .filter((name) => name.endsWith(".sealed"))
      .sort();
    assert.ok(sealedBefore.length >= 4, sealedBefore.join(", "));
    renameSync(keysDirectory, join(scratch, "lost-keys"));
    const killed = stack.stack().pids["key-broker"];
    assert.ok(killed !== undefined);
    process.kill(killed, "SIGKILL");
    const description = stack.stack();
    const adminToken = readFileSync(join(dataDirectory, "key-broker-admin-token"), "utf8").trim();
    const platformOhttp = async (): Promise<number> => {
      const answer = await requestJson("GET", `${description.keyBroker}/keys/platform-ohttp`, undefined, {
        ca: readFileSync(description.caCert, "utf8"),
        headers: { authorization: `Bearer ${adminToken}` },
      }).catch(() => ({ status: 0 }));
      return answer.status;
    };
    const deadline = Date.now() + 30_000;
    while ((await platformOhttp()) !== 404 && Date.now() < deadline) {
      await new Promise((resolveWait) => setTimeout(resolveWait, 250));
    }
    assert.equal(await platformOhttp(), 404, "the restarted broker holds no keys");
    assert.equal(
      readFileSync(backupOnVolume, "utf8"),
      backupBefore,
      "an empty broker does not replace the backup",
    );

    // The restore: begun by the operator, completed by two custodians who each verified the broker.
    assert.match(await recovery("begin", "--backup", backupFile), /2 of 3 custodians/);
    const custodianKey = (index: number): string => join(dataDirectory, "recovery", `custodian-${index}.jwk`);
    // Without --allow-simulation a custodian refuses the simulated broker and sends nothing.
    await assert.rejects(
      recovery("share", "--backup", backupFile, "--key", custodianKey(1)),
      /ERR_PEER_(DEBUG|SIMULATION)/,
    );
    assert.match(
      await recovery("share", "--backup", backupFile, "--key", custodianKey(1), "--allow-simulation"),
      /1 of 2 shares/,
    );
    assert.match(
      await recovery("share", "--backup", backupFile, "--key", custodianKey(3), "--allow-simulation"),
      new RegExp(`restored ${sealedBefore.length} keys`),
    );
    assert.deepEqual(
      readdirSync(keysDirectory)
        .filter((name) => name.endsWith(".sealed"))
        .sort(),
      sealedBefore,
    );

    // A platform started now gets its keys from the restored broker and opens what was written before.
    const platformPid = stack.stack().pids["platform-api"];
    assert.ok(platformPid !== undefined);
    process.kill(platformPid, "SIGKILL");
    assert.equal(await killtestPatientsOnceServing(60_000, platformPid), 1);
  });

  test("the whole session: no sentinel PHI, password, admin token or access token in any log, output, error body, metric, URL or console line", async () => {
    // Refusals that carry the sentinels in, so their error bodies are scanned too.
    const description = stack.stack();
    const wrongPassword = await stackRequest(description, "POST", `${description.platform}/auth/login`, {
      email: `${sentinel.family}@demo.hospital`,
      password: `${password}-wrong`,
    });
    assert.equal(wrongPassword.status, 401);
    const clerk = await signIn(description, "clerk@demo.hospital", password);
    const badSearch = await stackRequest(
      description,
      "GET",
      `${description.platform}/fhir/Patient?identifier=${sentinel.mrn}&family-name-typo=${sentinel.family}`,
      undefined,
      clerk,
    );
    assert.equal(badSearch.status, 400);
    const findings = await scanStackSession(
      stack,
      {
        "the sentinel family name": sentinel.family,
        "the sentinel given name": sentinel.given,
        "the sentinel MRN": sentinel.mrn,
        "the demo password": password,
      },
      {
        "CLI output": cliOutputs.join("\n"),
        "browser URLs": observed.urls.join("\n"),
        "browser console": observed.console.join("\n"),
      },
    );
    assert.ok(sessionLedger.accessTokens.size >= 5, "the session signed in several times");
    assert.ok(sessionLedger.errorBodies.length >= 2, "the refusals' bodies were scanned");
    assert.deepEqual(findings, []);
    // The scan can fail: a planted secret is found.
    const planted = `planted-${randomBytes(6).toString("hex")}`;
    assert.deepEqual(
      await scanStackSession(stack, { "the planted secret": planted }, { planted: `x${planted}x` }),
      ["planted holds the planted secret"],
    );
  });
});
