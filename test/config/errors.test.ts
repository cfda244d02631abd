// biome-ignore-all lint/suspicious/noTemplateCurlyInString: "${NAME}" is the config's environment reference syntax, not a mistaken template literal.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseConfig } from "../../src/config/load.js";
import { type ErrorCode, FraiseqlError } from "../../src/errors.js";

const ENTITY = `[[entities]]
name = "Order"
[entities.fields]
total = "Float"
status = "String"
`;

interface Case {
  readonly name: string;
  readonly toml: string;
  readonly env?: Record<string, string>;
  readonly code: ErrorCode;
  readonly key?: string;
  readonly line: number;
  readonly column?: number;
  /** Texts the message or hint must contain. */
  readonly says?: readonly string[];
  /** Texts that must appear nowhere in describe(). */
  readonly never?: readonly string[];
}

const SHORT_KEY = Buffer.alloc(16, 9).toString("base64");

const CASES: Case[] = [
  {
    name: "TOML syntax: unterminated string",
    toml: '[webhooks]\ntimeout = "30s\n',
    code: "FQL_CONFIG_SYNTAX",
    line: 2,
    column: 15,
    says: ["closing quote"],
  },
  {
    name: "TOML syntax: duplicate table",
    toml: "[server]\nport = 1\n\n[server]\nport = 2\n",
    code: "FQL_CONFIG_SYNTAX",
    line: 4,
  },
  {
    name: "unknown top-level table",
    toml: '[webhook]\ntimeout = "30s"\n',
    code: "FQL_CONFIG_INVALID",
    key: "webhook",
    line: 1,
    says: ['unknown key "webhook" at the top level', 'did you mean "webhooks"?'],
  },
  {
    name: "unknown key in [webhooks.retry]",
    toml: "[webhooks.retry]\nmax_attempts = 3\nmax_attempt = 3\n",
    code: "FQL_CONFIG_INVALID",
    key: "webhooks.retry.max_attempt",
    line: 3,
    column: 1,
    says: ['did you mean "max_attempts"?', "valid keys: max_attempts, backoff, initial_delay"],
  },
  {
    name: "unknown key in an action",
    toml: `${ENTITY}[[observers]]\nname = "a"\nentity = "Order"\nevent = "INSERT"\n[[observers.actions]]\nurll = "https://x.example.com"\n`,
    code: "FQL_CONFIG_INVALID",
    key: "observers[0].actions[0].urll",
    line: 11,
    says: ['did you mean "url"?'],
  },
  {
    name: "unknown key in an inline table",
    toml: `${ENTITY}[[observers]]\nname = "a"\nentity = "Order"\nevent = "INSERT"\n[[observers.actions]]\nurl = "https://x.example.com"\nbatch = { size = 10, timout = "5s" }\n`,
    code: "FQL_CONFIG_INVALID",
    key: "observers[0].actions[0].batch.timout",
    line: 12,
    column: 22,
    says: ['did you mean "timeout"?'],
  },
  {
    name: "a top-level key written under a table",
    toml: '[server]\nport = 4000\ninclude = ["./schema.ts"]\n',
    code: "FQL_CONFIG_INVALID",
    key: "server.include",
    line: 3,
    says: ["move it above the first [table] header"],
  },
  {
    name: "camelCase key in TOML",
    toml: "[webhooks.retry]\nmaxAttempts = 3\n",
    code: "FQL_CONFIG_INVALID",
    key: "webhooks.retry.maxAttempts",
    line: 2,
    says: ['did you mean "max_attempts"?'],
  },
  {
    name: "bad duration",
    toml: '[webhooks.retry]\ninitial_delay = "5 sec"\n',
    code: "FQL_CONFIG_INVALID",
    key: "webhooks.retry.initial_delay",
    line: 2,
    says: ["not a duration", "ms, s, m, h, d or w"],
  },
  {
    name: "bare number for a duration",
    toml: "[webhooks]\ntimeout = 30\n",
    code: "FQL_CONFIG_INVALID",
    key: "webhooks.timeout",
    line: 2,
    says: ['write "30s" or "30ms"'],
  },
  {
    name: "bad size",
    toml: '[webhooks.dlq]\nmax_size = "10XB"\n',
    code: "FQL_CONFIG_INVALID",
    key: "webhooks.dlq.max_size",
    line: 2,
    says: ['unknown unit "XB"'],
  },
  {
    name: "bad enum",
    toml: '[webhooks.retry]\nbackoff = "exponentail"\n',
    code: "FQL_CONFIG_INVALID",
    key: "webhooks.retry.backoff",
    line: 2,
    says: ['"exponential", "linear", "fixed"', 'did you mean "exponential"?'],
  },
  {
    name: "wrong type",
    toml: '[webhooks.retry]\nmax_attempts = "3"\n',
    code: "FQL_CONFIG_INVALID",
    key: "webhooks.retry.max_attempts",
    line: 2,
    says: ["must be a number", "remove the quotes"],
  },
  {
    name: "out of range",
    toml: "[webhooks.retry]\njitter = 1.5\n",
    code: "FQL_CONFIG_INVALID",
    key: "webhooks.retry.jitter",
    line: 2,
    says: ["between 0 and 1"],
  },
  {
    name: "missing environment variable",
    toml: '[webhooks.signing]\nsecret = "${WEBHOOK_SECRET}"\n',
    env: {},
    code: "FQL_ENV_MISSING",
    key: "webhooks.signing.secret",
    line: 2,
    says: ["WEBHOOK_SECRET"],
  },
  {
    name: "invalid URL",
    toml: `${ENTITY}[[observers]]\nname = "a"\nentity = "Order"\nevent = "INSERT"\n[[observers.actions]]\nurl = "ftp://files.example.com/{{ id }}"\n`,
    code: "FQL_CONFIG_INVALID",
    key: "observers[0].actions[0].url",
    line: 11,
    says: ["http:// or https://"],
  },
  {
    name: "invalid URL from the environment does not print the value",
    toml: `${ENTITY}[[observers]]\nname = "a"\nentity = "Order"\nevent = "INSERT"\n[[observers.actions]]\nurl = "\${HOOK_URL}"\n`,
    env: { HOOK_URL: "not-a-url-with-token-abc" },
    code: "FQL_CONFIG_INVALID",
    key: "observers[0].actions[0].url",
    line: 11,
    says: ["${HOOK_URL}"],
    never: ["token-abc"],
  },
  {
    name: "unknown entity in an observer",
    toml: `${ENTITY}[[observers]]\nname = "a"\nentity = "Ordr"\nevent = "INSERT"\n[[observers.actions]]\nurl = "https://x.example.com"\n`,
    code: "FQL_CONFIG_INVALID",
    key: "observers[0].entity",
    line: 8,
    says: ['unknown entity "Ordr"', 'did you mean "Order"?', "entities: Order"],
  },
  {
    name: "unknown field in a condition",
    toml: `${ENTITY}[[observers]]\nname = "a"\nentity = "Order"\nevent = "UPDATE"\ncondition = "stauts == 'shipped'"\n[[observers.actions]]\nurl = "https://x.example.com"\n`,
    code: "FQL_CONDITION_UNKNOWN_FIELD",
    key: "observers[0].condition",
    line: 10,
    says: ["status"],
  },
  {
    name: "unknown field in a body template",
    toml: `${ENTITY}[[observers]]\nname = "a"\nentity = "Order"\nevent = "INSERT"\n[[observers.actions]]\nurl = "https://x.example.com"\nbody = { t = "{{ totl }}" }\n`,
    code: "FQL_TEMPLATE_UNKNOWN_FIELD",
    key: "observers[0].actions[0].body",
    line: 12,
  },
  {
    name: "_count in the body of an action that is not batched",
    toml: `${ENTITY}[[observers]]\nname = "a"\nentity = "Order"\nevent = "INSERT"\n[[observers.actions]]\nurl = "https://x.example.com"\nbody = { n = "{{ _count }}" }\n`,
    code: "FQL_TEMPLATE_UNKNOWN_FIELD",
    key: "observers[0].actions[0].body",
    line: 12,
    says: ['unknown name "_count"', "number of events in a batch"],
  },
  {
    name: "wrong-length encryption key",
    toml: `${ENTITY}[[observers]]\nname = "a"\nentity = "Order"\nevent = "INSERT"\n[[observers.actions]]\nurl = "https://x.example.com"\nencryption = { enabled = true, key = "\${KEY}" }\n`,
    env: { KEY: SHORT_KEY },
    code: "FQL_CONFIG_INVALID",
    key: "observers[0].actions[0].encryption.key",
    line: 12,
    says: ["32 bytes", "generate one"],
    never: [SHORT_KEY],
  },
  {
    name: "encryption key written in the file is not printed either",
    toml: `${ENTITY}[[observers]]\nname = "a"\nentity = "Order"\nevent = "INSERT"\n[[observers.actions]]\nurl = "https://x.example.com"\nencryption = { key = "0123456789abcdef" }\n`,
    code: "FQL_CONFIG_INVALID",
    key: "observers[0].actions[0].encryption.key",
    line: 12,
    never: ["0123456789abcdef"],
  },
  {
    name: "duplicate observer names",
    toml: `${ENTITY}[[observers]]\nname = "a"\nentity = "Order"\nevent = "INSERT"\n[[observers.actions]]\nurl = "https://x.example.com"\n\n[[observers]]\nname = "a"\nentity = "Order"\nevent = "DELETE"\n[[observers.actions]]\nurl = "https://y.example.com"\n`,
    code: "FQL_CONFIG_INVALID",
    key: "observers[1].name",
    line: 14,
    says: ["declared twice", "line 6"],
  },
  {
    name: "observer without actions",
    toml: `${ENTITY}[[observers]]\nname = "a"\nentity = "Order"\nevent = "INSERT"\n`,
    code: "FQL_CONFIG_INVALID",
    key: "observers[0].actions",
    line: 6,
    says: ["no actions"],
  },
  {
    name: "missing required key",
    toml: `${ENTITY}[[observers]]\nname = "a"\nentity = "Order"\n[[observers.actions]]\nurl = "https://x.example.com"\n`,
    code: "FQL_CONFIG_INVALID",
    key: "observers[0].event",
    line: 6,
    says: ['"event" is required'],
  },
  {
    name: "single brackets for an array of tables",
    toml: '[entities]\nname = "Order"\n',
    code: "FQL_CONFIG_INVALID",
    key: "entities",
    line: 1,
    says: ["[[entities]]"],
  },
  {
    name: "unknown field type",
    toml: '[[entities]]\nname = "Order"\n[entities.fields]\ntotal = "float"\n',
    code: "FQL_CONFIG_INVALID",
    key: "entities[0].fields.total",
    line: 4,
    says: ['did you mean "Float"?'],
  },
  {
    name: "a second ID field",
    toml: '[[entities]]\nname = "Order"\n[entities.fields]\nuser_id = "ID"\n',
    code: "FQL_CONFIG_INVALID",
    key: "entities[0].fields.user_id",
    line: 4,
    says: ['only the field "id"'],
  },
  {
    name: "duplicate entity",
    toml: '[[entities]]\nname = "Order"\n[[entities]]\nname = "Order"\ntable = "orders2"\n',
    code: "FQL_CONFIG_INVALID",
    key: "entities[1].name",
    line: 4,
  },
  {
    name: "bearer auth without tokens",
    toml: '[server.auth]\nmode = "bearer"\n',
    code: "FQL_CONFIG_INVALID",
    key: "server.auth.tokens",
    line: 1,
    says: ["at least one token"],
  },
  {
    name: "jwt auth without a key",
    toml: '[server.auth]\nmode = "jwt"\nissuer = "me"\n',
    code: "FQL_CONFIG_INVALID",
    key: "server.auth.mode",
    line: 2,
  },
  {
    name: "no auth on a public address",
    toml: '[server]\nhost = "0.0.0.0"\n',
    code: "FQL_CONFIG_INVALID",
    key: "server.host",
    line: 2,
    says: ["loopback"],
  },
  {
    name: "signing enabled without a secret",
    toml: "[webhooks.signing]\nenabled = true\n",
    code: "FQL_CONFIG_INVALID",
    key: "webhooks.signing.enabled",
    line: 2,
    says: ["no secret"],
  },
  {
    name: "a standard-scheme secret that is not base64",
    toml: '[webhooks.signing]\nscheme = "standard"\nsecrets = ["whsec_AAAA", "not base64!"]\n',
    code: "FQL_CONFIG_INVALID",
    key: "webhooks.signing.secrets[1]",
    line: 3,
    never: ["not base64!"],
  },
  {
    name: "an empty signing secret",
    toml: '[webhooks.signing]\nsecret = "${WEBHOOK_SECRET}"\n',
    env: { WEBHOOK_SECRET: "" },
    code: "FQL_CONFIG_INVALID",
    key: "webhooks.signing.secret",
    line: 2,
    says: ["empty"],
  },
  {
    name: "status in both retry lists",
    toml: "[webhooks.retry]\nretry_on = [500, 404]\n",
    code: "FQL_CONFIG_INVALID",
    key: "webhooks.retry.retry_on",
    line: 2,
    says: ["404"],
  },
  {
    name: "observer retry merged past max_delay",
    toml: `${ENTITY}[[observers]]\nname = "a"\nentity = "Order"\nevent = "INSERT"\n[observers.retry]\ninitial_delay = "10s"\n[[observers.actions]]\nurl = "https://x.example.com"\n`,
    code: "FQL_CONFIG_INVALID",
    key: "observers[0].retry.initial_delay",
    line: 11,
    says: ["max_delay (5s) once merged with [webhooks.retry]"],
  },
  {
    name: "header value with a line break",
    toml: `${ENTITY}[[observers]]\nname = "a"\nentity = "Order"\nevent = "INSERT"\n[[observers.actions]]\nurl = "https://x.example.com"\nheaders = { X-A = "a\\nb" }\n`,
    code: "FQL_CONFIG_INVALID",
    key: "observers[0].actions[0].headers.X-A",
    line: 12,
    column: 13,
  },
  {
    name: "encryption fields that the body does not have",
    toml: `${ENTITY}[[observers]]\nname = "a"\nentity = "Order"\nevent = "INSERT"\n[[observers.actions]]\nurl = "https://x.example.com"\nbody = { total = "{{ total }}" }\nencryption = { key = "${"ab".repeat(32)}", fields = ["totl"] }\n`,
    code: "FQL_CONFIG_INVALID",
    key: "observers[0].actions[0].encryption.fields[0]",
    line: 13,
    says: ['did you mean "total"?'],
  },
];

