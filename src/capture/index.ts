export { type CapturedEvent, claimUnroutedEvents } from "./outbox.js";
export {
  CAPTURE_TRIGGER,
  captureTriggerInstalled,
  installCaptureTriggers,
  observedEvents,
} from "./triggers.js";
