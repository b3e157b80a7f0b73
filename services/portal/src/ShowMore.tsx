// "Show 10 older reports", "Show 20 more": a page more of a list that does not show all it has (at most a
// page, at most what is left), or nothing when everything is shown.
export function ShowMore(props: {
  readonly shown: number;
  readonly total: number;
  readonly perPage: number;
  /** What the button shows, for how many: (1) → "older order", (10) → "older orders". */
  readonly what: (count: number) => string;
  readonly onShow: (limit: number) => void;
}): React.JSX.Element | null {
  const more = Math.min(props.perPage, props.total - props.shown);
  return more <= 0 ? null : (
    <div className="actions">
      <button
        type="button"
        className="secondary"
        onClick={() => {
          props.onShow(props.shown + props.perPage);
        }}
      >
        Show {more} {props.what(more)}
      </button>
    </div>
  );
}
