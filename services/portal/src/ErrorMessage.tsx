// A failure shown to staff, announced to screen readers; nothing when there is none.
export function ErrorMessage(props: { readonly message: string | undefined }): React.JSX.Element | null {
  return props.message === undefined ? null : (
    <p role="alert" className="error">
      {props.message}
    </p>
  );
}
