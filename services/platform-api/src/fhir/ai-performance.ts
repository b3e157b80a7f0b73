// How each AI model does in this hospital, from its clinicians' reviews (post-deployment monitoring: FDA's
// Good Machine Learning Practice principle 10, the EU AI Act's post-market monitoring). Computed inside the TEE
// from the tenant's DiagnosticReports: per model version (its SHA-256) and per AI finding, how many results were
// issued, how many await review, how many clinicians confirmed or did not confirm (a changed review counts as
// its current verdict), how many were withdrawn as entered in error, and how many analyses failed. Counts only:
// no patient, report or account is named.
import { PlatformError } from "../errors.js";
import { modelCodeSystem, findingCodeSystem } from "../workflow/diagnosis-worker.js";
import type { FhirRepository, TenantContext } from "./repository.js";
import { reviewedStatuses, verdictOf } from "./report-review.js";
import type { FhirResource } from "./search-parameters.js";

export interface FindingPerformance {
  /** The AI's finding (a label of the model). */
  readonly finding: string;
  readonly results: number;
  readonly confirmed: number;
  readonly notConfirmed: number;
}

export interface ModelPerformance {
  readonly model: string;
  readonly version: string;
  /** The model's SHA-256, as attested by the inference server: one version exactly. */
  readonly sha256: string;
  /** AI results issued (failed analyses aside). */
  readonly results: number;
  readonly awaitingReview: number;
  readonly confirmed: number;
  readonly notConfirmed: number;
  /** Withdrawn by a clinician as entered in error (the wrong patient or image): not the model's doing. */
  readonly withdrawn: number;
  /** confirmed / (confirmed + notConfirmed), or null before any review. */
  readonly agreement: number | null;
  readonly findings: readonly FindingPerformance[];
}

export interface AiPerformance {
  readonly since: string;
  readonly until: string;
  readonly models: readonly ModelPerformance[];
  /** Analyses that failed (no result), whatever the model. */
  readonly failed: number;
  /** More reports than `maxReports` were issued in the period: the counts cover the newest only. */
  readonly truncated: boolean;
}

interface Tally {
  model: string;
  version: string;
  sha256: string;
  results: number;
  awaitingReview: number;
  confirmed: number;
  notConfirmed: number;
  withdrawn: number;
  findings: Map<string, { results: number; confirmed: number; notConfirmed: number }>;
}

function codeIn(concept: unknown, system: string): string | undefined {
  const codings = (concept as { coding?: { system?: string; code?: string }[] } | undefined)?.coding ?? [];
  return codings.find((coding) => coding.system === system)?.code;
}

/** The id after `Type/` in a reference, if it names that type. */
function idIn(reference: unknown, type: string): string | undefined {
  const text = (reference as { reference?: unknown } | undefined)?.reference;
  return typeof text === "string" && text.startsWith(`${type}/`) ? text.slice(type.length + 1) : undefined;
}

/** A resource by id, or undefined when it is not there (an older or half-written result). */
async function readIfThere(
  repository: FhirRepository,
  tenant: TenantContext,
  type: string,
  id: string | undefined,
): Promise<FhirResource | undefined> {
  if (id === undefined) {
    return undefined;
  }
  try {
    return await repository.read(tenant, type, id);
  } catch (error) {
    if (error instanceof PlatformError && (error.code === "ERR_NOT_FOUND" || error.code === "ERR_GONE")) {
      return undefined;
    }
    throw error;
  }
}

/** The model version and the AI's finding behind a report: its Provenance and its predicted-finding result. */
export async function resultFacts(
  repository: FhirRepository,
  tenant: TenantContext,
  report: FhirResource,
): Promise<{ version: string; sha256: string; finding: string }> {
  const order = idIn((report.basedOn as unknown[] | undefined)?.[0], "ServiceRequest");
  const findingId = ((report.result ?? []) as unknown[])
    .map((reference) => idIn(reference, "Observation"))
    .find((id) => id?.endsWith("-finding") === true);
  const [provenance, finding] = await Promise.all([
    readIfThere(repository, tenant, "Provenance", order === undefined ? undefined : `prov-${order}`),
    readIfThere(repository, tenant, "Observation", findingId),
  ]);
  const performer = (
    (provenance?.agent ?? []) as { who?: { display?: string; identifier?: { value?: string } } }[]
  )
    .map((agent) => agent.who)
    .find((who) => who?.identifier?.value !== undefined && /^[0-9a-f]{64}$/.test(who.identifier.value));
  return {
    version: /\bv(\S+)$/.exec(performer?.display ?? "")?.[1] ?? "?",
    sha256: performer?.identifier?.value ?? "?",
    finding: codeIn(finding?.valueCodeableConcept, findingCodeSystem) ?? "?",
  };
}

