// The clerk portal: attest the platform, then sign in, then work with patients. Nothing is sent to the
// platform (not even the password) until its attestation has verified.
import { useCallback, useEffect, useLayoutEffect, useState } from "react";
import { AttestationPanel } from "./AttestationPanel.js";
import { attestPlatform, AttestationRefused, type VerifiedPlatform } from "./attest-platform.js";
import { loadConfig, type PortalConfig } from "./config.js";
import type { Patient } from "./fhir.js";
import { PatientIntake, PatientSearch } from "./PatientSearch.js";
import { ReviewWorklist } from "./ReviewWorklist.js";
import { PatientRecord, type ModelInfo } from "./PatientRecord.js";
import { PlatformClient } from "./platform-client.js";
import { followReportEvents, type ReportEvent } from "./report-events.js";
import { sessionFromToken, useIdleSignOut, type Session } from "./session.js";
import { useFormAction } from "./use-form-action.js";
import { ErrorMessage } from "./ErrorMessage.js";
import {
  ChangePassword,
  CurrentPasswordField,
  describeSignInFailure,
  EmailField,
  NewPasswordFields,
} from "./AccountForms.js";
import { AiPerformance } from "./AiPerformance.js";
import { StaffAccounts } from "./StaffAccounts.js";

const defaultMrnSystem = "https://demo.hospital/fhir/mrn";

function SignIn(props: {
  readonly client: PlatformClient;
  readonly onSignedIn: (session: Session) => void;
}): React.JSX.Element {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  /** An admin set this password: the person chooses their own as they sign in. */
  const [changing, setChanging] = useState(false);
  const [chosen, setChosen] = useState<string>();
  const { busy, error, submitting } = useFormAction(describeSignInFailure);
  const submit = submitting(async () => {
    if (changing && chosen === undefined) {
      throw new Error("Type the same new password twice.");
    }
    let answer: { accessToken: string };
    try {
      answer = (await props.client.json("POST", "/auth/login", {
        email,
        password,
        ...(changing ? { newPassword: chosen } : {}),
      })) as { accessToken: string };
    } catch (failure) {
      if ((failure as { code?: string }).code === "ERR_PASSWORD_CHANGE_REQUIRED") {
        setChanging(true);
        return;
      }
      throw failure;
    }
    setPassword("");
    props.onSignedIn(sessionFromToken(answer.accessToken, email));
  });
  return (
    <section className="panel signin" aria-labelledby="signin-title">
      <h2 id="signin-title">Sign in</h2>
      <form onSubmit={(event) => void submit(event)} className="grid">
        <EmailField
          value={email}
          onChange={(typed) => {
            setEmail(typed);
            // Another account: its password is not known to be a temporary one.
            setChanging(false);
          }}
          autoComplete="username"
        />
        <CurrentPasswordField
          label={changing ? "Temporary password" : "Password"}
          value={password}
          onChange={setPassword}
        />
        {changing ? (
          <>
            <p role="status" className="notice" data-testid="choose-password">
              Your administrator set this password. Choose your own to sign in.
            </p>
            <NewPasswordFields onChange={setChosen} />
          </>
        ) : null}
        <div className="actions">
          <button type="submit" disabled={busy}>
            {changing ? "Set password and sign in" : "Sign in"}
          </button>
        </div>
        <ErrorMessage message={error} />
      </form>
    </section>
  );
}