function failure(toml: string, env: Record<string, string>): FraiseqlError {
  try {
    parseConfig(toml, { file: "fraiseql.toml", env });
  } catch (err) {
    if (err instanceof FraiseqlError) return err;
    throw err;
  }
  assert.fail("the config was accepted");
}

describe("config errors", () => {
  for (const c of CASES) {
    it(c.name, () => {
      const err = failure(c.toml, c.env ?? {});
      const text = err.describe();
      assert.equal(err.code, c.code, text);
      assert.equal(err.location.file, "fraiseql.toml", text);
      if (c.key !== undefined) assert.equal(err.location.key, c.key, text);
      assert.equal(err.location.line, c.line, text);
      if (c.column !== undefined) assert.equal(err.location.column, c.column, text);
      for (const s of c.says ?? [])
        assert.ok(`${err.message}\n${err.hint ?? ""}`.includes(s), `expected "${s}" in:\n${text}`);
      for (const s of c.never ?? [])
        assert.ok(!text.includes(s) && !err.message.includes(s), `"${s}" leaked in:\n${text}`);
    });
  }

  it("describe() names file:line:column and the key, shows the expression with a caret, and no stack", () => {
    const err = failure(CASES.find((c) => c.name === "unknown field in a condition")!.toml, {});
    const text = err.describe();
    assert.match(text, /^fraiseql\.toml:10:1: observers\[0\]\.condition: /);
    assert.ok(text.includes("\n  stauts == 'shipped'\n  ^"), text);
    assert.ok(text.endsWith("[FQL_CONDITION_UNKNOWN_FIELD]"));
    assert.ok(!/\n\s+at /.test(text), text);
    assert.equal(err.location.expression, "stauts == 'shipped'");
    assert.equal(err.location.position, 0);
  });

  it("a TOML syntax error shows the offending line with a caret", () => {
    const err = failure('[webhooks]\ntimeout = "30s\n', {});
    const text = err.describe();
    assert.match(text, /^fraiseql\.toml:2:15: not valid TOML: /);
    assert.ok(text.includes('\n  timeout = "30s\n                ^'), text);
  });
});

