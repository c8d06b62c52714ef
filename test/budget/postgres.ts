/**
 * The private PostgreSQL of the tests (scripts/setup-postgres.sh: Debian's package, a data
 * directory under test/.tmp, a free port on 127.0.0.1). Outside CI, tests that need it skip with a
 * clear message when it cannot be started; in CI (CI set) its absence is a failure.
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { PROJECT_ROOT } from "../../src/config/paths.ts";

export function testPostgresUrl(): { url: string | undefined; reason: string } {
  if (process.env.RANKCHAIN_TEST_PG_URL) return { url: process.env.RANKCHAIN_TEST_PG_URL, reason: "" };
  try {
    const out = execFileSync("bash", [join(PROJECT_ROOT, "scripts/setup-postgres.sh")], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 600_000 });
    const url = out.trim().split("\n").pop();
    return { url, reason: "" };
  } catch (e) {
    const reason = `PostgreSQL could not be started by scripts/setup-postgres.sh (${(e as Error).message.split("\n")[0]}); the shared-ledger tests are skipped`;
    if (process.env.CI) throw new Error(`CI needs PostgreSQL: ${reason}`);
    process.stderr.write(reason + "\n");
    return { url: undefined, reason };
  }
}
