// Run by https.int.test.ts in a child process that trusts the test CA (NODE_EXTRA_CA_CERTS): Microsoft's
// @azure/attestation client and jose's remote JWKS against our service over HTTPS on loopback.
import { AttestationClient } from "@azure/attestation";
import { createRemoteJWKSet, jwtVerify } from "jose";

const [endpoint, quoteBase64url, runtimeBase64url] = process.argv.slice(2);
const client = new AttestationClient(endpoint, {
  validationOptions: {
    validateToken: true,
    validateExpirationTime: true,
    validateIssuer: true,
    expectedIssuer: endpoint,
  },
});
const metadata = await client.getOpenIdMetadata();
const signers = await client.getAttestationSigners();
const result = await client.attestSgxEnclave(Buffer.from(quoteBase64url, "base64url"), {
  runTimeJson: Buffer.from(runtimeBase64url, "base64url"),
});
const token = result.token.serialize();
const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(`${endpoint}/certs`)), {
  issuer: endpoint,
});
console.log(
  JSON.stringify({
    issuer: metadata.issuer,
    jwksUri: metadata.jwks_uri,
    signers: signers.map((signer) => ({ keyId: signer.keyId, certificates: signer.certificates.length })),
    mrEnclave: result.body.mrEnclave,
    isDebuggable: result.body.isDebuggable,
    runTimeClaims: result.body.runTimeClaims,
    joseMrenclave: payload["x-ms-sgx-mrenclave"],
  }),
);
