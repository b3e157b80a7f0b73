// A <select> of codes, each shown by its name (a staff role, an order's priority), in the order the names are
// listed.
export function CodeSelect<Code extends string>(props: {
  readonly names: Readonly<Record<Code, string>>;
  readonly value: Code;
  readonly onChange: (code: Code) => void;
  /** Its accessible name, when no <label> around it gives one. */
  readonly label?: string;
  readonly testId?: string;
}): React.JSX.Element {
  return (
    <select
      aria-label={props.label}
      value={props.value}
      onChange={(event) => {
        props.onChange(event.target.value as Code);
      }}
      data-testid={props.testId}
    >
      {(Object.keys(props.names) as Code[]).map((code) => (
        <option key={code} value={code}>
          {props.names[code]}
        </option>
      ))}
    </select>
  );
}
