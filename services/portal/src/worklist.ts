// What a clinician's worklist shows: the AI results awaiting review, the most urgent first (the results of
// STAT, then ASAP, then urgent orders), then the routine ones; each group oldest first. Usually two searches:
// the urgent ones (few), and the oldest of all, whose routine ones fill the list. Only when more urgent
// results wait than the list shows is each priority read on its own, so a STAT result is never pushed off by
// older urgent ones.
import { reportPriority, urgentPriorities, type DiagnosticReport } from "./fhir.js";
import type { PlatformClient } from "./platform-client.js";

export interface AwaitingReview {
  /** At most the number asked for, in the order shown. */
  readonly reports: readonly DiagnosticReport[];
  /** Every result awaiting review. */
  readonly total: number;
  /** Those of them that answer an urgent order (STAT, ASAP or urgent). */
  readonly urgent: number;
}

const waiting = { status: "preliminary", _sort: "_lastUpdated" } as const;

/** The rank of a report's priority: 0 for STAT, up to the number of urgent priorities for routine. */
function urgency(report: DiagnosticReport): number {
  const rank = (urgentPriorities as readonly string[]).indexOf(reportPriority(report));
  return rank === -1 ? urgentPriorities.length : rank;
}

/**
 * The `shown` results to list, most urgent first, and how many wait. Each search follows the platform's pages
 * (`searchFirst`), so any number can be shown.
 */
export async function awaitingReview(
  client: Pick<PlatformClient, "searchFirst" | "searchPage">,
  shown: number,
): Promise<AwaitingReview> {
  const first = async (parameters: Record<string, string>, limit: number) => {
    const found = await client.searchFirst("DiagnosticReport", { ...waiting, ...parameters }, limit);
    return { reports: found.resources as DiagnosticReport[], total: found.total };
  };
  const allUrgent = await first({ "order-priority": urgentPriorities.join(",") }, shown);
  let urgent: DiagnosticReport[];
  if (allUrgent.total <= shown) {
    // All of them: by priority, each priority oldest first as the platform sorted them (a stable sort).
    urgent = allUrgent.reports.sort((a, b) => urgency(a) - urgency(b));
  } else {
    urgent = [];
    for (const priority of urgentPriorities) {
      if (urgent.length >= shown) {
        break;
      }
      urgent.push(...(await first({ "order-priority": priority }, shown - urgent.length)).reports);
    }
  }
  if (urgent.length >= shown) {
    const count = await client.searchPage("DiagnosticReport", { status: "preliminary", _summary: "count" });
    return { reports: urgent.slice(0, shown), total: count.total, urgent: allUrgent.total };
  }
  // The oldest of all: at most `urgent.length` of them are urgent ones, already listed.
  const oldest = await first({}, shown + urgent.length);
  const routine = oldest.reports
    .filter((report) => urgency(report) === urgentPriorities.length)
    .slice(0, shown - urgent.length);
  return { reports: [...urgent, ...routine], total: oldest.total, urgent: allUrgent.total };
}
