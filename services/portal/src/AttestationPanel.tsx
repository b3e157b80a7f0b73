// What the portal verified about the platform before sending it anything, in plain words.
import type { AttestationRefused, VerifiedPlatform } from "./attest-platform.js";

const teeNames: Readonly<Record<string, string>> = {
  sgx: "Intel SGX enclave",
  tdxvm: "Intel TDX confidential VM",
  sevsnpvm: "AMD SEV-SNP confidential VM",
};

export function AttestationPanel(props: {
  readonly verified: VerifiedPlatform | undefined;
  readonly refused: AttestationRefused | undefined;
  readonly onRetry: () => void;
}): React.JSX.Element {
  const { verified, refused } = props;
  if (refused !== undefined) {
    return (
      <section
        className="panel attestation refused"
        aria-labelledby="attestation-title"
        data-testid="attestation-refused"
      >
        <h2 id="attestation-title">Platform not verified: no data will be sent</h2>
        <p role="alert">{refused.message}</p>
        <p className="muted">Reason code: {refused.code}</p>
        <button type="button" onClick={props.onRetry}>
          Check again
        </button>
      </section>
    );
  }
  if (verified === undefined) {
    return (
      <section className="panel attestation pending" aria-live="polite">
        <h2>Verifying the platform…</h2>
        <p>Asking the attestation service to check the platform's hardware evidence.</p>
      </section>
    );
  }
  const { identity } = verified;
  return (
    <section
      className="panel attestation verified"
      aria-labelledby="attestation-title"
      data-testid="attestation-verified"
    >
      <h2 id="attestation-title">Platform verified</h2>
      <dl>
        <dt>Code measurement</dt>
        <dd>
          <code data-testid="platform-measurement">{identity.measurement}</code> — the build this portal
          expects
        </dd>
        <dt>TEE</dt>
        <dd>
          {teeNames[identity.attestationType] ?? identity.attestationType}
          {identity.simulated ? " (simulated: development only, not hardware)" : " (hardware)"}
          {identity.debuggable ? ", debuggable" : ", not debuggable"}
        </dd>
        <dt>Verified by</dt>
        <dd>{verified.attestationUrl} (token signature, issuer and expiry checked)</dd>
        <dt>Token valid until</dt>
        <dd>{verified.expiresAt.toLocaleString()}</dd>
        <dt>Encryption</dt>
        <dd>Every request is sealed (OHTTP) to the key bound into this evidence.</dd>
      </dl>
    </section>
  );
}
