/**
 * `fraiseql/testing`: helpers for testing code that sends or receives fraiseql webhooks.
 * {@link MockWebhookServer} is a real HTTP receiver that records and scripts responses.
 */

export {
  MockWebhookServer,
  type MockWebhookServerOptions,
  type RecordedCall,
  type ResponseHandler,
  type ScriptedResponse,
} from "./mock-webhook-server.js";