/** Counts one AI result in its model version's tally and its finding's. */
function tally(
  tallies: Map<string, Tally>,
  model: string,
  report: FhirResource,
  facts: { version: string; sha256: string; finding: string },
): void {
  const key = `${model}\u0000${facts.sha256}`;
  const counts: Tally = tallies.get(key) ?? {
    model,
    version: facts.version,
    sha256: facts.sha256,
    results: 0,
    awaitingReview: 0,
    confirmed: 0,
    notConfirmed: 0,
    withdrawn: 0,
    findings: new Map<string, { results: number; confirmed: number; notConfirmed: number }>(),
  };
  tallies.set(key, counts);
  const finding = counts.findings.get(facts.finding) ?? { results: 0, confirmed: 0, notConfirmed: 0 };
  counts.findings.set(facts.finding, finding);
  counts.results++;
  finding.results++;
  if (report.status === "preliminary") {
    counts.awaitingReview++;
  } else if (report.status === "entered-in-error") {
    counts.withdrawn++;
  } else if (reviewedStatuses.has(report.status)) {
    const verdict = verdictOf(report);
    if (verdict === "confirmed") {
      counts.confirmed++;
      finding.confirmed++;
    } else if (verdict === "not-confirmed") {
      counts.notConfirmed++;
      finding.notConfirmed++;
    }
  }
}

/**
 * The tenant's AI results issued since `since`, by model version and finding. Reads at most `maxReports`
 * reports, newest first.
 */
export async function aiPerformance(
  repository: FhirRepository,
  tenant: TenantContext,
  since: Date,
  until: Date,
  maxReports = 10_000,
): Promise<AiPerformance> {
  const tallies = new Map<string, Tally>();
  let failed = 0;
  let read = 0;
  let scanned = 0;
  let truncated = false;
  let query: Record<string, string> = { _count: "500" };
  for (;;) {
    const page = await repository.searchWithTotal(tenant, "DiagnosticReport", query);
    const inPeriod: { report: FhirResource; model: string }[] = [];
    let done = false;
    for (const report of page.resources) {
      scanned++;
      // Newest change first: a report last changed before the period was issued before it too.
      const lastUpdated = Date.parse(
        (report.meta as { lastUpdated?: string } | undefined)?.lastUpdated ?? "",
      );
      if (lastUpdated < since.getTime()) {
        done = true;
        break;
      }
      if (read >= maxReports) {
        truncated = true;
        done = true;
        break;
      }
      read++;
      const issued = Date.parse(typeof report.issued === "string" ? report.issued : "");
      if (!(issued >= since.getTime() && issued <= until.getTime())) {
        continue;
      }
      const model = codeIn(report.code, modelCodeSystem);
      if (report.status === "cancelled") {
        failed++;
      } else if (model !== undefined) {
        inPeriod.push({ report, model });
      }
    }
    // One report after another, its two reads side by side (several reports at once was no faster here).
    const facts: Awaited<ReturnType<typeof resultFacts>>[] = [];
    for (const { report } of inPeriod) {
      facts.push(await resultFacts(repository, tenant, report));
    }
    inPeriod.forEach(({ report, model }, index) => {
      tally(tallies, model, report, facts[index] ?? { version: "?", sha256: "?", finding: "?" });
    });
    if (done) {
      break;
    }
    if (page.nextCursor === undefined) {
      // Searches page 10,000 deep at most: reports beyond that were not read.
      truncated = page.total > scanned;
      break;
    }
    query = { _cursor: page.nextCursor };
  }
  const models = [...tallies.values()]
    .map(({ findings, ...tally }) => ({
      ...tally,
      agreement:
        tally.confirmed + tally.notConfirmed === 0
          ? null
          : tally.confirmed / (tally.confirmed + tally.notConfirmed),
      findings: [...findings]
        .map(([name, counts]) => ({ finding: name, ...counts }))
        .sort((a, b) => a.finding.localeCompare(b.finding)),
    }))
    .sort((a, b) => a.model.localeCompare(b.model) || a.version.localeCompare(b.version));
  return { since: since.toISOString(), until: until.toISOString(), models, failed, truncated };
}
