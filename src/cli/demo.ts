import { randomBytes } from "node:crypto";
import { parseConfig } from "../config/load.js";
import { verifyWebhook } from "../delivery/signing.js";
import { MockWebhookServer, type RecordedCall } from "../testing/index.js";
import { parseCommandArgs } from "./args.js";
import { type Service, startService } from "./serve.js";

/** The demo's configuration: the seed's first pattern, on the embedded database. */
export const DEMO_TOML = `# The demo: FraiseQL's "order created" pattern on the embedded database (PGlite).
[server]
port = 4000

[[entities]]
name = "Order"
[entities.fields]
id = "ID"
customer_email = "String"
total = "Float"
status = "String"
tracking_number = "String?"

[[observers]]
name = "on_order_created"
entity = "Order"
event = "INSERT"

[[observers.actions]]
type = "webhook"
url = "\${DEMO_RECEIVER_URL}/notifications"
method = "POST"
headers = { Authorization = "Bearer \${WEBHOOK_API_KEY}" }
body = { event = "order.created", order_id = "{{ id }}", customer_email = "{{ customer_email }}", total = "{{ total }}", timestamp = "{{ _timestamp }}" }

[webhooks.retry]
max_attempts = 3
backoff = "exponential"
initial_delay = "100ms"
max_delay = "5s"

[webhooks.signing]
enabled = true
algorithm = "sha256"
secret = "\${WEBHOOK_SECRET}"
header = "X-FraiseQL-Signature"
timestamp_header = "X-FraiseQL-Timestamp"
`;

const CREATE_ORDER = `mutation {
  createOrder(input: { customer_email: "user@example.com", total: 99.99, status: "pending" }) {
    id customer_email total status
  }
}`;

const DEMO_HEADERS = [
  "authorization",
  "x-fraiseql-delivery",
  "x-fraiseql-attempt",
  "x-fraiseql-timestamp",
  "x-fraiseql-signature",
];

function out(line = ""): void {
  process.stdout.write(`${line}\n`);
}

async function graphql(url: string, query: string): Promise<unknown> {
  const res = await fetch(`${url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query }),
  });
  return res.json();
}

/**
 * `fraiseql demo [--once]`: declares Order, starts the GraphQL server and a local receiver,
 * creates an order through a GraphQL mutation, prints the signed webhook as it arrives and
 * verifies it. With `--once` it exits 0 once the webhook arrived verified, non-zero otherwise;
 * without it, it keeps serving so more orders can be created.
 */
export async function runDemo(args: string[]): Promise<number> {
  const { values } = parseCommandArgs(
    "demo",
    args,
    { once: { type: "boolean" }, port: { type: "string" }, timeout: { type: "string" } },
    false,
  );
  const secret = process.env.WEBHOOK_SECRET ?? `demo_${randomBytes(16).toString("hex")}`;
  const apiKey = process.env.WEBHOOK_API_KEY ?? "demo-api-key";
  const receiver = await MockWebhookServer.start({ secret });
  let service: Service | undefined;
  try {
    const config = parseConfig(DEMO_TOML, {
      file: "demo.toml",
      env: {
        ...process.env,
        DEMO_RECEIVER_URL: receiver.url,
        WEBHOOK_SECRET: secret,
        WEBHOOK_API_KEY: apiKey,
      },
    });
    out("fraiseql demo: starting the embedded PostgreSQL (PGlite, in memory)...");
    service = await startService(config, {
      db: await (await import("../db/pglite.js")).openPglite(),
      port: values.port === undefined ? (values.once ? 0 : 4000) : Number(values.port),
    });
    out(`GraphQL:  ${service.url}/graphql`);
    out(`Receiver: ${receiver.url}/notifications (verifies X-FraiseQL-Signature)`);
    out();
    let verified = 0;
    let printed = 0;
    const printNewCalls = () => {
      for (; printed < receiver.calls.length; printed++) {
        const call = receiver.calls[printed] as RecordedCall;
        const result = verifyWebhook(call.body, call.headers, { secret });
        if (result.ok) verified++;
        out(`<- webhook received: ${call.method} ${call.path}`);
        for (const name of DEMO_HEADERS) out(`   ${name}: ${call.headers[name] ?? "(missing)"}`);
        out(`   body: ${call.body}`);
        out(`   signature: ${result.ok ? "verified" : `REJECTED (${result.reason})`}`);
        out();
      }
    };
    out("-> GraphQL mutation:");
    out(CREATE_ORDER.replace(/^/gm, "   "));
    const created = await graphql(service.url as string, CREATE_ORDER);
    out(`   response: ${JSON.stringify(created)}`);
    out();
    const timeout = values.timeout === undefined ? 30_000 : Number(values.timeout) * 1000;
    try {
      await receiver.waitForCalls(1, timeout);
      printNewCalls();
    } catch {
      out(`no webhook arrived within ${timeout / 1000}s`);
      return 1;
    }
    if (values.once) {
      if (verified > 0) {
        out("demo: the webhook arrived and its signature verified.");
        return 0;
      }
      out("demo: the webhook arrived but its signature did not verify.");
      return 1;
    }
    out("Keep going: create more orders and watch them arrive, e.g.");
    out(
      `  curl -s ${service.url}/graphql -H 'content-type: application/json' \\\n    -d '{"query":"mutation { createOrder(input: {customer_email: \\"a@b.c\\", total: 12.5, status: \\"pending\\"}) { id } }"}'`,
    );
    out("Press Ctrl+C to stop.");
    const printer = setInterval(printNewCalls, 200);
    await new Promise<void>((resolve) => {
      process.once("SIGINT", () => resolve());
      process.once("SIGTERM", () => resolve());
    });
    clearInterval(printer);
    return 0;
  } finally {
    await service?.close().catch(() => {});
    await receiver.close();
  }
}
