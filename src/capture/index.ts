export { type CapturedEvent, unroutedEventsStatement } from "./outbox.js";
export {
  CAPTURE_TRIGGER,
  captureTriggerInstalled,
  installCaptureTriggers,
  observedEvents,
} from "./triggers.js";
