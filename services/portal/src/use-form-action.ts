// A form's submit action: the form is busy while it runs, and a failure becomes the message it shows.
import { useState } from "react";

export interface FormAction {
  readonly busy: boolean;
  readonly error: string | undefined;
  /** The submit handler that runs `action`: default submission prevented, error cleared, busy while running. */
  readonly submitting: (action: () => Promise<void>) => (event: React.SyntheticEvent) => Promise<void>;
}

export function useFormAction(
  describe: (failure: unknown) => string = (failure) => (failure as Error).message,
): FormAction {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  return {
    busy,
    error,
    submitting: (action) => async (event) => {
      event.preventDefault();
      setError(undefined);
      setBusy(true);
      try {
        await action();
      } catch (failure) {
        setError(describe(failure));
      } finally {
        setBusy(false);
      }
    },
  };
}
