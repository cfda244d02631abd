import { spawnSync } from "node:child_process";

/**
 * The receiver-side verification from FraiseQL's documentation, in Python, copied verbatim
 * (only the indentation, lost in the document's text, restored). Run with python3's stdlib.
 */
export const SEED_VERIFY_PY = `
import hmac
import hashlib
import time
def verify_webhook(payload: bytes, signature: str, timestamp: str, secret: str) -> bool:
    # Check timestamp freshness (prevent replay attacks)
    ts = int(timestamp)
    if abs(time.time() - ts) > 300: # 5 minute window
        return False
    # Compute expected signature
    message = f"{timestamp}.".encode() + payload
    expected = "sha256=" + hmac.new(
        secret.encode(),
        message,
        hashlib.sha256
    ).hexdigest()
    # Constant-time comparison
    return hmac.compare_digest(signature, expected)

import base64, json, sys
cases = json.load(sys.stdin)
print(json.dumps([verify_webhook(base64.b64decode(c["payload"]), c["signature"], c["timestamp"], c["secret"]) for c in cases]))
`;

export const python3Missing: false | string =
  spawnSync("python3", ["--version"]).status === 0 ? false : "python3 is not installed";

export interface SeedCase {
  payload: string | Buffer;
  signature: string;
  timestamp: string;
  secret: string;
}

/** Runs the documented Python `verify_webhook` on each case; returns its verdicts. */
export function seedVerify(cases: readonly SeedCase[]): boolean[] {
  const input = cases.map((c) => ({ ...c, payload: Buffer.from(c.payload).toString("base64") }));
  const r = spawnSync("python3", ["-c", SEED_VERIFY_PY], { input: JSON.stringify(input), encoding: "utf8" });
  if (r.status !== 0) throw new Error(`python3 failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as boolean[];
}