describe("encryption fields", () => {
  const base = `[[entities]]\nname = "User"\n[entities.fields]\nemail = "String"\nprofile = "JSON"\n[[observers]]\nname = "a"\nentity = "User"\nevent = "INSERT"\n[[observers.actions]]\nurl = "https://x.example.com"\n`;
  const key = "ab".repeat(32);
  const fields = (body: string, list: string): string =>
    parseConfig(`${base}${body}encryption = { key = "${key}", fields = ${list} }\n`, {
      env: {},
    }).observers[0]!.actions[0]!.encryption!.fields!.join(",");

  it("accept top-level keys, dotted paths into nested tables, and paths under a placeholder", () => {
    assert.equal(fields('body = { email = "{{ email }}" }\n', '["email"]'), "email");
    assert.equal(
      fields('body = { customer = { email = "{{ email }}" } }\n', '["customer.email"]'),
      "customer.email",
    );
    assert.equal(fields('body = { profile = "{{ profile }}" }\n', '["profile.ssn"]'), "profile.ssn");
    assert.equal(fields("", '["data"]'), "data");
  });

  it("refuse a name the body does not have", () => {
    assert.throws(
      () => fields('body = { customer = { email = "{{ email }}" } }\n', '["customer.mail"]'),
      (err) => err instanceof FraiseqlError && err.hint!.includes('did you mean "email"?'),
    );
  });
});
