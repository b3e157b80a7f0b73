// An order's clinical priority, beside the order or the AI result that answers it: STAT, ASAP and urgent are
// marked, routine (most orders) is not.
import { priorityNames, type RequestPriority } from "./fhir.js";

export function PriorityTag(props: { readonly priority: RequestPriority }): React.JSX.Element | null {
  if (props.priority === "routine") {
    return null;
  }
  return (
    <span className={`priority priority-${props.priority}`} data-testid="priority">
      {priorityNames[props.priority]}
    </span>
  );
}