export function App(): React.JSX.Element {
  const [config, setConfig] = useState<PortalConfig>();
  const [configError, setConfigError] = useState<string>();
  const [verified, setVerified] = useState<VerifiedPlatform>();
  const [refused, setRefused] = useState<AttestationRefused>();
  const [session, setSession] = useState<Session>();
  const [notice, setNotice] = useState<string>();
  const [changingPassword, setChangingPassword] = useState(false);
  const [patient, setPatient] = useState<Patient>();
  const [models, setModels] = useState<ModelInfo[]>();
  const [modelsError, setModelsError] = useState<string>();
  const [lastEvent, setLastEvent] = useState<ReportEvent>();
  const [live, setLive] = useState(false);
  /** How often the event stream has (re)connected: events sent in between are lost, so records reload. */
  const [connections, setConnections] = useState(0);

  // The client exists only once the platform is verified: it is the only way the portal talks to it.
  const [client, setClient] = useState<PlatformClient>();

  const attest = useCallback(async (current: PortalConfig) => {
    setVerified(undefined);
    setRefused(undefined);
    setClient(undefined);
    // A refusal, first or later, ends the session: the client (and the access token it holds) is dropped,
    // and the panel says why.
    const refuse = (error: unknown): void => {
      setClient(undefined);
      setVerified(undefined);
      setSession(undefined);
      setPatient(undefined);
      setRefused(
        error instanceof AttestationRefused
          ? error
          : new AttestationRefused("ERR_UNKNOWN", "The check failed."),
      );
    };
    try {
      const first = await attestPlatform(current);
      setVerified(first);
      // Verified again, the same way, when the token expires or the platform's key changed (a rotation,
      // a restart): the session goes on without a reload.
      const reattest = async (): Promise<VerifiedPlatform> => {
        try {
          const next = await attestPlatform(current);
          setVerified(next);
          return next;
        } catch (error) {
          refuse(error);
          throw error;
        }
      };
      setClient(new PlatformClient(current.platformUrl, first, reattest));
    } catch (error) {
      refuse(error);
    }
  }, []);

  useEffect(() => {
    loadConfig().then(
      (loaded) => {
        setConfig(loaded);
        void attest(loaded);
      },
      (error: unknown) => {
        setConfigError((error as Error).message);
      },
    );
  }, [attest]);

  const signOut = useCallback(
    (reason?: string) => {
      client?.setAccessToken(undefined);
      setSession(undefined);
      setPatient(undefined);
      setModels(undefined);
      setChangingPassword(false);
      setNotice(reason);
    },
    [client],
  );
  // The platform refused the session: an admin disabled or changed the account, or its password changed.
  useEffect(() => {
    client?.setSessionEndedHandler((failure) => {
      signOut(
        failure.code === "ERR_SESSION_ENDED"
          ? "Your session has ended: your account was changed or disabled by an administrator, or its password was changed. Sign in again."
          : "Your session has expired. Sign in again.",
      );
    });
    return () => client?.setSessionEndedHandler(undefined);
  }, [client, signOut]);
  const onIdle = useCallback(() => {
    signOut("You were signed out after a period without activity.");
  }, [signOut]);
  useIdleSignOut(session, config?.idleMinutes ?? 15, onIdle);

  // A layout effect: it runs before every component's (passive) effects of the same render, so the panels
  // that read the record as they appear (the clinician's worklist) already send the session's token.
  useLayoutEffect(() => {
    if (client !== undefined && session !== undefined) {
      client.setAccessToken(session.accessToken);
    }
  }, [client, session]);

  useEffect(() => {
    if (client === undefined || session === undefined) {
      return;
    }
    const controller = new AbortController();
    // The models the platform's inference server offers. A failure (the platform or the inference server
    // restarting) is shown and tried again every 5 s until the list arrives, not left until the next sign-in.
    let retry: ReturnType<typeof setTimeout> | undefined;
    const listModels = (): void => {
      client
        .json("GET", "/models")
        .then((answer) => {
          if (!controller.signal.aborted) {
            setModels((answer as { models: ModelInfo[] }).models);
            setModelsError(undefined);
          }
        })
        .catch((error: unknown) => {
          if (!controller.signal.aborted) {
            setModelsError(
              `The AI models could not be listed: ${(error as Error).message} Trying again in a few seconds.`,
            );
            retry = setTimeout(listModels, 5000);
          }
        });
    };
    listModels();
    void followReportEvents(
      config?.platformUrl ?? "",
      () => client.token(),
      {
        onEvent: (event) => {
          setLastEvent(event);
        },
        onConnected: () => {
          setLive(true);
          setConnections((count) => count + 1);
        },
        onDisconnected: () => {
          setLive(false);
        },
      },
      controller.signal,
    );
    return () => {
      controller.abort();
      clearTimeout(retry);
      setLive(false);
    };
  }, [client, session, config]);

  return (
    <>
      <header className="top">
        <h1>
          Cloister <span className="muted">{config?.tenantName ?? ""}</span>
        </h1>
        {session === undefined ? null : (
          <div className="who">
            <span data-testid="signed-in">
              {session.email} ({session.role})
            </span>
            <span
              className={`live ${live ? "on" : "off"}`}
              data-testid="live-status"
              title={
                live
                  ? "Live updates: results appear as they are ready"
                  : "Reconnecting: orders being analysed are checked every 5 seconds meanwhile"
              }
            >
              {live ? "● live" : "○ connecting"}
            </span>
            <button
              type="button"
              className="secondary"
              onClick={() => {
                setChangingPassword(true);
              }}
            >
              Change password
            </button>
            <button
              type="button"
              onClick={() => {
                signOut();
              }}
            >
              Sign out
            </button>
          </div>
        )}
      </header>
      <main>
        <ErrorMessage message={configError} />
        {config === undefined ? null : (
          <AttestationPanel verified={verified} refused={refused} onRetry={() => void attest(config)} />
        )}
        {notice === undefined ? null : (
          <p role="status" className="notice">
            {notice}
          </p>
        )}
        {client === undefined ? null : session === undefined ? (
          <SignIn
            client={client}
            onSignedIn={(signedIn) => {
              setNotice(undefined);
              setSession(signedIn);
            }}
          />
        ) : (
          <>
            {changingPassword ? (
              <ChangePassword
                client={client}
                session={session}
                onChanged={(changed) => {
                  setChangingPassword(false);
                  setSession(changed);
                  setNotice("Your password is changed. Your other sessions have ended.");
                }}
                onClose={() => {
                  setChangingPassword(false);
                }}
              />
            ) : null}
            <div className="workspace">
              <div className="column">
                {session.role === "clinician" ? (
                  <ReviewWorklist client={client} lastEvent={lastEvent} onOpen={setPatient} />
                ) : null}
                <PatientSearch client={client} mrnSystem={defaultMrnSystem} onOpen={setPatient} />
                <PatientIntake client={client} mrnSystem={defaultMrnSystem} onCreated={setPatient} />
              </div>
              <div className="column wide">
                {patient === undefined ? (
                  <section className="panel">
                    <p>Find or register a patient to upload an image and order an analysis.</p>
                  </section>
                ) : (
                  <PatientRecord
                    key={patient.id}
                    client={client}
                    patient={patient}
                    mrnSystem={defaultMrnSystem}
                    onPatientChanged={setPatient}
                    canReadResults={session.role !== "clerk"}
                    canReview={session.role === "clinician"}
                    canAudit={session.role === "admin"}
                    models={models}
                    modelsError={modelsError}
                    lastEvent={lastEvent}
                    live={live}
                    connections={connections}
                  />
                )}
                {session.role === "clerk" ? null : <AiPerformance client={client} />}
                {session.role === "admin" ? (
                  <StaffAccounts client={client} selfEmail={session.email} />
                ) : null}
              </div>
            </div>
          </>
        )}
      </main>
    </>
  );
}
