// One order in a patient's list: its status, the notes on it (why it was cancelled, or why the analysis could
// not be completed, for the clerk, who does not read reports), and for an order still being analysed a way to
// cancel it (the wrong image or the wrong patient chosen). The platform cancels an order only while it is
// active, from the version on screen (If-Match): an order whose result arrived meanwhile is not cancelled, and
// its result stands for a clinician to review or withdraw.
import { useState } from "react";
import type { ServiceRequest } from "./fhir.js";
import { PlatformRequestError, type PlatformClient } from "./platform-client.js";
import { ErrorMessage } from "./ErrorMessage.js";
import { useFormAction } from "./use-form-action.js";
import { PriorityTag } from "./PriorityTag.js";

/** The author of the notes the platform's workflow adds to an order it could not complete. */
const workflowAuthor = "Cloister AI workflow";

const orderStatus: Readonly<Record<string, string>> = {
  active: "Analysing",
  completed: "Result ready",
  // A clinician withdrew its result (wrong patient or image): the clerk orders again with the right image.
  "entered-in-error": "Withdrawn: order again",
};

/** What the order's status means to staff: a revoked order was cancelled by staff or failed in the workflow. */
export function orderStatusText(order: ServiceRequest): string {
  if (order.status === "revoked") {
    return order.note?.some((note) => note.authorString === workflowAuthor) === true
      ? "Could not be completed"
      : "Cancelled";
  }
  return orderStatus[order.status] ?? order.status;
}

function describeFailure(failure: unknown): string {
  if (failure instanceof PlatformRequestError && failure.code === "ERR_ORDER_STATE") {
    return "The order was completed or changed meanwhile, so it was not cancelled: see its status.";
  }
  if (failure instanceof PlatformRequestError && failure.code === "ERR_PRECONDITION") {
    return "The order changed meanwhile, so it was not cancelled: see its status, and cancel it again if it is still being analysed.";
  }
  return `The order could not be cancelled: ${(failure as Error).message}`;
}

export function OrderItem(props: {
  readonly client: PlatformClient;
  readonly order: ServiceRequest;
  /** After a change (or a refusal because the order changed meanwhile): read the orders again. */
  readonly onChanged: () => Promise<void>;
}): React.JSX.Element {
  const { order } = props;
  const [cancelling, setCancelling] = useState(false);
  const [reason, setReason] = useState("");
  const form = useFormAction(describeFailure);
  const title = order.code?.text ?? order.code?.coding?.[0]?.code ?? "AI analysis";
  const cancel = form.submitting(async () => {
    try {
      await props.client.json(
        "PUT",
        `/fhir/ServiceRequest/${encodeURIComponent(order.id ?? "")}`,
        {
          ...order,
          status: "revoked",
          note: [
            ...(order.note ?? []),
            ...(reason.trim() === ""
              ? []
              : [{ text: `Cancelled: ${reason.trim()}`, time: new Date().toISOString() }]),
          ],
        } satisfies ServiceRequest,
        // The version on screen: an order that changed meanwhile (its result arrived) is not cancelled unseen.
        [["if-match", `W/"${order.meta?.versionId ?? ""}"`]],
      );
      setCancelling(false);
    } finally {
      await props.onChanged();
    }
  });
  return (
    <li data-status={order.status} data-testid="order">
      <span className={`status status-${order.status}`}>{orderStatusText(order)}</span>{" "}
      <PriorityTag priority={order.priority ?? "routine"} /> {title}{" "}
      <span className="muted">
        {order.authoredOn === undefined ? "" : new Date(order.authoredOn).toLocaleString()}
      </span>
      {(order.note ?? []).map((note, index) => (
        <p key={index} className="muted order-note" data-testid="order-note">
          {note.text}
        </p>
      ))}
      {order.status !== "active" ? null : cancelling ? (
        <form
          className="order-cancel"
          aria-label={`Cancel the order: ${title}`}
          onSubmit={(event) => void cancel(event)}
        >
          <label>
            Reason (optional, kept with the order)
            <input
              type="text"
              value={reason}
              maxLength={500}
              onChange={(event) => {
                setReason(event.target.value);
              }}
            />
          </label>
          <div className="actions">
            <button type="submit" disabled={form.busy}>
              Cancel this order
            </button>
            <button
              type="button"
              className="secondary"
              onClick={() => {
                setCancelling(false);
              }}
            >
              Keep the order
            </button>
          </div>
        </form>
      ) : (
        <div className="actions">
          <button
            type="button"
            className="secondary"
            onClick={() => {
              setCancelling(true);
            }}
          >
            Cancel order
          </button>
        </div>
      )}
      <ErrorMessage message={form.error} />
    </li>
  );
}
