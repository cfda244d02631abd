// biome-ignore-all lint/suspicious/noTemplateCurlyInString: "${NAME}" is the config's environment reference syntax, not a mistaken template literal.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { type EnvContext, expandEnv, hasEnvReference } from "../../src/config/env.js";
import { isFraiseqlError } from "../../src/errors.js";

function context(env: Record<string, string | undefined>, baseDir?: string): EnvContext {
  return { env, secrets: new Set(), ...(baseDir === undefined ? {} : { baseDir }) };
}

describe("expandEnv", () => {
  it("replaces every ${NAME} and records each value as a secret", () => {
    const ctx = context({ KEY: "abc123", HOST: "api.example.com" });
    assert.equal(expandEnv("https://${HOST}/x?k=${KEY}", ctx), "https://api.example.com/x?k=abc123");
    assert.deepEqual([...ctx.secrets].sort(), ["abc123", "api.example.com"]);
  });

  it("leaves text without references alone, templates included", () => {
    const ctx = context({});
    assert.equal(expandEnv("{{ id }} costs $5", ctx), "{{ id }} costs $5");
    assert.equal(ctx.secrets.size, 0);
  });

  it("turns $${ into a literal ${ without substituting", () => {
    const ctx = context({});
    assert.equal(expandEnv("price: $${AMOUNT}", ctx), "price: ${AMOUNT}");
    assert.equal(hasEnvReference("price: $${AMOUNT}"), false);
    assert.equal(hasEnvReference("price: ${AMOUNT}"), true);
  });

  it("substitutes an empty variable without recording it", () => {
    const ctx = context({ EMPTY: "" });
    assert.equal(expandEnv("a${EMPTY}b", ctx), "ab");
    assert.equal(ctx.secrets.size, 0);
  });

  it("names the missing variable and the key that uses it", () => {
    assert.throws(
      () =>
        expandEnv("Bearer ${WEBHOOK_API_KEY}", context({}), "observers[0].actions[0].headers.Authorization"),
      (err) =>
        isFraiseqlError(err, "FQL_ENV_MISSING") &&
        err.message.includes("WEBHOOK_API_KEY") &&
        err.location.key === "observers[0].actions[0].headers.Authorization",
    );
  });

  it("refuses malformed references", () => {
    for (const text of ["${NOT VALID}", "${1ABC}", "${OPEN", "${}"]) {
      assert.throws(
        () => expandEnv(text, context({})),
        (err) => isFraiseqlError(err, "FQL_CONFIG_INVALID"),
        text,
      );
    }
  });

  it("reads ${file:PATH} trimmed, relative to the base directory, as a secret", () => {
    const dir = mkdtempSync(join(tmpdir(), "fraiseql-env-"));
    writeFileSync(join(dir, "api_key"), "s3cr3t\n");
    const ctx = context({}, dir);
    assert.equal(expandEnv("Bearer ${file:api_key}", ctx), "Bearer s3cr3t");
    assert.equal(expandEnv("${file:" + join(dir, "api_key") + "}", ctx), "s3cr3t");
    assert.deepEqual([...ctx.secrets], ["s3cr3t"]);
    assert.throws(
      () => expandEnv("${file:missing}", ctx, "webhooks.signing.secret"),
      (err) => isFraiseqlError(err, "FQL_ENV_MISSING") && err.message.includes("does not exist"),
    );
    rmSync(dir, { recursive: true, force: true });
  });
});
