// For tests: the PostgreSQL that .ci/run starts (or CLOISTER_TEST_POSTGRES_URL), and whether it answers.
import pg from "pg";

export const postgresTestUrl =
  process.env.CLOISTER_TEST_POSTGRES_URL ?? "postgres://cloister:cloister@127.0.0.1:5432/cloister_test";

/** false when PostgreSQL answers; otherwise the loud reason to skip (printed here). */
export async function postgresSkipReason(): Promise<string | false> {
  const client = new pg.Client({ connectionString: postgresTestUrl, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.end();
    return false;
  } catch (error) {
    const where = postgresTestUrl.replace(/:[^:@/]*@/, ":***@");
    const reason = `PostgreSQL is not reachable at ${where} (${(error as Error).message}); .ci/run starts it`;
    console.warn(`SKIPPING: ${reason}`);
    return reason;
  }
}
