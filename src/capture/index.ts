export { type CapturedEvent, claimUnroutedEvents, markRouted } from "./outbox.js";
export {
  CAPTURE_TRIGGER,
  captureTriggerInstalled,
  installCaptureTriggers,
  observedEvents,
} from "./triggers.js";
