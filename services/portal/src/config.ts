// The portal's runtime configuration, served next to the app as /config.json by the same static host.
// It carries no secret: where the platform and the attestation service are, and which platform
// measurements (MRENCLAVE) this portal accepts.
export interface PortalConfig {
  readonly platformUrl: string;
  readonly attestationUrl: string;
  /** The platform builds this portal will send data to (hex SHA-256 measurements). */
  readonly platformMeasurements: readonly string[];
  readonly tenantName?: string;
  /** Sign out after this many minutes without input (default 15). */
  readonly idleMinutes?: number;
}

export async function loadConfig(): Promise<PortalConfig> {
  const response = await fetch("/config.json", { cache: "no-store" });
  if (!response.ok) {
    throw new Error(`the portal's configuration could not be loaded (HTTP ${response.status})`);
  }
  const config = (await response.json()) as Partial<PortalConfig>;
  if (
    typeof config.platformUrl !== "string" ||
    typeof config.attestationUrl !== "string" ||
    !Array.isArray(config.platformMeasurements) ||
    config.platformMeasurements.length === 0
  ) {
    throw new Error(
      "the portal's configuration is incomplete: platformUrl, attestationUrl, platformMeasurements",
    );
  }
  return config as PortalConfig;
}
