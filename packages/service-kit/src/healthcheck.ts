// The container health check: GET https://127.0.0.1:<port>/healthz, trusting the CA in the service's own
// certificate chain (CLOISTER_TLS_CERT holds the certificate, then its CA). It checks that this process
// answers, not who it is, so the name in the certificate is not compared. Exit 0 healthy, 1 not.
//   node packages/service-kit/dist/healthcheck.js <port>
import { readFileSync } from "node:fs";
import { request } from "node:https";

const port = Number.parseInt(process.argv[2] ?? "", 10);
const chain = process.env.CLOISTER_TLS_CERT;
if (!Number.isInteger(port) || chain === undefined) {
  process.stderr.write("usage: CLOISTER_TLS_CERT=<chain.pem> healthcheck.js <port>\n");
  process.exit(1);
}
const outgoing = request(
  {
    host: "127.0.0.1",
    port,
    path: "/healthz",
    ca: readFileSync(chain, "utf8"),
    checkServerIdentity: () => undefined,
    timeout: 4000,
  },
  (response) => {
    response.resume();
    process.exit(response.statusCode === 200 ? 0 : 1);
  },
);
outgoing.on("timeout", () => outgoing.destroy(new Error("timeout")));
outgoing.on("error", () => process.exit(1));
outgoing.end();
