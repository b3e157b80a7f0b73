// For the key broker's tests: a scratch folder, a simulation platform, a dev CA with a loopback certificate,
// and the broker's log lines captured (to check that no key value reaches them).
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { createSimulationPlatform, type SimulationPlatform } from "@cloister/attestation";
import {
  createDevCertificateAuthority,
  issueServerCertificate,
  type DevCertificateAuthority,
} from "@cloister/enclave";

export interface BrokerTestBed {
  readonly scratch: string;
  readonly platform: SimulationPlatform;
  readonly ca: DevCertificateAuthority;
  readonly tls: { readonly cert: string; readonly key: string };
  /** Where the broker's logger writes. */
  readonly logStream: Writable;
  /** Everything logged so far. */
  readonly logged: () => string;
}

export function brokerTestBed(name: string): BrokerTestBed {
  const ca = createDevCertificateAuthority(`${name} Test CA`);
  let logged = "";
  return {
    scratch: mkdtempSync(join(tmpdir(), `cloister-${name.toLowerCase()}-`)),
    platform: createSimulationPlatform(),
    ca,
    tls: issueServerCertificate(ca, { ips: ["127.0.0.1"] }),
    logStream: new Writable({
      write(chunk: Buffer, _encoding, done) {
        logged += chunk.toString();
        done();
      },
    }),
    logged: () => logged,
  };
}
